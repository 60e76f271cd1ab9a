// Package device is the device registry: the sensors (smoke, water level,
// gas, temperature, door, gate, alarm buttons) and video analysers (edge AI
// boxes) that report to Sharpeye over MQTT or HTTP. Devices come from the
// configuration file (the devices: list) and from the API (kept in the case
// database, versioned, seen by every node through Registry.Run).
//
// A device's record gives its place (region, grid, coordinates) that its
// events carry, the cameras that cover it, how often it is expected to
// report, and its credential for the embedded MQTT broker (username, by
// default the device id, and a password that is never shown).
package device

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"sharpeye/configs/conf"
	"sharpeye/console/auth"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/event"
)

// Kind is what sort of device a record describes.
type Kind string

// Device kinds.
const (
	KindSmoke       Kind = "smoke"
	KindWaterLevel  Kind = "water_level"
	KindGas         Kind = "gas"
	KindTemperature Kind = "temperature"
	KindDoor        Kind = "door"
	KindGate        Kind = "gate"
	KindAlarmButton Kind = "alarm_button" // 一键报警
	// KindAnalyser is a video analyser (an edge AI box): it publishes
	// detections under sharpeye/analysers/{id}/ rather than
	// sharpeye/devices/{id}/, and its events have source kind analyser.
	KindAnalyser Kind = "analyser"
	KindOther    Kind = "other"
)

// Kinds lists every kind.
var Kinds = []Kind{KindSmoke, KindWaterLevel, KindGas, KindTemperature, KindDoor, KindGate, KindAlarmButton, KindAnalyser, KindOther}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return slices.Contains(Kinds, k) }

// Limits on a record.
const (
	MaxCameras     = 64
	MaxTags        = 32
	MaxInterval    = 7 * 24 * time.Hour
	MinInterval    = time.Second
	MinPasswordLen = 8
)

// Device is one device's record.
type Device struct {
	// ID is the device's stable id: its place in the MQTT topics
	// (sharpeye/devices/{id}/...) and in the API ([a-z0-9_-], 1-64
	// characters).
	ID   string `yaml:"id" json:"id"`
	Kind Kind   `yaml:"kind" json:"kind"`
	Name string `yaml:"name" json:"name"`
	// Region, Grid, Lat and Lon place the device; its events carry them.
	Region string   `yaml:"region" json:"region"`
	Grid   string   `yaml:"grid" json:"grid,omitempty"`
	Lat    *float64 `yaml:"lat" json:"lat,omitempty"`
	Lon    *float64 `yaml:"lon" json:"lon,omitempty"`
	// Cameras are the ids of the cameras covering the device (for a sensor)
	// or analysed by it (for an analyser).
	Cameras []string `yaml:"cameras" json:"cameras"`
	// Interval is how often the device is expected to report; silent for
	// one and a half intervals it is offline. 0: no expectation.
	Interval conf.Duration `yaml:"interval" json:"interval"`
	// Username is the device's user name on the embedded MQTT broker;
	// empty means the device id.
	Username string `yaml:"username" json:"username,omitempty"`
	// Password is the device's password on the embedded broker. It is never
	// shown; records stored through the API keep only a salted hash of it.
	Password conf.Secret `yaml:"password" json:"-"`
	// PasswordEnv names an environment variable holding the password.
	PasswordEnv string   `yaml:"password_env" json:"password_env,omitempty"`
	Tags        []string `yaml:"tags" json:"tags"`
	// Disabled devices are kept but may not connect, and their messages are
	// refused.
	Disabled bool `yaml:"disabled" json:"disabled"`
}

var (
	idPattern       = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	usernamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$`)
)

// Validate implements conf.Validator (for devices in the configuration).
func (d *Device) Validate(v *conf.V) {
	d.Normalize()
	for _, p := range d.Problems() {
		v.Errorf(p.Field, "%s", p.Msg)
	}
}

// Problem is one thing wrong with a device record.
type Problem struct{ Field, Msg string }

// Problems checks a record; the API and the configuration share it. A
// record without problems yields events that pass event validation.
func (d *Device) Problems() []Problem {
	var out []Problem
	add := func(field, format string, args ...any) {
		out = append(out, Problem{field, fmt.Sprintf(format, args...)})
	}
	if !idPattern.MatchString(d.ID) {
		add("id", "must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter or digit")
	}
	if !d.Kind.Valid() {
		names := make([]string, len(Kinds))
		for i, k := range Kinds {
			names[i] = string(k)
		}
		if d.Kind == "" {
			add("kind", "required: one of %s", strings.Join(names, ", "))
		} else {
			add("kind", "unknown kind %q: one of %s", d.Kind, strings.Join(names, ", "))
		}
	}
	if len(d.Name) > 128 {
		add("name", "must be at most 128 characters")
	}
	if err := auth.CheckRegion(d.Region); err != nil {
		add("region", "%v", err)
	}
	if len(d.Grid) > 64 {
		add("grid", "must be at most 64 characters")
	}
	if (d.Lat == nil) != (d.Lon == nil) {
		add("lat", "lat and lon go together")
	}
	if d.Lat != nil && (math.IsNaN(*d.Lat) || *d.Lat < -90 || *d.Lat > 90) {
		add("lat", "must be between -90 and 90")
	}
	if d.Lon != nil && (math.IsNaN(*d.Lon) || *d.Lon < -180 || *d.Lon > 180) {
		add("lon", "must be between -180 and 180")
	}
	if len(d.Cameras) > MaxCameras {
		add("cameras", "at most %d cameras", MaxCameras)
	}
	for i, c := range d.Cameras {
		if !camera.ValidID(c) {
			add(fmt.Sprintf("cameras[%d]", i), "%q is not a camera id", c)
		}
	}
	if iv := d.Interval.D(); iv != 0 && (iv < MinInterval || iv > MaxInterval) {
		add("interval", "must be 0 (no expectation) or between 1s and 168h")
	}
	if d.Username != "" && !usernamePattern.MatchString(d.Username) {
		add("username", "must be 1-64 characters of letters, digits, _ . : @ and -")
	}
	if d.PasswordEnv != "" && d.Password != "" {
		add("password_env", "give password or password_env, not both")
	}
	if d.PasswordEnv != "" && os.Getenv(d.PasswordEnv) == "" {
		add("password_env", "environment variable %s is not set", d.PasswordEnv)
	}
	if p := d.Password.Reveal(); p != "" && len(p) < MinPasswordLen {
		add("password", "must be at least %d characters", MinPasswordLen)
	}
	if len(d.Tags) > MaxTags {
		add("tags", "at most %d tags", MaxTags)
	}
	for i, t := range d.Tags {
		if t == "" || len(t) > 64 {
			add(fmt.Sprintf("tags[%d]", i), "must be 1-64 characters")
		}
	}
	if len(out) > 0 {
		return out
	}
	// What the checks above let through must also suit the event schema
	// (a region segment in capitals, a control character in a tag): try it.
	e := d.Template(event.SourceDevice, "telemetry")
	if err := e.Validate(); err != nil {
		field := "id"
		var ee *event.Error
		if errors.As(err, &ee) {
			switch {
			case strings.HasPrefix(ee.Field, "location."):
				field = strings.TrimPrefix(ee.Field, "location.")
			case strings.HasPrefix(ee.Field, "tags"):
				field = ee.Field
			case ee.Field == "source.name":
				field = "name"
			}
			add(field, "%s", ee.Reason)
		} else {
			add(field, "%v", err)
		}
	}
	return out
}

// Normalize fills defaults (empty lists rather than nil).
func (d *Device) Normalize() {
	if d.Tags == nil {
		d.Tags = []string{}
	}
	if d.Cameras == nil {
		d.Cameras = []string{}
	}
}

// SourceKind is the kind of source the device's events come from:
// analyser for analysers, device for every other kind.
func (d Device) SourceKind() event.SourceKind {
	if d.Kind == KindAnalyser {
		return event.SourceAnalyser
	}
	return event.SourceDevice
}

// MQTTUsername is the device's user name on the embedded broker.
func (d Device) MQTTUsername() string {
	if d.Username != "" {
		return d.Username
	}
	return d.ID
}

// TopicPrefix is the MQTT topic subtree the device owns:
// "sharpeye/devices/{id}/" or, for analysers, "sharpeye/analysers/{id}/".
func (d Device) TopicPrefix() string {
	if d.Kind == KindAnalyser {
		return "sharpeye/analysers/" + d.ID + "/"
	}
	return "sharpeye/devices/" + d.ID + "/"
}

// Template returns a new event of type typ from this device: its source
// (kind, id, name), location, tags and the device_kind attribute.
func (d Device) Template(kind event.SourceKind, typ string) *event.Event {
	e := event.New(kind, d.ID, typ)
	e.Source.Name = d.Name
	e.Location = event.Location{Region: d.Region, Grid: d.Grid, Lat: d.Lat, Lon: d.Lon}
	if d.Region == "" && (d.Grid != "" || d.Lat != nil) {
		// A location needs a region; keep the rest only with one.
		e.Location = event.Location{}
	}
	if len(d.Tags) > 0 {
		e.Tags = slices.Clone(d.Tags)
	}
	e.SetString("device_kind", string(d.Kind))
	return e
}

// password returns the plaintext password of a configured device.
func (d Device) password() string {
	if p := d.Password.Reveal(); p != "" {
		return p
	}
	if d.PasswordEnv != "" {
		return os.Getenv(d.PasswordEnv)
	}
	return ""
}

// Public is what the API shows of a device: no password.
func (d Device) Public() Device {
	d.Password = ""
	d.Tags = slices.Clone(d.Tags)
	if d.Tags == nil {
		d.Tags = []string{}
	}
	d.Cameras = slices.Clone(d.Cameras)
	if d.Cameras == nil {
		d.Cameras = []string{}
	}
	return d
}

// equalSecret compares two passwords in time independent of where they
// differ.
func equalSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

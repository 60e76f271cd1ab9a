// Package camera is the camera registry: the cameras of the configuration
// file and those added through the API (kept in the case database), with
// their RTSP address, credentials, place in the region tree and tags.
// Credentials never leave this package unredacted except to the puller.
package camera

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"sharpeye/configs/conf"
	"sharpeye/console/auth"
)

// Transports a camera may be pulled with.
const (
	TransportAuto = "auto" // TCP; UDP if the camera refuses TCP
	TransportTCP  = "tcp"
	TransportUDP  = "udp"
)

// Camera is one camera's record.
type Camera struct {
	// ID is the camera's stable id: its path on the RTSP re-serve and in
	// the API ([a-z0-9_-], 1-64 characters).
	ID   string `yaml:"id" json:"id"`
	Name string `yaml:"name" json:"name"`
	// URL is the camera's rtsp:// or rtsps:// address. Credentials may be
	// written in it or given apart.
	URL      string      `yaml:"url" json:"url"`
	Username string      `yaml:"username" json:"username,omitempty"`
	Password conf.Secret `yaml:"password" json:"-"`
	// PasswordEnv names an environment variable holding the password.
	PasswordEnv string `yaml:"password_env" json:"password_env,omitempty"`
	// Transport is auto (TCP, or UDP if the camera refuses TCP; the default),
	// tcp or udp.
	Transport string `yaml:"transport" json:"transport"`
	// OnDemand cameras are pulled only while someone watches.
	OnDemand bool     `yaml:"on_demand" json:"on_demand"`
	Region   string   `yaml:"region" json:"region"`
	Grid     string   `yaml:"grid" json:"grid,omitempty"`
	Lat      *float64 `yaml:"lat" json:"lat,omitempty"`
	Lon      *float64 `yaml:"lon" json:"lon,omitempty"`
	Tags     []string `yaml:"tags" json:"tags"`
	Vendor   string   `yaml:"vendor" json:"vendor,omitempty"`
	// Disabled cameras are kept but not pulled.
	Disabled bool `yaml:"disabled" json:"disabled"`
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidID reports whether s may be a camera id.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// Validate implements conf.Validator (for cameras in the configuration).
func (c *Camera) Validate(v *conf.V) {
	for _, p := range c.Problems() {
		v.Errorf(p.Field, "%s", p.Msg)
	}
}

// Problem is one thing wrong with a camera record.
type Problem struct{ Field, Msg string }

// Problems checks a record; the API and the configuration share it.
func (c *Camera) Problems() []Problem {
	var out []Problem
	add := func(field, format string, args ...any) {
		out = append(out, Problem{field, fmt.Sprintf(format, args...)})
	}
	if !idPattern.MatchString(c.ID) {
		add("id", "must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter or digit")
	}
	if len(c.Name) > 128 {
		add("name", "must be at most 128 characters")
	}
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		add("url", "required (rtsp://host:554/path)")
	case err != nil:
		add("url", "not a URL: %v", redactErr(err))
	case u.Scheme != "rtsp" && u.Scheme != "rtsps":
		add("url", "scheme must be rtsp or rtsps, not %q", u.Scheme)
	case u.Host == "":
		add("url", "has no host")
	}
	if c.PasswordEnv != "" && c.Password != "" {
		add("password_env", "give password or password_env, not both")
	}
	if c.PasswordEnv != "" && os.Getenv(c.PasswordEnv) == "" {
		add("password_env", "environment variable %s is not set", c.PasswordEnv)
	}
	switch c.Transport {
	case "", TransportAuto, TransportTCP, TransportUDP:
	default:
		add("transport", "must be auto, tcp or udp")
	}
	if err := auth.CheckRegion(c.Region); err != nil {
		add("region", "%v", err)
	}
	if len(c.Grid) > 64 {
		add("grid", "must be at most 64 characters")
	}
	if (c.Lat == nil) != (c.Lon == nil) {
		add("lat", "lat and lon go together")
	}
	if c.Lat != nil && (math.IsNaN(*c.Lat) || *c.Lat < -90 || *c.Lat > 90) {
		add("lat", "must be between -90 and 90")
	}
	if c.Lon != nil && (math.IsNaN(*c.Lon) || *c.Lon < -180 || *c.Lon > 180) {
		add("lon", "must be between -180 and 180")
	}
	if len(c.Tags) > 32 {
		add("tags", "at most 32 tags")
	}
	for i, t := range c.Tags {
		if t == "" || len(t) > 64 {
			add(fmt.Sprintf("tags[%d]", i), "must be 1-64 characters")
		}
	}
	if len(c.Vendor) > 64 {
		add("vendor", "must be at most 64 characters")
	}
	return out
}

// Normalize fills defaults (transport auto, empty tags).
func (c *Camera) Normalize() {
	if c.Transport == "" {
		c.Transport = TransportAuto
	}
	if c.Tags == nil {
		c.Tags = []string{}
	}
}

// Credentials returns the user and password to connect with: those given
// apart win over those written in the URL.
func (c *Camera) Credentials() (user, pass string) {
	if u, err := url.Parse(c.URL); err == nil && u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	if c.Username != "" {
		user = c.Username
	}
	if p := c.Password.Reveal(); p != "" {
		pass = p
	} else if c.PasswordEnv != "" {
		pass = os.Getenv(c.PasswordEnv)
	}
	return user, pass
}

// RedactedURL is the camera's URL without credentials: the only form that
// goes into logs, API answers and metrics.
func (c *Camera) RedactedURL() string { return RedactURL(c.URL) }

// RedactURL removes user information from a URL.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@"); i >= 0 && j > i {
			return raw[:i+3] + raw[j+1:]
		}
		return raw
	}
	u.User = nil
	return u.String()
}

// redactErr strips a URL's credentials that url.Parse quotes in its error.
func redactErr(err error) string {
	var ue *url.Error
	if e, ok := err.(*url.Error); ok {
		ue = e
		return ue.Op + " " + RedactURL(ue.URL) + ": " + ue.Err.Error()
	}
	return err.Error()
}

// Public is what the API shows of a camera: no password, URL redacted.
func (c Camera) Public() Camera {
	c.URL = c.RedactedURL()
	c.Password = ""
	c.Tags = slices.Clone(c.Tags)
	if c.Tags == nil {
		c.Tags = []string{}
	}
	return c
}

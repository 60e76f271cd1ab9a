package mqtt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"sharpeye/ingest/event"
)

// Rejection classes: the reason label of the rejected-messages counter.
const (
	ClassTooLarge      = "too_large"       // payload over max_payload
	ClassMalformed     = "malformed"       // not JSON (or not the plain status word)
	ClassSchema        = "schema"          // JSON, but a field is unknown, missing, of the wrong type or out of range
	ClassTopic         = "topic"           // a topic outside the scheme
	ClassUnknownDevice = "unknown_device"  // no device with the topic's id
	ClassDisabled      = "disabled_device" // the device is disabled
	ClassForbidden     = "forbidden"       // a device speaking for another one
)

// Rejection says why a message (or one detection of a batch) was refused:
// the field at fault and a sentence a device vendor can act on.
type Rejection struct {
	Class string
	Field string
	Msg   string
}

func (r *Rejection) Error() string {
	if r.Field == "" {
		return r.Msg
	}
	return r.Field + ": " + r.Msg
}

func reject(class, field, format string, args ...any) *Rejection {
	return &Rejection{Class: class, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Limits on payloads.
const (
	MaxReadings   = 48   // readings in one telemetry message
	MaxEventAttrs = 48   // attributes of one device event
	MaxDetections = 1000 // detections in one batch
	MaxTextValue  = 256  // bytes in a string reading or attribute
	maxClassLen   = 32   // bytes in a detection class
	maxEventType  = event.MaxTypeLen - len("sensor.")
)

// Attribute keys Sharpeye sets itself, which payloads may not use.
var reserved = []string{"device_kind", "device_time", "clock_skew", "camera", "class", "confidence", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "via", "reason", "state"}

// Telemetry is a decoded telemetry message:
//
//	{"ts": "2026-11-21T06:40:00Z" | 1763707200000, "readings": {"smoke": 0.12, "battery": 87, "door_open": false}}
type Telemetry struct {
	TS       *time.Time
	Readings map[string]any // float64, bool or string
}

// DecodeTelemetry parses and checks a telemetry payload.
func DecodeTelemetry(data []byte) (*Telemetry, *Rejection) {
	if t, ok := decodeTelemetryFast(data); ok {
		return t, nil
	}
	return decodeTelemetry(data)
}

// decodeTelemetry is DecodeTelemetry with encoding/json, for any input.
func decodeTelemetry(data []byte) (*Telemetry, *Rejection) {
	obj, rej := object(data, "", "a telemetry message", "ts", "readings")
	if rej != nil {
		return nil, rej
	}
	t := &Telemetry{}
	if t.TS, rej = timestamp(obj["ts"], "ts"); rej != nil {
		return nil, rej
	}
	raw, ok := obj["readings"]
	if !ok {
		return nil, reject(ClassSchema, "readings", `missing; send {"readings": {"smoke": 0.12}}`)
	}
	if t.Readings, rej = scalars(raw, "readings", MaxReadings); rej != nil {
		return nil, rej
	}
	if len(t.Readings) == 0 {
		return nil, reject(ClassSchema, "readings", "empty; send at least one reading")
	}
	return t, nil
}

// DeviceEvent is a decoded event message:
//
//	{"type": "alarm_button.pressed", "severity": "critical", "attributes": {"zone": "east"}, "ts": ...}
type DeviceEvent struct {
	Type       string
	Severity   event.Severity // "" when not given
	Attributes map[string]any
	TS         *time.Time
}

// DecodeEvent parses and checks an event payload.
func DecodeEvent(data []byte) (*DeviceEvent, *Rejection) {
	obj, rej := object(data, "", "an event message", "type", "severity", "attributes", "ts")
	if rej != nil {
		return nil, rej
	}
	d := &DeviceEvent{}
	raw, ok := obj["type"]
	if !ok {
		return nil, reject(ClassSchema, "type", `missing; send a dotted lowercase name such as "alarm_button.pressed"`)
	}
	if d.Type, rej = str(raw, "type"); rej != nil {
		return nil, rej
	}
	if reason := checkDotted(d.Type, maxEventType); reason != "" {
		return nil, reject(ClassSchema, "type", "%s", reason)
	}
	if raw, ok := obj["severity"]; ok {
		s, rej := str(raw, "severity")
		if rej != nil {
			return nil, rej
		}
		d.Severity = event.Severity(s)
		if !d.Severity.Valid() {
			return nil, reject(ClassSchema, "severity", "unknown severity %s; one of info, warning, minor, major, critical", quote(s))
		}
	}
	if raw, ok := obj["attributes"]; ok {
		if d.Attributes, rej = scalars(raw, "attributes", MaxEventAttrs); rej != nil {
			return nil, rej
		}
	}
	if d.TS, rej = timestamp(obj["ts"], "ts"); rej != nil {
		return nil, rej
	}
	return d, nil
}

// StatusReport is a decoded status message: the plain words online or offline,
// or {"state": "online"|"offline", "reason": "...", "ts": ...}.
type StatusReport struct {
	Online bool
	Reason string
	TS     *time.Time
}

// DecodeStatus parses and checks a status payload.
func DecodeStatus(data []byte) (*StatusReport, *Rejection) {
	switch strings.ToLower(string(bytes.TrimSpace(data))) {
	case "online", `"online"`, "1":
		return &StatusReport{Online: true}, nil
	case "offline", `"offline"`, "0":
		return &StatusReport{Online: false}, nil
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, reject(ClassMalformed, "", `a status message is "online", "offline" or {"state": "online"}`)
	}
	obj, rej := object(data, "", "a status message", "state", "reason", "ts")
	if rej != nil {
		return nil, rej
	}
	s := &StatusReport{}
	raw, ok := obj["state"]
	if !ok {
		return nil, reject(ClassSchema, "state", `missing; send {"state": "online"} or {"state": "offline"}`)
	}
	state, rej := str(raw, "state")
	if rej != nil {
		return nil, rej
	}
	switch state {
	case "online":
		s.Online = true
	case "offline":
	default:
		return nil, reject(ClassSchema, "state", "must be online or offline, got %s", quote(state))
	}
	if raw, ok := obj["reason"]; ok {
		if s.Reason, rej = str(raw, "reason"); rej != nil {
			return nil, rej
		}
		if reason := checkText(s.Reason, MaxTextValue); reason != "" {
			return nil, reject(ClassSchema, "reason", "%s", reason)
		}
	}
	if s.TS, rej = timestamp(obj["ts"], "ts"); rej != nil {
		return nil, rej
	}
	return s, nil
}

// Detection is one decoded detection of an analyser:
//
//	{"camera": "cam-0042", "class": "person", "confidence": 0.93, "bbox": [0.1, 0.2, 0.3, 0.4], "snapshot": "snap/0042/1.jpg", "ts": ...}
//
// bbox is x, y, width and height as fractions of the frame (0 to 1).
type Detection struct {
	Camera     string
	Class      string
	Confidence float64
	BBox       *[4]float64
	Snapshot   string
	TS         *time.Time
}

// DecodeDetections parses a detections payload: one detection, or a batch
// {"detections": [...]} of up to MaxDetections. A batch is refused whole if
// any detection is wrong (the error names it).
func DecodeDetections(data []byte) ([]Detection, *Rejection) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, notObject(data, "a detections message")
	}
	var probe struct {
		Detections json.RawMessage `json:"detections"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, malformed(data, err, "a detections message")
	}
	if probe.Detections == nil {
		d, rej := DecodeDetection(data, "")
		if rej != nil {
			return nil, rej
		}
		return []Detection{d}, nil
	}
	obj, rej := object(data, "", "a detections batch", "detections")
	if rej != nil {
		return nil, rej
	}
	items, rej := array(obj["detections"], "detections", MaxDetections)
	if rej != nil {
		return nil, rej
	}
	if len(items) == 0 {
		return nil, reject(ClassSchema, "detections", "empty; send at least one detection")
	}
	out := make([]Detection, 0, len(items))
	for i, raw := range items {
		d, rej := DecodeDetection(raw, "detections["+strconv.Itoa(i)+"]")
		if rej != nil {
			return nil, rej
		}
		out = append(out, d)
	}
	return out, nil
}

// DecodeDetection parses one detection; path prefixes the fields named in
// its errors.
func DecodeDetection(data []byte, path string) (Detection, *Rejection) {
	obj, rej := object(data, path, "a detection", "camera", "class", "confidence", "bbox", "snapshot", "ts")
	if rej != nil {
		return Detection{}, rej
	}
	var d Detection
	f := func(name string) string { return join(path, name) }
	raw, ok := obj["camera"]
	if !ok {
		return Detection{}, reject(ClassSchema, f("camera"), "missing; the id of the camera the detection was made on")
	}
	if d.Camera, rej = str(raw, f("camera")); rej != nil {
		return Detection{}, rej
	}
	if !validID(d.Camera) {
		return Detection{}, reject(ClassSchema, f("camera"), "%s is not a camera id (1-64 characters of a-z, 0-9, _ and -)", quote(d.Camera))
	}
	if raw, ok = obj["class"]; !ok {
		return Detection{}, reject(ClassSchema, f("class"), `missing; what was detected, such as "person" or "vehicle"`)
	}
	if d.Class, rej = str(raw, f("class")); rej != nil {
		return Detection{}, rej
	}
	if !validClass(d.Class) {
		return Detection{}, reject(ClassSchema, f("class"), "%s is not a class name (1-%d characters of a-z, 0-9 and _, starting with a letter)", quote(d.Class), maxClassLen)
	}
	if raw, ok = obj["confidence"]; !ok {
		return Detection{}, reject(ClassSchema, f("confidence"), "missing; a number from 0 to 1")
	}
	if d.Confidence, rej = number(raw, f("confidence")); rej != nil {
		return Detection{}, rej
	}
	if d.Confidence < 0 || d.Confidence > 1 {
		return Detection{}, reject(ClassSchema, f("confidence"), "must be between 0 and 1, got %s", raw)
	}
	if raw, ok = obj["bbox"]; ok {
		items, rej := array(raw, f("bbox"), 4)
		if rej != nil {
			return Detection{}, rej
		}
		if len(items) != 4 {
			return Detection{}, reject(ClassSchema, f("bbox"), "must be [x, y, width, height], got %d numbers", len(items))
		}
		var b [4]float64
		for i, it := range items {
			field := f("bbox") + "[" + strconv.Itoa(i) + "]"
			if b[i], rej = number(it, field); rej != nil {
				return Detection{}, rej
			}
			if b[i] < 0 || b[i] > 1 {
				return Detection{}, reject(ClassSchema, field, "must be between 0 and 1 (a fraction of the frame), got %s", it)
			}
		}
		const slack = 1e-6
		switch {
		case b[2] == 0 || b[3] == 0:
			return Detection{}, reject(ClassSchema, f("bbox"), "width and height must be above 0")
		case b[0]+b[2] > 1+slack:
			return Detection{}, reject(ClassSchema, f("bbox"), "x + width is %g, past the right edge (1)", b[0]+b[2])
		case b[1]+b[3] > 1+slack:
			return Detection{}, reject(ClassSchema, f("bbox"), "y + height is %g, past the bottom edge (1)", b[1]+b[3])
		}
		d.BBox = &b
	}
	if raw, ok = obj["snapshot"]; ok {
		if d.Snapshot, rej = str(raw, f("snapshot")); rej != nil {
			return Detection{}, rej
		}
		if d.Snapshot == "" {
			return Detection{}, reject(ClassSchema, f("snapshot"), "empty; leave it out instead")
		}
		if reason := checkText(d.Snapshot, event.MaxRefLen); reason != "" {
			return Detection{}, reject(ClassSchema, f("snapshot"), "%s", reason)
		}
	}
	if d.TS, rej = timestamp(obj["ts"], f("ts")); rej != nil {
		return Detection{}, rej
	}
	return d, nil
}

// object parses data as a JSON object with only the allowed keys.
func object(data []byte, path, what string, allowed ...string) (map[string]json.RawMessage, *Rejection) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		if path != "" && len(trimmed) > 0 && json.Valid(data) {
			return nil, reject(ClassSchema, path, "must be an object, got %s", event.DescribeJSON(trimmed))
		}
		return nil, notObject(data, what)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, malformed(data, err, what)
	}
	for k := range obj {
		if !slices.Contains(allowed, k) {
			return nil, reject(ClassSchema, join(path, k), "unknown field; %s has only %s", what, strings.Join(allowed, ", "))
		}
	}
	return obj, nil
}

func notObject(data []byte, what string) *Rejection {
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return reject(ClassMalformed, "", "empty payload; %s is a JSON object", what)
	case !utf8.Valid(trimmed):
		return reject(ClassMalformed, "", "not JSON (not even UTF-8 text); %s is a JSON object", what)
	case json.Valid(trimmed):
		return reject(ClassSchema, "", "%s is a JSON object, got %s", what, event.DescribeJSON(trimmed))
	}
	return reject(ClassMalformed, "", "not JSON; %s is a JSON object", what)
}

func malformed(data []byte, err error, what string) *Rejection {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return reject(ClassMalformed, "", "malformed JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	}
	if !json.Valid(data) {
		return reject(ClassMalformed, "", "malformed JSON: the payload ends early")
	}
	return reject(ClassSchema, "", "%s is a JSON object: %s", what, strings.TrimPrefix(err.Error(), "json: "))
}

func array(raw json.RawMessage, field string, limit int) ([]json.RawMessage, *Rejection) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		return nil, reject(ClassSchema, field, "must be an array, got %s", event.DescribeJSON(raw))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, reject(ClassMalformed, field, "malformed array")
	}
	if len(items) > limit {
		return nil, reject(ClassSchema, field, "has %d entries; the limit is %d", len(items), limit)
	}
	return items, nil
}

func str(raw json.RawMessage, field string) (string, *Rejection) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", reject(ClassSchema, field, "must be a string, got %s", event.DescribeJSON(raw))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", reject(ClassMalformed, field, "malformed string")
	}
	return s, nil
}

func number(raw json.RawMessage, field string) (float64, *Rejection) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || !(raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9') {
		return 0, reject(ClassSchema, field, "must be a number, got %s", event.DescribeJSON(raw))
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, reject(ClassSchema, field, "number %s is out of range for a 64-bit float", short(string(raw)))
	}
	if !bytes.ContainsAny(raw, ".eE") && math.Abs(f) >= 1<<53 && strconv.FormatFloat(f, 'f', -1, 64) != string(raw) {
		return 0, reject(ClassSchema, field, "integer %s cannot be stored exactly in a 64-bit float; send it as a string", short(string(raw)))
	}
	return f, nil
}

// scalars parses an object of attribute-like values: numbers, booleans and
// strings under keys that can be event attributes.
func scalars(raw json.RawMessage, field string, limit int) (map[string]any, *Rejection) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, reject(ClassSchema, field, "must be an object, got %s", event.DescribeJSON(raw))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, reject(ClassMalformed, field, "malformed object")
	}
	if len(obj) > limit {
		return nil, reject(ClassSchema, field, "has %d keys; the limit is %d", len(obj), limit)
	}
	out := make(map[string]any, len(obj))
	// Sorted, so that the error named is the same every time.
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		v := bytes.TrimSpace(obj[k])
		path := field + "." + k
		if reason := checkKey(k); reason != "" {
			return nil, reject(ClassSchema, field+"["+quote(k)+"]", "%s", reason)
		}
		if slices.Contains(reserved, k) {
			return nil, reject(ClassSchema, path, "%q is reserved for Sharpeye's own attributes; rename it", k)
		}
		switch {
		case len(v) == 0:
			return nil, reject(ClassMalformed, path, "missing value")
		case v[0] == 't' || v[0] == 'f':
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return nil, reject(ClassMalformed, path, "malformed value")
			}
			out[k] = b
		case v[0] == '"':
			s, rej := str(v, path)
			if rej != nil {
				return nil, rej
			}
			if reason := checkText(s, MaxTextValue); reason != "" {
				return nil, reject(ClassSchema, path, "%s", reason)
			}
			out[k] = s
		case v[0] == '-' || '0' <= v[0] && v[0] <= '9':
			f, rej := number(v, path)
			if rej != nil {
				return nil, rej
			}
			out[k] = f
		default:
			return nil, reject(ClassSchema, path, "must be a number, a string or true/false, got %s", event.DescribeJSON(v))
		}
	}
	return out, nil
}

// Bounds on a device's timestamp: unix milliseconds from 2000 to 9999.
var (
	minTS = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTS = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// timestamp parses an optional ts: RFC 3339 or Unix milliseconds.
func timestamp(raw json.RawMessage, field string) (*time.Time, *Rejection) {
	raw = bytes.TrimSpace(raw)
	if raw == nil || string(raw) == "null" {
		return nil, nil
	}
	var t time.Time
	switch {
	case raw[0] == '"':
		s, rej := str(raw, field)
		if rej != nil {
			return nil, rej
		}
		var err error
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return nil, reject(ClassSchema, field, `must be an RFC 3339 time such as "2026-11-21T14:40:00+08:00" or Unix milliseconds, got %s`, quote(s))
		}
	case raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9':
		ms, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return nil, reject(ClassSchema, field, "must be whole Unix milliseconds or an RFC 3339 string, got %s", short(string(raw)))
		}
		if ms < minTS.UnixMilli() || ms > maxTS.UnixMilli() {
			return nil, reject(ClassSchema, field, "%d is not Unix milliseconds between 2000 and 9999 (seconds? multiply by 1000)", ms)
		}
		t = time.UnixMilli(ms)
	default:
		return nil, reject(ClassSchema, field, "must be an RFC 3339 string or Unix milliseconds, got %s", event.DescribeJSON(raw))
	}
	if t.Before(minTS) || t.After(maxTS) {
		return nil, reject(ClassSchema, field, "must lie between the years 2000 and 9999")
	}
	t = t.UTC()
	return &t, nil
}

// checkKey explains what is wrong with an attribute key, or returns "".
func checkKey(k string) string {
	const rule = "key must be 1-64 characters of a-z, 0-9, '_' and '.', starting with a letter"
	if k == "" || len(k) > event.MaxAttributeKey || k[0] < 'a' || k[0] > 'z' {
		return rule
	}
	for i := 1; i < len(k); i++ {
		if c := k[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.') {
			return rule
		}
	}
	return ""
}

// checkDotted explains what is wrong with a dotted lowercase name, or "".
func checkDotted(s string, limit int) string {
	const want = ` is not a dotted lowercase name such as "alarm_button.pressed"`
	switch {
	case s == "":
		return `empty; send a dotted lowercase name such as "alarm_button.pressed"`
	case len(s) > limit:
		return fmt.Sprintf("is %d bytes; the limit is %d", len(s), limit)
	case s[0] < 'a' || s[0] > 'z':
		return quote(s) + want
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_':
		case c == '.' && s[i-1] != '.' && i < len(s)-1:
		default:
			return quote(s) + want
		}
	}
	return ""
}

// checkText explains what is wrong with a text value, or returns "".
func checkText(s string, limit int) string {
	if len(s) > limit {
		return fmt.Sprintf("is %d bytes; the limit is %d", len(s), limit)
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("contains the control character %q at byte %d", r, i)
		}
	}
	return ""
}

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

func validClass(s string) bool {
	if s == "" || len(s) > maxClassLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// quote quotes s for an error message, cutting it short.
func quote(s string) string { return strconv.Quote(short(s)) }

func short(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

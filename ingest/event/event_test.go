package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// testID is a fixed UUIDv7, 2026-11-21T06:40:00.123Z.
var testID = mustParseID("01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b")

func mustParseID(s string) ID {
	id, err := ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func ptr[T any](v T) *T { return &v }

// validEvent returns an event that uses every field.
func validEvent() *Event {
	at := NewTime(time.Date(2026, 11, 21, 6, 40, 0, 123e6, time.UTC))
	return &Event{
		Schema:   SchemaVersion,
		ID:       testID,
		Time:     at,
		Source:   Source{Kind: SourceAnalyser, ID: "box-17", Name: "新庄村口"},
		Type:     "detection.person",
		Severity: SeverityWarning,
		Location: Location{
			Region: "huangpi/wangjiahe/xinzhuang",
			Grid:   "g-0412",
			Lat:    ptr(30.87),
			Lon:    ptr(114.38),
		},
		Attributes: map[string]any{
			"confidence": 0.93,
			"camera":     "cam-0042",
			"night":      true,
			"count":      3.0,
		},
		Tags: []string{"perimeter", "夜间"},
		Evidence: []Evidence{
			{Kind: EvidenceSnapshot, Ref: "snap/2026/11/21/0640.jpg", ContentType: "image/jpeg", Time: &at,
				SHA256: strings.Repeat("ab", 32)},
			{Kind: EvidenceURL, Ref: "https://sharpeye.example/live/cam-0042"},
			{Kind: EvidenceEvent, Ref: "01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2c"},
		},
		Key: "camera:cam-0042",
	}
}

const validJSON = `{"schema":1,"id":"01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b","time":"2026-11-21T06:40:00.123Z",` +
	`"source":{"kind":"analyser","id":"box-17","name":"新庄村口"},"type":"detection.person","severity":"warning",` +
	`"location":{"region":"huangpi/wangjiahe/xinzhuang","grid":"g-0412","lat":30.87,"lon":114.38},` +
	`"attributes":{"camera":"cam-0042","confidence":0.93,"count":3,"night":true},"tags":["perimeter","夜间"],` +
	`"evidence":[{"kind":"snapshot","ref":"snap/2026/11/21/0640.jpg","content_type":"image/jpeg",` +
	`"time":"2026-11-21T06:40:00.123Z","sha256":"abababababababababababababababababababababababababababababababab"},` +
	`{"kind":"url","ref":"https://sharpeye.example/live/cam-0042"},` +
	`{"kind":"event","ref":"01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2c"}],"key":"camera:cam-0042"}`

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   *Event
	}{
		{"full", validEvent()},
		{"minimal", New(SourceCamera, "cam-0042", "camera.offline")},
		{"chinese region", func() *Event {
			e := New(SourceDevice, "smoke-3", "sensor.smoke")
			e.Location.Region = "黄陂区/王家河街道/新庄村"
			return e
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.ev.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode(%s): %v", data, err)
			}
			if !reflect.DeepEqual(got, tc.ev) {
				t.Errorf("round trip changed the event:\n got %+v\nwant %+v", got, tc.ev)
			}
			again, err := got.Encode()
			if err != nil {
				t.Fatalf("Encode again: %v", err)
			}
			if !bytes.Equal(again, data) {
				t.Errorf("encoding is not stable:\n%s\n%s", data, again)
			}
		})
	}
}

func TestEncodeIsCanonical(t *testing.T) {
	data, err := validEvent().Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != validJSON {
		t.Errorf("Encode:\n got %s\nwant %s", data, validJSON)
	}

	dst := []byte("prefix ")
	out, err := validEvent().AppendEncode(dst)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "prefix "+validJSON {
		t.Errorf("AppendEncode: got %s", out)
	}
}

func TestDecodeNormalises(t *testing.T) {
	in := `  {"schema":1,"id":"01A1FCD5-4E7B-7E5F-8A6B-7C8D9E0F1A2B","time":"2026-11-21T14:40:00.123999+08:00",
		"source":{"kind":"camera","id":"cam-1"},"type":"motion","severity":"info",
		"attributes":{"big":1e20,"neg":-0.5,"text":"a<b>&c"},"tags":[],"evidence":[],"location":{}}` + "\n"
	e, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != testID {
		t.Errorf("ID = %v, want %v", e.ID, testID)
	}
	if want := time.Date(2026, 11, 21, 6, 40, 0, 123e6, time.UTC); !e.Time.Equal(want) || e.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want %v", e.Time, want)
	}
	if v, ok := e.Number("big"); !ok || v != 1e20 {
		t.Errorf(`Number("big") = %v, %v`, v, ok)
	}
	if e.Tags != nil || e.Evidence != nil || e.Location != (Location{}) {
		t.Errorf("empty collections kept: %#v %#v %#v", e.Tags, e.Evidence, e.Location)
	}
	out, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"time":"2026-11-21T06:40:00.123Z"`, `"big":100000000000000000000`, `"text":"a<b>&c"`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("Encode = %s, missing %s", out, want)
		}
	}
}

func TestTime(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"2026-11-21T06:40:00.123Z", "2026-11-21T06:40:00.123Z"},
		{"2026-11-21T06:40:00Z", "2026-11-21T06:40:00.000Z"},
		{"2026-11-21T06:40:00.1Z", "2026-11-21T06:40:00.100Z"},
		{"2026-11-21T06:40:00.123999999Z", "2026-11-21T06:40:00.123Z"},
		{"2026-11-21T14:40:00.5+08:00", "2026-11-21T06:40:00.500Z"},
		{"2026-11-21T00:10:00-06:30", "2026-11-21T06:40:00.000Z"},
		{"2026-01-01T00:00:00.000001+00:00", "2026-01-01T00:00:00.000Z"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var v Time
			if err := json.Unmarshal([]byte(`"`+tc.in+`"`), &v); err != nil {
				t.Fatal(err)
			}
			if v.Location() != time.UTC {
				t.Errorf("location = %v, want UTC", v.Location())
			}
			if v.Nanosecond()%int(time.Millisecond) != 0 {
				t.Errorf("not truncated to the millisecond: %v", v.Time)
			}
			got, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != `"`+tc.want+`"` {
				t.Errorf("Marshal = %s, want %q", got, tc.want)
			}
			if v.String() != tc.want {
				t.Errorf("String = %s, want %s", v, tc.want)
			}
		})
	}

	for _, in := range []string{`""`, `"2026-11-21"`, `"2026-11-21 06:40:00Z"`, `"2026-11-21T06:40:00"`,
		`"2026-11-21T06:40:00,5Z"`, `"2026-11-21T25:00:00Z"`, `1732171200`, `true`} {
		t.Run("refuse "+in, func(t *testing.T) {
			var v Time
			err := json.Unmarshal([]byte(in), &v)
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(e.Reason, "RFC 3339") {
				t.Errorf("Unmarshal(%s) = %v, want an *Error about RFC 3339", in, err)
			}
		})
	}

	// A Time set through its embedded field is normalised on output.
	v := Time{time.Date(2026, 11, 21, 14, 40, 0, 123456789, time.FixedZone("CST", 8*3600))}
	if got, _ := v.MarshalText(); string(got) != "2026-11-21T06:40:00.123Z" {
		t.Errorf("MarshalText = %s", got)
	}
	if _, err := (Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}).MarshalJSON(); err == nil {
		t.Error("MarshalJSON accepted year 10000")
	}
}

func TestValidate(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	manyAttrs := func(n int) map[string]any {
		m := make(map[string]any, n)
		for i := range n {
			m[fmt.Sprintf("k%d", i)] = true
		}
		return m
	}

	for _, tc := range []struct {
		name   string
		edit   func(e *Event)
		field  string // "" means the event is valid
		reason string // a part of the reason
	}{
		{"valid", func(e *Event) {}, "", ""},
		{"no location", func(e *Event) { e.Location = Location{} }, "", ""},
		{"chinese region", func(e *Event) { e.Location.Region = "黄陂区/王家河街道/新庄村" }, "", ""},
		{"mixed region", func(e *Event) { e.Location.Region = "huangpi/王家河/xinzhuang_2-东" }, "", ""},
		{"region of 8 segments", func(e *Event) { e.Location.Region = "a/b/c/d/e/f/g/h" }, "", ""},
		{"edge coordinates", func(e *Event) { e.Location.Lat, e.Location.Lon = ptr(-90.0), ptr(180.0) }, "", ""},
		{"one-word type", func(e *Event) { e.Type = "telemetry" }, "", ""},
		{"type with digits", func(e *Event) { e.Type = "detection.person_2.v3" }, "", ""},
		{"attribute key with dots", func(e *Event) { e.Attributes["water.level_cm"] = 12.5 }, "", ""},
		{"64 attributes", func(e *Event) { e.Attributes = manyAttrs(64) }, "", ""},
		{"evidence time 1970", func(e *Event) { e.Evidence[0].Time = &Time{time.Unix(0, 0).UTC()} }, "", ""},

		{"schema missing", func(e *Event) { e.Schema = 0 }, "schema", "missing"},
		{"schema negative", func(e *Event) { e.Schema = -1 }, "schema", "between 1 and 1"},
		{"schema newer", func(e *Event) { e.Schema = 2 }, "schema", "version 2 is newer than this build understands (up to 1)"},
		{"id missing", func(e *Event) { e.ID = ID{} }, "id", "missing"},
		{"id version 4", func(e *Event) { e.ID[6] = 0x4e }, "id", "version 4"},
		{"id variant", func(e *Event) { e.ID[8] = 0xca }, "id", "variant"},
		{"time missing", func(e *Event) { e.Time = Time{} }, "time", "missing"},
		{"time before 1970", func(e *Event) { e.Time = NewTime(time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)) }, "time", "between 1970"},
		{"time after 9999", func(e *Event) { e.Time = NewTime(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)) }, "time", "between 1970"},
		{"source kind missing", func(e *Event) { e.Source.Kind = "" }, "source.kind", "missing; must be one of camera, device"},
		{"source kind unknown", func(e *Event) { e.Source.Kind = "robot" }, "source.kind", `unknown kind "robot"`},
		{"source kind case", func(e *Event) { e.Source.Kind = "Camera" }, "source.kind", "unknown kind"},
		{"source id missing", func(e *Event) { e.Source.ID = "" }, "source.id", "missing"},
		{"source id long", func(e *Event) { e.Source.ID = long(129) }, "source.id", "129 bytes; the limit is 128"},
		{"source id control", func(e *Event) { e.Source.ID = "cam\n1" }, "source.id", `control character '\n' at byte 3`},
		{"source id utf-8", func(e *Event) { e.Source.ID = "cam\xff" }, "source.id", "not valid UTF-8"},
		{"source name long", func(e *Event) { e.Source.Name = long(257) }, "source.name", "257 bytes"},
		{"source name control", func(e *Event) { e.Source.Name = "a\x00" }, "source.name", "control character"},
		{"type missing", func(e *Event) { e.Type = "" }, "type", "missing"},
		{"type upper", func(e *Event) { e.Type = "Camera.offline" }, "type", "dotted lowercase"},
		{"type digit first", func(e *Event) { e.Type = "1camera" }, "type", "dotted lowercase"},
		{"type dot first", func(e *Event) { e.Type = ".camera" }, "type", "dotted lowercase"},
		{"type double dot", func(e *Event) { e.Type = "camera..offline" }, "type", "dotted lowercase"},
		{"type trailing dot", func(e *Event) { e.Type = "camera." }, "type", "dotted lowercase"},
		{"type hyphen", func(e *Event) { e.Type = "camera-offline" }, "type", "dotted lowercase"},
		{"type long", func(e *Event) { e.Type = long(65) }, "type", "65 bytes; the limit is 64"},
		{"severity missing", func(e *Event) { e.Severity = "" }, "severity", "missing; must be one of info, warning, minor, major, critical"},
		{"severity unknown", func(e *Event) { e.Severity = "urgent" }, "severity", `unknown severity "urgent"`},
		{"region missing", func(e *Event) { e.Location.Region = "" }, "location.region", "missing"},
		{"region too many segments", func(e *Event) { e.Location.Region = "a/b/c/d/e/f/g/h/i" }, "location.region", "9 segments; the limit is 8"},
		{"region long", func(e *Event) { e.Location.Region = long(257) }, "location.region", "257 bytes"},
		{"region empty segment", func(e *Event) { e.Location.Region = "huangpi//xinzhuang" }, "location.region", "empty segment"},
		{"region leading slash", func(e *Event) { e.Location.Region = "/huangpi" }, "location.region", "empty segment"},
		{"region trailing slash", func(e *Event) { e.Location.Region = "huangpi/" }, "location.region", "empty segment"},
		{"region upper", func(e *Event) { e.Location.Region = "Huangpi" }, "location.region", `segment "Huangpi" contains 'H'`},
		{"region space", func(e *Event) { e.Location.Region = "huang pi" }, "location.region", "contains ' '"},
		{"region punctuation", func(e *Event) { e.Location.Region = "黄陂区，王家河" }, "location.region", "contains '，'"},
		{"region utf-8", func(e *Event) { e.Location.Region = "a\xff" }, "location.region", "contains"},
		{"grid control", func(e *Event) { e.Location.Grid = "g\t1" }, "location.grid", "control character"},
		{"lat high", func(e *Event) { e.Location.Lat = ptr(90.5) }, "location.lat", "between -90 and 90, got 90.5"},
		{"lat NaN", func(e *Event) { e.Location.Lat = ptr(math.NaN()) }, "location.lat", "finite"},
		{"lon low", func(e *Event) { e.Location.Lon = ptr(-180.1) }, "location.lon", "between -180 and 180"},
		{"lon infinite", func(e *Event) { e.Location.Lon = ptr(math.Inf(1)) }, "location.lon", "finite"},
		{"lat alone", func(e *Event) { e.Location.Lon = nil }, "location.lon", "lat and lon go together"},
		{"lon alone", func(e *Event) { e.Location.Lat = nil }, "location.lat", "lat and lon go together"},
		{"too many attributes", func(e *Event) { e.Attributes = manyAttrs(65) }, "attributes", "65 keys; the limit is 64"},
		{"attribute key spaces", func(e *Event) { e.Attributes["Bad Key"] = 1.0 }, `attributes["Bad Key"]`, "key must start"},
		{"attribute key empty", func(e *Event) { e.Attributes[""] = 1.0 }, `attributes[""]`, "key must start"},
		{"attribute key digit", func(e *Event) { e.Attributes["9lives"] = 1.0 }, `attributes["9lives"]`, "key must start"},
		{"attribute key hyphen", func(e *Event) { e.Attributes["water-level"] = 1.0 }, `attributes["water-level"]`, "key must start"},
		{"attribute key long", func(e *Event) { e.Attributes[long(65)] = 1.0 }, `attributes["` + long(64) + `"… (65 bytes)]`, "65 bytes"},
		{"attribute text long", func(e *Event) { e.Attributes["note"] = long(1025) }, `attributes["note"]`, "1025 bytes; the limit is 1024"},
		{"attribute text utf-8", func(e *Event) { e.Attributes["note"] = "\xc3" }, `attributes["note"]`, "not valid UTF-8"},
		{"attribute NaN", func(e *Event) { e.Attributes["level"] = math.NaN() }, `attributes["level"]`, "finite"},
		{"attribute infinite", func(e *Event) { e.Attributes["level"] = math.Inf(-1) }, `attributes["level"]`, "finite"},
		{"attribute null", func(e *Event) { e.Attributes["level"] = nil }, `attributes["level"]`, "null"},
		{"attribute int", func(e *Event) { e.Attributes["level"] = 3 }, `attributes["level"]`, "Go type int"},
		{"attribute object", func(e *Event) { e.Attributes["level"] = map[string]any{} }, `attributes["level"]`, "is an object"},
		{"attribute array", func(e *Event) { e.Attributes["level"] = []any{1.0} }, `attributes["level"]`, "is an array"},
		{"attribute json.Number", func(e *Event) { e.Attributes["level"] = json.Number("3") }, `attributes["level"]`, "float64"},
		{"first bad attribute by key", func(e *Event) {
			e.Attributes["zz"] = nil
			e.Attributes["bb"] = nil
			e.Attributes["B"] = 1.0
		}, `attributes["B"]`, "key must start"},
		{"too many tags", func(e *Event) { e.Tags = make([]string, 33) }, "tags", "33 tags; the limit is 32"},
		{"tag empty", func(e *Event) { e.Tags = []string{"a", ""} }, "tags[1]", "empty"},
		{"tag long", func(e *Event) { e.Tags = []string{long(65)} }, "tags[0]", "65 bytes; the limit is 64"},
		{"tag control", func(e *Event) { e.Tags = []string{"a\u0085"} }, "tags[0]", "control character"},
		{"too much evidence", func(e *Event) { e.Evidence = make([]Evidence, 17) }, "evidence", "17 entries; the limit is 16"},
		{"evidence kind missing", func(e *Event) { e.Evidence[2].Kind = "" }, "evidence[2].kind", "missing; must be one of snapshot, clip"},
		{"evidence kind unknown", func(e *Event) { e.Evidence[2].Kind = "photo" }, "evidence[2].kind", `unknown kind "photo"`},
		{"evidence ref missing", func(e *Event) { e.Evidence[2].Ref = "" }, "evidence[2].ref", "missing"},
		{"evidence ref long", func(e *Event) { e.Evidence[0].Ref = long(1025) }, "evidence[0].ref", "1025 bytes; the limit is 1024"},
		{"evidence ref not an ID", func(e *Event) { e.Evidence[2].Ref = "cam-1/123" }, "evidence[2].ref", "must be the ID of the event"},
		{"evidence ref not a URL", func(e *Event) { e.Evidence[1].Ref = "/live/cam-1" }, "evidence[1].ref", "absolute URL"},
		{"evidence content type", func(e *Event) { e.Evidence[0].ContentType = "jpeg" }, "evidence[0].content_type", "not a media type"},
		{"evidence time", func(e *Event) { e.Evidence[0].Time = &Time{} }, "evidence[0].time", "between 1970"},
		{"evidence sha256 upper", func(e *Event) { e.Evidence[0].SHA256 = strings.Repeat("AB", 32) }, "evidence[0].sha256", "64 lowercase hexadecimal"},
		{"evidence sha256 short", func(e *Event) { e.Evidence[0].SHA256 = "abcd" }, "evidence[0].sha256", "64 lowercase hexadecimal"},
		{"key long", func(e *Event) { e.Key = long(257) }, "key", "257 bytes; the limit is 256"},
		{"key control", func(e *Event) { e.Key = "a\x7f" }, "key", "control character"},
		{"first field wins", func(e *Event) { e.Type = ""; e.Key = long(300) }, "type", "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := validEvent()
			tc.edit(e)
			err := e.Validate()
			checkError(t, err, tc.field, tc.reason)
			if tc.field == "" {
				return
			}
			// Encode refuses what Validate refuses, with the same error.
			if _, encErr := e.Encode(); encErr == nil || encErr.Error() != err.Error() {
				t.Errorf("Encode error = %v, want %v", encErr, err)
			}
		})
	}
}

// checkError checks that err is nil when field is "", and otherwise an *Error for
// field whose reason contains reason.
func checkError(t testing.TB, err error, field, reason string) {
	t.Helper()
	if field == "" && reason == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want an *Error", err, err)
	}
	if e.Field != field {
		t.Errorf("field = %q, want %q (error: %v)", e.Field, field, err)
	}
	if !strings.Contains(e.Reason, reason) {
		t.Errorf("reason = %q, want it to contain %q", e.Reason, reason)
	}
}

// edit returns validJSON with the first occurrence of old replaced by new.
func edit(t testing.TB, old, new string) string {
	t.Helper()
	if !strings.Contains(validJSON, old) {
		t.Fatalf("validJSON does not contain %s", old)
	}
	return strings.Replace(validJSON, old, new, 1)
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     string
		field  string
		reason string
	}{
		{"empty", "", "", "empty input"},
		{"spaces", " \n\t", "", "empty input"},
		{"null", "null", "", "must be a JSON object, got null"},
		{"array", "[" + validJSON + "]", "", "must be a JSON object, got an array"},
		{"string", `"event"`, "", "must be a JSON object, got a string"},
		{"number", `42`, "", "must be a JSON object, got the number 42"},
		{"garbage", `hello`, "", "invalid character 'h'"},
		{"truncated", validJSON[:100], "", "malformed JSON: the input ends inside the event object"},
		{"bad syntax", edit(t, `"type":"detection.person"`, `"type":"detection.person",`), "", "malformed JSON at byte"},
		{"trailing garbage", validJSON + "x", "", fmt.Sprintf("unexpected data after the event object, at byte %d", len(validJSON))},
		{"trailing object", validJSON + "\n{}", "", fmt.Sprintf("at byte %d", len(validJSON)+1)},
		{"two events", validJSON + validJSON, "", "unexpected data after the event object"},

		{"unknown field", edit(t, `"key":`, `"colour":"red","key":`), "colour", "unknown field; an event has only schema, id, time"},
		{"unknown source field", edit(t, `"name":"新庄村口"`, `"name":"新庄村口","ip":"10.0.0.1"`), "source.ip", "unknown field; source has only kind, id, name"},
		{"unknown location field", edit(t, `"grid":"g-0412"`, `"grid":"g-0412","alt":12`), "location.alt", "unknown field"},
		{"unknown evidence field", edit(t, `{"kind":"event"`, `{"kind":"event","size":3`), "evidence[2].size", "unknown field; evidence[2] has only kind, ref, content_type, time, sha256"},
		{"camel case field", edit(t, `"content_type"`, `"contentType"`), "evidence[0].contentType", "unknown field"},

		{"schema 2", edit(t, `"schema":1`, `"schema":2`), "schema", "version 2 is newer than this build understands (up to 1)"},
		{"schema 2 with new fields", edit(t, `"schema":1`, `"schema":2,"priority":5`), "schema", "version 2 is newer"},
		{"schema 0", edit(t, `"schema":1`, `"schema":0`), "schema", "missing"},
		{"schema missing", edit(t, `"schema":1,`, ``), "schema", "missing"},
		{"schema string", edit(t, `"schema":1`, `"schema":"1"`), "schema", "expected a whole number, got a string"},
		{"schema fraction", edit(t, `"schema":1`, `"schema":1.5`), "schema", "must be a whole number, got 1.5"},
		{"id not a UUID", edit(t, `"id":"01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b"`, `"id":"evt-1"`), "id", `"evt-1" is not a UUID`},
		{"id version 4", edit(t, `"id":"01a1fcd5-4e7b-7e5f`, `"id":"01a1fcd5-4e7b-4e5f`), "id", "version 4 UUID; event IDs must be version 7"},
		{"id number", edit(t, `"id":"01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b"`, `"id":7`), "id", "expected a UUIDv7 string, got the number 7"},
		{"time not RFC 3339", edit(t, `"time":"2026-11-21T06:40:00.123Z"`, `"time":"21/11/2026 06:40"`), "time", `RFC 3339 time such as`},
		{"time number", edit(t, `"time":"2026-11-21T06:40:00.123Z"`, `"time":1795243200123`), "time", "got the number 1795243200123"},
		{"time null", edit(t, `"time":"2026-11-21T06:40:00.123Z"`, `"time":null`), "time", "missing"},
		{"source string", edit(t, `"source":{"kind":"analyser","id":"box-17","name":"新庄村口"}`, `"source":"box-17"`), "source", "expected an object, got a string"},
		{"source kind number", edit(t, `"kind":"analyser"`, `"kind":1`), "source.kind", "expected a string, got the number 1"},
		{"source kind unknown", edit(t, `"kind":"analyser"`, `"kind":"ai"`), "source.kind", `unknown kind "ai"`},
		{"type array", edit(t, `"type":"detection.person"`, `"type":["detection"]`), "type", "expected a string, got an array"},
		{"lat string", edit(t, `"lat":30.87`, `"lat":"30.87"`), "location.lat", "expected a number, got a string"},
		{"lat huge", edit(t, `"lat":30.87`, `"lat":1e400`), "location.lat", "number 1e400 is out of range"},
		{"lat out of range", edit(t, `"lat":30.87`, `"lat":300`), "location.lat", "between -90 and 90"},
		{"attributes array", edit(t, `"attributes":{"camera":"cam-0042","confidence":0.93,"count":3,"night":true}`, `"attributes":[1]`), "attributes", "expected an object, got an array"},
		{"attribute object", edit(t, `"count":3`, `"count":{"n":3}`), `attributes["count"]`, "is an object"},
		{"attribute array", edit(t, `"count":3`, `"count":[3]`), `attributes["count"]`, "is an array"},
		{"attribute null", edit(t, `"count":3`, `"count":null`), `attributes["count"]`, "is null"},
		{"attribute huge", edit(t, `"count":3`, `"count":1e400`), `attributes["count"]`, "number 1e400 is out of range for a 64-bit float"},
		{"attribute tiny", edit(t, `"count":3`, `"count":1e-400`), `attributes["count"]`, "too small"},
		{"attribute big integer", edit(t, `"count":3`, `"count":9007199254740993`), `attributes["count"]`, "cannot be stored exactly in a 64-bit float; send it as a string"},
		{"attribute bad key", edit(t, `"count":3`, `"Count":3`), `attributes["Count"]`, "key must start"},
		{"tags string", edit(t, `"tags":["perimeter","夜间"]`, `"tags":"perimeter"`), "tags", "expected an array, got a string"},
		{"tag number", edit(t, `"tags":["perimeter","夜间"]`, `"tags":["perimeter",7]`), "tags[1]", "expected a string, got the number 7"},
		{"tag null", edit(t, `"tags":["perimeter","夜间"]`, `"tags":["perimeter",null]`), "tags[1]", "empty"},
		{"evidence object", edit(t, `"key":"camera:cam-0042"`, `"evidence":{"kind":"url"}`), "evidence", "expected an array, got an object"},
		{"evidence kind number", edit(t, `{"kind":"event"`, `{"kind":5`), "evidence[2].kind", "expected a string, got the number 5"},
		{"evidence time bad", edit(t, `"time":"2026-11-21T06:40:00.123Z","sha256"`, `"time":"yesterday","sha256"`), "evidence[0].time", "RFC 3339"},
		{"evidence ref missing", edit(t, `"ref":"01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2c"`, `"ref":""`), "evidence[2].ref", "missing"},
		{"key number", edit(t, `"key":"camera:cam-0042"`, `"key":42`), "key", "expected a string, got the number 42"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Decode([]byte(tc.in))
			if err == nil {
				t.Fatalf("Decode accepted %s: %+v", tc.in, e)
			}
			if e != nil {
				t.Errorf("Decode returned an event with an error")
			}
			checkError(t, err, tc.field, tc.reason)
		})
	}
}

func TestDecodeSize(t *testing.T) {
	// Pad a valid event with white space to exactly MaxSize: accepted.
	in := validJSON + strings.Repeat(" ", MaxSize-len(validJSON))
	if _, err := Decode([]byte(in)); err != nil {
		t.Fatalf("Decode of %d bytes: %v", len(in), err)
	}

	in += " "
	_, err := Decode([]byte(in))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Decode of %d bytes: %v, want ErrTooLarge", len(in), err)
	}
	if want := fmt.Sprintf("event: too large: %d bytes, the limit is %d", MaxSize+1, MaxSize); err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestEncodeSize(t *testing.T) {
	// Every part within its limit, the whole too large.
	e := validEvent()
	e.Attributes = make(map[string]any)
	for i := range MaxAttributes {
		e.SetString(fmt.Sprintf("note%02d", i), strings.Repeat("x", MaxAttributeText))
	}
	_, err := e.Encode()
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Encode = %v, want ErrTooLarge", err)
	}
	if !strings.Contains(err.Error(), "the limit is 65536") {
		t.Errorf("error %q does not give the limit", err)
	}
	if e.Validate() != nil {
		t.Errorf("Validate = %v, want nil", e.Validate())
	}
}

// TestDecodeGrowth checks that Decode refuses input within MaxSize whose canonical
// encoding would not be, so that whatever Decode accepts, Encode writes.
func TestDecodeGrowth(t *testing.T) {
	// U+2028 takes 3 bytes in the input and 6, as \u2028, in the output.
	value := strings.Repeat("\u2028", MaxAttributeText/3)
	attrs := make([]string, 0, 32)
	for i := range 32 {
		attrs = append(attrs, fmt.Sprintf(`"n%02d":"%s"`, i, value))
	}
	in := edit(t, `"attributes":{"camera":"cam-0042","confidence":0.93,"count":3,"night":true}`,
		`"attributes":{`+strings.Join(attrs, ",")+`}`)
	if len(in) > MaxSize {
		t.Fatalf("test input is %d bytes", len(in))
	}
	e, err := Decode([]byte(in))
	if err == nil {
		out, encErr := e.Encode()
		t.Fatalf("Decode accepted %d bytes; Encode gave %d bytes, %v", len(in), len(out), encErr)
	}
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "encoded to") {
		t.Fatalf("Decode = %v, want ErrTooLarge", err)
	}

	// Half as much fits.
	in = edit(t, `"attributes":{"camera":"cam-0042","confidence":0.93,"count":3,"night":true}`,
		`"attributes":{`+strings.Join(attrs[:16], ",")+`}`)
	if _, err := Decode([]byte(in)); err != nil {
		t.Fatalf("Decode of %d bytes: %v", len(in), err)
	}
}

func TestNew(t *testing.T) {
	before := time.Now().Add(-time.Millisecond)
	e := New(SourceCamera, "cam-0042", "camera.offline")
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if e.Schema != SchemaVersion || e.Severity != SeverityInfo || e.Source != (Source{Kind: SourceCamera, ID: "cam-0042"}) {
		t.Errorf("New = %+v", e)
	}
	if e.Time.Before(before) || e.Time.After(time.Now()) || e.Time.Location() != time.UTC || e.Time.Nanosecond()%1e6 != 0 {
		t.Errorf("Time = %v, want now in UTC to the millisecond", e.Time)
	}
}

func TestPartitionKey(t *testing.T) {
	e := New(SourceDevice, "smoke-3", "sensor.smoke")
	if got := e.PartitionKey(); got != "device:smoke-3" {
		t.Errorf("PartitionKey = %q, want device:smoke-3", got)
	}
	e.Key = "grid:g-0412"
	if got := e.PartitionKey(); got != "grid:g-0412" {
		t.Errorf("PartitionKey = %q, want grid:g-0412", got)
	}
}

func TestAttributes(t *testing.T) {
	e := New(SourceDevice, "gauge-1", "telemetry")
	if _, ok := e.Number("level"); ok {
		t.Error("Number found an attribute in an empty event")
	}
	e.SetNumber("level", 1.25)
	e.SetString("unit", "m")
	e.SetBool("alarm", true)
	if v, ok := e.Number("level"); !ok || v != 1.25 {
		t.Errorf("Number = %v, %v", v, ok)
	}
	if v, ok := e.String("unit"); !ok || v != "m" {
		t.Errorf("String = %v, %v", v, ok)
	}
	if v, ok := e.Bool("alarm"); !ok || !v {
		t.Errorf("Bool = %v, %v", v, ok)
	}
	if _, ok := e.String("level"); ok {
		t.Error("String returned a number")
	}
	if _, ok := e.Bool("missing"); ok {
		t.Error("Bool found a missing attribute")
	}
}

func TestSeverityRank(t *testing.T) {
	order := []Severity{"", SeverityInfo, SeverityWarning, SeverityMinor, SeverityMajor, SeverityCritical}
	for i, s := range order {
		if s.Rank() != i {
			t.Errorf("%q.Rank() = %d, want %d", s, s.Rank(), i)
		}
	}
	if Severity("urgent").Rank() != 0 || Severity("urgent").Valid() {
		t.Error("an unknown severity ranks")
	}
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in     string
		reason string // "" if valid
	}{
		{"01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b", ""},
		{"01A1FCD5-4E7B-7E5F-8A6B-7C8D9E0F1A2B", ""},
		{"01a1fcd5-4e7b-7e5f-bfff-ffffffffffff", ""},
		{"", "not a UUID"},
		{"019aa50fcb9b7e5f8a6b7c8d9e0f1a2b", "not a UUID"},
		{"{01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b}", "not a UUID"},
		{"urn:uuid:01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b", "not a UUID"},
		{"01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2g", "not a hexadecimal digit"},
		{"01a1fcd5-4e7b-7e5f-8a6b+7c8d9e0f1a2b", "not a UUID"},
		{"01a1fcd5-4e7b-4e5f-8a6b-7c8d9e0f1a2b", "version 4"},
		{"00000000-0000-0000-0000-000000000000", "version 0"},
		{"01a1fcd5-4e7b-7e5f-ca6b-7c8d9e0f1a2b", "variant"},
		{"01a1fcd5-4e7b-7e5f-7a6b-7c8d9e0f1a2b", "variant"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			id, err := ParseID(tc.in)
			if tc.reason != "" {
				checkError(t, err, "", tc.reason)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := id.String(); got != strings.ToLower(tc.in) {
				t.Errorf("String = %s, want %s", got, strings.ToLower(tc.in))
			}
			var back ID
			text, _ := id.MarshalText()
			if err := back.UnmarshalText(text); err != nil || back != id {
				t.Errorf("text round trip: %v, %v", back, err)
			}
		})
	}
	if got := testID.Time(); !got.Equal(time.Date(2026, 11, 21, 6, 40, 0, 123e6, time.UTC)) {
		t.Errorf("Time = %v", got)
	}
}

func TestNewIDAt(t *testing.T) {
	for _, tc := range []struct {
		at, want time.Time
	}{
		{time.Date(2026, 11, 21, 6, 40, 0, 123456789, time.UTC), time.Date(2026, 11, 21, 6, 40, 0, 123e6, time.UTC)},
		{time.Unix(0, 0), time.Unix(0, 0)},
		{time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(0, 0)},
		{time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC), time.UnixMilli(1<<48 - 1)},
	} {
		id := NewIDAt(tc.at)
		if !id.Time().Equal(tc.want) {
			t.Errorf("NewIDAt(%v).Time() = %v, want %v", tc.at, id.Time(), tc.want)
		}
		if _, err := ParseID(id.String()); err != nil {
			t.Errorf("NewIDAt(%v) = %v: %v", tc.at, id, err)
		}
	}
	if NewIDAt(time.Unix(1, 0)) == NewIDAt(time.Unix(1, 0)) {
		t.Error("NewIDAt returned the same ID twice")
	}
}

func TestNewIDOrder(t *testing.T) {
	const n = 100_000
	start := time.Now().Add(-time.Millisecond)
	prev := NewID()
	for range n {
		id := NewID()
		if bytes.Compare(prev[:], id[:]) >= 0 {
			t.Fatalf("NewID not increasing: %v then %v", prev, id)
		}
		if prev.String() >= id.String() {
			t.Fatalf("NewID strings not increasing: %v then %v", prev, id)
		}
		if err := id.check(); err != nil {
			t.Fatalf("NewID = %v: %v", id, err)
		}
		prev = id
	}
	// The counter may run ahead of the clock by at most a few milliseconds.
	if ts := prev.Time(); ts.Before(start) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("last ID's time %v is far from now", ts)
	}
}

func TestNewIDConcurrent(t *testing.T) {
	const goroutines, each = 8, 10_000
	ids := make([][]ID, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			list := make([]ID, each)
			for i := range list {
				list[i] = NewID()
			}
			ids[g] = list
		})
	}
	wg.Wait()

	seen := make(map[ID]bool, goroutines*each)
	for _, list := range ids {
		for i, id := range list {
			if seen[id] {
				t.Fatalf("duplicate ID %v", id)
			}
			seen[id] = true
			if i > 0 && bytes.Compare(list[i-1][:], id[:]) >= 0 {
				t.Fatalf("IDs from one goroutine not increasing: %v then %v", list[i-1], id)
			}
		}
	}
}

func TestGeneratorClock(t *testing.T) {
	g := generator{ms: -1}
	a := g.next(1000)
	b := g.next(999) // the clock stepped back
	c := g.next(1000)
	d := g.next(1001)
	for _, pair := range [][2]ID{{a, b}, {b, c}, {c, d}} {
		if bytes.Compare(pair[0][:], pair[1][:]) >= 0 {
			t.Errorf("not increasing: %v then %v", pair[0], pair[1])
		}
	}
	if b.Time().UnixMilli() != 1000 || d.Time().UnixMilli() != 1001 {
		t.Errorf("times %v %v", b.Time(), d.Time())
	}

	// A full counter borrows the next millisecond.
	g.seq = 1<<seqBits - 1
	e := g.next(1001)
	if e.Time().UnixMilli() != 1002 || bytes.Compare(d[:], e[:]) >= 0 {
		t.Errorf("after the counter ran out: %v at %v", e, e.Time())
	}
}

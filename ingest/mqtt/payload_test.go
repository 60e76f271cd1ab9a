package mqtt

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/ingest/device"
	"sharpeye/ingest/event"
)

func TestDecodeTelemetry(t *testing.T) {
	tel, rej := DecodeTelemetry([]byte(`{"ts": 1763707200123, "readings": {"smoke": 0.12, "battery": 87, "door.open": true, "mode": "auto"}}`))
	if rej != nil {
		t.Fatal(rej)
	}
	if !tel.TS.Equal(time.UnixMilli(1763707200123)) || tel.Readings["smoke"] != 0.12 || tel.Readings["door.open"] != true || tel.Readings["mode"] != "auto" {
		t.Fatalf("telemetry %+v", tel)
	}
	if tel, rej = DecodeTelemetry([]byte(`{"ts": "2026-11-21T14:40:00+08:00", "readings": {"x": -1e3}}`)); rej != nil || tel.TS.Format(time.RFC3339) != "2026-11-21T06:40:00Z" {
		t.Fatalf("RFC 3339 ts: %v %v", tel, rej)
	}
	tests := []struct {
		payload, class, field, msg string
	}{
		{`{"readings": {"smoke": 0.1}`, ClassMalformed, "", "malformed JSON"},
		{`smoke=1`, ClassMalformed, "", "not JSON"},
		{``, ClassMalformed, "", "empty payload"},
		{`"readings"`, ClassSchema, "", "got a string"},
		{`{"readings": {"smoke": 0.1}, "rssi": -60}`, ClassSchema, "rssi", "unknown field"},
		{`{"ts": 1}`, ClassSchema, "ts", "seconds?"},
		{`{}`, ClassSchema, "readings", "missing"},
		{`{"readings": []}`, ClassSchema, "readings", "must be an object"},
		{`{"readings": {}}`, ClassSchema, "readings", "empty"},
		{`{"readings": {"smoke": null}}`, ClassSchema, "readings.smoke", "must be a number"},
		{`{"readings": {"smoke": [1]}}`, ClassSchema, "readings.smoke", "got an array"},
		{`{"readings": {"smoke": 1e400}}`, ClassSchema, "readings.smoke", "out of range"},
		{`{"readings": {"count": 9007199254740993}}`, ClassSchema, "readings.count", "send it as a string"},
		{`{"readings": {"Smoke": 1}}`, ClassSchema, `readings["Smoke"]`, "key must be"},
		{`{"readings": {"device_kind": "x"}}`, ClassSchema, "readings.device_kind", "reserved"},
		{`{"readings": {"note": "` + strings.Repeat("x", 300) + `"}}`, ClassSchema, "readings.note", "limit is 256"},
		{`{"readings": {"note": "a\u0000b"}}`, ClassSchema, "readings.note", "control character"},
		{`{"ts": "today", "readings": {"x": 1}}`, ClassSchema, "ts", "RFC 3339"},
		{`{"ts": true, "readings": {"x": 1}}`, ClassSchema, "ts", "got a boolean"},
	}
	for _, tt := range tests {
		_, rej := DecodeTelemetry([]byte(tt.payload))
		if rej == nil || rej.Class != tt.class || rej.Field != tt.field || !strings.Contains(rej.Msg, tt.msg) {
			t.Errorf("%.60s: got %#v, want %s %s %q", tt.payload, rej, tt.class, tt.field, tt.msg)
		}
	}
}

func TestDecodeEventAndStatus(t *testing.T) {
	d, rej := DecodeEvent([]byte(`{"type": "alarm_button.pressed", "severity": "critical", "attributes": {"zone": "east", "count": 2}}`))
	if rej != nil || d.Type != "alarm_button.pressed" || d.Severity != event.SeverityCritical || d.Attributes["count"] != 2.0 {
		t.Fatalf("event %+v %v", d, rej)
	}
	for _, tt := range []struct{ payload, field string }{
		{`{}`, "type"},
		{`{"type": 3}`, "type"},
		{`{"type": "Door"}`, "type"},
		{`{"type": "a..b"}`, "type"},
		{`{"type": "` + strings.Repeat("a", 60) + `"}`, "type"},
		{`{"type": "tamper", "severity": "high"}`, "severity"},
		{`{"type": "tamper", "attributes": {"a": {}}}`, "attributes.a"},
		{`{"type": "tamper", "level": 1}`, "level"},
	} {
		if _, rej := DecodeEvent([]byte(tt.payload)); rej == nil || rej.Field != tt.field {
			t.Errorf("%s: %v, want a problem with %s", tt.payload, rej, tt.field)
		}
	}
	for payload, online := range map[string]bool{"online": true, " OFFLINE\n": false, `"online"`: true, `{"state": "offline", "reason": "power"}`: false, "1": true} {
		st, rej := DecodeStatus([]byte(payload))
		if rej != nil || st.Online != online {
			t.Errorf("status %q: %+v %v", payload, st, rej)
		}
	}
	for _, payload := range []string{"on", "", `{"state": "sleeping"}`, `{"status": "online"}`, `{"state": true}`} {
		if _, rej := DecodeStatus([]byte(payload)); rej == nil {
			t.Errorf("status %q accepted", payload)
		}
	}
}

func TestDecodeDetections(t *testing.T) {
	ds, rej := DecodeDetections([]byte(`{"camera": "cam-1", "class": "person", "confidence": 1, "bbox": [0, 0, 1, 1], "snapshot": "s.jpg", "ts": "2026-11-21T06:40:00Z"}`))
	if rej != nil || len(ds) != 1 || ds[0].BBox[2] != 1 || ds[0].Snapshot != "s.jpg" {
		t.Fatalf("detection %+v %v", ds, rej)
	}
	ds, rej = DecodeDetections([]byte(`{"detections": [{"camera": "c1", "class": "car", "confidence": 0}, {"camera": "c2", "class": "bus", "confidence": 0.5}]}`))
	if rej != nil || len(ds) != 2 || ds[1].Class != "bus" {
		t.Fatalf("batch %+v %v", ds, rej)
	}
	for _, tt := range []struct{ payload, field, msg string }{
		{`{"class": "person", "confidence": 0.5}`, "camera", "missing"},
		{`{"camera": "Cam 1", "class": "person", "confidence": 0.5}`, "camera", "not a camera id"},
		{`{"camera": "c", "class": "Person", "confidence": 0.5}`, "class", "not a class name"},
		{`{"camera": "c", "class": "person"}`, "confidence", "missing"},
		{`{"camera": "c", "class": "person", "confidence": "high"}`, "confidence", "must be a number"},
		{`{"camera": "c", "class": "person", "confidence": -0.1}`, "confidence", "between 0 and 1"},
		{`{"camera": "c", "class": "person", "confidence": 0.5, "bbox": [0.1, 0.2, 0.3]}`, "bbox", "got 3 numbers"},
		{`{"camera": "c", "class": "person", "confidence": 0.5, "bbox": [0.1, 0.2, 1.3, 0.1]}`, "bbox[2]", "between 0 and 1"},
		{`{"camera": "c", "class": "person", "confidence": 0.5, "bbox": [0.8, 0.2, 0.3, 0.1]}`, "bbox", "right edge"},
		{`{"camera": "c", "class": "person", "confidence": 0.5, "bbox": [0.1, 0.2, 0, 0.1]}`, "bbox", "above 0"},
		{`{"camera": "c", "class": "person", "confidence": 0.5, "bbox": {"x": 1}}`, "bbox", "must be an array"},
		{`{"camera": "c", "class": "person", "confidence": 0.5, "snapshot": ""}`, "snapshot", "empty"},
		{`{"detections": []}`, "detections", "empty"},
		{`{"detections": {}}`, "detections", "must be an array"},
		{`{"detections": [{"camera": "c", "class": "person", "confidence": 0.5}, {"camera": "c", "class": "person", "confidence": 2}]}`, "detections[1].confidence", "between 0 and 1"},
		{`{"detections": [1]}`, "detections[0]", "must be an object"},
		{`{"detections": [], "camera": "c"}`, "camera", "unknown field"},
	} {
		_, rej := DecodeDetections([]byte(tt.payload))
		if rej == nil || rej.Field != tt.field || !strings.Contains(rej.Msg, tt.msg) {
			t.Errorf("%.70s: %#v, want %s %q", tt.payload, rej, tt.field, tt.msg)
		}
	}
}

func TestParseTopic(t *testing.T) {
	for topic, want := range map[string]Topic{
		"sharpeye/devices/smoke-1/telemetry":  {ID: "smoke-1", Type: MsgTelemetry},
		"sharpeye/analysers/box-1/detections": {Analyser: true, ID: "box-1", Type: MsgDetections},
		"sharpeye/analysers/box-1/status":     {Analyser: true, ID: "box-1", Type: MsgStatus},
	} {
		got, rej := ParseTopic(topic)
		if rej != nil || got != want || got.String() != topic {
			t.Errorf("%s: %+v %v", topic, got, rej)
		}
	}
	for _, topic := range []string{"sharpeye/devices/smoke-1", "sharpeye/devices//telemetry", "sharpeye/devices/Smoke/telemetry",
		"sharpeye/devices/smoke-1/detections", "sharpeye/devices/smoke-1/telemetry/x", "other/x/telemetry", "sharpeye/devices/a/commands"} {
		if _, rej := ParseTopic(topic); rej == nil || rej.Class != ClassTopic {
			t.Errorf("%s: %v", topic, rej)
		}
	}
}

// fuzzIntake builds an intake (not running) to turn decoded payloads into
// events.
func fuzzIntake(f *testing.F) (*Intake, device.Entry) {
	d := box
	in, err := New(Defaults(), device.NewRegistry([]device.Device{d}, nil), newFakeBus(), cameraLookup, prometheus.NewRegistry(), quiet())
	if err != nil {
		f.Fatal(err)
	}
	e, _ := in.devices.Get(d.ID)
	return in, e
}

// FuzzTelemetry: any payload is accepted as a valid event or refused with a
// reason; nothing panics.
func FuzzTelemetry(f *testing.F) {
	in, dev := fuzzIntake(f)
	f.Add([]byte(`{"ts": 1763707200123, "readings": {"smoke": 0.12, "battery": 87}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tel, rej := DecodeTelemetry(data)
		if rej != nil {
			if rej.Class == "" || rej.Msg == "" {
				t.Fatalf("rejection without class or reason: %#v", rej)
			}
			return
		}
		ev := in.telemetryEvent(dev, tel, time.Now())
		if _, err := ev.Encode(); err != nil {
			t.Fatalf("accepted telemetry %q makes an invalid event: %v", data, err)
		}
		// Events and statuses share the readings' rules.
		if d, rej := DecodeEvent(data); rej == nil {
			if _, err := in.deviceEvent(dev, d, time.Now()).Encode(); err != nil {
				t.Fatalf("accepted event %q makes an invalid event: %v", data, err)
			}
		}
		DecodeStatus(data)
	})
}

// The usual telemetry takes the fast path; what it leaves to
// encoding/json is decided there.
func TestTelemetryFastPath(t *testing.T) {
	for _, s := range []string{
		`{"ts": 1763707200123, "readings": {"smoke": 0.12, "battery": 87}}`,
		`{"readings":{"level":3.25},"ts":"2026-11-21T06:40:00+08:00"}`,
		`{"ts": null, "readings": {"door_open": false, "mode": "auto", "alarm": true}}`,
	} {
		if _, ok := decodeTelemetryFast([]byte(s)); !ok {
			t.Errorf("%s: not decoded by the fast path", s)
		}
	}
	for _, s := range []string{
		`{"readings": {"a": 1, "a": 2}}`,            // repeated key
		`{"readings": {"mode": "a\u0041"}}`,         // escape
		`{"readings": {"x": 01}}`,                   // malformed number
		`{"readings": {}}`,                          // empty
		`{"readings": {"camera": 1}}`,               // reserved
		`{"readings": {"smoke": 1}, "extra": 1}`,    // unknown field
		`{"readings": {"smoke": 1}} x`,              // trailing text
		`{"readings": {"smoke": {"nested": true}}}`, // nested
	} {
		if _, ok := decodeTelemetryFast([]byte(s)); ok {
			t.Errorf("%s: taken by the fast path", s)
		}
	}
}

// FuzzTelemetryFast: wherever the fast decoder answers, encoding/json
// gives the same telemetry.
func FuzzTelemetryFast(f *testing.F) {
	for _, s := range []string{
		`{"ts": 1763707200123, "readings": {"smoke": 0.12, "battery": 87}}`,
		`{"readings":{"level":3.25,"t":1234},"ts":"2026-11-21T06:40:00+08:00"}`,
		` {"ts": null, "readings": {"door_open": false, "mode": "auto", "alarm": true}} `,
		`{"readings": {"a": -1e-3, "b": 9007199254740993}}`,
		`{"readings": {"a": 1, "a": 2}}`,
		`{"readings": {"mode": "a\u0041"}}`,
		`{"readings": {"x": 01}}`,
		`{"readings": {}}`,
		`{"ts": 1, "readings": {"smoke": 1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeTelemetryFast(data)
		if !ok {
			return
		}
		slow, rej := decodeTelemetry(data)
		if rej != nil {
			t.Fatalf("%q: fast decoder accepted what encoding/json refuses: %s", data, rej.Msg)
		}
		if (fast.TS == nil) != (slow.TS == nil) || fast.TS != nil && !fast.TS.Equal(*slow.TS) || !reflect.DeepEqual(fast.Readings, slow.Readings) {
			t.Fatalf("%q: fast %v %#v, encoding/json %v %#v", data, fast.TS, fast.Readings, slow.TS, slow.Readings)
		}
	})
}

// FuzzDetections: accepted detections make valid events within range.
func FuzzDetections(f *testing.F) {
	in, dev := fuzzIntake(f)
	f.Add([]byte(`{"camera": "cam-42", "class": "person", "confidence": 0.93, "bbox": [0.1, 0.2, 0.3, 0.4]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, rej := DecodeDetections(data)
		if rej != nil {
			if rej.Class == "" || rej.Msg == "" {
				t.Fatalf("rejection without class or reason: %#v", rej)
			}
			return
		}
		if len(ds) == 0 || len(ds) > MaxDetections {
			t.Fatalf("%d detections accepted", len(ds))
		}
		for _, d := range ds {
			if d.Confidence < 0 || d.Confidence > 1 {
				t.Fatalf("confidence %v accepted", d.Confidence)
			}
			if b := d.BBox; b != nil && (b[0]+b[2] > 1.000001 || b[1]+b[3] > 1.000001) {
				t.Fatalf("bbox %v accepted", *b)
			}
			if _, err := in.detectionEvent(dev, d, time.Now()).Encode(); err != nil {
				t.Fatalf("accepted detection %q makes an invalid event: %v", data, err)
			}
		}
	})
}

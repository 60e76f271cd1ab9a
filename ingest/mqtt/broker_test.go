package mqtt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/configs/conf"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/device"
	"sharpeye/ingest/event"
)

var (
	smoke = device.Device{
		ID: "smoke-1", Kind: device.KindSmoke, Name: "新庄村口烟感", Region: "huangpi/wangjiahe/xinzhuang", Grid: "g-0412",
		Lat: ptr(30.87), Lon: ptr(114.38), Tags: []string{"school"}, Password: "smoke-pass-1",
	}
	gas = device.Device{ID: "gas-1", Kind: device.KindGas, Region: "huangpi/wangjiahe", Grid: "g-0001", Password: "gas-pass-1"}
	box = device.Device{
		ID: "box-1", Kind: device.KindAnalyser, Region: "huangpi/wangjiahe", Grid: "g-0002",
		Lat: ptr(30.5), Lon: ptr(114.1), Cameras: []string{"cam-42"}, Password: "box-pass-1",
	}
)

func cameraLookup(id string) (string, string, *float64, *float64, bool) {
	if id == "cam-42" {
		return "huangpi/wangjiahe/xinzhuang", "g-0412", ptr(30.871), ptr(114.381), true
	}
	return "", "", nil, nil, false
}

func TestTelemetryToEvent(t *testing.T) {
	h := start(t, setup{devices: []device.Device{smoke}})
	c := connect(t, deviceOpts(h.in.Addr(), "smoke-1", "smoke-pass-1", "smoke-1"))
	publish(t, c, "sharpeye/devices/smoke-1/telemetry", `{"ts": "2030-01-01T00:00:00Z", "readings": {"smoke": 0.12, "battery": 87, "alarm": false, "mode": "auto"}}`)

	// The PUBACK came after the event was durable: it is on the bus already.
	evs := events(t, h.bus.all())
	if len(evs) != 1 {
		t.Fatalf("events on the bus after the PUBACK: %s", summary(h.bus.all()))
	}
	ev := evs[0]
	if ev.Type != "telemetry" || ev.Source.Kind != event.SourceDevice || ev.Source.ID != "smoke-1" || ev.Source.Name != smoke.Name {
		t.Fatalf("event %+v", ev)
	}
	if ev.Location.Region != smoke.Region || ev.Location.Grid != smoke.Grid || *ev.Location.Lat != 30.87 || *ev.Location.Lon != 114.38 {
		t.Fatalf("location %+v", ev.Location)
	}
	if v, _ := ev.Number("smoke"); v != 0.12 {
		t.Fatalf("smoke reading %v", ev.Attributes)
	}
	if v, _ := ev.Number("battery"); v != 87 {
		t.Fatalf("battery reading %v", ev.Attributes)
	}
	if v, ok := ev.Bool("alarm"); !ok || v {
		t.Fatalf("alarm reading %v", ev.Attributes)
	}
	if k, _ := ev.String("device_kind"); k != "smoke" || len(ev.Tags) != 1 || ev.Tags[0] != "school" {
		t.Fatalf("device kind and tags: %+v", ev)
	}
	// A timestamp ten minutes ahead or more is a device clock gone wrong.
	if skew, _ := ev.Bool("clock_skew"); !skew || ev.Time.After(time.Now().Add(time.Minute)) {
		t.Fatalf("future ts kept: %v %v", ev.Time, ev.Attributes)
	}

	publish(t, c, "sharpeye/devices/smoke-1/event", `{"type": "smoke.alarm", "attributes": {"level": 3}}`)
	ev = h.bus.waitEvent(t, "sensor.smoke.alarm", ofType("sensor.smoke.alarm"))
	if ev.Severity != event.SeverityCritical {
		t.Fatalf("smoke alarm severity %s", ev.Severity)
	}
	st, _ := h.in.DeviceStatus("smoke-1")
	if st.State != device.StateOnline || st.Messages != 2 || !st.Connected || st.LastSeen == nil {
		t.Fatalf("status %+v", st)
	}
}

func TestLastWillMakesDeviceOffline(t *testing.T) {
	h := start(t, setup{devices: []device.Device{smoke}})
	var conn killableConn
	o := deviceOpts(h.in.Addr(), "smoke-1", "smoke-pass-1", "smoke-1").
		SetWill("sharpeye/devices/smoke-1/status", "offline", 1, false).
		SetCustomOpenConnectionFn(conn.dial)
	c := connect(t, o)
	publish(t, c, "sharpeye/devices/smoke-1/status", "online")
	on := h.bus.waitEvent(t, "device.online", ofType("device.online"))
	if via, _ := on.String("via"); via != "status" || on.Location.Grid != smoke.Grid {
		t.Fatalf("online event %+v", on)
	}

	conn.kill() // as a power cut would: no DISCONNECT, so the broker sends the will
	off := h.bus.waitEvent(t, "device.offline", ofType("device.offline"))
	if via, _ := off.String("via"); via != "will" || off.Severity != event.SeverityWarning || off.Location.Region != smoke.Region {
		t.Fatalf("offline event %+v", off)
	}
	st, _ := h.in.DeviceStatus("smoke-1")
	if st.State != device.StateOffline {
		t.Fatalf("status after the will: %+v", st)
	}
}

func TestWrongCredentialsRefused(t *testing.T) {
	disabled := gas
	disabled.ID, disabled.Disabled = "gas-off", true
	nopass := gas
	nopass.ID, nopass.Password = "gas-nopass", ""
	h := start(t, setup{devices: []device.Device{smoke, disabled, nopass}})
	tests := []struct {
		name, user, pass, clientID, reason string
	}{
		{"wrong password", "smoke-1", "wrong-pass", "smoke-1", "bad_password"},
		{"unknown user", "nobody", "smoke-pass-1", "nobody", "unknown_user"},
		{"disabled device", "gas-off", "gas-pass-1", "gas-off", "disabled"},
		{"device without password", "gas-nopass", "", "gas-nopass", "no_password"},
		{"another device's client id", "smoke-1", "smoke-pass-1", "gas-off", "client_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := paho.NewClient(deviceOpts(h.in.Addr(), tt.user, tt.pass, tt.clientID))
			tok := c.Connect()
			if !tok.WaitTimeout(patience) {
				t.Fatal("connect timed out")
			}
			if !refused(tok.Error()) {
				t.Fatalf("connect: %v, want a CONNACK refusal", tok.Error())
			}
			if n := counter(t, h.in.m.authFailed, tt.reason); n != 1 {
				t.Fatalf("auth failures %s = %v", tt.reason, n)
			}
		})
	}
	// A will on another device's topic is refused at connect.
	o := deviceOpts(h.in.Addr(), "smoke-1", "smoke-pass-1", "smoke-1").SetWill("sharpeye/devices/gas-off/status", "offline", 1, false)
	if tok := paho.NewClient(o).Connect(); !tok.WaitTimeout(patience) || !refused(tok.Error()) {
		t.Fatalf("connect with another device's will: %v", tok.Error())
	}
	// The right credential still works.
	connect(t, deviceOpts(h.in.Addr(), "smoke-1", "smoke-pass-1", "smoke-1:main"))
}

// refused reports whether a connect failed with a CONNACK refusing the
// credential (mochi answers MQTT 3.1.1 clients "not authorized", return
// code 5; mosquitto "bad user name or password", 4).
func refused(err error) bool {
	return errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword)
}

func TestCrossDevicePublishRefused(t *testing.T) {
	h := start(t, setup{devices: []device.Device{smoke, gas}})
	lost := make(chan error, 1)
	c := connect(t, deviceOpts(h.in.Addr(), "smoke-1", "smoke-pass-1", "smoke-1").
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))

	// Subscribing to another device's topics is refused (SUBACK 0x80).
	tok := c.Subscribe("sharpeye/devices/+/telemetry", 1, func(paho.Client, paho.Message) {})
	if !tok.WaitTimeout(patience) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if code := tok.(*paho.SubscribeToken).Result()["sharpeye/devices/+/telemetry"]; code != 0x80 {
		t.Fatalf("subscription to every device's telemetry granted (%#x)", code)
	}
	// Its own are fine.
	tok = c.Subscribe("sharpeye/devices/smoke-1/#", 1, func(paho.Client, paho.Message) {})
	if !tok.WaitTimeout(patience) || tok.(*paho.SubscribeToken).Result()["sharpeye/devices/smoke-1/#"] == 0x80 {
		t.Fatal("subscription to its own topics refused")
	}

	// Publishing as another device: MQTT 3.1.1 cannot refuse a QoS 1
	// publish, so the broker closes the connection.
	c.Publish("sharpeye/devices/gas-1/telemetry", 1, false, `{"readings": {"gas": 99}}`)
	select {
	case <-lost:
	case <-time.After(patience):
		t.Fatal("connection kept after publishing as another device")
	}
	if n := counter(t, h.in.m.aclDenied, "publish"); n != 1 {
		t.Fatalf("publishes denied: %v", n)
	}
	if n := counter(t, h.in.m.aclDenied, "subscribe"); n != 1 {
		t.Fatalf("subscriptions denied: %v", n)
	}
	if st, _ := h.in.DeviceStatus("smoke-1"); st.Rejected != 2 || !strings.Contains(st.LastRejection, "gas-1") {
		t.Fatalf("smoke-1 status %+v", st)
	}
	// gas-1 itself publishes; only its own message is on the bus.
	g := connect(t, deviceOpts(h.in.Addr(), "gas-1", "gas-pass-1", "gas-1"))
	publish(t, g, "sharpeye/devices/gas-1/telemetry", `{"readings": {"gas": 1}}`)
	evs := events(t, h.bus.all())
	if len(evs) != 1 {
		t.Fatalf("events: %s", summary(h.bus.all()))
	}
	if v, _ := evs[0].Number("gas"); v != 1 {
		t.Fatalf("the forged reading reached the bus: %+v", evs[0])
	}
}

func TestAnalyserDetection(t *testing.T) {
	h := start(t, setup{devices: []device.Device{box}, cameras: cameraLookup})
	c := connect(t, deviceOpts(h.in.Addr(), "box-1", "box-pass-1", "box-1"))
	publish(t, c, "sharpeye/analysers/box-1/detections",
		`{"camera": "cam-42", "class": "person", "confidence": 0.93, "bbox": [0.1, 0.2, 0.3, 0.4], "snapshot": "snap/42/1.jpg", "ts": `+fmt.Sprint(time.Now().UnixMilli())+`}`)
	ev := h.bus.waitEvent(t, "detection.person", ofType("detection.person"))
	if ev.Source.Kind != event.SourceAnalyser || ev.Source.ID != "box-1" {
		t.Fatalf("source %+v", ev.Source)
	}
	// At the camera, not at the box.
	if ev.Location.Region != "huangpi/wangjiahe/xinzhuang" || ev.Location.Grid != "g-0412" || *ev.Location.Lat != 30.871 {
		t.Fatalf("location %+v", ev.Location)
	}
	if cam, _ := ev.String("camera"); cam != "cam-42" {
		t.Fatalf("camera %v", ev.Attributes)
	}
	if conf, _ := ev.Number("confidence"); conf != 0.93 {
		t.Fatalf("confidence %v", ev.Attributes)
	}
	if w, _ := ev.Number("bbox_w"); w != 0.3 {
		t.Fatalf("bbox %v", ev.Attributes)
	}
	if len(ev.Evidence) != 1 || ev.Evidence[0].Kind != event.EvidenceSnapshot || ev.Evidence[0].Ref != "snap/42/1.jpg" {
		t.Fatalf("evidence %+v", ev.Evidence)
	}

	// A batch; a camera Sharpeye does not know places the event at the box.
	publish(t, c, "sharpeye/analysers/box-1/detections",
		`{"detections": [{"camera": "cam-99", "class": "vehicle", "confidence": 0.5}, {"camera": "cam-42", "class": "fire", "confidence": 0.7}]}`)
	veh := h.bus.waitEvent(t, "detection.vehicle", ofType("detection.vehicle"))
	if veh.Location.Region != box.Region || veh.Location.Grid != box.Grid {
		t.Fatalf("unknown camera's detection at %+v", veh.Location)
	}
	h.bus.waitEvent(t, "detection.fire", ofType("detection.fire"))

	// Nothing else reached the bus.
	if n := len(events(t, h.bus.all())); n != 3 {
		t.Fatalf("%d events", n)
	}
}

func TestMalformedFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 messages")
	}
	const n = 10000
	h := start(t, setup{devices: []device.Device{smoke, box}})
	c := connect(t, deviceOpts(h.in.Addr(), "smoke-1", "smoke-pass-1", "smoke-1"))
	bad := []struct{ topic, payload, class string }{
		{"telemetry", `{"readings": {"smoke": 0.1}`, ClassMalformed},
		{"telemetry", `not json at all`, ClassMalformed},
		{"telemetry", "\xff\xfe\x00", ClassMalformed},
		{"telemetry", ``, ClassMalformed},
		{"telemetry", `[1, 2]`, ClassSchema},
		{"telemetry", `{"readings": {"smoke": "a", "temp": {"c": 1}}}`, ClassSchema},
		{"telemetry", `{"readings": {}}`, ClassSchema},
		{"telemetry", `{"reading": {"smoke": 1}}`, ClassSchema},
		{"telemetry", `{"readings": {"smoke": 1e999}}`, ClassSchema},
		{"telemetry", `{"readings": {"Smoke": 1}}`, ClassSchema},
		{"telemetry", `{"ts": "yesterday", "readings": {"smoke": 1}}`, ClassSchema},
		{"event", `{"type": "Door Forced"}`, ClassSchema},
		{"event", `{"type": "door.forced", "severity": "apocalyptic"}`, ClassSchema},
		{"status", `maybe`, ClassMalformed},
		{"telemetry", strings.Repeat("x", 70<<10), ClassTooLarge},
		{"commands", `{}`, ClassTopic},
	}
	toks := make([]paho.Token, 0, n)
	for i := range n {
		b := bad[i%len(bad)]
		toks = append(toks, c.Publish("sharpeye/devices/smoke-1/"+b.topic, 1, false, b.payload))
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(patience) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	// Every PUBACK came after the dead letter was durable.
	all := h.bus.all()
	dls := deadLetters(all)
	if len(dls) != n || len(all) != n {
		t.Fatalf("%d dead letters, %d messages; want %d", len(dls), len(all), n)
	}
	for i, dl := range dls {
		b := bad[i%len(bad)]
		if string(dl.Value) != b.payload || dl.Headers[bus.HeaderReason] == "" || !strings.Contains(dl.Headers[bus.HeaderSource], "sharpeye/devices/smoke-1/"+b.topic) || dl.Key != "smoke-1" {
			t.Fatalf("dead letter %d: %q %v", i, short(string(dl.Value)), dl.Headers)
		}
	}
	total := 0.0
	for _, class := range []string{ClassMalformed, ClassSchema, ClassTooLarge, ClassTopic} {
		total += counter(t, h.in.m.rejected, class)
	}
	if total != n {
		t.Fatalf("rejected counter %v", total)
	}
	if st, _ := h.in.DeviceStatus("smoke-1"); st.Rejected != n {
		t.Fatalf("device status %+v", st)
	}
	// Still healthy.
	publish(t, c, "sharpeye/devices/smoke-1/telemetry", `{"readings": {"smoke": 0.2}}`)
	if evs := events(t, h.bus.all()); len(evs) != 1 {
		t.Fatalf("events after the flood: %d", len(evs))
	}
}

func TestBusBlockedHoldsPubacks(t *testing.T) {
	blocked := blockingBus()
	h := start(t, setup{devices: []device.Device{smoke}, prod: blocked})
	c := connect(t, deviceOpts(h.in.Addr(), "smoke-1", "smoke-pass-1", "smoke-1"))
	tok := c.Publish("sharpeye/devices/smoke-1/telemetry", 1, false, `{"readings": {"smoke": 0.5}}`)

	// The event has reached the bus, which does not return...
	var msgs []bus.Message
	select {
	case msgs = <-blocked.calls:
	case <-time.After(patience):
		t.Fatal("the message never reached the bus")
	}
	if len(msgs) != 1 || msgs[0].Topic != bus.TopicEvents {
		t.Fatalf("publish %s", summary(msgs))
	}
	// ...so the device has no PUBACK.
	select {
	case <-tok.Done():
		t.Fatal("PUBACK sent before the event was durable")
	default:
	}
	close(blocked.block)
	if !tok.WaitTimeout(patience) || tok.Error() != nil {
		t.Fatalf("no PUBACK once the bus took the event: %v", tok.Error())
	}
	if n := len(blocked.all()); n != 1 {
		t.Fatalf("%d messages on the bus", n)
	}
}

// A device's next messages are read while its first is being made durable
// (the intake pipelines them), none is acknowledged before it is durable,
// and the acknowledgements come in the order the messages were sent.
func TestPipelinedPubacksInOrder(t *testing.T) {
	blocked := blockingBus()
	h := start(t, setup{devices: []device.Device{smoke}, prod: blocked})
	d := dialRaw(t, h.in.Addr(), "smoke-1", "smoke-pass-1", "smoke-1")
	const n = 5
	var pkts []byte
	for i := range n {
		pkts = appendPublish(pkts, "sharpeye/devices/smoke-1/telemetry", uint16(100+i), fmt.Appendf(nil, `{"readings": {"smoke": 0.%d}}`, i+1))
	}
	if _, err := d.conn.Write(pkts); err != nil {
		t.Fatal(err)
	}
	select {
	case <-blocked.calls:
	case <-time.After(patience):
		t.Fatal("the first message never reached the bus")
	}
	// All are taken in while the bus still holds the first.
	for deadline := time.Now().Add(patience); ; time.Sleep(5 * time.Millisecond) {
		if st, _ := h.in.DeviceStatus("smoke-1"); st.Messages == n {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages read while the bus was busy", st.Messages, n)
		}
	}
	select {
	case id := <-d.acks:
		t.Fatalf("PUBACK %d before the message was durable", id)
	default:
	}
	close(blocked.block) // later batches are recorded in blocked.calls (room for 16)
	for i := range n {
		select {
		case id, ok := <-d.acks:
			if !ok {
				t.Fatalf("connection closed: %v", <-d.done)
			}
			if id != uint16(100+i) {
				t.Fatalf("PUBACK %d is for packet %d, want %d", i, id, 100+i)
			}
		case <-time.After(patience):
			t.Fatalf("%d of %d PUBACKs", i, n)
		}
	}
	evs := events(t, blocked.all())
	if len(evs) != n {
		t.Fatalf("%d events on the bus, want %d", len(evs), n)
	}
	for i, e := range evs {
		if got, want := e.Attributes["smoke"], float64(i+1)/10; got != want {
			t.Fatalf("event %d has smoke %v, want %v (out of order)", i, got, want)
		}
	}
}

func TestSilenceThenMessage(t *testing.T) {
	quick := gas
	quick.Interval = conf.Duration(50 * time.Millisecond) // below the configuration's 1s minimum: tests only
	cfg := Defaults()
	cfg.OfflineCheck = conf.Duration(10 * time.Millisecond)
	h := start(t, setup{cfg: &cfg, devices: []device.Device{quick}})
	c := connect(t, deviceOpts(h.in.Addr(), "gas-1", "gas-pass-1", "gas-1"))
	publish(t, c, "sharpeye/devices/gas-1/telemetry", `{"readings": {"gas": 1}}`)
	off := h.bus.waitEvent(t, "device.offline", ofType("device.offline"))
	if via, _ := off.String("via"); via != "silence" || off.Source.ID != "gas-1" {
		t.Fatalf("offline event %+v", off)
	}
	if _, ok := off.String("last_seen"); !ok {
		t.Fatalf("offline event without last_seen: %v", off.Attributes)
	}
	publish(t, c, "sharpeye/devices/gas-1/telemetry", `{"readings": {"gas": 2}}`)
	msgs := h.bus.wait(t, "device.online", func(msgs []bus.Message) bool {
		for _, ev := range events(t, msgs) {
			if ev.Type == "device.online" {
				return true
			}
		}
		return false
	})
	// In order: telemetry, offline, online, telemetry.
	var types []string
	for _, ev := range events(t, msgs) {
		types = append(types, ev.Type)
	}
	want := "telemetry device.offline device.online telemetry"
	if got := strings.Join(types, " "); !strings.HasPrefix(got, want) {
		t.Fatalf("events %s, want %s", got, want)
	}
}

// TestSilenceOnce drives the liveness check with a clock of its own.
func TestSilenceOnce(t *testing.T) {
	d := gas
	d.Interval = conf.Duration(time.Minute)
	never := gas
	never.ID, never.Username, never.Interval = "gas-2", "gas-2", conf.Duration(time.Minute)
	h := start(t, setup{devices: []device.Device{d, never, smoke}}) // smoke has no interval
	t0 := h.in.live.start
	ctx := context.Background()
	deliver := func(at time.Time) {
		t.Helper()
		j := h.in.handle(inbound{topic: "sharpeye/devices/gas-1/telemetry", payload: []byte(`{"readings": {"gas": 1}}`), received: at})
		if err := h.in.pipe.publish(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	deliver(t0.Add(10 * time.Second))
	h.in.checkSilence(ctx, t0.Add(80*time.Second)) // 70s after: within 1.5 intervals
	h.in.checkSilence(ctx, t0.Add(91*time.Second)) // gas-2: never heard, 91s after start
	h.in.checkSilence(ctx, t0.Add(101*time.Second))
	h.in.checkSilence(ctx, t0.Add(200*time.Second))
	h.in.checkSilence(ctx, t0.Add(300*time.Second))
	msgs := h.bus.wait(t, "two offline events", func(msgs []bus.Message) bool { return len(msgs) >= 3 })
	var got []string
	for _, ev := range events(t, msgs) {
		got = append(got, ev.Type+"/"+ev.Source.ID)
	}
	if want := "telemetry/gas-1 device.offline/gas-2 device.offline/gas-1"; strings.Join(got, " ") != want {
		t.Fatalf("events %v, want %s", got, want)
	}
	deliver(t0.Add(301 * time.Second))
	h.in.checkSilence(ctx, t0.Add(302*time.Second))
	msgs = h.bus.wait(t, "online and telemetry", func(msgs []bus.Message) bool { return len(msgs) >= 5 })
	got = got[:0]
	for _, ev := range events(t, msgs[3:]) {
		got = append(got, ev.Type)
	}
	if want := "device.online telemetry"; strings.Join(got, " ") != want {
		t.Fatalf("events after silence %v, want %s", got, want)
	}
	if st, _ := h.in.DeviceStatus("smoke-1"); st.State != device.StateUnknown {
		t.Fatalf("device without an interval: %+v", st)
	}
}

func TestRegistryChangesApplyLive(t *testing.T) {
	db := casedbtest.Open(t, "sqlite")
	reg := device.NewRegistry(nil, db)
	ctx := context.Background()
	h := start(t, setup{reg: reg})
	// A device added through the API can connect at once.
	if _, err := reg.Create(ctx, device.Device{ID: "door-1", Kind: device.KindDoor, Region: "huangpi", Password: "door-pass-1"}); err != nil {
		t.Fatal(err)
	}
	var lost atomic.Bool
	gone := make(chan struct{})
	c := connect(t, deviceOpts(h.in.Addr(), "door-1", "door-pass-1", "door-1").
		SetConnectionLostHandler(func(paho.Client, error) {
			if lost.CompareAndSwap(false, true) {
				close(gone)
			}
		}))
	publish(t, c, "sharpeye/devices/door-1/event", `{"type": "door.forced"}`)
	ev := h.bus.waitEvent(t, "sensor.door.forced", ofType("sensor.door.forced"))
	if ev.Severity != event.SeverityMajor || ev.Location.Region != "huangpi" {
		t.Fatalf("event %+v", ev)
	}
	// Moving it applies to its next message without a reconnect.
	e, _ := reg.Get("door-1")
	e.Region = "huangpi/wangjiahe"
	if _, err := reg.Update(ctx, e.Device, e.Version); err != nil {
		t.Fatal(err)
	}
	publish(t, c, "sharpeye/devices/door-1/telemetry", `{"readings": {"open": true}}`)
	if ev := h.bus.waitEvent(t, "telemetry", ofType("telemetry")); ev.Location.Region != "huangpi/wangjiahe" {
		t.Fatalf("moved device's event at %q", ev.Location.Region)
	}
	if lost.Load() {
		t.Fatal("a change of place closed the session")
	}
	// Disabling it closes its session.
	e, _ = reg.Get("door-1")
	e.Disabled = true
	if _, err := reg.Update(ctx, e.Device, e.Version); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
	case <-time.After(patience):
		t.Fatal("disabled device still connected")
	}
	if tok := paho.NewClient(deviceOpts(h.in.Addr(), "door-1", "door-pass-1", "door-1")).Connect(); !tok.WaitTimeout(patience) || tok.Error() == nil {
		t.Fatal("disabled device reconnected")
	}
}

func TestServiceAccountReadsOnly(t *testing.T) {
	cfg := Defaults()
	cfg.Username, cfg.Password = "sharpeye-monitor", conf.Secret("monitor-pass-1")
	h := start(t, setup{cfg: &cfg, devices: []device.Device{smoke}})
	got := make(chan paho.Message, 1)
	mon := connect(t, deviceOpts(h.in.Addr(), "sharpeye-monitor", "monitor-pass-1", "monitor"))
	tok := mon.Subscribe("sharpeye/#", 1, func(_ paho.Client, m paho.Message) { got <- m })
	if !tok.WaitTimeout(patience) || tok.(*paho.SubscribeToken).Result()["sharpeye/#"] == 0x80 {
		t.Fatal("monitor may not subscribe to sharpeye/#")
	}
	c := connect(t, deviceOpts(h.in.Addr(), "smoke-1", "smoke-pass-1", "smoke-1"))
	publish(t, c, "sharpeye/devices/smoke-1/telemetry", `{"readings": {"smoke": 0.3}}`)
	select {
	case m := <-got:
		if m.Topic() != "sharpeye/devices/smoke-1/telemetry" {
			t.Fatalf("monitor got %s", m.Topic())
		}
	case <-time.After(patience):
		t.Fatal("monitor got nothing")
	}
	if bad := paho.NewClient(deviceOpts(h.in.Addr(), "sharpeye-monitor", "wrong-pass", "monitor2")).Connect(); !bad.WaitTimeout(patience) || bad.Error() == nil {
		t.Fatal("monitor logged in with a wrong password")
	}
}

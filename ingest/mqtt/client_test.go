package mqtt

import (
	"fmt"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/ingest/bus"
	"sharpeye/ingest/device"
)

// bareBroker starts a plain mochi broker, letting everyone in: the
// external broker of these tests. published receives the topic of each
// message once the broker has handed it to its subscribers (mochi sends
// the PUBACK before: a session taken over meanwhile loses the message).
func bareBroker(t testing.TB) (addr string, published <-chan string) {
	t.Helper()
	srv := mochi.New(&mochi.Options{Logger: quiet()})
	if err := srv.AddHook(new(mochiauth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	pub := make(chan string, 1024)
	if err := srv.AddHook(&publishedHook{c: pub}, nil); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return ln.Address(), pub
}

type publishedHook struct {
	mochi.HookBase
	c chan string
}

func (h *publishedHook) ID() string { return "published" }

func (h *publishedHook) Provides(b byte) bool { return b == mochi.OnPublished }

func (h *publishedHook) OnPublished(_ *mochi.Client, pk packets.Packet) {
	select {
	case h.c <- pk.TopicName:
	default:
	}
}

func waitPublished(t testing.TB, published <-chan string, n int) {
	t.Helper()
	for range n {
		select {
		case <-published:
		case <-time.After(patience):
			t.Fatal("the broker did not hand the message on")
		}
	}
}

// external builds (without running) an intake of the broker at url.
func external(t testing.TB, url string, devices *device.Registry, prod bus.Producer) *Intake {
	t.Helper()
	cfg := Defaults()
	cfg.URL = "tcp://" + url
	cfg.ClientID = "sharpeye-test"
	in, err := New(cfg, devices, prod, cameraLookup, prometheus.NewRegistry(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func waitReady(t testing.TB, in *Intake) {
	t.Helper()
	select {
	case <-in.client.ready:
	case <-time.After(patience):
		t.Fatal("the intake never subscribed")
	}
}

func TestExternalBroker(t *testing.T) {
	addr, _ := bareBroker(t)
	reg := device.NewRegistry([]device.Device{smoke, box}, nil)
	b := newFakeBus()
	in := external(t, addr, reg, b)
	runIntake(t, in)
	waitReady(t, in)

	c := connect(t, deviceOpts(addr, "anyone", "", "dev-client"))
	publish(t, c, "sharpeye/devices/smoke-1/telemetry", `{"readings": {"smoke": 0.4}}`)
	ev := b.waitEvent(t, "telemetry", ofType("telemetry"))
	if ev.Location.Region != smoke.Region || ev.Location.Grid != smoke.Grid || ev.Source.ID != "smoke-1" {
		t.Fatalf("event %+v", ev)
	}
	publish(t, c, "sharpeye/analysers/box-1/detections", `{"camera": "cam-42", "class": "person", "confidence": 0.9}`)
	if ev := b.waitEvent(t, "detection", ofType("detection.person")); ev.Location.Grid != "g-0412" {
		t.Fatalf("detection at %+v", ev.Location)
	}
	// On an external broker the topic names the device: unknown ones and
	// analysers speaking as sensors are dead-lettered.
	publish(t, c, "sharpeye/devices/ghost-9/telemetry", `{"readings": {"x": 1}}`)
	publish(t, c, "sharpeye/devices/box-1/telemetry", `{"readings": {"x": 1}}`)
	msgs := b.wait(t, "two dead letters", func(m []bus.Message) bool { return len(deadLetters(m)) == 2 })
	dls := deadLetters(msgs)
	if dls[0].Key != "sharpeye/devices/ghost-9/telemetry" || dls[1].Key != "box-1" {
		t.Fatalf("dead letters %v / %v", dls[0].Headers, dls[1].Headers)
	}
	if n := counter(t, in.m.rejected, ClassUnknownDevice); n != 1 {
		t.Fatalf("unknown device counter %v", n)
	}
}

// TestExternalBrokerRestart: what arrives while the intake is away waits in
// its persistent session; what it took but did not make durable is sent
// again.
func TestExternalBrokerRestart(t *testing.T) {
	addr, published := bareBroker(t)
	reg := device.NewRegistry([]device.Device{smoke}, nil)
	c := connect(t, deviceOpts(addr, "anyone", "", "dev-client"))

	// First run: the bus takes the message in but never returns.
	crashAfterTaking(t, c, func(b bus.Producer) *Intake { return external(t, addr, reg, b) })

	// Meanwhile the devices go on.
	const n = 50
	for i := 1; i <= n; i++ {
		publish(t, c, "sharpeye/devices/smoke-1/telemetry", fmt.Sprintf(`{"readings": {"seq": %d}}`, i))
	}
	waitPublished(t, published, n+1)

	b := newFakeBus()
	in2 := external(t, addr, reg, b)
	runIntake(t, in2)
	msgs := b.wait(t, "every message", func(m []bus.Message) bool { return len(m) >= n+1 })
	// Every one, seq 0 included. (mochi sends a returning session's queue
	// in no particular order: it sorts it by the second each message came
	// in. Mosquitto keeps the order; see TestMosquittoRestart.)
	seen := map[int]bool{}
	for _, ev := range events(t, msgs) {
		v, _ := ev.Number("seq")
		seen[int(v)] = true
	}
	for i := 0; i <= n; i++ {
		if !seen[i] {
			t.Fatalf("seq %d missing: %v", i, seen)
		}
	}
}

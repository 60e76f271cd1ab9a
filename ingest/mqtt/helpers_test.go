package mqtt

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"sharpeye/ingest/bus"
	"sharpeye/ingest/device"
	"sharpeye/ingest/event"
)

// patience bounds every wait: long enough never to fail a slow run, short
// enough to report a hang.
const patience = 30 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// mqttGoroutines is the stacks of the goroutines of the broker, the
// clients and this package.
func mqttGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "Goroutines()") || strings.Contains(g, "testing.(*M).") {
			continue
		}
		if strings.Contains(g, "mochi-mqtt") || strings.Contains(g, "paho.mqtt") || strings.Contains(g, "sharpeye/ingest/mqtt.") {
			found = append(found, g)
		}
	}
	return strings.Join(found, "\n\n")
}

// leakedGoroutines waits for the goroutines of the broker, the clients and
// this package to end, and returns the stacks of those that do not.
func leakedGoroutines() string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		leaked := mqttGoroutines()
		if leaked == "" {
			return ""
		}
		if time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeBus is an in-memory bus.Producer that records what it is given. Set
// block to hold every Publish until it is closed; calls reports each
// Publish as it starts.
type fakeBus struct {
	block chan struct{}
	calls chan []bus.Message

	mu      sync.Mutex
	msgs    []bus.Message
	changed chan struct{}
}

var _ bus.Producer = (*fakeBus)(nil)

func newFakeBus() *fakeBus { return &fakeBus{changed: make(chan struct{})} }

// blockingBus returns a bus whose Publish reports each call on calls, then
// waits until block is closed.
func blockingBus() *fakeBus {
	return &fakeBus{changed: make(chan struct{}), block: make(chan struct{}), calls: make(chan []bus.Message, 16)}
}

func (f *fakeBus) Publish(ctx context.Context, msgs ...bus.Message) error {
	if f.calls != nil {
		select {
		case f.calls <- msgs:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, msgs...)
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

// all returns a copy of what was published.
func (f *fakeBus) all() []bus.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bus.Message(nil), f.msgs...)
}

// wait waits until cond holds for what was published, and returns it.
func (f *fakeBus) wait(t testing.TB, what string, cond func([]bus.Message) bool) []bus.Message {
	t.Helper()
	timeout := time.After(patience)
	for {
		f.mu.Lock()
		msgs, changed := append([]bus.Message(nil), f.msgs...), f.changed
		f.mu.Unlock()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("timed out waiting for %s; the bus has %d messages: %s", what, len(msgs), summary(msgs))
		}
	}
}

// waitEvent waits for an event matching cond and returns it.
func (f *fakeBus) waitEvent(t testing.TB, what string, cond func(*event.Event) bool) *event.Event {
	t.Helper()
	var found *event.Event
	f.wait(t, what, func(msgs []bus.Message) bool {
		for _, ev := range events(t, msgs) {
			if cond(ev) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

func events(t testing.TB, msgs []bus.Message) []*event.Event {
	t.Helper()
	var out []*event.Event
	for _, m := range msgs {
		if m.Topic != bus.TopicEvents {
			continue
		}
		ev, err := event.Decode(m.Value)
		if err != nil {
			t.Fatalf("event on the bus does not decode: %v\n%s", err, m.Value)
		}
		if m.Key != ev.PartitionKey() {
			t.Fatalf("event keyed %q, want %q", m.Key, ev.PartitionKey())
		}
		out = append(out, ev)
	}
	return out
}

func deadLetters(msgs []bus.Message) []bus.Message {
	var out []bus.Message
	for _, m := range msgs {
		if m.Topic == bus.TopicDeadLetter {
			out = append(out, m)
		}
	}
	return out
}

func ofType(typ string) func(*event.Event) bool {
	return func(ev *event.Event) bool { return ev.Type == typ }
}

func summary(msgs []bus.Message) string {
	var b strings.Builder
	for i, m := range msgs {
		if i == 10 {
			fmt.Fprintf(&b, " …")
			break
		}
		if m.Topic == bus.TopicDeadLetter {
			fmt.Fprintf(&b, "\n  dead letter: %s", m.Headers[bus.HeaderReason])
		} else {
			fmt.Fprintf(&b, "\n  %s", m.Value)
		}
	}
	return b.String()
}

// harness is an intake running until the test ends.
type harness struct {
	in  *Intake
	bus *fakeBus
	reg *device.Registry
	met *prometheus.Registry
}

type setup struct {
	cfg     *Config
	devices []device.Device
	reg     *device.Registry
	prod    bus.Producer
	cameras CameraLookup
}

func start(t testing.TB, s setup) *harness {
	t.Helper()
	cfg := Defaults()
	if s.cfg != nil {
		cfg = *s.cfg
	}
	if cfg.URL == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	reg := s.reg
	if reg == nil {
		reg = device.NewRegistry(s.devices, nil)
	}
	fb := newFakeBus()
	prod := s.prod
	if prod == nil {
		prod = fb
	}
	met := prometheus.NewRegistry()
	in, err := New(cfg, reg, prod, s.cameras, met, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
	runIntake(t, in)
	return &harness{in: in, bus: fb, reg: reg, met: met}
}

// crashAfterTaking runs an intake of an external broker (made by newIntake)
// on a bus that never returns, has c publish seq 0, and stops the intake
// once its bus has taken the message in: a crash, as far as the broker
// knows, since seq 0 was never acknowledged.
func crashAfterTaking(t testing.TB, c paho.Client, newIntake func(bus.Producer) *Intake) {
	t.Helper()
	blocked := blockingBus()
	in := newIntake(blocked)
	stop := runIntake(t, in)
	waitReady(t, in)
	publish(t, c, "sharpeye/devices/smoke-1/telemetry", `{"readings": {"seq": 0}}`)
	select {
	case <-blocked.calls:
	case <-time.After(patience):
		t.Fatal("the intake never took the message")
	}
	stop()
}

// runIntake runs in until the returned stop is called (or the test ends).
func runIntake(t testing.TB, in *Intake) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("intake: %v", err)
				}
			case <-time.After(patience):
				t.Errorf("intake did not stop; its goroutines:\n%s", mqttGoroutines())
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// deviceOpts are a test device's client options: MQTT 3.1.1, no automatic
// reconnection, so that a refusal shows.
func deviceOpts(addr, user, pass, clientID string) *paho.ClientOptions {
	return paho.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(clientID).
		SetUsername(user).
		SetPassword(pass).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(patience).
		SetWriteTimeout(patience).
		SetKeepAlive(30 * time.Second)
}

// connect connects a device client, disconnected when the test ends.
func connect(t testing.TB, o *paho.ClientOptions) paho.Client {
	t.Helper()
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(patience) {
		t.Fatal("connect timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Disconnect(250) })
	return c
}

// killableConn lets a test cut a client's connection as a crash would,
// without DISCONNECT (so the broker sends the last will).
type killableConn struct {
	mu   sync.Mutex
	conn net.Conn
}

func (k *killableConn) dial(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", uri.Host, patience)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.conn = c
	k.mu.Unlock()
	return c, nil
}

func (k *killableConn) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.conn != nil {
		k.conn.Close()
	}
}

func publish(t testing.TB, c paho.Client, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(patience) {
		t.Fatalf("publish to %s: no PUBACK", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish to %s: %v", topic, err)
	}
}

// counter reads a counter of c with the given label values.
func counter(t testing.TB, c *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func ptr(f float64) *float64 { return &f }

package detect

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"sharpeye/configs/conf"
	"sharpeye/ingest/blob"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/event"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/simcam"
	"sharpeye/ingest/stream"
)

// producer is an in-memory bus.Producer that decodes what it is given.
type producer struct {
	mu     sync.Mutex
	events []*event.Event
	errs   []error
}

func (p *producer) Publish(ctx context.Context, msgs ...bus.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		ev, err := event.Decode(m.Value)
		switch {
		case err != nil:
			p.errs = append(p.errs, err)
		case m.Topic != bus.TopicEvents || m.Key != ev.PartitionKey():
			p.errs = append(p.errs, fmt.Errorf("message on %s keyed %s", m.Topic, m.Key))
		default:
			p.events = append(p.events, ev)
		}
	}
	return nil
}

func (p *producer) all(t testing.TB) []*event.Event {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, err := range p.errs {
		t.Errorf("bad message published: %v", err)
	}
	return slices.Clone(p.events)
}

// types lists the types of the events published, in order.
func (p *producer) types(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, ev := range p.all(t) {
		out = append(out, ev.Type)
	}
	return out
}

func (p *producer) first(t testing.TB, typ string) *event.Event {
	t.Helper()
	for _, ev := range p.all(t) {
		if ev.Type == typ {
			return ev
		}
	}
	t.Fatalf("no %s event; got %v", typ, p.types(t))
	return nil
}

// testLogger logs to the test.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

// slogTo logs to w, safely from several goroutines.
func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil))
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// testConfig is the defaults with quick timings, for clips of a few
// seconds with a keyframe every second.
func testConfig() Config {
	cfg := Defaults()
	cfg.Decoders = 1
	q := &cfg.Quality
	q.Interval = 0
	q.RaiseAfter = conf.Duration(2 * time.Second)
	q.ClearAfter = conf.Duration(2 * time.Second)
	q.MinHold = 0
	q.FrozenAfter = conf.Duration(3 * time.Second)
	cfg.Snapshot.MinInterval = 0
	cfg.Snapshot.MotionWait = conf.Duration(time.Second)
	return cfg
}

type harness struct {
	t     testing.TB
	m     *Manager
	out   *producer
	blobs *blob.Store
	hub   *stream.Hub
	d     *Detector
	clock time.Time // the Received time of the next unit
	pts   time.Duration
	sent  uint64 // units published
	stop  func() // stops the detector and the manager and waits for them
}

type harnessOpts struct {
	blobs  bool               // give the manager a blob store
	status func() rtsp.Status // the puller's status; nil: none
	meta   Meta               // the camera's place
	setup  func(d *Detector)  // before Run
	run    bool               // run the manager (the decoders)
	state  string             // the manager's state directory; "": none
}

// newHarness builds a manager from cfg, a hub and a detector for camera
// "cam-1", and runs the detector (and the manager if asked) until the test
// ends.
func newHarness(t testing.TB, cfg Config, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, out: &producer{}, clock: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	if o.blobs {
		var err error
		if h.blobs, err = blob.Open(blob.Defaults(), t.TempDir(), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	h.m, err = NewManager(cfg, h.out, h.blobs, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if o.state != "" {
		if err := h.m.KeepState(o.state); err != nil {
			t.Fatal(err)
		}
	}
	if h.m.dec != nil {
		h.m.dec.flushAfter = 20 * time.Millisecond
		h.m.dec.stuckAfter = time.Second
	}
	h.hub = stream.NewHub("cam-1", stream.DefaultHubConfig())
	if h.d, err = h.m.NewDetector("cam-1", o.meta, h.hub, o.status); err != nil {
		t.Fatal(err)
	}
	h.d.queue = 4096
	if o.setup != nil {
		o.setup(h.d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if o.run {
		wg.Go(func() { h.m.Run(ctx) })
	}
	wg.Go(func() { h.d.Run(ctx) })
	h.stop = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		h.hub.Close()
	})
	t.Cleanup(h.stop)
	if h.d.needUnits() {
		// Units published before the detector subscribes would be lost.
		waitFor(t, "the detector to subscribe", func() bool { return h.hub.Stats().Subscribers > 0 })
	}
	return h
}

func loadClip(t testing.TB, name string) *simcam.Clip {
	t.Helper()
	c, err := simcam.LoadFile("testdata/" + name + ".h264")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// start begins a new session of the camera with the clip's parameters.
func (h *harness) start(c *simcam.Clip) {
	h.hub.SetTrack(stream.Track{Codec: stream.H264, SPS: c.SPS, PPS: c.PPS})
}

// play publishes the clip's units as if received at the clip's frame
// rate from h.clock on, as fast as the hub takes them.
func (h *harness) play(c *simcam.Clip) {
	step := time.Second / time.Duration(c.FPS)
	for _, u := range c.Units {
		h.hub.Publish(h.pts, h.clock, slices.Clone(u.NALUs))
		h.clock = h.clock.Add(step)
		h.pts += step
		h.sent++
	}
}

// playPaced publishes the clip one group of pictures at a time, waiting
// for the detector to analyse each keyframe (the decoders take keyframes
// two at a time per camera).
func (h *harness) playPaced(c *simcam.Clip) {
	h.t.Helper()
	step := time.Second / time.Duration(c.FPS)
	for _, u := range c.Units {
		if u.IDR {
			h.idle()
		}
		h.hub.Publish(h.pts, h.clock, slices.Clone(u.NALUs))
		h.clock = h.clock.Add(step)
		h.pts += step
		h.sent++
	}
	h.idle()
}

// idle waits until the detector has handled every unit published and has
// no keyframe at the decoders.
func (h *harness) idle() {
	h.t.Helper()
	waitFor(h.t, "units handled and keyframes analysed", func() bool {
		return h.d.units.Load() >= h.sent && h.d.inflight.Load() == 0
	})
}

// settle waits until the detector has handled n units and published every
// event it found.
func (h *harness) settle(n uint64) {
	h.t.Helper()
	waitFor(h.t, fmt.Sprintf("%d units handled and their events published", n), func() bool {
		return h.d.units.Load() >= n && h.d.done.Load() == h.d.queued.Load() && len(h.d.results) == 0
	})
}

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func units(c *simcam.Clip) uint64 { return uint64(len(c.Units)) }

package ingest

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"sharpeye/configs/conf"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/event"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/simcam"
)

// capture is a bus.Producer keeping what it is given, one batch per
// Publish; with err set it refuses everything.
type capture struct {
	mu      sync.Mutex
	batches [][]bus.Message
	changed chan struct{}
	err     error
}

func newCapture() *capture { return &capture{changed: make(chan struct{})} }

func (c *capture) Publish(ctx context.Context, msgs ...bus.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.batches = append(c.batches, msgs)
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

var _ bus.Producer = (*capture)(nil)

// healthBatches returns the batches of camera.health events published so
// far, decoded, and a channel closed at the next Publish.
func (c *capture) healthBatches(t testing.TB) ([][]*event.Event, <-chan struct{}) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][]*event.Event
	for _, b := range c.batches {
		var evs []*event.Event
		for _, m := range b {
			e, err := event.Decode(m.Value)
			if err != nil {
				t.Fatalf("undecodable event: %v", err)
			}
			if e.Type == event.TypeCameraHealth {
				evs = append(evs, e)
			}
		}
		if len(evs) > 0 {
			if len(evs) != len(b) {
				t.Fatalf("camera.health events batched with %d other events", len(b)-len(evs))
			}
			out = append(out, evs)
		}
	}
	return out, c.changed
}

// healthRaw returns the encoded camera.health events published so far.
func (c *capture) healthRaw() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][]byte
	for _, b := range c.batches {
		for _, m := range b {
			if bytes.Contains(m.Value, []byte(`"type":"`+event.TypeCameraHealth+`"`)) {
				out = append(out, m.Value)
			}
		}
	}
	return out
}

// waitBatch waits for a batch of camera.health events that ok accepts.
func (c *capture) waitBatch(t testing.TB, timeout time.Duration, ok func([]*event.Event) bool) []*event.Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		batches, changed := c.healthBatches(t)
		for _, b := range batches {
			if ok(b) {
				return b
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no such camera.health batch in %s (%d batches)", timeout, len(batches))
		}
	}
}

func byCamera(b []*event.Event, id string) *event.Event {
	for _, e := range b {
		if e.Source.ID == id {
			return e
		}
	}
	return nil
}

func number(t testing.TB, e *event.Event, key string) float64 {
	t.Helper()
	v, ok := e.Number(key)
	if !ok {
		t.Fatalf("%s: no number %s in %v", e.Source.ID, key, e.Attributes)
	}
	return v
}

func text(t testing.TB, e *event.Event, key string) string {
	t.Helper()
	v, ok := e.String(key)
	if !ok {
		t.Fatalf("%s: no string %s in %v", e.Source.ID, key, e.Attributes)
	}
	return v
}

// startSim serves fixture street-360p (25 fps) at each path, with
// credentials.
func startSim(t testing.TB, paths ...string) *simcam.Server {
	t.Helper()
	sim, err := simcam.NewServer(simcam.Config{Address: "127.0.0.1:0", Username: "admin", Password: "hik12345"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	clip, err := simcam.Load("street-360p.h264")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if err := sim.Add(simcam.NewCamera(p, clip)); err != nil {
			t.Fatal(err)
		}
	}
	return sim
}

// startIngest runs the role on cams until the test ends; with out, its
// detectors (health and motion only) publish to out.
func startIngest(t testing.TB, cfg Config, cams []camera.Camera, out bus.Producer) *Ingest {
	t.Helper()
	cfg.RTSPServer.Listen = ""
	cfg.Detect.Quality.Enabled = false
	cfg.Detect.Snapshot.Enabled = false
	reg := prometheus.NewRegistry()
	in := New(cfg, cams, nil, nil, reg, slog.New(slog.DiscardHandler))
	if out != nil {
		if err := in.EnableDetectors(out, t.TempDir(), reg); err != nil {
			t.Fatal(err)
		}
	}
	startRunning(t, in)
	return in
}

// waitFrames waits until the camera's hub has had frames: decoding
// starts at the first keyframe, up to a GOP (2 s) after the camera is
// online.
func waitFrames(t testing.TB, in *Ingest, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, _ := in.Status(id); st.Stream.Units > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("camera %s: no frames", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitState waits until the camera's puller is (want true) or is not
// (want false) in state s.
func waitState(t testing.TB, in *Ingest, id string, s rtsp.State, want bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, ok := in.Status(id)
		if ok && (st.Status.State == s) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("camera %s: state %s, waiting for %s (%v)", id, st.Status.State, s, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func ptr[T any](v T) *T { return &v }

// TestHealthReportLiveAndDownCameras runs the role's own reporter with a
// 2 s window: a streaming camera's sample has the whole window online, its
// bitrate and the clip's frame rate, no faults, and the camera's place and
// vendor; a camera that never answers is in the same batch with 0 online
// seconds; no URL or credential is in any sample.
func TestHealthReportLiveAndDownCameras(t *testing.T) {
	sim := startSim(t, "live")
	out := newCapture()
	cfg := Defaults()
	cfg.HealthReport = conf.Duration(2 * time.Second) // below the allowed 10s: tests only
	in := startIngest(t, cfg, []camera.Camera{
		{ID: "live", Name: "北门", URL: sim.URL("live"), Transport: "tcp", Region: "lanxi/dongcheng", Grid: "g-01",
			Lat: ptr(29.2), Lon: ptr(119.5), Vendor: "hikvision", Tags: []string{"gate"}},
		{ID: "down", URL: "rtsp://admin:down-secret@127.0.0.1:1/none", Transport: "tcp", Region: "lanxi/nanshan"},
	}, out)

	waitState(t, in, "live", rtsp.StateOnline, true)
	waitFrames(t, in, "live")
	online := time.Now()
	// The first window that began after the camera's frames flowed.
	b := out.waitBatch(t, 60*time.Second, func(b []*event.Event) bool {
		e := byCamera(b, "live")
		return e != nil && e.Time.Add(-2*time.Second).After(online)
	})
	if len(b) != 2 {
		t.Fatalf("batch of %d samples, want one per camera (2)", len(b))
	}
	live, down := byCamera(b, "live"), byCamera(b, "down")
	if live == nil || down == nil {
		t.Fatalf("batch %v lacks a camera", b)
	}
	for _, e := range b {
		if e.Source.Kind != event.SourceCamera || e.Severity != event.SeverityInfo {
			t.Errorf("%s: source %+v severity %s", e.Source.ID, e.Source, e.Severity)
		}
		if ms := e.Time.UnixMilli(); ms%2000 != 0 {
			t.Errorf("%s: time %s is not a window end (multiple of 2s)", e.Source.ID, e.Time)
		}
		if !e.Time.Equal(live.Time.Time) {
			t.Errorf("%s: time %s, the batch's is %s", e.Source.ID, e.Time, live.Time)
		}
		if w := number(t, e, "window_seconds"); w != 2 {
			t.Errorf("%s: window_seconds %v, want 2", e.Source.ID, w)
		}
	}

	if live.Source.Name != "北门" || live.Location.Region != "lanxi/dongcheng" || live.Location.Grid != "g-01" ||
		live.Location.Lat == nil || *live.Location.Lat != 29.2 || live.Location.Lon == nil || *live.Location.Lon != 119.5 {
		t.Errorf("live: source %+v location %+v", live.Source, live.Location)
	}
	if o := number(t, live, "online_seconds"); o < 1.8 || o > 2 {
		t.Errorf("live: online_seconds %v of 2", o)
	}
	if kbps := number(t, live, "bitrate_kbps"); kbps < 100 || kbps > 10000 {
		t.Errorf("live: bitrate_kbps %v (the clip is about 1 Mb/s)", kbps)
	}
	if fps := number(t, live, "fps"); fps < 12 || fps > 40 {
		t.Errorf("live: fps %v (the clip is 25 fps)", fps)
	}
	if p := number(t, live, "packets"); p <= 0 {
		t.Errorf("live: packets %v", p)
	}
	if l := number(t, live, "packets_lost"); l < 0 {
		t.Errorf("live: packets_lost %v", l)
	}
	if f, v, s := text(t, live, "faults"), text(t, live, "vendor"), text(t, live, "state"); f != "" || v != "hikvision" || s != "online" {
		t.Errorf("live: faults %q vendor %q state %q", f, v, s)
	}

	if o, kbps, fps := number(t, down, "online_seconds"), number(t, down, "bitrate_kbps"), number(t, down, "fps"); o != 0 || kbps != 0 || fps != 0 {
		t.Errorf("down: online_seconds %v bitrate_kbps %v fps %v, want 0", o, kbps, fps)
	}
	if s := text(t, down, "state"); s == "online" || s == "" {
		t.Errorf("down: state %q", s)
	}
	if v := text(t, down, "vendor"); v != "" {
		t.Errorf("down: vendor %q", v)
	}
	if down.Location.Region != "lanxi/nanshan" {
		t.Errorf("down: location %+v", down.Location)
	}

	for _, raw := range out.healthRaw() {
		for _, secret := range []string{"rtsp", "admin", "hik12345", "down-secret", sim.Addr(), "127.0.0.1"} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Fatalf("sample holds %q: %s", secret, raw)
			}
		}
	}
	if n := counterValue(t, in.health.published); n < 2 {
		t.Errorf("sharpeye_camera_health_reports_total %v", n)
	}
	if n := counterValue(t, in.health.failed); n != 0 {
		t.Errorf("sharpeye_camera_health_reports_failed_total %v", n)
	}
}

// TestHealthReportCameraGoesOffline drives the reporter's windows by hand:
// a camera that stops in the middle of a window counts only the seconds it
// was online, and 0 in the next window.
func TestHealthReportCameraGoesOffline(t *testing.T) {
	sim := startSim(t, "cam")
	in := startIngest(t, Defaults(), []camera.Camera{{ID: "cam", URL: sim.URL("cam"), Transport: "tcp", Region: "lanxi"}}, nil)
	out := newCapture()
	r := newHealthReporter(in.healthSources, out, 2*time.Second, in.health, slog.New(slog.DiscardHandler))
	ctx := t.Context()

	waitState(t, in, "cam", rtsp.StateOnline, true)
	waitFrames(t, in, "cam")
	t0 := time.Now()
	r.report(ctx, t0)       // the window starts here
	time.Sleep(time.Second) // online for at least this long (a measurement, not a synchronisation)
	sim.Remove("cam")
	waitState(t, in, "cam", rtsp.StateOnline, false)
	off := time.Since(t0).Seconds()
	time.Sleep(500 * time.Millisecond) // then offline for at least this long
	t1 := time.Now()
	r.report(ctx, t1)

	b := out.waitBatch(t, time.Second, func([]*event.Event) bool { return true })
	e := byCamera(b, "cam")
	if e == nil || len(b) != 1 {
		t.Fatalf("batch %v", b)
	}
	window, online := number(t, e, "window_seconds"), number(t, e, "online_seconds")
	if want := t1.Sub(t0).Seconds(); window < want-0.002 || window > want+0.002 {
		t.Errorf("window_seconds %v, want %v", window, want)
	}
	if online < 0.95 || online > off+0.01 || online > window-0.45 {
		t.Errorf("online_seconds %v of %v: online for %.3f s, then offline for at least 0.5 s", online, window, off)
	}
	if s := text(t, e, "state"); s == "online" {
		t.Errorf("state %q after the camera went away", s)
	}
	if kbps, p := number(t, e, "bitrate_kbps"), number(t, e, "packets"); kbps <= 0 || p <= 0 {
		t.Errorf("bitrate_kbps %v packets %v for a window it streamed in", kbps, p)
	}
	if !e.Time.Equal(t1.Truncate(time.Millisecond)) {
		t.Errorf("time %s, want the window end %s", e.Time, t1)
	}

	r.report(ctx, t1.Add(time.Second))
	b = out.waitBatch(t, time.Second, func(b []*event.Event) bool { return !b[0].Time.Equal(e.Time.Time) })
	if o, p := number(t, b[0], "online_seconds"), number(t, b[0], "packets"); o != 0 || p != 0 {
		t.Errorf("next window: online_seconds %v packets %v, want 0", o, p)
	}
}

// TestHealthReportFaultsAndSelection: faults are the quality faults and
// camera.degraded raised at any sample of the window, sorted; an idle
// on-demand camera and a disabled one are not reported.
func TestHealthReportFaultsAndSelection(t *testing.T) {
	in := startIngest(t, Defaults(), []camera.Camera{
		{ID: "dead", URL: "rtsp://127.0.0.1:1/none", Transport: "tcp", Vendor: "dahua"},
		{ID: "lazy", URL: "rtsp://127.0.0.1:1/lazy", Transport: "tcp", OnDemand: true},
		{ID: "off", URL: "rtsp://127.0.0.1:1/off", Transport: "tcp", Disabled: true},
	}, nil)
	var (
		mu     sync.Mutex
		active []string
	)
	setActive := func(a ...string) { mu.Lock(); active = a; mu.Unlock() }
	sources := func() []healthSource {
		s := in.healthSources()
		for i := range s {
			s[i].active = func() []string { mu.Lock(); defer mu.Unlock(); return active }
		}
		return s
	}
	out := newCapture()
	r := newHealthReporter(sources, out, 2*time.Second, in.health, slog.New(slog.DiscardHandler))
	ctx := t.Context()
	waitState(t, in, "dead", rtsp.StateConnecting, false) // the registry is read and the pull tried

	start := time.Now().Truncate(2 * time.Second)
	r.report(ctx, start)
	setActive("camera.offline", "motion", "video.frozen")
	r.sample(start.Add(time.Second))
	setActive("camera.degraded")
	r.report(ctx, start.Add(2*time.Second))
	setActive()
	r.report(ctx, start.Add(4*time.Second))

	batches, _ := out.healthBatches(t)
	if len(batches) != 2 {
		t.Fatalf("%d batches, want 2", len(batches))
	}
	for i, want := range []string{"camera.degraded,video.frozen", ""} {
		b := batches[i]
		if len(b) != 1 || b[0].Source.ID != "dead" {
			t.Fatalf("window %d: %d samples (%v), want the always-on camera's only", i, len(b), b)
		}
		e := b[0]
		if f := text(t, e, "faults"); f != want {
			t.Errorf("window %d: faults %q, want %q", i, f, want)
		}
		if w, o := number(t, e, "window_seconds"), number(t, e, "online_seconds"); w != 2 || o != 0 {
			t.Errorf("window %d: window_seconds %v online_seconds %v", i, w, o)
		}
		if v := text(t, e, "vendor"); v != "dahua" {
			t.Errorf("vendor %q", v)
		}
		if e.Location != (event.Location{}) {
			t.Errorf("location %+v for a camera without a region", e.Location)
		}
	}
}

// TestHealthReportPublishFailure: a window the bus refuses is counted,
// sample by sample, in sharpeye_camera_health_reports_failed_total.
func TestHealthReportPublishFailure(t *testing.T) {
	in := startIngest(t, Defaults(), []camera.Camera{
		{ID: "a", URL: "rtsp://127.0.0.1:1/a", Transport: "tcp"},
		{ID: "b", URL: "rtsp://127.0.0.1:1/b", Transport: "tcp"},
	}, nil)
	waitState(t, in, "b", rtsp.StateConnecting, false)
	out := newCapture()
	out.err = errors.New("bus closed")
	r := newHealthReporter(in.healthSources, out, 10*time.Second, in.health, slog.New(slog.DiscardHandler))
	start := time.Now()
	r.report(t.Context(), start)
	r.report(t.Context(), start.Add(10*time.Second))
	if n := counterValue(t, in.health.failed); n != 2 {
		t.Errorf("sharpeye_camera_health_reports_failed_total %v, want 2", n)
	}
	if n := counterValue(t, in.health.published); n != 0 {
		t.Errorf("sharpeye_camera_health_reports_total %v, want 0", n)
	}
}

func TestNextWindowEnd(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		now      string
		interval time.Duration
		want     string
	}{
		{"2026-11-21T10:04:20Z", time.Minute, "2026-11-21T10:05:00Z"},
		{"2026-11-21T10:04:59.999Z", time.Minute, "2026-11-21T10:05:00Z"},
		{"2026-11-21T10:05:00Z", time.Minute, "2026-11-21T10:06:00Z"},
		{"2026-11-21T10:04:20Z", 15 * time.Minute, "2026-11-21T10:15:00Z"},
		{"2026-11-21T10:04:21Z", 10 * time.Second, "2026-11-21T10:04:30Z"},
		{"2026-11-21T18:04:20+08:00", time.Hour, "2026-11-21T11:00:00Z"},
	} {
		t.Run(c.now+"/"+c.interval.String(), func(t *testing.T) {
			if got := nextWindowEnd(at(c.now), c.interval); !got.Equal(at(c.want)) {
				t.Errorf("got %s, want %s", got.UTC(), c.want)
			}
		})
	}
}

func TestHealthReportConfig(t *testing.T) {
	for _, c := range []struct {
		yml string
		ok  bool
	}{
		{"health_report: 1m", true},
		{"health_report: 0s", true},
		{"health_report: 10s", true},
		{"health_report: 1h", true},
		{"health_report: 5s", false},
		{"health_report: 61m", false},
		{"health_report: -1m", false},
	} {
		t.Run(c.yml, func(t *testing.T) {
			cfg := Defaults()
			err := conf.Load(&cfg, []byte(c.yml), "sharpeye.yml", nil)
			if c.ok && err != nil {
				t.Fatal(err)
			}
			if !c.ok && (err == nil || !strings.Contains(err.Error(), "health_report")) {
				t.Fatalf("error %v, want one naming health_report", err)
			}
		})
	}
}

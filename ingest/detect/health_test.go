package detect

import (
	"slices"
	"sync"
	"testing"
	"time"

	"sharpeye/configs/conf"
	"sharpeye/ingest/event"
	"sharpeye/ingest/rtsp"
)

// healthSim drives the health state machine second by second.
type healthSim struct {
	h     *health
	now   time.Time
	in    healthInput // the camera as it is now; lastPacket follows sending
	send  bool        // packets flowing
	found []finding
}

func newHealthSim(cfg HealthConfig) *healthSim {
	start := time.Unix(1_800_000_000, 0)
	return &healthSim{h: newHealth(cfg, start), now: start, send: true,
		in: healthInput{expected: true, fps: 25, bitrate: 2e6, haveRates: true, haveLoss: true}}
}

// run advances d, a second at a time.
func (s *healthSim) run(d time.Duration) {
	for end := s.now.Add(d); s.now.Before(end); {
		s.now = s.now.Add(time.Second)
		s.in.now = s.now
		if s.send {
			s.in.lastPacket = s.now.Add(-40 * time.Millisecond)
			// 100 packets a second; lossRate of them lost.
			s.in.received += 100
		}
		s.found = append(s.found, s.h.step(s.in)...)
	}
}

func (s *healthSim) types() []string {
	var out []string
	for _, f := range s.found {
		out = append(out, f.typ)
	}
	return out
}

func TestHealthOfflineOnline(t *testing.T) {
	s := newHealthSim(Defaults().Health)
	s.run(time.Minute)
	if len(s.found) != 0 {
		t.Fatalf("found %v on a healthy camera", s.types())
	}
	s.send = false
	s.run(14 * time.Second)
	if len(s.found) != 0 {
		t.Fatalf("offline after 14s of silence; offline_after is 15s")
	}
	s.run(2 * time.Second)
	if !slices.Equal(s.types(), []string{TypeOffline}) {
		t.Fatalf("found %v, want camera.offline after 15s", s.types())
	}
	off := s.found[0]
	if off.severity != event.SeverityMajor || off.attrs["silent_seconds"].(float64) < 15 || off.attrs["offline_after_seconds"] != 15.0 {
		t.Errorf("offline finding %+v", off)
	}
	// Back after 20 s: reported once it has flowed for online_after, but
	// not before min_hold (1m) since the offline event.
	s.run(4 * time.Second)
	s.send = true
	s.run(30 * time.Second)
	if len(s.found) != 1 {
		t.Fatalf("found %v within min_hold of the offline event", s.types())
	}
	s.run(30 * time.Second)
	if !slices.Equal(s.types(), []string{TypeOffline, TypeOnline}) {
		t.Fatalf("found %v, want camera.online after min_hold", s.types())
	}
	if d := s.found[1].attrs["offline_seconds"].(float64); d < 59 || d > 61 {
		t.Errorf("offline for %vs, want 60s", d)
	}
}

func TestHealthNeverStreamed(t *testing.T) {
	s := newHealthSim(Defaults().Health)
	s.send = false
	s.in.state, s.in.reason = string(rtsp.StateOffline), "dial tcp: connection refused"
	s.run(16 * time.Second)
	if !slices.Equal(s.types(), []string{TypeOffline}) {
		t.Fatalf("found %v for a camera that never answered", s.types())
	}
	if r := s.found[0].attrs["reason"]; r != "dial tcp: connection refused" {
		t.Errorf("reason %v", r)
	}
	if _, ok := s.found[0].attrs["last_packet"]; ok {
		t.Errorf("last_packet set for a camera that never sent one")
	}
}

func TestHealthIdleCameraIsNotOffline(t *testing.T) {
	s := newHealthSim(Defaults().Health)
	s.send = false
	s.in.expected = false // an on-demand camera nobody watches
	s.run(10 * time.Minute)
	if len(s.found) != 0 {
		t.Fatalf("found %v for an idle on-demand camera", s.types())
	}
}

// A flapping camera yields at most one event per min_hold, not one per
// flap.
func TestHealthFlappingIsBounded(t *testing.T) {
	cfg := Defaults().Health
	s := newHealthSim(cfg)
	s.run(time.Minute)
	flaps := 0
	for s.now.Before(time.Unix(1_800_000_000, 0).Add(time.Hour)) {
		s.send = false
		s.run(20 * time.Second) // long enough to go offline
		s.send = true
		s.run(10 * time.Second) // long enough to come back
		flaps++
	}
	limit := int(time.Hour/cfg.MinHold.D()) + 1
	if n := len(s.found); n > limit || n < 2 {
		t.Fatalf("%d events for %d flaps in an hour; want between 2 and %d", n, flaps, limit)
	}
	t.Logf("%d flaps, %d events", flaps, len(s.found))
	// And they alternate.
	for i, f := range s.found {
		if want := []string{TypeOffline, TypeOnline}[i%2]; f.typ != want {
			t.Fatalf("event %d is %s, want %s: %v", i, f.typ, want, s.types())
		}
	}
}

func TestHealthDegradedFrameRate(t *testing.T) {
	cfg := Defaults().Health
	s := newHealthSim(cfg)
	s.run(2 * time.Minute) // learn 25 fps
	s.in.fps = 5           // 20 % of the baseline
	s.run(29 * time.Second)
	if len(s.found) != 0 {
		t.Fatalf("degraded before degraded_after: %v", s.types())
	}
	s.run(2 * time.Second)
	if !slices.Equal(s.types(), []string{TypeDegraded}) {
		t.Fatalf("found %v, want camera.degraded", s.types())
	}
	f := s.found[0]
	if f.attrs["reason"] != "frame_rate" || f.attrs["frame_rate"] != 5.0 || f.attrs["frame_rate_baseline"].(float64) < 24 || f.severity != event.SeverityMinor {
		t.Errorf("degraded finding %+v", f.attrs)
	}
	// 50 %: above the drop (30 %), below recover (60 %): still degraded.
	s.in.fps = 12.5
	s.run(3 * time.Minute)
	if len(s.found) != 1 {
		t.Fatalf("found %v between the thresholds", s.types())
	}
	s.in.fps = 25
	s.run(31 * time.Second)
	if !slices.Equal(s.types(), []string{TypeDegraded, TypeDegraded + ClearedSuffix}) {
		t.Fatalf("found %v, want camera.degraded.cleared", s.types())
	}
}

func TestHealthDegradedPacketLoss(t *testing.T) {
	cfg := Defaults().Health
	s := newHealthSim(cfg)
	s.run(time.Minute)
	lossy := func(perSecond uint64, d time.Duration) {
		for range int(d / time.Second) {
			s.in.lost += perSecond
			s.run(time.Second)
		}
	}
	lossy(10, 2*time.Minute) // 10 lost of 110: 9 %
	if !slices.Equal(s.types(), []string{TypeDegraded}) {
		t.Fatalf("found %v, want camera.degraded for 9%% loss", s.types())
	}
	if s.found[0].attrs["reason"] != "packet_loss" {
		t.Errorf("reason %v", s.found[0].attrs["reason"])
	}
	lossy(3, 2*time.Minute) // 3 %: between clear (2 %) and raise (5 %)
	if len(s.found) != 1 {
		t.Fatalf("found %v at 3%% loss", s.types())
	}
	lossy(1, 2*time.Minute)
	if !slices.Equal(s.types(), []string{TypeDegraded, TypeDegraded + ClearedSuffix}) {
		t.Fatalf("found %v, want the degradation cleared at 1%% loss", s.types())
	}
}

func TestHealthDegradedFlappingIsBounded(t *testing.T) {
	cfg := Defaults().Health
	s := newHealthSim(cfg)
	s.run(2 * time.Minute)
	for range 120 { // an hour of 10 s at 5 fps, 20 s at 25 fps
		s.in.fps = 5
		s.run(10 * time.Second)
		s.in.fps = 25
		s.run(20 * time.Second)
	}
	// Neither 10 s of collapse nor 20 s of recovery lasts degraded_after.
	if len(s.found) != 0 {
		t.Fatalf("found %v for short dips", s.types())
	}
	for range 60 { // an hour of 40 s at 5 fps, 20 s back
		s.in.fps = 5
		s.run(40 * time.Second)
		s.in.fps = 25
		s.run(20 * time.Second)
	}
	if n := len(s.found); n > 2 {
		t.Fatalf("%d events for an hour of 40 s dips, want it raised once: %v", n, s.types())
	}
}

// The detector publishes health events built from the puller's status.
func TestHealthEventsPublished(t *testing.T) {
	cfg := testConfig()
	cfg.Motion.Enabled = false
	cfg.Quality.Enabled = false
	cfg.Health.OfflineAfter = conf.Duration(time.Second)
	cfg.Health.OnlineAfter = conf.Duration(100 * time.Millisecond)
	cfg.Health.MinHold = 0

	var mu sync.Mutex
	st := rtsp.Status{State: rtsp.StateOnline, LastPacket: time.Now(), FrameRate: 25, Bitrate: 1e6}
	status := func() rtsp.Status {
		mu.Lock()
		defer mu.Unlock()
		if st.State == rtsp.StateOnline {
			st.LastPacket = time.Now()
		}
		return st
	}
	lat, lon := 30.87, 114.38
	h := newHarness(t, cfg, harnessOpts{
		status: status,
		meta:   Meta{Name: "新庄村口东", Region: "huangpi/wangjiahe/xinzhuang", Grid: "g-0412", Lat: &lat, Lon: &lon, Tags: []string{"village", "BAD TAG\x00"}},
		setup:  func(d *Detector) { d.tick = 20 * time.Millisecond },
	})
	mu.Lock()
	st.State, st.Reason = rtsp.StateOffline, "dial tcp 10.0.0.7:554: i/o timeout"
	mu.Unlock()
	waitFor(t, "camera.offline", func() bool { return len(h.out.all(t)) == 1 })
	mu.Lock()
	st.State, st.Reason = rtsp.StateOnline, ""
	mu.Unlock()
	waitFor(t, "camera.online", func() bool { return len(h.out.all(t)) == 2 })

	off, on := h.out.first(t, TypeOffline), h.out.first(t, TypeOnline)
	if off.Severity != event.SeverityMajor || off.Source.Kind != event.SourceCamera || off.Source.ID != "cam-1" || off.Source.Name != "新庄村口东" {
		t.Errorf("offline event source %+v severity %s", off.Source, off.Severity)
	}
	if l := off.Location; l.Region != "huangpi/wangjiahe/xinzhuang" || l.Grid != "g-0412" || *l.Lat != lat || *l.Lon != lon {
		t.Errorf("location %+v", l)
	}
	if !slices.Equal(off.Tags, []string{"village"}) {
		t.Errorf("tags %v, want the valid one only", off.Tags)
	}
	if r, _ := off.String("reason"); r != "dial tcp 10.0.0.7:554: i/o timeout" {
		t.Errorf("reason %q", r)
	}
	if len(on.Evidence) != 1 || on.Evidence[0].Ref != off.ID.String() {
		t.Errorf("camera.online evidence %+v does not point to camera.offline", on.Evidence)
	}
	if got := h.d.Active(); len(got) != 0 {
		t.Errorf("active %v after coming back", got)
	}
}

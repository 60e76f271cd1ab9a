package detect

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"sharpeye/configs/conf"
	"sharpeye/ingest/event"
	"sharpeye/ingest/rtsp"
)

// A camera offline across a restart of the process is not reported
// offline a second time, and its camera.online points to the offline
// event of the first process; the baselines learnt come back too.
func TestStateSurvivesRestartHealth(t *testing.T) {
	cfg := testConfig()
	cfg.Motion.Enabled = false
	cfg.Quality.Enabled = false
	cfg.Health.OfflineAfter = conf.Duration(time.Second)
	cfg.Health.OnlineAfter = conf.Duration(100 * time.Millisecond)
	cfg.Health.MinHold = 0
	dir := t.TempDir()

	var mu sync.Mutex
	st := rtsp.Status{State: rtsp.StateOffline, Reason: "dial tcp 10.0.0.7:554: i/o timeout"}
	status := func() rtsp.Status {
		mu.Lock()
		defer mu.Unlock()
		if st.State == rtsp.StateOnline {
			st.LastPacket = time.Now()
		}
		return st
	}
	fast := func(d *Detector) { d.tick = 20 * time.Millisecond }

	first := newHarness(t, cfg, harnessOpts{status: status, setup: fast, state: dir})
	waitFor(t, "camera.offline", func() bool { return len(first.out.all(t)) == 1 })
	off := first.out.first(t, TypeOffline)
	waitFor(t, "the state file to name the offline event", func() bool {
		s, err := newStateFile(dir, "cam-1").load()
		return err == nil && s.Raised[TypeOffline].Event == off.ID.String()
	})
	first.stop()
	// A baseline learnt before the restart (this camera never streamed).
	sf := newStateFile(dir, "cam-1")
	if _, err := sf.load(); err != nil {
		t.Fatal(err)
	}
	if err := sf.baselines(baseline{value: 25, learnt: time.Hour, updated: time.Now()}, baseline{}, baseline{}); err != nil {
		t.Fatal(err)
	}

	second := newHarness(t, cfg, harnessOpts{status: status, setup: fast, state: dir})
	waitFor(t, "the offline condition carried over", func() bool { return slices.Equal(second.d.Active(), []string{TypeOffline}) })
	// Still offline, checked well past offline_after: nothing new.
	past := time.Now().Add(cfg.Health.OfflineAfter.D() * 3 / 2)
	waitFor(t, "checks past offline_after", func() bool { return second.d.Checked().After(past) })
	if evs := second.out.all(t); len(evs) != 0 {
		t.Fatalf("restart raised %v again", evs[0].Type)
	}
	mu.Lock()
	st.State, st.Reason = rtsp.StateOnline, ""
	mu.Unlock()
	waitFor(t, "camera.online", func() bool { return len(second.out.all(t)) == 1 })
	on := second.out.first(t, TypeOnline)
	if len(on.Evidence) != 1 || on.Evidence[0].Kind != event.EvidenceEvent || on.Evidence[0].Ref != off.ID.String() {
		t.Errorf("camera.online evidence %+v, want the first process's offline event %s", on.Evidence, off.ID)
	}
	if secs, _ := on.Number("offline_seconds"); secs < 1 {
		t.Errorf("offline_seconds %v, want the time since the first process raised it", secs)
	}
	waitFor(t, "the state file to forget the condition", func() bool {
		s, err := newStateFile(dir, "cam-1").load()
		return err == nil && len(s.Raised) == 0
	})
	second.stop()
	if b := second.d.health.fps; b.value != 25 || b.learnt != time.Hour {
		t.Errorf("frame rate baseline after restart %+v, want the saved one", b)
	}
	if s, err := newStateFile(dir, "cam-1").load(); err != nil || s.FPS == nil || s.FPS.Value != 25 {
		t.Errorf("baselines written at stop: %+v, %v", s.FPS, err)
	}
}

// A covered lens across a restart: not raised again; cleared once the
// picture comes back, pointing to the first event.
func TestStateSurvivesRestartQuality(t *testing.T) {
	requireFFmpeg(t)
	cfg := qualityConfig()
	cfg.Health.Enabled = false
	dir := t.TempDir()
	covered, normal := loadClip(t, "covered"), loadClip(t, "normal")

	// The decoders must be up before the keyframes come, or they are
	// dropped (busy decoders), as under a loaded CI.
	first := newHarness(t, cfg, harnessOpts{run: true, state: dir})
	waitFor(t, "the decoders", first.m.dec.running.Load)
	first.start(covered)
	first.playPaced(covered)
	first.playPaced(covered)
	first.settle(2 * units(covered))
	raised := first.out.first(t, TypeCovered)
	first.stop()

	second := newHarness(t, cfg, harnessOpts{run: true, state: dir})
	waitFor(t, "the decoders", second.m.dec.running.Load)
	second.clock = first.clock
	second.start(covered)
	second.playPaced(covered)
	second.playPaced(covered)
	second.settle(2 * units(covered))
	for _, typ := range second.out.types(t) {
		if typ == TypeCovered {
			t.Fatalf("covered raised again after the restart: %v", second.out.types(t))
		}
	}
	second.start(normal)
	second.playPaced(normal)
	second.playPaced(normal)
	second.settle(2*units(covered) + 2*units(normal))
	cleared := second.out.first(t, TypeCovered+ClearedSuffix)
	if len(cleared.Evidence) == 0 || cleared.Evidence[0].Ref != raised.ID.String() {
		t.Errorf("cleared evidence %+v, want the first process's covered event %s", cleared.Evidence, raised.ID)
	}
}

// A state file that does not parse, or of another version, is set aside:
// the detector starts afresh and says so.
func TestStateFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	for _, data := range []string{"{not json", `{"version": 99, "raised": {"camera.offline": {"since": "2026-11-21T00:00:00Z"}}}`} {
		if err := os.WriteFile(filepath.Join(dir, "cam-1.json"), []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := newStateFile(dir, "cam-1").load()
		if err == nil || len(s.Raised) != 0 {
			t.Errorf("load(%s) = %+v, %v; want an error and an empty state", data, s, err)
		}
	}
}

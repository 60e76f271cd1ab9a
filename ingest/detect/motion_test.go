package detect

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"sharpeye/ingest/event"
	"sharpeye/ingest/stream"
)

// motionConfig has motion detection only, at the defaults.
func motionConfig() Config {
	cfg := testConfig()
	cfg.Health.Enabled = false
	cfg.Quality.Enabled = false
	return cfg
}

func TestMotionFiresOnMotionClip(t *testing.T) {
	motionClip, still := loadClip(t, "motion"), loadClip(t, "still")
	h := newHarness(t, motionConfig(), harnessOpts{meta: Meta{Region: "huangpi/wangjiahe", Grid: "g-7", Tags: []string{"school"}}})
	begin := h.clock
	h.start(motionClip)
	h.play(motionClip)
	h.play(still) // time for the motion to end
	h.settle(units(motionClip) + units(still))

	if got := h.out.types(t); !slices.Equal(got, []string{TypeMotion, TypeMotionEnd}) {
		t.Fatalf("events %v, want motion then motion.end", got)
	}
	start, end := h.out.first(t, TypeMotion), h.out.first(t, TypeMotionEnd)
	// The object enters at 4 s.
	if at := start.Time.Sub(begin); at < 3900*time.Millisecond || at > 5*time.Second {
		t.Errorf("motion at %v into the clip, want about 4s", at)
	}
	score, _ := start.Number("score")
	threshold, _ := start.Number("threshold")
	if score < threshold || threshold != 1.3 {
		t.Errorf("motion score %v, threshold %v", score, threshold)
	}
	if start.Severity != event.SeverityInfo || start.Source.ID != "cam-1" || start.Location.Grid != "g-7" || !slices.Equal(start.Tags, []string{"school"}) {
		t.Errorf("motion event %+v", start)
	}
	// It crosses for 2.5 s; the end is when the picture settled.
	if d, _ := end.Number("duration_seconds"); d < 2 || d > 4.5 {
		t.Errorf("motion lasted %vs, want about 3s", d)
	}
	if r, _ := end.String("reason"); r != endQuiet {
		t.Errorf("motion.end reason %q", r)
	}
	if len(end.Evidence) == 0 || end.Evidence[0].Kind != event.EvidenceEvent || end.Evidence[0].Ref != start.ID.String() {
		t.Errorf("motion.end evidence %+v does not point to the motion event %s", end.Evidence, start.ID)
	}
	if got := h.d.Active(); len(got) != 0 {
		t.Errorf("active after the end: %v", got)
	}
}

func TestMotionQuietOnStillClip(t *testing.T) {
	still := loadClip(t, "still")
	h := newHarness(t, motionConfig(), harnessOpts{})
	h.start(still)
	for range 3 {
		h.play(still)
	}
	h.settle(3 * units(still))
	if got := h.out.types(t); len(got) != 0 {
		t.Fatalf("events %v on a still scene with sensor noise, want none", got)
	}
}

// A camera whose session restarts (a new epoch: new parameters, maybe a
// new bitrate) must not read the jump in frame sizes as motion.
func TestMotionRestartIsNotMotion(t *testing.T) {
	still, normal := loadClip(t, "still"), loadClip(t, "normal")
	for _, restart := range []bool{true, false} {
		name := "restart"
		if !restart {
			name = "same session (control)"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, motionConfig(), harnessOpts{})
			h.start(still)
			h.play(still)
			if restart {
				h.start(normal) // SetTrack: a new epoch
			}
			h.play(normal)
			h.settle(units(still) + units(normal))
			got := h.out.types(t)
			if restart && len(got) != 0 {
				t.Fatalf("events %v after a restart, want none", got)
			}
			if !restart && !slices.Contains(got, TypeMotion) {
				t.Fatalf("events %v: the control, without a restart, should see the jump as motion", got)
			}
		})
	}
}

func TestMotionSchedule(t *testing.T) {
	motionClip := loadClip(t, "motion")
	for _, tc := range []struct {
		name  string
		clock time.Time
		want  bool
	}{
		// 2026-11-23 is a Monday; Asia/Shanghai is UTC+8.
		{"monday 20:00, before the night", time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), false},
		{"monday 22:30", time.Date(2026, 11, 23, 14, 30, 0, 0, time.UTC), true},
		{"saturday 03:00, the end of friday night", time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC), true},
		{"saturday 23:00", time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := motionConfig()
			cfg.Motion.Schedules = []string{"mon-fri 22:00-06:00"}
			h := newHarness(t, cfg, harnessOpts{})
			h.clock = tc.clock
			h.start(motionClip)
			h.play(motionClip)
			h.settle(units(motionClip))
			if got := slices.Contains(h.out.types(t), TypeMotion); got != tc.want {
				t.Fatalf("motion reported = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMotionPerCameraOverride(t *testing.T) {
	motionClip := loadClip(t, "motion")
	cfg := motionConfig()
	off := false
	cfg.Cameras = map[string]Override{"cam-1": {Motion: MotionOverride{Enabled: &off}}}
	h := newHarness(t, cfg, harnessOpts{})
	h.start(motionClip)
	h.play(motionClip)
	waitFor(t, "the clip published", func() bool { return h.hub.Stats().Units == units(motionClip) })
	// The detector does not even follow the stream.
	if h.d.needUnits() || h.hub.Stats().Subscribers != 0 {
		t.Fatal("a camera with motion and quality off still subscribes to its hub")
	}
	if got := h.out.types(t); len(got) != 0 {
		t.Fatalf("events %v with motion off for the camera", got)
	}
}

// The per-position baseline on synthetic sizes: one big frame is not
// motion, a sustained rise is, and it ends after end_after.
func TestMotionStateMachine(t *testing.T) {
	cfg := Defaults().Motion
	m := newMotion(cfg, schedules{})
	at := time.Unix(1_700_000_000, 0)
	var found []finding
	feed := func(n int, size func(pos int) int) {
		for i := range n {
			pos := i % 25
			s := 1000
			if pos > 0 {
				s = size(pos)
			}
			found = append(found, m.unit(at, s, pos == 0)...)
			at = at.Add(40 * time.Millisecond)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// A GOP pattern: big after the keyframe, then flat, with noise.
	normal := func(pos int) int { return 100 + 200/pos + rng.IntN(20) }
	feed(25*8, normal)
	feed(25*2, func(pos int) int {
		if pos == 10 {
			return 5000 // one huge frame
		}
		return normal(pos)
	})
	if len(found) != 0 {
		t.Fatalf("found %v on a steady pattern with one spike", found)
	}
	feed(25*3, func(pos int) int { return 2 * normal(pos) })
	feed(25*5, normal)
	if len(found) != 2 || found[0].typ != TypeMotion || found[1].typ != TypeMotionEnd {
		t.Fatalf("found %v, want motion and motion.end", found)
	}
	if d := found[1].attrs["duration_seconds"].(float64); d < 2.5 || d > 4 {
		t.Errorf("duration %vs, want about 3s", d)
	}
}

func TestMotionThreshold(t *testing.T) {
	for _, tc := range []struct{ s, want float64 }{{0, 2.2}, {0.5, 1.3}, {1, 1.075}} {
		if got := motionThreshold(tc.s); got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("motionThreshold(%v) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

// Garbage in the stream (random NAL units, keyframes that are not) must
// not crash the detector nor stop it: after a restart of the session it
// judges the real stream as if nothing had happened. (Random frame sizes
// may well read as motion meanwhile.)
func TestGarbageUnits(t *testing.T) {
	still := loadClip(t, "still")
	cfg := motionConfig()
	cfg.Health.Enabled = true
	h := newHarness(t, cfg, harnessOpts{})
	h.start(still)
	publishGarbage(h.hub, 500, h.clock)
	h.sent += 500
	h.settle(500)
	before := len(h.out.all(t))
	h.clock = h.clock.Add(time.Minute)
	h.start(still)
	h.play(still)
	h.play(still)
	h.settle(500 + 2*units(still))
	for _, ev := range h.out.all(t)[before:] {
		if ev.Type != TypeMotionEnd { // the end of a motion the garbage began
			t.Errorf("%s after the stream came right", ev.Type)
		}
	}
}

// publishGarbage publishes n units of random NAL units, a fifth of them
// looking like IDRs, with Received times from at on.
func publishGarbage(hub *stream.Hub, n int, at time.Time) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range n {
		var nalus [][]byte
		for range 1 + rng.IntN(4) {
			b := make([]byte, 1+rng.IntN(300)) // (the hub takes no empty NAL unit)
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			if i%5 == 0 {
				b[0] = 0x65 // IDR slice
			}
			nalus = append(nalus, b)
		}
		hub.Publish(time.Duration(i)*40*time.Millisecond, at.Add(time.Duration(i)*40*time.Millisecond), nalus)
	}
}

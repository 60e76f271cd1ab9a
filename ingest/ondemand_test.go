package ingest

import (
	"slices"
	"testing"
	"time"

	"sharpeye/configs/conf"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/event"
	"sharpeye/ingest/rtsp"
)

// TestDetectorsWatchOnDemandCamerasPassively: the detectors of an
// on-demand camera do not keep it pulled; they see its stream while a
// viewer has it, and do not call it offline when it goes idle again.
func TestDetectorsWatchOnDemandCamerasPassively(t *testing.T) {
	sim := startSim(t, "lazy")
	out := newCapture()
	cfg := Defaults()
	cfg.Pull.OnDemandIdle = conf.Duration(200 * time.Millisecond)
	cfg.Detect.Health.OfflineAfter = conf.Duration(time.Second)
	in := startIngest(t, cfg, []camera.Camera{{ID: "lazy", URL: sim.URL("lazy"), Transport: "tcp", OnDemand: true}}, out)

	consumers := func() int { st, _ := in.Status("lazy"); return st.Stream.Subscribers }
	waitFor(t, "the detector to watch the camera", func() bool { return consumers() == 1 })
	hub, _, _ := in.Lookup("lazy")
	in.mu.Lock()
	puller := in.cams["lazy"].puller
	in.mu.Unlock()
	waitFor(t, "the puller to look at the detector's subscription", func() bool { return puller.IdleSince(hub.Changed()) })
	if st, _ := in.Status("lazy"); st.Status.State != rtsp.StateIdle {
		t.Fatalf("on-demand camera watched by its detector only is %s, want idle", st.Status.State)
	}
	if _, _, readers := sim.Stats("lazy"); readers != 0 {
		t.Fatalf("%d RTSP sessions at an on-demand camera nobody watches", readers)
	}

	viewer, err := hub.Subscribe(512)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, in, "lazy", rtsp.StateOnline, true)
	in.mu.Lock()
	det := in.cams["lazy"].det
	in.mu.Unlock()
	waitFor(t, "the detector to see the stream", func() bool { return det.Units() > 25 })
	if n := consumers(); n != 2 {
		t.Errorf("%d consumers, want the viewer and the detector", n)
	}

	viewer.Close()
	waitState(t, in, "lazy", rtsp.StateIdle, true)
	past := time.Now().Add(2 * cfg.Detect.Health.OfflineAfter.D())
	waitFor(t, "the detector's checks past offline_after", func() bool { return det.Checked().After(past) })
	out.mu.Lock()
	defer out.mu.Unlock()
	for _, b := range out.batches {
		for _, m := range b {
			e, err := event.Decode(m.Value)
			if err != nil {
				t.Fatalf("undecodable event: %v", err)
			}
			if slices.Contains([]string{"camera.offline", "camera.degraded"}, e.Type) {
				t.Errorf("%s raised for an on-demand camera gone idle", e.Type)
			}
		}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

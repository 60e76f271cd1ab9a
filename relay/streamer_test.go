package relay

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"sharpeye/ingest/simcam"
	"sharpeye/ingest/stream"
)

// loadClip returns a simcam fixture (real H.264, 25 fps, an IDR every 50
// units).
func loadClip(t testing.TB, name string) *simcam.Clip {
	t.Helper()
	c, err := simcam.Load(name)
	if err != nil {
		t.Fatalf("load fixture: %v", err)
	}
	return c
}

// publish hands clip unit i to the hub at its place on a 25 fps timeline.
func publish(hub *stream.Hub, clip *simcam.Clip, i int, pts time.Duration) {
	hub.Publish(pts, time.Now(), slices.Clone(clip.Units[i%len(clip.Units)].NALUs))
}

// recorder is a fake track: it keeps every packet written, and can be
// held to make the streamer fall behind.
type recorder struct {
	mu   sync.Mutex
	pkts []rtp.Packet
	hold chan struct{} // non-nil: writes wait for it to close
	n    chan struct{} // signalled on every write
}

func (r *recorder) write(p *rtp.Packet) error {
	r.mu.Lock()
	hold := r.hold
	r.mu.Unlock()
	if hold != nil {
		<-hold
	}
	r.mu.Lock()
	r.pkts = append(r.pkts, *p)
	r.mu.Unlock()
	select {
	case r.n <- struct{}{}:
	default:
	}
	return nil
}

// units returns the packets grouped into units (by marker bit).
func (r *recorder) units() [][]rtp.Packet {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]rtp.Packet
	var cur []rtp.Packet
	for _, p := range r.pkts {
		cur = append(cur, p)
		if p.Marker {
			out = append(out, cur)
			cur = nil
		}
	}
	return out
}

func (r *recorder) waitUnits(t *testing.T, n int) [][]rtp.Packet {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		if u := r.units(); len(u) >= n {
			return u
		}
		select {
		case <-r.n:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("got %d units, want %d", len(r.units()), n)
		}
	}
}

// isIDRUnit reports whether a unit's packets start an IDR with its
// parameter sets (STAP-A of SPS and PPS, then the IDR).
func firstNALUType(p rtp.Packet) h264.NALUType {
	t := h264.NALUType(p.Payload[0] & 0x1f)
	switch t {
	case h264.NALUTypeSTAPA:
		return h264.NALUType(p.Payload[3] & 0x1f)
	case h264.NALUTypeFUA:
		return h264.NALUType(p.Payload[1] & 0x1f)
	}
	return t
}

func newTestStreamer(t *testing.T, hub *stream.Hub, queue int, rec *recorder) *streamer {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	st := newStreamer(hub, queue, newPackCache(packCacheUnits), m)
	st.codec, st.write, st.c = stream.H264, rec.write, &counters{}
	return st
}

// A viewer that falls behind is dropped by the hub, resubscribed, and
// restarts at the cached keyframe, its RTP timeline going on.
func TestStreamerResubscribesSlowViewer(t *testing.T) {
	clip := loadClip(t, "street-360p")
	hub := stream.NewHub("cam", stream.DefaultHubConfig())
	hub.SetTrack(stream.Track{Codec: stream.H264, SPS: clip.SPS, PPS: clip.PPS})
	const frame = 40 * time.Millisecond
	i := 0
	for ; i < 10; i++ {
		publish(hub, clip, i, time.Duration(i)*frame)
	}

	rec := &recorder{n: make(chan struct{}, 1)}
	st := newTestStreamer(t, hub, 4, rec)
	stop, connected := make(chan struct{}), make(chan struct{})
	close(connected)
	done := make(chan error, 1)
	go func() { done <- st.run(stop, connected) }()
	defer func() {
		close(stop)
		if err := <-done; err != errStopped {
			t.Errorf("run: %v", err)
		}
	}()

	units := rec.waitUnits(t, 10)
	if got := st.c.burstUnits.Load(); got != 10 {
		t.Fatalf("burst of %d units, want the 10 cached", got)
	}
	if ty := firstNALUType(units[0][0]); ty != h264.NALUTypeSPS {
		t.Fatalf("first NAL unit sent is %v, want the SPS before the cached IDR", ty)
	}
	// Compressed: the burst's 9 frame intervals (360 ms of video) span
	// the few ms it takes to send them.
	if span := units[9][0].Timestamp - units[0][0].Timestamp; span == 0 || span > 9*3600/10 {
		t.Fatalf("burst spans %d ticks, want 1..%d", span, 9*3600/10)
	}

	// Hold the track: the streamer blocks on its next write, its queue of
	// 4 fills and the hub drops it.
	rec.mu.Lock()
	hold := make(chan struct{})
	rec.hold = hold
	rec.mu.Unlock()
	for ; i < 30; i++ {
		publish(hub, clip, i, time.Duration(i)*frame)
	}
	if hub.Stats().SlowDrops == 0 {
		// The streamer was not blocked yet on the first publish: it is
		// now, and these overflow its queue.
		for ; i < 40; i++ {
			publish(hub, clip, i, time.Duration(i)*frame)
		}
	}
	if hub.Stats().SlowDrops == 0 {
		t.Fatal("the held viewer was never dropped")
	}
	rec.mu.Lock()
	rec.hold = nil
	rec.mu.Unlock()
	close(hold)

	// After the queued units, the resubscription bursts the cached GOP
	// (units 0..i-1, the clip's first GOP) again.
	deadline := time.Now().Add(20 * time.Second)
	for st.c.burstTotal.Load() < uint64(10+i) {
		if time.Now().After(deadline) {
			t.Fatalf("bursts sent %d units, want %d", st.c.burstTotal.Load(), 10+i)
		}
		<-time.After(5 * time.Millisecond)
	}
	units = rec.units()
	if st.c.resubs.Load() != 1 {
		t.Fatalf("%d resubscriptions, want 1", st.c.resubs.Load())
	}
	keys := 0
	for k, u := range units {
		if firstNALUType(u[0]) == h264.NALUTypeSPS {
			keys++
		}
		if k == 0 {
			continue
		}
		prev := units[k-1]
		if d := int32(u[0].Timestamp - prev[0].Timestamp); d <= 0 {
			t.Fatalf("unit %d: timestamp went from %d to %d", k, prev[0].Timestamp, u[0].Timestamp)
		}
		if u[0].SequenceNumber != prev[len(prev)-1].SequenceNumber+1 {
			t.Fatalf("unit %d: sequence number jumped from %d to %d", k, prev[len(prev)-1].SequenceNumber, u[0].SequenceNumber)
		}
	}
	if keys != 2 {
		t.Fatalf("%d keyframes sent, want 2 (the burst and the re-burst)", keys)
	}
}

// A camera restart (new epoch, PTS from zero) does not move the viewer's
// timeline back.
func TestStreamerCameraRestart(t *testing.T) {
	clip := loadClip(t, "street-360p")
	hub := stream.NewHub("cam", stream.DefaultHubConfig())
	track := stream.Track{Codec: stream.H264, SPS: clip.SPS, PPS: clip.PPS}
	hub.SetTrack(track)
	const frame = 40 * time.Millisecond
	rec := &recorder{n: make(chan struct{}, 1)}
	st := newTestStreamer(t, hub, 100, rec)
	stop, connected := make(chan struct{}), make(chan struct{})
	close(connected)
	done := make(chan error, 1)
	go func() { done <- st.run(stop, connected) }()
	defer func() {
		close(stop)
		<-done
	}()
	// Wait for the subscription, then play 60 units live.
	for hub.Subscribers() == 0 {
		<-time.After(time.Millisecond)
	}
	for i := range 60 {
		publish(hub, clip, i, 10*time.Second+time.Duration(i)*frame)
	}
	rec.waitUnits(t, 60)
	hub.SetTrack(track)
	for i := range 60 {
		publish(hub, clip, i, time.Duration(i)*frame)
	}
	units := rec.waitUnits(t, 120)
	if st.c.restarts.Load() != 1 {
		t.Fatalf("%d restarts seen, want 1", st.c.restarts.Load())
	}
	for k := 1; k < len(units); k++ {
		if d := int32(units[k][0].Timestamp - units[k-1][0].Timestamp); d <= 0 {
			t.Fatalf("unit %d: timestamp went from %d to %d", k, units[k-1][0].Timestamp, units[k][0].Timestamp)
		}
	}
	// Live units keep their real spacing.
	if d := units[70][0].Timestamp - units[69][0].Timestamp; d != 3600 {
		t.Fatalf("live spacing %d ticks, want 3600 (40 ms)", d)
	}
}

func TestTicks(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{{0, 0}, {time.Second, 90000}, {40 * time.Millisecond, 3600}, {100 * 365 * 24 * time.Hour, 100 * 365 * 24 * 3600 * 90000}} {
		if got := ticks(tc.d); got != tc.want {
			t.Errorf("ticks(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	now := time.Date(2026, 5, 13, 10, 0, 0, 0, time.UTC)
	sent := now.Add(-130 * time.Millisecond)
	dlsr := uint32(100 * 65536 / 1000) // held 100 ms by the viewer
	rtt, ok := roundTrip(ntpCompact(sent), dlsr, now)
	if !ok || rtt < 29*time.Millisecond || rtt > 31*time.Millisecond {
		t.Fatalf("rtt %v %v, want 30ms", rtt, ok)
	}
	if _, ok := roundTrip(0, 0, now); ok {
		t.Fatal("no sender report yet: no rtt")
	}
}

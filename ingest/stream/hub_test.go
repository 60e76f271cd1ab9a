package stream

import (
	"bytes"
	"testing"
	"time"
)

// Minimal H.264 NAL units: the first byte carries the type.
var (
	sps   = []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8}
	pps   = []byte{0x68, 0xce, 0x3c, 0x80}
	idr   = []byte{0x65, 0x88, 0x84, 0x00}
	slice = []byte{0x41, 0x9a, 0x00}
)

func newTestHub(t *testing.T) *Hub {
	t.Helper()
	return newTestHubConfig(t, "cam1", DefaultHubConfig())
}

// newTestHubConfig is a hub of camera id with cfg, streaming H.264,
// closed when the test ends.
func newTestHubConfig(t *testing.T, id string, cfg HubConfig) *Hub {
	t.Helper()
	h := NewHub(id, cfg)
	h.SetTrack(Track{Codec: H264, SPS: sps, PPS: pps})
	t.Cleanup(h.Close)
	return h
}

func recv(t *testing.T, s *Sub) *Unit {
	t.Helper()
	select {
	case u, ok := <-s.Units():
		if !ok {
			t.Fatalf("subscription ended: %v", s.Err())
		}
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no unit")
	}
	return nil
}

func TestNewConsumerStartsAtCachedKeyframe(t *testing.T) {
	h := newTestHub(t)
	now := time.Now()
	h.Publish(0, now, [][]byte{slice}) // before any keyframe: not cached
	h.Publish(40*time.Millisecond, now, [][]byte{idr})
	h.Publish(80*time.Millisecond, now, [][]byte{slice})
	h.Publish(120*time.Millisecond, now, [][]byte{slice})

	s, err := h.Subscribe(8)
	if err != nil {
		t.Fatal(err)
	}
	first := recv(t, s)
	if !first.Key || first.PTS != 40*time.Millisecond {
		t.Fatalf("first unit: key=%v pts=%v", first.Key, first.PTS)
	}
	// The camera sent the IDR alone; the hub put SPS and PPS before it.
	if len(first.NALUs) != 3 || !bytes.Equal(first.NALUs[0], sps) || !bytes.Equal(first.NALUs[1], pps) || !bytes.Equal(first.NALUs[2], idr) {
		t.Fatalf("keyframe NAL units: %x", first.NALUs)
	}
	if u := recv(t, s); u.PTS != 80*time.Millisecond {
		t.Fatalf("second: %v", u.PTS)
	}
	recv(t, s)
	h.Publish(160*time.Millisecond, now, [][]byte{slice})
	if u := recv(t, s); u.PTS != 160*time.Millisecond || u.Key {
		t.Fatalf("live unit: %+v", u)
	}
}

func TestInBandParamsNotDuplicatedAndTracked(t *testing.T) {
	h := newTestHub(t)
	newSPS := []byte{0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58}
	s, _ := h.Subscribe(8)
	h.Publish(0, time.Now(), [][]byte{newSPS, pps, idr})
	u := recv(t, s)
	if len(u.NALUs) != 3 || !bytes.Equal(u.NALUs[0], newSPS) {
		t.Fatalf("in-band params changed: %x", u.NALUs)
	}
	tr, _ := h.Track()
	if !bytes.Equal(tr.SPS, newSPS) || tr.Width != 1920 || tr.Height != 1080 {
		t.Fatalf("track after in-band SPS: %dx%d %x", tr.Width, tr.Height, tr.SPS)
	}
}

func TestSlowConsumerDroppedOthersUnaffected(t *testing.T) {
	h := newTestHub(t)
	slow, _ := h.Subscribe(2)
	fast, _ := h.Subscribe(100)
	for i := range 10 {
		h.Publish(time.Duration(i)*40*time.Millisecond, time.Now(), [][]byte{idr})
	}
	select {
	case <-slow.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("slow consumer not dropped")
	}
	if slow.Err() != ErrSlowConsumer {
		t.Fatalf("err = %v", slow.Err())
	}
	for range 10 {
		recv(t, fast)
	}
	if st := h.Stats(); st.SlowDrops != 1 || st.Subscribers != 1 || st.Units != 10 || st.Keyframes != 10 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPublishNeverBlocks(t *testing.T) {
	h := newTestHub(t)
	for range 100 {
		h.Subscribe(1) // nobody reads
	}
	done := make(chan struct{})
	go func() {
		for i := range 1000 {
			h.Publish(time.Duration(i), time.Now(), [][]byte{slice})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on consumers")
	}
}

func TestSessionRestartAndClose(t *testing.T) {
	h := newTestHub(t)
	h.Publish(0, time.Now(), [][]byte{idr})
	changed := h.Changed()
	h.SetTrack(Track{Codec: H264, SPS: sps, PPS: pps})
	select {
	case <-changed:
	default:
		t.Fatal("SetTrack did not signal a change")
	}
	s, _ := h.Subscribe(4)
	select {
	case u := <-s.Units():
		t.Fatalf("GOP of the old session delivered: %+v", u)
	default:
	}
	h.Publish(time.Second, time.Now(), [][]byte{idr})
	if u := recv(t, s); u.Epoch != 2 {
		t.Fatalf("epoch %d", u.Epoch)
	}
	h.Close()
	if _, ok := <-s.Units(); ok {
		t.Fatal("units after close")
	}
	if s.Err() != ErrHubClosed {
		t.Fatalf("err %v", s.Err())
	}
	if _, err := h.Subscribe(1); err != ErrHubClosed {
		t.Fatalf("subscribe after close: %v", err)
	}
}

func TestGOPTooLongNotCached(t *testing.T) {
	h := NewHub("c", HubConfig{MaxGOPUnits: 3, MaxGOPBytes: 1 << 20})
	h.SetTrack(Track{Codec: H264, SPS: sps, PPS: pps})
	for i := range 5 {
		n := slice
		if i == 0 {
			n = idr
		}
		h.Publish(time.Duration(i), time.Now(), [][]byte{n})
	}
	s, _ := h.Subscribe(4)
	select {
	case u := <-s.Units():
		t.Fatalf("a GOP longer than the limit was replayed: %+v", u)
	default:
	}
}

func BenchmarkPublish100Subscribers(b *testing.B) {
	h := NewHub("c", DefaultHubConfig())
	h.SetTrack(Track{Codec: H264, SPS: sps, PPS: pps})
	subs := make([]*Sub, 100)
	for i := range subs {
		subs[i], _ = h.Subscribe(1 << 16)
	}
	nalus := [][]byte{slice}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.Publish(time.Duration(i), time.Time{}, nalus)
		i++
		if i%1000 == 0 {
			for _, s := range subs {
				for len(s.ch) > 0 {
					<-s.ch
				}
			}
		}
	}
}

func TestEmptyNALUnitsIgnored(t *testing.T) {
	h := newTestHub(t)
	s, _ := h.Subscribe(4)
	h.Publish(0, time.Now(), [][]byte{{}, idr, nil})
	h.Publish(0, time.Now(), [][]byte{{}})
	if u := recv(t, s); len(u.NALUs) != 3 || !u.Key { // SPS, PPS, IDR
		t.Fatalf("unit %x", u.NALUs)
	}
	select {
	case u := <-s.Units():
		t.Fatalf("an all-empty unit was published: %+v", u)
	default:
	}
}

func TestRates(t *testing.T) {
	h := newTestHub(t)
	// 25 frames a second over the last three complete seconds, a keyframe
	// every 2 s.
	now := time.Now()
	start := now.Truncate(time.Second).Add(-3 * time.Second)
	for i := range 75 {
		at := start.Add(time.Duration(i) * 40 * time.Millisecond)
		if i%50 == 0 {
			h.Publish(0, at, [][]byte{sps, pps, idr}) // 18 bytes
		} else {
			h.Publish(0, at, [][]byte{slice}) // 3 bytes
		}
	}
	bitrate, fps, keyEvery := h.Rates()
	if fps != 25 || keyEvery != 2*time.Second {
		t.Errorf("fps %v, keyframe interval %v; want 25 and 2s", fps, keyEvery)
	}
	if want := float64(8*(2*18+73*3)) / 3; bitrate != want {
		t.Errorf("bitrate %v, want %v", bitrate, want)
	}
	h.SetTrack(Track{Codec: H264, SPS: sps, PPS: pps})
	if b, f, k := h.Rates(); b != 0 || f != 0 || k != 0 {
		t.Errorf("a new track starts with the old one's rates: %v bit/s, %v fps, keyframe every %v", b, f, k)
	}
}

// A passive consumer gets the stream but does not count as asking for it.
func TestPassiveSubscribers(t *testing.T) {
	h := NewHub("cam", DefaultHubConfig())
	p, err := h.SubscribePassive(8)
	if err != nil {
		t.Fatal(err)
	}
	if n, st := h.Subscribers(), h.Stats(); n != 0 || st.Subscribers != 1 || st.Watching != 0 {
		t.Fatalf("with a passive consumer: Subscribers %d, Stats %d consumers, %d watching; want 0, 1 and 0", n, st.Subscribers, st.Watching)
	}
	v, _ := h.Subscribe(8)
	if n, st := h.Subscribers(), h.Stats(); n != 1 || st.Subscribers != 2 || st.Watching != 1 {
		t.Fatalf("with a viewer besides: Subscribers %d, Stats %d consumers, %d watching; want 1, 2 and 1", n, st.Subscribers, st.Watching)
	}
	v.Close()
	p.Close()
	p.Close()
	if n, all := h.Subscribers(), h.Stats().Subscribers; n != 0 || all != 0 {
		t.Fatalf("after closing: Subscribers %d, Stats %d", n, all)
	}
	p2, _ := h.SubscribePassive(8)
	h.Close()
	if n := h.Subscribers(); n != 0 || p2.Err() != ErrHubClosed {
		t.Fatalf("after Close: Subscribers %d, passive err %v", n, p2.Err())
	}
}

// A new keyframe lets the previous GOP go: the cache keeps no reference to
// its units (a second GOP per camera in memory otherwise).
func TestNewGOPReleasesThePrevious(t *testing.T) {
	h := newTestHub(t)
	now := time.Now()
	h.Publish(0, now, [][]byte{idr})
	for i := 1; i < 10; i++ {
		h.Publish(time.Duration(i)*40*time.Millisecond, now, [][]byte{slice})
	}
	h.Publish(400*time.Millisecond, now, [][]byte{idr})
	h.Publish(440*time.Millisecond, now, [][]byte{slice})
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.gop) != 2 {
		t.Fatalf("cached GOP of %d units, want 2", len(h.gop))
	}
	for i, u := range h.gop[len(h.gop):cap(h.gop)] {
		if u != nil {
			t.Fatalf("unit %d of the previous GOP still referenced by the cache", len(h.gop)+i)
		}
	}
}

// Keyframe hands out the cached keyframe without subscribing: nobody is
// told (an on-demand camera stays as it is), nothing counts as watching,
// and the unit stays intact after the hub has let its GOP go.
func TestKeyframeIsNotWatching(t *testing.T) {
	h := newTestHub(t)
	if _, ok := h.Keyframe(); ok {
		t.Fatal("a keyframe before any was published")
	}
	now := time.Now()
	buf := NewBuffer(len(idr))
	copy(buf.Bytes(), idr)
	h.PublishBuffer(0, now, [][]byte{buf.Bytes()}, buf)
	h.Publish(40*time.Millisecond, now, [][]byte{slice})

	changed := h.Changed()
	watched := h.watchedAt.Load()
	u, ok := h.Keyframe()
	if !ok || !u.Key || len(u.NALUs) != 3 || !bytes.Equal(u.NALUs[2], idr) {
		t.Fatalf("keyframe %+v, %v", u, ok)
	}
	select {
	case <-changed:
		t.Fatal("taking the keyframe told the hub's watchers of a change")
	default:
	}
	if st := h.Stats(); h.Subscribers() != 0 || st.Subscribers != 0 || st.Watching != 0 || h.watchedAt.Load() != watched {
		t.Fatalf("taking the keyframe counted as a consumer: %+v", st)
	}

	// A new GOP: the previous one is released, but not the unit handed out
	// (released buffers are overwritten in tests).
	h.Publish(80*time.Millisecond, now, [][]byte{idr})
	if !bytes.Equal(u.NALUs[2], idr) {
		t.Fatalf("the keyframe handed out was released with its GOP: %x", u.NALUs[2])
	}
}

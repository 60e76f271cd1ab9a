package detect

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"testing"

	"sharpeye/ingest/stream"
)

func TestIVFFrame(t *testing.T) {
	nalus := [][]byte{{0x09, 0xf0}, {0x67, 1, 2}, {}, {0x68, 3}, {0x65, 4, 5, 6}}
	got := ivfFrame([]byte("x"), stream.H264, nalus, 42)
	want := []byte{0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 6}
	if got[0] != 'x' || binary.LittleEndian.Uint32(got[1:]) != uint32(len(want)) ||
		binary.LittleEndian.Uint64(got[5:]) != 42 || !bytes.Equal(got[13:], want) {
		t.Fatalf("ivfFrame = % x", got)
	}
	if h := ivfHeader(stream.H265); len(h) != 32 || string(h[:4]) != "DKIF" || string(h[8:12]) != "HEVC" {
		t.Fatalf("header % x", h)
	}
}

func TestDecodable(t *testing.T) {
	clip := loadClip(t, "normal")
	key := clip.Units[0].NALUs
	got, ok := decodable(stream.H264, key)
	if !ok || len(got) != 3 {
		t.Fatalf("decodable(the fixture's first keyframe) = %d NAL units, %v; want SPS, PPS, IDR", len(got), ok)
	}
	for _, tc := range []struct {
		name  string
		nalus [][]byte
	}{
		{"no SPS", [][]byte{clip.PPS, {0x65, 1}}},
		{"no PPS", [][]byte{clip.SPS, {0x65, 1}}},
		{"no IDR", [][]byte{clip.SPS, clip.PPS, {0x41, 1}}},
		{"garbage SPS", [][]byte{{0x67, 1, 2, 3}, clip.PPS, {0x65, 1}}},
		{"empty", nil},
		{"empty NAL units", [][]byte{{}, {}}},
	} {
		if _, ok := decodable(stream.H264, tc.nalus); ok {
			t.Errorf("%s: decodable", tc.name)
		}
	}
	if _, ok := decodable(stream.H265, key); ok {
		t.Error("an H.264 keyframe is decodable as H.265")
	}
}

func TestShowinfoPTS(t *testing.T) {
	for _, tc := range []struct {
		line string
		pts  int64
		ok   bool
	}{
		{"[Parsed_showinfo_2 @ 0x55d0c1a3e0c0] n:   0 pts:      7 pts_time:0.007   pos: 32 fmt:yuv420p\n", 7, true},
		{"[Parsed_showinfo_2 @ 0x1] n:12345 pts:123456789 pts_time:123456.789\n", 123456789, true},
		{"[Parsed_showinfo_2 @ 0x1] config in time_base: 1/1000, frame_rate: 1000/1\n", 0, false},
		{"[Parsed_showinfo_2 @ 0x1]   side data - User Data Unregistered:\n", 0, false},
		{"[h264 @ 0x1] n: 1 pts: 2 \n", 0, false},
		{"[Parsed_showinfo_2 @ 0x1] n: 1 pts:x3 y\n", 0, false},
		{"[Parsed_showinfo_2 @ 0x1] n: 1 pts: 5", 0, false},
	} {
		pts, ok := showinfoPTS([]byte(tc.line))
		if pts != tc.pts || ok != tc.ok {
			t.Errorf("showinfoPTS(%q) = %d, %v", tc.line, pts, ok)
		}
	}
}

func FuzzShowinfoPTS(f *testing.F) {
	f.Add([]byte("[Parsed_showinfo_2 @ 0x1] n:   0 pts:      7 pts_time:0.007\n"))
	f.Add([]byte("[Parsed_showinfo_2 @ 0x1] n: pts: "))
	f.Fuzz(func(t *testing.T, line []byte) { showinfoPTS(line) })
}

func FuzzDecodable(f *testing.F) {
	f.Add([]byte{0x67, 0x4d, 0x40, 0x1f}, []byte{0x68, 0xee}, []byte{0x65, 0x88})
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		decodable(stream.H264, [][]byte{a, b, c})
		decodable(stream.H265, [][]byte{a, b, c})
	})
}

// Every goroutine a manager and its detectors start is gone once they
// return.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		cfg := testConfig()
		h := newHarness(t, cfg, harnessOpts{run: true, blobs: true})
		c := loadClip(t, "motion")
		h.start(c)
		h.play(c)
		h.settle(units(c))
		h.stop()
	}()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	if kids := childProcesses(t); len(kids) > 0 {
		t.Fatalf("child processes left: %v", kids)
	}
}

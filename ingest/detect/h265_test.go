package detect

import (
	"bytes"
	"image/jpeg"
	"testing"

	"sharpeye/ingest/simcam"
	"sharpeye/ingest/stream"
)

// The keyframe decoders take H.265 too: a snapshot of an H.265 camera
// (VPS, SPS, PPS and an IDR, sent to ffmpeg's hevc decoder in IVF) is a
// picture of the camera's size.
func TestSnapshotH265(t *testing.T) {
	requireFFmpeg(t)
	clip, err := simcam.Load("street-360p-h265")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Motion.Enabled, cfg.Quality.Enabled = false, false
	h := newHarness(t, cfg, harnessOpts{run: true})
	h.hub.SetTrack(stream.Track{Codec: stream.H265, VPS: clip.VPS, SPS: clip.SPS, PPS: clip.PPS})
	h.play(clip)
	jp, err := h.d.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(jp))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 360 {
		t.Fatalf("snapshot of %dx%d, want 640x360", b.Dx(), b.Dy())
	}
	if f := h.m.dec.failed.Load(); f != 0 {
		t.Fatalf("%d keyframes failed to decode", f)
	}
}

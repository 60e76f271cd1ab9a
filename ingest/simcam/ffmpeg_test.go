package simcam

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"sharpeye/deploy/testpeer"
)

// TestFFmpegReads checks that a reader other than gortsplib, ffmpeg, pulls
// and decodes a camera, H.264 and H.265, over TCP and UDP, with
// authentication.
func TestFFmpegReads(t *testing.T) {
	testpeer.Require(t, testpeer.FFmpeg)
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal(err)
	}
	checkGoroutines(t)
	s := startServer(t, Config{UDPRTPAddress: "127.0.0.1:0", Username: "admin", Password: "hik12345"})
	for _, tc := range []struct{ fixture, transport string }{
		{"square-1080p", "tcp"},
		{"square-1080p", "udp"},
		{"street-360p-h265", "tcp"},
		{"street-360p-h265", "udp"},
	} {
		clip, transport := loadClip(t, tc.fixture), tc.transport
		t.Run(tc.fixture+"-"+transport, func(t *testing.T) {
			cam := NewCamera(tc.fixture+"-"+transport, clip)
			cam.Delay = time.Second // let ffmpeg join before the first IDR
			addCamera(t, s, cam)

			ctx, cancel := context.WithTimeout(t.Context(), guard)
			defer cancel()
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-nostdin", "-v", "error",
				"-rtsp_transport", transport, "-i", s.URL(cam.Path),
				"-frames:v", "50", "-f", "framemd5", "-")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("ffmpeg: %v\n%s", err, stderr.Bytes())
			}
			frames := 0
			for line := range strings.Lines(stdout.String()) {
				if !strings.HasPrefix(line, "#") {
					frames++
				}
			}
			if stderr.Len() > 0 {
				t.Logf("ffmpeg: %s", stderr.Bytes())
			}
			if frames != 50 {
				t.Errorf("ffmpeg decoded %d frames, want 50\n%s", frames, stderr.Bytes())
			}
		})
	}
}

package rtsp_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"

	"sharpeye/deploy/testpeer"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/simcam"
)

// publishServer is a camera that ffmpeg publishes into (ANNOUNCE/RECORD)
// and that serves what it gets to readers, as an NVR or a media server
// in front of real cameras would.
type publishServer struct {
	srv    *gortsplib.Server
	mu     sync.Mutex
	stream *gortsplib.ServerStream
	pub    *gortsplib.ServerSession
	ready  chan struct{}
}

func (p *publishServer) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stream != nil {
		p.stream.Close()
	}
	p.stream = &gortsplib.ServerStream{Server: p.srv, Desc: ctx.Description}
	if err := p.stream.Initialize(); err != nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, nil
	}
	p.pub = ctx.Session
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (p *publishServer) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ctx.Session == p.pub {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	if p.stream == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, p.stream, nil
}

func (p *publishServer) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stream == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, p.stream, nil
}

func (p *publishServer) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (p *publishServer) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	ctx.Session.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
		p.mu.Lock()
		st := p.stream
		p.mu.Unlock()
		st.WritePacketRTP(m, pkt)
	})
	close(p.ready)
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func requireFFmpeg(t *testing.T) string {
	t.Helper()
	testpeer.Require(t, testpeer.FFmpeg)
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatalf("ffmpeg switched on but not installed: %v", err)
	}
	return bin
}

// TestFFmpegPublishesTheCamera: ffmpeg is the camera's encoder, publishing
// to a media server; Sharpeye pulls from there.
func TestFFmpegPublishesTheCamera(t *testing.T) {
	ffmpeg := requireFFmpeg(t)
	ps := &publishServer{ready: make(chan struct{})}
	ps.srv = &gortsplib.Server{Handler: ps, RTSPAddress: "127.0.0.1:0"}
	var addr string
	ps.srv.Listen = listenCapture(&addr)
	if err := ps.srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer ps.srv.Close()

	fixture, _ := filepath.Abs("../simcam/fixtures/street-360p.h264")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
		"-f", "h264", "-framerate", "25", "-i", fixture, "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", "rtsp://"+addr+"/live")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	select {
	case <-ps.ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("ffmpeg did not publish: %s", stderr.String())
	}

	p, hub := pull(t, camera.Camera{ID: "live", URL: "rtsp://" + addr + "/live", Transport: "tcp"})
	sub, _ := hub.Subscribe(256)
	defer sub.Close()
	for {
		if u := nextUnit(t, sub); u.Key {
			if !hasParams(u) {
				t.Fatal("keyframe without SPS/PPS")
			}
			break
		}
	}
	if st := p.Status(); st.State != rtsp.StateOnline || st.Width != 640 || st.Height != 360 {
		t.Fatalf("status %+v", st)
	}
}

// TestFFmpegReadsTheReserve: ffmpeg pulls a camera from Sharpeye's RTSP
// re-serve and decodes 50 frames of the camera's resolution.
func TestFFmpegReadsTheReserve(t *testing.T) {
	ffmpeg := requireFFmpeg(t)
	cams := camServer(t, simcam.Config{})
	street := clip(t, "gate-720p.h264")
	cams.Add(simcam.Camera{Path: "gate", Clip: street, ParamsInSDP: true})
	_, hub := pull(t, camera.Camera{ID: "gate", URL: cams.URL("gate"), Transport: "tcp"})
	s := reserve(t, hubs{"gate": hub})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
		"-i", "rtsp://viewer:sey_good@"+s.Addr()+"/gate", "-frames:v", "50", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, stderr.String())
	}
	if want := 50 * street.Width * street.Height; stdout.Len() != want {
		t.Fatalf("ffmpeg decoded %d bytes, want 50 frames of %dx%d = %d", stdout.Len(), street.Width, street.Height, want)
	}
	if os.Getenv("SHARPEYE_TEST_ARTIFACTS") != "" {
		os.WriteFile(filepath.Join(os.Getenv("SHARPEYE_TEST_ARTIFACTS"), "reserve-50-frames.gray"), stdout.Bytes(), 0o644)
	}
}

// listenCapture makes a gortsplib server's listener report its address.
func listenCapture(addr *string) func(network, address string) (net.Listener, error) {
	return func(network, address string) (net.Listener, error) {
		ln, err := net.Listen(network, address)
		if err == nil {
			*addr = ln.Addr().String()
		}
		return ln, err
	}
}

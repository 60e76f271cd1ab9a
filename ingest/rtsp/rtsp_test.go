package rtsp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"sharpeye/configs/conf"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/simcam"
	"sharpeye/ingest/stream"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func testPullConfig() rtsp.PullConfig {
	c := rtsp.DefaultPullConfig()
	c.ReadTimeout = conf.Duration(2 * time.Second)
	c.BackoffMin = conf.Duration(50 * time.Millisecond)
	c.BackoffMax = conf.Duration(200 * time.Millisecond)
	c.OnDemandIdle = conf.Duration(200 * time.Millisecond)
	return c
}

// camServer starts simulated cameras (UDP enabled) for one test.
func camServer(t *testing.T, cfg simcam.Config) *simcam.Server {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	s, err := simcam.NewServer(cfg, discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func clip(t *testing.T, name string) *simcam.Clip {
	t.Helper()
	c, err := simcam.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pull runs a puller for cam until the test ends.
func pull(t *testing.T, cam camera.Camera) (*rtsp.Puller, *stream.Hub) {
	t.Helper()
	return pullWith(t, cam, testPullConfig())
}

// pullWith is pull with cfg.
func pullWith(t *testing.T, cam camera.Camera, cfg rtsp.PullConfig) (*rtsp.Puller, *stream.Hub) {
	t.Helper()
	cam.Normalize()
	hub := stream.NewHub(cam.ID, stream.DefaultHubConfig())
	p := rtsp.NewPuller(cam, hub, cfg, discard)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; hub.Close() })
	return p, hub
}

// waitFor polls cond until it holds; the deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func nextUnit(t *testing.T, s *stream.Sub) *stream.Unit {
	t.Helper()
	select {
	case u, ok := <-s.Units():
		if !ok {
			t.Fatalf("subscription ended: %v", s.Err())
		}
		return u
	case <-time.After(20 * time.Second):
		t.Fatal("no unit from the camera")
	}
	return nil
}

func hasParams(u *stream.Unit) bool {
	var sps, pps bool
	for _, n := range u.NALUs {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = true
		case h264.NALUTypePPS:
			pps = true
		}
	}
	return sps && pps
}

func TestPullTransports(t *testing.T) {
	cams := camServer(t, simcam.Config{UDPRTPAddress: "127.0.0.1:0"})
	street := clip(t, "street-360p.h264")
	if err := cams.Add(simcam.Camera{Path: "street", Clip: street, ParamsInSDP: true}); err != nil {
		t.Fatal(err)
	}
	// An interval of its own tells this test's reactor from others'.
	const interval = 3 * time.Millisecond
	rtsp.UseReactorFrom(t, 1)
	for _, tc := range []struct {
		transport string
		interval  time.Duration
	}{{camera.TransportTCP, interval}, {camera.TransportTCP, 0}, {camera.TransportUDP, interval}, {camera.TransportAuto, interval}} {
		transport := tc.transport
		t.Run(fmt.Sprintf("%s/read_interval=%s", transport, tc.interval), func(t *testing.T) {
			cfg := testPullConfig()
			cfg.ReadInterval = conf.Duration(tc.interval)
			p, hub := pullWith(t, camera.Camera{ID: "street", URL: cams.URL("street"), Transport: transport}, cfg)
			sub, err := hub.Subscribe(64)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			var first *stream.Unit
			for first == nil {
				if u := nextUnit(t, sub); u.Key {
					first = u
				}
			}
			if !hasParams(first) {
				t.Fatal("keyframe without SPS/PPS")
			}
			for range 10 {
				nextUnit(t, sub)
			}
			st := p.Status()
			want := transport
			if want == camera.TransportAuto {
				want = camera.TransportTCP
			}
			if st.State != rtsp.StateOnline || st.Transport != want || st.Codec != "H264" || st.Width != street.Width || st.Height != street.Height || st.PacketsReceived == 0 {
				t.Fatalf("status %+v", st)
			}
			// Over TCP the packets come through the tap, not gortsplib's
			// reader.
			if tapped := p.Tapped(); tapped != (want == camera.TransportTCP) {
				t.Fatalf("over %s the tap is used: %v", transport, tapped)
			}
			// With an interval, a reactor reads TCP (on Linux).
			wantReactor := 0
			if want == camera.TransportTCP && tc.interval > 0 {
				wantReactor = 1
			}
			if n := rtsp.ReactorConns(interval); n >= 0 && n != wantReactor {
				t.Fatalf("the reactor reads %d connections, want %d", n, wantReactor)
			}
		})
	}
}

// A camera that refuses RTP over TCP: auto pulls it over UDP, and keeps
// doing so after a reconnection (without asking for TCP again); a puller
// told tcp says why it cannot.
func TestPullAutoFallsBackToUDP(t *testing.T) {
	for _, refusal := range []base.StatusCode{base.StatusUnsupportedTransport, base.StatusBadRequest} {
		t.Run(strconv.Itoa(int(refusal)), func(t *testing.T) {
			cams := camServer(t, simcam.Config{UDPRTPAddress: "127.0.0.1:0", RefuseTCP: refusal})
			street := clip(t, "street-360p.h264")
			if err := cams.Add(simcam.Camera{Path: "street", Clip: street, ParamsInSDP: true}); err != nil {
				t.Fatal(err)
			}
			p, hub := pull(t, camera.Camera{ID: "street", URL: cams.URL("street"), Transport: camera.TransportAuto})
			sub, err := hub.Subscribe(512)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			nextUnit(t, sub)
			st := p.Status()
			if st.State != rtsp.StateOnline || st.Transport != camera.TransportUDP || p.Tapped() || st.Reconnects != 0 || cams.RefusedTCP() != 1 {
				t.Fatalf("status %+v, tapped %v, TCP refused %d times", st, p.Tapped(), cams.RefusedTCP())
			}
			// reconnect restarts the camera and waits for the puller's
			// next session; refused is how many refusals of TCP it has
			// seen by then, all sessions together.
			reconnect := func(when string, refused int64) {
				before := nextUnit(t, sub)
				cams.Remove("street")
				waitFor(t, "offline", func() bool { return p.Status().State != rtsp.StateOnline })
				cams.Add(simcam.Camera{Path: "street", Clip: street, ParamsInSDP: true})
				for u := nextUnit(t, sub); u.Epoch == before.Epoch; u = nextUnit(t, sub) {
				}
				if st := p.Status(); st.Transport != camera.TransportUDP || cams.RefusedTCP() != refused {
					t.Fatalf("%s: status %+v, TCP refused %d times, want %d", when, st, cams.RefusedTCP(), refused)
				}
			}
			reconnect("after reconnecting", 1) // straight to UDP
			// Once tcpRetryAfter has passed, the next session asks for TCP
			// again (refused again: UDP once more).
			p.AgeTCPRefusal()
			reconnect("after the retry time", 2)

			tcp, _ := pull(t, camera.Camera{ID: "street-tcp", URL: cams.URL("street"), Transport: camera.TransportTCP})
			waitFor(t, "an error", func() bool { return tcp.Status().State == rtsp.StateError })
			if r := tcp.Status().Reason; !strings.Contains(r, "the camera refused RTSP over TCP ("+strconv.Itoa(int(refusal))) || !strings.Contains(r, "set its transport to auto or udp") {
				t.Fatalf("reason %q", r)
			}
		})
	}
}

func TestPullParamsOnlyInSDP(t *testing.T) {
	cams := camServer(t, simcam.Config{})
	cams.Add(simcam.Camera{Path: "bare", Clip: clip(t, "street-360p.h264").StripParams(), ParamsInSDP: true})
	_, hub := pull(t, camera.Camera{ID: "bare", URL: cams.URL("bare"), Transport: "tcp"})
	sub, _ := hub.Subscribe(64)
	defer sub.Close()
	for {
		u := nextUnit(t, sub)
		if !u.Key {
			continue
		}
		if !hasParams(u) {
			t.Fatal("the hub did not put the SDP's SPS/PPS before the keyframe")
		}
		return
	}
}

// The camera goes away and comes back: the puller reconnects, the viewer
// resumes at a keyframe. Through a reactor, which sees the camera's FIN.
func TestPullReconnects(t *testing.T) {
	rtsp.UseReactorFrom(t, 1)
	cams := camServer(t, simcam.Config{})
	street := clip(t, "street-360p.h264")
	cams.Add(simcam.Camera{Path: "cam", Clip: street, ParamsInSDP: true})
	p, hub := pull(t, camera.Camera{ID: "cam", URL: cams.URL("cam"), Transport: "tcp"})
	sub, _ := hub.Subscribe(512)
	defer sub.Close()
	first := nextUnit(t, sub)

	cams.Remove("cam")
	waitFor(t, "offline", func() bool { return p.Status().State == rtsp.StateOffline || p.Status().State == rtsp.StateError })
	cams.Add(simcam.Camera{Path: "cam", Clip: street, ParamsInSDP: true})
	for {
		u := nextUnit(t, sub)
		if u.Epoch != first.Epoch {
			if !u.Key {
				t.Fatal("after reconnect the viewer resumed on a non-keyframe")
			}
			break
		}
	}
	if st := p.Status(); st.State != rtsp.StateOnline || st.Reconnects == 0 {
		t.Fatalf("status after reconnect: %+v", st)
	}
}

func TestPullAuthentication(t *testing.T) {
	cams := camServer(t, simcam.Config{Username: "admin", Password: "hik12345"})
	cams.Add(simcam.Camera{Path: "door", Clip: clip(t, "street-360p.h264"), ParamsInSDP: true})
	u, _ := url.Parse(cams.URL("door"))
	u.User = nil
	bare := u.String()

	p, _ := pull(t, camera.Camera{ID: "wrong", URL: bare, Username: "admin", Password: "nope", Transport: "tcp"})
	waitFor(t, "an authentication error", func() bool { return p.Status().State == rtsp.StateError })
	st := p.Status()
	if !strings.Contains(st.Reason, "authentication") || strings.Contains(st.Reason, "nope") {
		t.Fatalf("reason %q", st.Reason)
	}
	p, _ = pull(t, camera.Camera{ID: "right", URL: bare, Username: "admin", Password: "hik12345", Transport: "tcp"})
	waitFor(t, "online", func() bool { return p.Status().State == rtsp.StateOnline })
	// Credentials in the URL work too, and never show in the status.
	withCreds := strings.Replace(bare, "rtsp://", "rtsp://admin:hik12345@", 1)
	p, _ = pull(t, camera.Camera{ID: "url", URL: withCreds, Transport: "tcp"})
	waitFor(t, "online", func() bool { return p.Status().State == rtsp.StateOnline })
}

func TestPullUnreachableCostsOnlyATimer(t *testing.T) {
	p, _ := pull(t, camera.Camera{ID: "dead", URL: "rtsp://127.0.0.1:1/none", Transport: "tcp"})
	waitFor(t, "offline", func() bool { return p.Status().State == rtsp.StateOffline })
	waitFor(t, "retries", func() bool { return p.Status().Reconnects >= 2 })
}

func TestPullGarbageDoesNotStall(t *testing.T) {
	rtsp.UseReactorFrom(t, 1)
	cams := camServer(t, simcam.Config{})
	cams.Add(simcam.Camera{Path: "junk", Clip: clip(t, "street-360p.h264"), ParamsInSDP: true})
	p, hub := pull(t, camera.Camera{ID: "junk", URL: cams.URL("junk"), Transport: "tcp"})
	sub, _ := hub.Subscribe(1024)
	defer sub.Close()
	nextUnit(t, sub)
	cams.SetGarbage("junk", true)
	before := p.Status().PacketsReceived
	waitFor(t, "garbage packets", func() bool { return p.Status().PacketsReceived > before+100 })
	cams.SetGarbage("junk", false)
	for {
		if u := nextUnit(t, sub); u.Key && hasParams(u) {
			break
		}
	}
}

func TestOnDemandStartsAndStops(t *testing.T) {
	cams := camServer(t, simcam.Config{})
	cams.Add(simcam.Camera{Path: "od", Clip: clip(t, "street-360p.h264"), ParamsInSDP: true})
	p, hub := pull(t, camera.Camera{ID: "od", URL: cams.URL("od"), Transport: "tcp", OnDemand: true})
	if st := p.Status(); st.State != rtsp.StateIdle {
		t.Fatalf("on-demand camera not idle: %+v", st)
	}
	sub, _ := hub.Subscribe(64)
	nextUnit(t, sub)
	if _, _, readers := cams.Stats("od"); readers != 1 {
		t.Fatalf("%d RTSP sessions at the camera", readers)
	}
	sub.Close()
	waitFor(t, "idle again", func() bool { return p.Status().State == rtsp.StateIdle })
	waitFor(t, "session closed at the camera", func() bool { _, _, r := cams.Stats("od"); return r == 0 })
}

// TestOneSessionPerCamera: many consumers, one RTSP session at the camera.
func TestOneSessionPerCamera(t *testing.T) {
	cams := camServer(t, simcam.Config{})
	cams.Add(simcam.Camera{Path: "c", Clip: clip(t, "street-360p.h264"), ParamsInSDP: true})
	_, hub := pull(t, camera.Camera{ID: "c", URL: cams.URL("c"), Transport: "tcp"})
	var subs []*stream.Sub
	for range 20 {
		s, _ := hub.Subscribe(256)
		subs = append(subs, s)
	}
	for _, s := range subs {
		nextUnit(t, s)
	}
	if _, _, readers := cams.Stats("c"); readers != 1 {
		t.Fatalf("%d sessions at the camera for 20 consumers", readers)
	}
}

// fakeAuth admits user "viewer" with token "sey_good" to region "north".
type fakeAuth struct{}

func (fakeAuth) CheckRTSP(_ context.Context, user, pass, _ string) (func(string) bool, error) {
	if pass != "sey_good" {
		return nil, errors.New("bad token")
	}
	return func(region string) bool { return region == "north" || strings.HasPrefix(region, "north/") }, nil
}

type hubs map[string]*stream.Hub

func (h hubs) Lookup(id string) (*stream.Hub, string, bool) {
	hub, ok := h[id]
	region := "north/a"
	if id == "southcam" {
		region = "south"
	}
	return hub, region, ok
}

// reserve starts a re-serve of the given hubs.
func reserve(t *testing.T, src hubs) *rtsp.Server {
	t.Helper()
	cfg := rtsp.DefaultServeConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Linger = conf.Duration(50 * time.Millisecond)
	cfg.TrackWait = conf.Duration(3 * time.Second)
	s := rtsp.NewServer(cfg, src, fakeAuth{}, discard)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s
}

// tcpClient is a gortsplib client over TCP for rawURL, not started.
func tcpClient(t *testing.T, rawURL string) (*gortsplib.Client, *base.URL) {
	t.Helper()
	u, err := base.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.TransportTCP
	return &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &tcp, ReadTimeout: 5 * time.Second}, u
}

// readKeyframe plays url with a gortsplib client and returns the first
// access unit and the SDP's H.264 format.
func readKeyframe(t *testing.T, rawURL string) ([][]byte, *format.H264, error) {
	return readFirstUnit(t, rawURL, "H.264", func(f *format.H264) (func(*rtp.Packet) ([][]byte, error), error) {
		d, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		return d.Decode, nil
	}, rtph264.ErrMorePacketsNeeded, rtph264.ErrNonStartingPacketAndNoPrevious)
}

// readFirstUnit plays rawURL with a gortsplib client over TCP and returns
// the first access unit of its video format F (named codec in failures),
// depacketized by the decoder newDecoder makes; the decoder's errors in
// ignore are the ones of a unit still incomplete.
func readFirstUnit[F interface {
	*format.H264 | *format.H265
	format.Format
}](t *testing.T, rawURL, codec string, newDecoder func(F) (func(*rtp.Packet) ([][]byte, error), error), ignore ...error) ([][]byte, F, error) {
	t.Helper()
	c, u := tcpClient(t, rawURL)
	if err := c.Start2(); err != nil {
		return nil, nil, err
	}
	defer c.Close()
	desc, _, err := c.Describe(u)
	if err != nil {
		return nil, nil, err
	}
	var forma F
	medi := desc.FindFormat(&forma)
	if medi == nil {
		t.Fatalf("no %s in the re-serve's SDP", codec)
	}
	if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
		return nil, nil, err
	}
	decode, err := newDecoder(forma)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan [][]byte, 1)
	c.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) {
		au, err := decode(pkt)
		if err != nil {
			if !slices.ContainsFunc(ignore, func(e error) bool { return errors.Is(err, e) }) {
				t.Errorf("decode: %v", err)
			}
			return
		}
		select {
		case got <- au:
		default:
		}
	})
	if _, err := c.Play(nil); err != nil {
		return nil, nil, err
	}
	select {
	case au := <-got:
		return au, forma, nil
	case <-time.After(15 * time.Second):
		return nil, nil, errors.New("no access unit from the re-serve")
	}
}

func TestReserve(t *testing.T) {
	cams := camServer(t, simcam.Config{})
	street := clip(t, "street-360p.h264")
	cams.Add(simcam.Camera{Path: "street", Clip: street, ParamsInSDP: true})
	_, hub := pull(t, camera.Camera{ID: "street", URL: cams.URL("street"), Transport: "tcp"})
	south := stream.NewHub("southcam", stream.DefaultHubConfig())
	s := reserve(t, hubs{"street": hub, "southcam": south})

	au, forma, err := readKeyframe(t, "rtsp://viewer:sey_good@"+s.Addr()+"/street")
	if err != nil {
		t.Fatal(err)
	}
	if !h264.IsRandomAccess(au) {
		t.Fatal("the re-serve's first access unit is not a keyframe")
	}
	var sps h264.SPS
	if err := sps.Unmarshal(forma.SPS); err != nil || sps.Width() != street.Width || sps.Height() != street.Height {
		t.Fatalf("SDP SPS: %v %dx%d", err, sps.Width(), sps.Height())
	}
	if !bytes.Equal(au[0], forma.SPS) {
		t.Fatal("keyframe does not start with the SPS")
	}

	for _, tc := range []struct{ name, url, want string }{
		{"no credentials", "rtsp://" + s.Addr() + "/street", "401"},
		{"wrong token", "rtsp://viewer:sey_bad@" + s.Addr() + "/street", "401"},
		{"unknown camera", "rtsp://viewer:sey_good@" + s.Addr() + "/nothing", "404"},
		{"outside the region", "rtsp://viewer:sey_good@" + s.Addr() + "/southcam", "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readKeyframe(t, tc.url)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
}

// TestReserveEachReaderStartsAtAKeyframe: a reader that joins while
// another plays starts at the cached keyframe too, not wherever the
// other reader is in the group of pictures.
func TestReserveEachReaderStartsAtAKeyframe(t *testing.T) {
	cams := camServer(t, simcam.Config{})
	cams.Add(simcam.Camera{Path: "street", Clip: clip(t, "street-360p.h264"), ParamsInSDP: true})
	_, hub := pull(t, camera.Camera{ID: "street", URL: cams.URL("street"), Transport: "tcp"})
	s := reserve(t, hubs{"street": hub})
	rawURL := "rtsp://viewer:sey_good@" + s.Addr() + "/street"

	// The first reader plays on, past the cached keyframe.
	first, u := tcpClient(t, rawURL)
	if err := first.Start2(); err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	desc, _, err := first.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	var packets atomic.Int64
	first.OnPacketRTPAny(func(*description.Media, format.Format, *rtp.Packet) { packets.Add(1) })
	if _, err := first.Play(nil); err != nil {
		t.Fatal(err)
	}
	units := hub.Stats().Units
	waitFor(t, "three new units at the hub after the first reader began", func() bool { return hub.Stats().Units >= units+3 })
	if packets.Load() == 0 {
		t.Fatal("the first reader got nothing")
	}

	au, _, err := readKeyframe(t, rawURL)
	if err != nil {
		t.Fatal(err)
	}
	if !h264.IsRandomAccess(au) {
		t.Fatal("a reader joining another's stream started in the middle of a group of pictures")
	}
}

// TestReserveNoGoroutineLeak: 100 readers come and go.
func TestReserveNoGoroutineLeak(t *testing.T) {
	cams := camServer(t, simcam.Config{})
	cams.Add(simcam.Camera{Path: "c", Clip: clip(t, "street-360p.h264"), ParamsInSDP: true})
	_, hub := pull(t, camera.Camera{ID: "c", URL: cams.URL("c"), Transport: "tcp"})
	s := reserve(t, hubs{"c": hub})
	if _, _, err := readKeyframe(t, "rtsp://v:sey_good@"+s.Addr()+"/c"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first feed to linger out", func() bool { return hub.Subscribers() == 0 })
	base := runtime.NumGoroutine()
	for range 100 {
		if _, _, err := readKeyframe(t, "rtsp://v:sey_good@"+s.Addr()+"/c"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "goroutines back to their number", func() bool { return runtime.NumGoroutine() <= base+2 && hub.Subscribers() == 0 })
}

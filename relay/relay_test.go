package relay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"sharpeye/configs/conf"
	"sharpeye/console/api"
	"sharpeye/console/auth"
	"sharpeye/ingest/simcam"
	"sharpeye/ingest/stream"
)

// Tokens of the fake authenticator.
const (
	adminToken = "admin-token" // admin, whole jurisdiction
	aliceToken = "alice-token" // commander in county/east
	bobToken   = "bob-token"   // commander in county/west
)

var principals = map[string]*auth.Principal{
	adminToken: {UserID: "u-admin", Username: "admin", Role: auth.Admin, Via: "token"},
	aliceToken: {UserID: "u-alice", Username: "alice", Role: auth.Commander, Region: "county/east", Via: "token"},
	bobToken:   {UserID: "u-bob", Username: "bob", Role: auth.Commander, Region: "county/west", Via: "token"},
}

// sessionCookie carries a token of principals for the play page.
const sessionCookie = "sharpeye_session"

// fakeAuth lets in tokens of principals, as bearer tokens or cookies.
type fakeAuth struct{}

func (fakeAuth) Authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if c, err := r.Cookie(sessionCookie); err == nil && !ok {
		tok, ok = c.Value, true
	}
	p := principals[tok]
	if !ok || p == nil {
		return nil, api.ErrUnauthenticated
	}
	return r.WithContext(auth.WithPrincipal(r.Context(), p)), nil
}

// fakeCams is a camera registry.
type fakeCams struct {
	mu   sync.Mutex
	cams map[string]fakeCam
}

type fakeCam struct {
	hub    *stream.Hub
	region string
}

func (c *fakeCams) Lookup(id string) (*stream.Hub, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cam, ok := c.cams[id]
	return cam.hub, cam.region, ok
}

func (c *fakeCams) add(id, region string) *stream.Hub {
	c.mu.Lock()
	defer c.mu.Unlock()
	hub := stream.NewHub(id, stream.DefaultHubConfig())
	c.cams[id] = fakeCam{hub: hub, region: region}
	return hub
}

// env is a relay behind an httptest server.
type env struct {
	relay *Relay
	srv   *httptest.Server
	cams  *fakeCams
	reg   *prometheus.Registry
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newEnv(t *testing.T, adjust func(*Config)) *env {
	t.Helper()
	cfg := Defaults()
	cfg.UDPListen = "127.0.0.1:0"
	if adjust != nil {
		adjust(&cfg)
	}
	e := &env{cams: &fakeCams{cams: map[string]fakeCam{}}, reg: prometheus.NewRegistry()}
	r, err := New(cfg, e.cams, e.reg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	e.relay = r
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ran:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	select {
	case <-r.Ready():
	case err := <-ran:
		t.Fatalf("Run: %v", err)
	}
	rt := api.NewRouter(1<<20, 30*time.Second)
	rt.SetAuthenticator(fakeAuth{})
	r.Routes(rt)
	e.srv = httptest.NewServer(rt)
	t.Cleanup(e.srv.Close)
	return e
}

// camera adds a camera fed at real pace with clip.
func (e *env) camera(t *testing.T, id, region string, clip *simcam.Clip) *feeder {
	t.Helper()
	f := &feeder{hub: e.cams.add(id, region), clip: clip, restart: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	f.hub.SetTrack(f.track())
	go f.run()
	t.Cleanup(f.close)
	return f
}

// feeder publishes a clip's units to a hub every 1/FPS s, as a camera
// would.
type feeder struct {
	hub     *stream.Hub
	clip    *simcam.Clip
	restart chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func (f *feeder) track() stream.Track {
	codec := stream.H264
	if f.clip.Codec == simcam.H265 {
		codec = stream.H265
	}
	return stream.Track{Codec: codec, VPS: f.clip.VPS, SPS: f.clip.SPS, PPS: f.clip.PPS}
}

func (f *feeder) run() {
	defer close(f.done)
	frame := time.Second / time.Duration(f.clip.FPS)
	tick := time.NewTicker(frame)
	defer tick.Stop()
	i := 0
	for {
		select {
		case <-f.stop:
			return
		case <-f.restart:
			// A new camera session: new epoch, timestamps from 0 (a
			// camera restarts at a keyframe).
			f.hub.SetTrack(f.track())
			i = 0
		case <-tick.C:
			publish(f.hub, f.clip, i, time.Duration(i)*frame)
			i++
		}
	}
}

func (f *feeder) close() {
	f.once.Do(func() { close(f.stop) })
	<-f.done
}

// waitGOP waits until the hub's cached GOP holds at least n units, so that
// a viewer joins mid-GOP.
func (f *feeder) waitGOP(t *testing.T, n int) {
	t.Helper()
	waitFor(t, "a cached GOP", func() bool { return f.hub.Stats().GOPUnits >= n })
}

// waitFor polls cond (a guard against hanging, not a timing assertion).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// frames records a viewer's access units.
type frames struct {
	mu sync.Mutex
	fs []Frame
}

func (f *frames) add(fr Frame) {
	f.mu.Lock()
	f.fs = append(f.fs, fr)
	f.mu.Unlock()
}

func (f *frames) get() []Frame {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Frame(nil), f.fs...)
}

func (f *frames) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.fs)
}

func (e *env) dial(t *testing.T, camera, token string, rec *frames) *Viewer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var opt DialOptions
	if rec != nil {
		opt.OnFrame = rec.add
	}
	v, err := DialWith(ctx, e.srv.URL, camera, token, opt)
	if err != nil {
		t.Fatalf("dial %s: %v", camera, err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// sessionInfo returns the relay's view of a viewer's session.
func (e *env) sessionInfo(t *testing.T, v *Viewer) SessionInfo {
	t.Helper()
	id := v.Location()[strings.LastIndex(v.Location(), "/")+1:]
	s, ok := e.relay.session(id)
	if !ok {
		t.Fatalf("no session %s", id)
	}
	return s.info()
}

func naluTypes(nalus [][]byte) []h264.NALUType {
	out := make([]h264.NALUType, len(nalus))
	for i, n := range nalus {
		out[i] = h264.NALUType(n[0] & 0x1f)
	}
	return out
}

func hasNALU(nalus [][]byte, t h264.NALUType) bool {
	for _, n := range nalus {
		if h264.NALUType(n[0]&0x1f) == t {
			return true
		}
	}
	return false
}

// The viewer starts with the camera's cached GOP: its first unit is the
// GOP's keyframe with SPS and PPS, sent at once with compressed
// timestamps; live frames follow. Cameras that send their parameter sets
// only in the SDP play too, the hub putting them before each keyframe.
func TestViewerStartsAtCachedKeyframe(t *testing.T) {
	for _, tc := range []struct {
		name  string
		strip bool
	}{{"params in band", false}, {"params only in SDP", true}} {
		t.Run(tc.name, func(t *testing.T) {
			clip := loadClip(t, "street-360p")
			if tc.strip {
				clip = clip.StripParams()
			}
			e := newEnv(t, nil)
			cam := e.camera(t, "cam1", "county/east", clip)
			cam.waitGOP(t, 10)

			rec := &frames{}
			v := e.dial(t, "cam1", aliceToken, rec)
			waitFor(t, "frames", func() bool { return rec.len() >= 40 })

			info := e.sessionInfo(t, v)
			if info.BurstFrames < 10 {
				t.Fatalf("the session started with %d cached frames, want at least 10", info.BurstFrames)
			}
			fs := rec.get()
			first := fs[0]
			if !first.Key || !hasNALU(first.NALUs, h264.NALUTypeSPS) || !hasNALU(first.NALUs, h264.NALUTypePPS) || !hasNALU(first.NALUs, h264.NALUTypeIDR) {
				t.Fatalf("first unit received: key=%v NAL units %v, want SPS, PPS and IDR", first.Key, naluTypes(first.NALUs))
			}
			// The burst is the cached GOP: one keyframe, then the
			// frames up to the newest, compressed into a fraction of
			// their real duration; live frames follow at their real
			// spacing.
			burst := int(info.BurstFrames)
			for i := 1; i < burst; i++ {
				if fs[i].Key {
					t.Fatalf("frame %d of the burst is a keyframe: the cached GOP has one", i)
				}
				if d := int32(fs[i].RTPTimestamp - fs[i-1].RTPTimestamp); d <= 0 {
					t.Fatalf("burst frame %d is %d ticks after the previous", i, d)
				}
			}
			if span, real := int32(fs[burst-1].RTPTimestamp-fs[0].RTPTimestamp), int32(burst-1)*3600; span > real/4 {
				t.Fatalf("the burst of %d frames spans %d ticks of RTP time, not compressed (%d in real time)", burst, span, real)
			}
			live := 0
			for i := burst; i < len(fs); i++ {
				if d := int32(fs[i].RTPTimestamp - fs[i-1].RTPTimestamp); d == 3600 {
					live++
				}
			}
			if live < 10 {
				t.Fatalf("only %d of %d frames after the burst at the camera's 40 ms spacing", live, len(fs)-burst)
			}
			if fk, ok := v.FirstKeyframe(); !ok || fk <= 0 {
				t.Fatal("the viewer reports no first keyframe")
			}
			if info.FirstKeyframeMillis == nil {
				t.Fatal("the session reports no first keyframe")
			}
			var m dto.Metric
			if err := e.relay.m.firstKey.Write(&m); err != nil || m.GetHistogram().GetSampleCount() != 1 {
				t.Fatalf("time-to-first-keyframe histogram: %v %v, want one observation", err, m.GetHistogram().GetSampleCount())
			}
		})
	}
}

// A camera restart (new hub epoch, timestamps from zero) mid-session keeps
// the viewer's RTP timestamps and sequence numbers increasing.
func TestCameraRestartKeepsViewerTimeline(t *testing.T) {
	e := newEnv(t, nil)
	cam := e.camera(t, "cam1", "county/east", loadClip(t, "street-360p"))
	cam.waitGOP(t, 5)
	rec := &frames{}
	v := e.dial(t, "cam1", aliceToken, rec)
	waitFor(t, "frames before the restart", func() bool { return rec.len() >= 30 })
	cam.restart <- struct{}{}
	waitFor(t, "the restart seen by the session", func() bool { return e.sessionInfo(t, v).CameraRestarts == 1 })
	n := rec.len()
	waitFor(t, "frames after the restart", func() bool { return rec.len() >= n+30 })

	fs := rec.get()
	keys := 0
	for i := 1; i < len(fs); i++ {
		if d := int32(fs[i].RTPTimestamp - fs[i-1].RTPTimestamp); d <= 0 {
			t.Fatalf("frame %d: RTP timestamp went from %d to %d", i, fs[i-1].RTPTimestamp, fs[i].RTPTimestamp)
		}
		if d := int16(fs[i].Seq - fs[i-1].Seq); d <= 0 {
			t.Fatalf("frame %d: sequence number went from %d to %d", i, fs[i-1].Seq, fs[i].Seq)
		}
		if fs[i].Key {
			keys++
		}
	}
	if keys == 0 {
		t.Fatal("no keyframe after the first: the restart's keyframe was not sent")
	}
}

// DELETE ends the session: the viewer's peer connection closes and the
// viewer count goes back to zero.
func TestDeleteEndsSession(t *testing.T) {
	e := newEnv(t, nil)
	e.camera(t, "cam1", "county/east", loadClip(t, "street-360p"))
	v := e.dial(t, "cam1", aliceToken, nil)
	waitFor(t, "a keyframe", func() bool { _, ok := v.FirstKeyframe(); return ok })
	if n := e.relay.CameraViewers("cam1"); n != 1 {
		t.Fatalf("%d viewers on cam1, want 1", n)
	}
	if g := metricValue(t, e.relay.m.viewers.WithLabelValues("cam1")); g != 1 {
		t.Fatalf("viewers gauge %v, want 1", g)
	}

	// Someone else cannot end it: it is not found for them.
	if res := do(t, "DELETE", v.Location(), bobToken, "", nil); res.StatusCode != 404 {
		t.Fatalf("DELETE by another user: %d, want 404", res.StatusCode)
	}
	if res := do(t, "DELETE", v.Location(), aliceToken, "", nil); res.StatusCode != 204 {
		t.Fatalf("DELETE: %d, want 204", res.StatusCode)
	}
	select {
	case <-v.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("the viewer's peer connection is still %s", v.State())
	}
	if n := e.relay.Viewers(); n != 0 {
		t.Fatalf("%d viewers after DELETE, want 0", n)
	}
	if n := seriesCount(e.relay.m.viewers); n != 0 {
		t.Fatalf("viewers gauge still has %d series", n)
	}
	if c := metricValue(t, e.relay.m.ended.WithLabelValues(reasonDeleted)); c != 1 {
		t.Fatalf("sessions ended (deleted) = %v, want 1", c)
	}
	if res := do(t, "DELETE", v.Location(), aliceToken, "", nil); res.StatusCode != 404 {
		t.Fatalf("second DELETE: %d, want 404", res.StatusCode)
	}
}

// The session list shows the caller's sessions, all of them to an admin.
func TestSessionList(t *testing.T) {
	e := newEnv(t, nil)
	e.camera(t, "east1", "county/east", loadClip(t, "street-360p"))
	e.camera(t, "west1", "county/west", loadClip(t, "street-360p"))
	va := e.dial(t, "east1", aliceToken, nil)
	vb := e.dial(t, "west1", bobToken, nil)
	waitFor(t, "keyframes", func() bool {
		_, a := va.FirstKeyframe()
		_, b := vb.FirstKeyframe()
		return a && b
	})
	for _, tc := range []struct {
		token string
		want  []string
	}{{aliceToken, []string{"east1"}}, {bobToken, []string{"west1"}}, {adminToken, []string{"east1", "west1"}}} {
		var body struct{ Sessions []SessionInfo }
		if res := do(t, "GET", e.srv.URL+"/api/v1/whep", tc.token, "", &body); res.StatusCode != 200 {
			t.Fatalf("list: %d", res.StatusCode)
		}
		var got []string
		for _, s := range body.Sessions {
			got = append(got, s.Camera)
			if s.BytesSent == 0 || s.KeyframesSent == 0 || s.State == "" || s.Username == "" {
				t.Errorf("session without statistics: %+v", s)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("token %s sees %v, want %v", tc.token, got, tc.want)
		}
	}
}

// Over max_viewers_per_camera, an offer is refused with 503.
func TestViewerLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxViewersPerCamera = 1; c.MaxViewers = 2 })
	clip := loadClip(t, "street-360p")
	e.camera(t, "cam1", "county/east", clip)
	e.camera(t, "cam2", "county/east", clip)
	e.camera(t, "cam3", "county/east", clip)
	e.dial(t, "cam1", aliceToken, nil)

	var he *HTTPError
	_, err := Dial(context.Background(), e.srv.URL, "cam1", aliceToken)
	if !errors.As(err, &he) || he.Status != 503 || !strings.Contains(he.Message, "max_viewers_per_camera") {
		t.Fatalf("second viewer of cam1: %v, want 503 naming max_viewers_per_camera", err)
	}
	e.dial(t, "cam2", aliceToken, nil)
	_, err = Dial(context.Background(), e.srv.URL, "cam3", aliceToken)
	if !errors.As(err, &he) || he.Status != 503 || !strings.Contains(he.Message, "max_viewers") {
		t.Fatalf("third viewer: %v, want 503 naming max_viewers", err)
	}
	if n := e.relay.Viewers(); n != 2 {
		t.Fatalf("%d viewers, want 2", n)
	}
}

// do makes an API request and decodes a JSON answer into out.
func do(t testing.TB, method, url, token, body string, out any, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
	res.Body = io.NopCloser(strings.NewReader(string(b)))
	return res
}

// offerSDP makes a real browser-like offer from a pion peer with the given
// codecs (a recvonly video transceiver, and an audio one if audio).
func offerSDP(t testing.TB, codecs []webrtc.RTPCodecParameters, audio bool) string {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range codecs {
		typ := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.MimeType, "audio/") {
			typ = webrtc.RTPCodecTypeAudio
		}
		if err := me.RegisterCodec(c, typ); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.GracefulClose()
	kinds := []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}
	if audio {
		kinds = []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}
	}
	for _, k := range kinds {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

var (
	vp8Only  = []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}}
	opusOnly = []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}}
	h264Only = videoCodecs(stream.H264, true)
)

// Bad requests get the status a WHEP client expects and a clear message.
func TestBadOffers(t *testing.T) {
	e := newEnv(t, nil)
	e.camera(t, "cam1", "county/east", loadClip(t, "street-360p"))
	good := offerSDP(t, h264Only, false)
	for _, tc := range []struct {
		name, camera, token, ctype, body string
		status                           int
		msg                              string
	}{
		{"unauthenticated", "cam1", "", sdpType, good, 401, "authentication required"},
		{"wrong content type", "cam1", aliceToken, "application/json", `{"sdp":"v=0"}`, 415, "application/sdp"},
		{"no content type", "cam1", aliceToken, "", good, 415, "application/sdp"},
		{"unknown camera", "nope", aliceToken, sdpType, good, 404, `no camera "nope"`},
		{"camera outside the caller's region", "cam1", bobToken, sdpType, good, 404, `no camera "cam1"`},
		{"oversized body", "cam1", aliceToken, sdpType, good + strings.Repeat("a=x-padding:0123456789\r\n", 4000), 413, "limit"},
		{"empty body", "cam1", aliceToken, sdpType, "", 400, "empty"},
		{"malformed SDP", "cam1", aliceToken, sdpType, "hello, relay", 400, "malformed SDP offer"},
		{"SDP without media", "cam1", aliceToken, sdpType, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", 400, "no media section"},
		{"offer without video", "cam1", aliceToken, sdpType, offerSDP(t, opusOnly, true), 400, "no video section"},
		{"offer without H.264", "cam1", aliceToken, sdpType, offerSDP(t, vp8Only, false), 406, "no H.264"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body struct{ Error api.Error }
			res := do(t, "POST", e.srv.URL+"/api/v1/cameras/"+tc.camera+"/whep", tc.token, tc.body, &body, "Content-Type", tc.ctype)
			if res.StatusCode != tc.status || !strings.Contains(body.Error.Message, tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", res.StatusCode, body.Error.Message, tc.status, tc.msg)
			}
		})
	}
	if n := e.relay.Viewers(); n != 0 {
		t.Fatalf("%d viewers left by refused offers", n)
	}
}

// A camera that does not stream within track_wait is refused with 503.
func TestCameraNotStreaming(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TrackWait = 0 })
	e.cams.add("dark", "county/east")
	var he *HTTPError
	_, err := Dial(context.Background(), e.srv.URL, "dark", aliceToken)
	if !errors.As(err, &he) || he.Status != 503 || !strings.Contains(he.Message, "not streaming") {
		t.Fatalf("got %v, want 503 not streaming", err)
	}
	if n := e.relay.Viewers(); n != 0 {
		t.Fatalf("%d viewers left", n)
	}
}

// CORS preflights are answered for configured origins only.
func TestCORS(t *testing.T) {
	const wall = "https://wall.example.org"
	e := newEnv(t, func(c *Config) { c.CORSOrigins = []string{wall} })
	e.camera(t, "cam1", "county/east", loadClip(t, "street-360p"))
	url := e.srv.URL + "/api/v1/cameras/cam1/whep"

	res := do(t, "OPTIONS", url, "", "", nil, "Origin", wall, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type")
	h := res.Header
	if res.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != wall || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") || h.Get("Accept-Post") != sdpType {
		t.Fatalf("allowed preflight: %d %v", res.StatusCode, h)
	}
	res = do(t, "OPTIONS", url, "", "", nil, "Origin", "https://evil.example.com", "Access-Control-Request-Method", "POST")
	if res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("refused preflight: %d %v", res.StatusCode, res.Header)
	}
	res = do(t, "OPTIONS", e.srv.URL+"/api/v1/whep/whatever", "", "", nil, "Origin", wall, "Access-Control-Request-Method", "DELETE")
	if res.StatusCode != 204 || !strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "DELETE") {
		t.Fatalf("session preflight: %d %v", res.StatusCode, res.Header)
	}

	// The answer itself lets the allowed page read Location and ETag.
	res = do(t, "POST", url, aliceToken, offerSDP(t, h264Only, false), nil, "Content-Type", sdpType, "Origin", wall)
	if res.StatusCode != 201 || res.Header.Get("Access-Control-Allow-Origin") != wall ||
		!strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "Location") || !strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Fatalf("cross-origin answer: %d %v", res.StatusCode, res.Header)
	}
	if res.Header.Get("ETag") == "" || res.Header.Get("Content-Type") != sdpType {
		t.Fatalf("answer headers: %v", res.Header)
	}
	if res := do(t, "DELETE", e.srv.URL+res.Header.Get("Location"), aliceToken, "", nil); res.StatusCode != 204 {
		t.Fatalf("DELETE: %d", res.StatusCode)
	}
}

// Connecting and disconnecting viewers leaves no goroutine behind.
func TestNoGoroutineLeak(t *testing.T) {
	cycles := 100
	if testing.Short() {
		cycles = 10
	}
	e := newEnv(t, nil)
	e.camera(t, "cam1", "county/east", loadClip(t, "street-360p"))
	client := &http.Client{Transport: &http.Transport{}}
	cycle := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		v, err := DialWith(ctx, e.srv.URL, "cam1", aliceToken, DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a keyframe", func() bool { _, ok := v.FirstKeyframe(); return ok })
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
	}
	settle := func() int {
		client.CloseIdleConnections()
		waitFor(t, "sessions to end", func() bool { return e.relay.Viewers() == 0 })
		return runtime.NumGoroutine()
	}
	cycle() // warm up: pools, pion's shared goroutines
	base := settle()
	for range cycles {
		cycle()
	}
	settle()
	deadline := time.Now().Add(30 * time.Second)
	for n := runtime.NumGoroutine(); n > base; n = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after %d viewers came and went, %d before:\n%s", n, cycles, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metricValue reads a counter or gauge (prometheus' testutil needs a
// module this one does not require).
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}

// seriesCount is the number of series a collector has.
func seriesCount(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 1024)
	c.Collect(ch)
	close(ch)
	return len(ch)
}

// PATCH takes trickled candidates; an ICE restart is refused.
func TestTrickle(t *testing.T) {
	e := newEnv(t, nil)
	e.camera(t, "cam1", "county/east", loadClip(t, "street-360p"))
	v := e.dial(t, "cam1", aliceToken, nil)
	etag := ""
	if res := do(t, "OPTIONS", v.Location(), "", "", nil); res.StatusCode != 204 || res.Header.Get("Accept-Patch") != sdpFragType {
		t.Fatalf("OPTIONS: %d %v", res.StatusCode, res.Header)
	}
	for _, s := range e.relay.list(func(*session) bool { return true }) {
		etag = s.etag
	}
	frag := "a=ice-ufrag:%s\r\na=ice-pwd:x\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n"
	ufrag := e.relay.list(func(*session) bool { return true })[0].remoteUfrag
	for _, tc := range []struct {
		name, token, ctype, ifMatch, body string
		status                            int
	}{
		{"candidate", aliceToken, sdpFragType, etag, strings.Replace(frag, "%s", ufrag, 1), 204},
		{"ICE restart", aliceToken, sdpFragType, "*", strings.Replace(frag, "%s", "other", 1), 422},
		{"stale ETag", aliceToken, sdpFragType, `"stale"`, strings.Replace(frag, "%s", ufrag, 1), 412},
		{"wrong content type", aliceToken, sdpType, etag, "v=0", 415},
		{"malformed", aliceToken, sdpFragType, etag, "m=video 9 x 0\r\nnot sdp\r\n", 400},
		{"someone else's session", bobToken, sdpFragType, etag, strings.Replace(frag, "%s", ufrag, 1), 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, "PATCH", v.Location(), tc.token, tc.body, nil, "Content-Type", tc.ctype, "If-Match", tc.ifMatch)
			if res.StatusCode != tc.status {
				b, _ := io.ReadAll(res.Body)
				t.Fatalf("got %d %s, want %d", res.StatusCode, b, tc.status)
			}
		})
	}
}

// RTCP both ways: the viewer's receiver reports give the session its
// round-trip time; the relay's sender reports let the viewer date frames.
func TestRTCPReports(t *testing.T) {
	e := newEnv(t, nil)
	e.camera(t, "cam1", "county/east", loadClip(t, "street-360p"))
	rec := &frames{}
	v := e.dial(t, "cam1", aliceToken, rec)
	waitFor(t, "a round-trip time", func() bool { return e.sessionInfo(t, v).RTTMillis != nil })
	if info := e.sessionInfo(t, v); *info.RTTMillis > 1000 || info.State != "connected" {
		t.Fatalf("RTT %v ms over loopback, state %s", *info.RTTMillis, info.State)
	}
	waitFor(t, "a frame dated by a sender report", func() bool {
		fs := rec.get()
		return len(fs) > 0 && !fs[len(fs)-1].Sent.IsZero()
	})
	fs := rec.get()
	// Same machine, same clock: a sanity bound, not a timing assertion.
	if f := fs[len(fs)-1]; f.Received.Sub(f.Sent).Abs() > 5*time.Second {
		t.Fatalf("frame sent at %v, received at %v", f.Sent, f.Received)
	}
}

// With ice_tcp_listen, a viewer whose network allows only TCP plays too.
func TestICETCP(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ICETCPListen = "127.0.0.1:0" })
	e.camera(t, "cam1", "county/east", loadClip(t, "street-360p"))
	a, err := newClientAPI(func(se *webrtc.SettingEngine) {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := DialWith(ctx, e.srv.URL, "cam1", aliceToken, DialOptions{API: a})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitFor(t, "a keyframe over ICE-TCP", func() bool { _, ok := v.FirstKeyframe(); return ok })
}

// A session whose viewer never connects is closed after
// session_idle_timeout.
func TestIdleSessionClosed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionIdleTimeout = conf.Duration(time.Second) })
	e.camera(t, "cam1", "county/east", loadClip(t, "street-360p"))
	// An offer whose peer never applies the answer.
	res := do(t, "POST", e.srv.URL+"/api/v1/cameras/cam1/whep", aliceToken, offerSDP(t, h264Only, false), nil, "Content-Type", sdpType)
	if res.StatusCode != 201 {
		t.Fatalf("POST: %d", res.StatusCode)
	}
	if n := e.relay.Viewers(); n != 1 {
		t.Fatalf("%d viewers, want 1", n)
	}
	waitFor(t, "the idle session to close", func() bool { return e.relay.Viewers() == 0 })
	if c := metricValue(t, e.relay.m.ended.WithLabelValues(reasonIdle)); c != 1 {
		t.Fatalf("sessions ended (idle) = %v, want 1", c)
	}
}

package rtsp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	rtspauth "github.com/bluenviron/gortsplib/v4/pkg/auth"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/pion/rtp"

	"sharpeye/configs/conf"
	"sharpeye/ingest/stream"
)

// ServeConfig is the ingest.rtsp_server section of the configuration.
type ServeConfig struct {
	// Listen is the RTSP (TCP) address; "" turns the re-serve off.
	Listen string `yaml:"listen"`
	// UDPRTPListen and UDPRTCPListen enable RTP over UDP (consecutive
	// ports, RTP even); "" serves TCP only.
	UDPRTPListen  string `yaml:"udp_rtp_listen"`
	UDPRTCPListen string `yaml:"udp_rtcp_listen"`
	// TrackWait is how long a DESCRIBE waits for a camera that is not
	// streaming yet (an on-demand camera starting).
	TrackWait conf.Duration `yaml:"track_wait"`
	// Linger keeps a camera's feed after its last reader left, so that a
	// reader that reconnects finds it warm.
	Linger conf.Duration `yaml:"linger"`
}

// DefaultServeConfig returns the compiled defaults.
func DefaultServeConfig() ServeConfig {
	return ServeConfig{Listen: "127.0.0.1:8554", TrackWait: conf.Duration(8 * time.Second), Linger: conf.Duration(10 * time.Second)}
}

// Validate implements conf.Validator.
func (c *ServeConfig) Validate(v *conf.V) {
	for _, f := range []struct{ key, addr string }{{"listen", c.Listen}, {"udp_rtp_listen", c.UDPRTPListen}, {"udp_rtcp_listen", c.UDPRTCPListen}} {
		if f.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			v.Errorf(f.key, "must be host:port (%v)", err)
		}
	}
	if (c.UDPRTPListen == "") != (c.UDPRTCPListen == "") {
		v.Errorf("udp_rtp_listen", "udp_rtp_listen and udp_rtcp_listen go together")
	}
	if c.TrackWait.D() <= 0 {
		v.Errorf("track_wait", "must be positive")
	}
	if c.Linger.D() < 0 {
		v.Errorf("linger", "must not be negative")
	}
}

// Source finds a camera's hub for a reader: ok is false when the camera
// does not exist or the reader may not see it.
type Source interface {
	Lookup(id string) (hub *stream.Hub, region string, ok bool)
}

// PeerSource is a Source that knows which cameras it pulls from the
// camera itself (in a cluster: owns). A reader that says it is another
// node of the cluster (User-Agent PeerUserAgent, which the pullers of a
// cluster send) is refused the others: a node relays to its peers only
// what it pulls itself, so that two nodes whose views of the owners
// disagree for a moment cannot pull a camera from each other, and a node
// with an outdated view fails at once and looks again. The header only
// restricts the reader who sends it; any other reader, whatever its
// account, gets every camera its region covers.
type PeerSource interface {
	PullsHere(id string) bool
}

// PeerUserAgent is the User-Agent of a cluster node pulling from another.
const PeerUserAgent = "Sharpeye cluster"

// Authorizer checks RTSP credentials (Basic; the password may be an API
// token) and says which regions the reader may see.
type Authorizer interface {
	CheckRTSP(ctx context.Context, user, password, remote string) (allows func(region string) bool, err error)
}

// Server re-serves every camera over RTSP.
type Server struct {
	cfg   ServeConfig
	src   Source
	authz Authorizer
	log   *slog.Logger
	srv   *gortsplib.Server

	mu    sync.Mutex
	feeds map[string]*feed
	// playing is the session whose PLAY each connection is answering:
	// its reader starts once the answer is sent (OnResponse), when the
	// stream delivers to it.
	playing map[*gortsplib.ServerConn]*sessionData

	readers     atomic.Int64
	writeErrors atomic.Uint64
	ln          net.Listener
	wg          sync.WaitGroup
	ctx         context.Context
	cancel      context.CancelFunc
}

// NewServer returns a re-serve; it binds nothing until Run.
func NewServer(cfg ServeConfig, src Source, authz Authorizer, log *slog.Logger) *Server {
	s := &Server{cfg: cfg, src: src, authz: authz, log: log, feeds: map[string]*feed{}, playing: map[*gortsplib.ServerConn]*sessionData{}}
	s.srv = &gortsplib.Server{
		Handler:        s,
		RTSPAddress:    cfg.Listen,
		UDPRTPAddress:  cfg.UDPRTPListen,
		UDPRTCPAddress: cfg.UDPRTCPListen,
		ReadTimeout:    10 * time.Second,
		WriteTimeout:   10 * time.Second,
		WriteQueueSize: 512,
		AuthMethods:    []rtspauth.VerifyMethod{rtspauth.VerifyMethodBasic},
		Listen: func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			s.ln = ln
			return ln, err
		},
	}
	return s
}

// Start binds the listeners.
func (s *Server) Start() error {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.srv.Start(); err != nil {
		return fmt.Errorf("ingest.rtsp_server.listen: %w", err)
	}
	return nil
}

// Addr is the bound RTSP address (after Start).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Wait() }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("rtsp server: %w", err)
	}
	s.cancel()
	s.srv.Close()
	s.mu.Lock()
	for id, f := range s.feeds {
		f.close()
		delete(s.feeds, id)
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err == nil {
		<-errc
	}
	return err
}

// Readers is the number of RTSP sessions playing.
func (s *Server) Readers() int { return int(s.readers.Load()) }

// sessionData is kept on each RTSP session.
type sessionData struct {
	feed    *feed
	reader  *reader
	playing bool
}

// OnSessionClose stops the session's reader and releases its hold on the
// camera's feed.
func (s *Server) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	d, ok := ctx.Session.UserData().(*sessionData)
	if !ok || d.feed == nil {
		return
	}
	if d.playing {
		s.readers.Add(-1)
	}
	d.reader.close()
	s.release(d.feed)
}

func basicCredentials(req *base.Request) (user, pass string, ok bool) {
	h, found := req.Header["Authorization"]
	if !found || len(h) != 1 {
		return "", "", false
	}
	scheme, b64, found := strings.Cut(h[0], " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}

var errAuth = liberrors.ErrServerAuth{}

// authorize checks the request's credentials; on failure it returns the
// response to send (401 with a challenge when none were given).
func (s *Server) authorize(conn *gortsplib.ServerConn, req *base.Request) (*access, *base.Response, error) {
	user, pass, ok := basicCredentials(req)
	if ok {
		allows, err := s.authz.CheckRTSP(s.ctx, user, pass, conn.NetConn().RemoteAddr().String())
		if err == nil && conn.VerifyCredentials(req, user, pass) {
			ua := req.Header["User-Agent"]
			return &access{allows: allows, peer: len(ua) == 1 && ua[0] == PeerUserAgent}, nil, nil
		}
		s.log.Info("rtsp reader refused", "user", user, "remote", conn.NetConn().RemoteAddr().String())
	}
	// Fails on purpose: sets up the challenge sent back with the 401.
	conn.VerifyCredentials(req, "\x00", rand.Text())
	return nil, &base.Response{StatusCode: base.StatusUnauthorized}, errAuth
}

// access is what an authorized reader may see.
type access struct {
	allows func(region string) bool
	// peer: another node of the cluster (see PeerSource).
	peer bool
}

func cameraID(path string) string { return strings.Trim(path, "/") }

// OnDescribe answers with the camera's description.
func (s *Server) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	acc, res, err := s.authorize(ctx.Conn, ctx.Request)
	if res != nil {
		return res, nil, err
	}
	f, res := s.acquire(cameraID(ctx.Path), acc)
	if res != nil {
		return res, nil, nil
	}
	defer s.release(f)
	return &base.Response{StatusCode: base.StatusOK}, f.stream, nil
}

// OnSetup attaches the session to the camera's feed.
func (s *Server) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	acc, res, err := s.authorize(ctx.Conn, ctx.Request)
	if res != nil {
		return res, nil, err
	}
	if d, ok := ctx.Session.UserData().(*sessionData); ok && d.feed != nil {
		if d.feed.id != cameraID(ctx.Path) {
			return &base.Response{StatusCode: base.StatusBadRequest}, nil, nil
		}
		return &base.Response{StatusCode: base.StatusOK}, d.reader.stream, nil
	}
	f, res := s.acquire(cameraID(ctx.Path), acc)
	if res != nil {
		return res, nil, nil
	}
	r, err := s.newReader(f)
	if err != nil {
		s.release(f)
		s.log.Error("rtsp reader: stream not created", "camera", f.id, "err", err)
		return &base.Response{StatusCode: base.StatusInternalServerError}, nil, nil
	}
	ctx.Session.SetUserData(&sessionData{feed: f, reader: r})
	return &base.Response{StatusCode: base.StatusOK}, r.stream, nil
}

// OnPlay counts the reader.
func (s *Server) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	if d, ok := ctx.Session.UserData().(*sessionData); ok && !d.playing {
		d.playing = true
		s.readers.Add(1)
		s.mu.Lock()
		s.playing[ctx.Conn] = d
		s.mu.Unlock()
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnResponse starts a reader once its PLAY is answered: the session then
// takes what is written to its stream, so the first unit it gets is the
// camera's cached keyframe.
func (s *Server) OnResponse(sc *gortsplib.ServerConn, res *base.Response) {
	s.mu.Lock()
	d, ok := s.playing[sc]
	delete(s.playing, sc)
	s.mu.Unlock()
	if ok && res.StatusCode == base.StatusOK {
		d.reader.start(s)
	}
}

// OnConnClose forgets a connection that closed while answering a PLAY.
func (s *Server) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	s.mu.Lock()
	delete(s.playing, ctx.Conn)
	s.mu.Unlock()
}

// feed is one camera on the RTSP server while readers have it: the
// stream its DESCRIBE answers with, and a subscription to its hub that
// keeps an on-demand camera pulled until the last reader has been gone
// for the linger. Each reader (RTSP session) has a stream of its own,
// fed from the hub from the cached keyframe on (see reader).
type feed struct {
	id      string
	hub     *stream.Hub
	track   stream.Track
	stream  *gortsplib.ServerStream
	sub     *stream.Sub
	users   int
	linger  *time.Timer
	stop    chan struct{}
	stopped chan struct{}
}

func (f *feed) close() {
	if f.linger != nil {
		f.linger.Stop()
	}
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.sub.Close()
	<-f.stopped
	f.stream.Close()
}

// hold takes the feed's units and drops them: the subscription is there
// to keep the camera pulled.
func (f *feed) hold() {
	defer close(f.stopped)
	sub := f.sub
	defer func() { sub.Close() }()
	for {
		select {
		case <-f.stop:
			return
		case _, ok := <-sub.Units():
			if ok {
				continue
			}
			if sub.Err() != stream.ErrSlowConsumer {
				return
			}
			ns, err := f.hub.Subscribe(256)
			if err != nil {
				return
			}
			sub = ns
		}
	}
}

// describe is the stream description of a track, with an RTP encoder
// of its access units.
func describe(track stream.Track) (*description.Session, *description.Media, func([][]byte) ([]*rtp.Packet, error), error) {
	media := &description.Media{Type: description.MediaTypeVideo}
	var enc func([][]byte) ([]*rtp.Packet, error)
	switch track.Codec {
	case stream.H265:
		forma := &format.H265{PayloadTyp: 96, VPS: track.VPS, SPS: track.SPS, PPS: track.PPS}
		e, err := forma.CreateEncoder()
		if err != nil {
			return nil, nil, nil, err
		}
		media.Formats, enc = []format.Format{forma}, e.Encode
	default:
		forma := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: track.SPS, PPS: track.PPS}
		e, err := forma.CreateEncoder()
		if err != nil {
			return nil, nil, nil, err
		}
		media.Formats, enc = []format.Format{forma}, e.Encode
	}
	return &description.Session{Medias: []*description.Media{media}}, media, enc, nil
}

// acquire returns the camera's feed, creating it (and waiting for the
// camera's track) if needed; the caller releases it.
func (s *Server) acquire(id string, acc *access) (*feed, *base.Response) {
	hub, region, ok := s.src.Lookup(id)
	if !ok || !acc.allows(region) {
		return nil, &base.Response{StatusCode: base.StatusNotFound}
	}
	if ps, ok := s.src.(PeerSource); ok && acc.peer && !ps.PullsHere(id) {
		s.log.Info("rtsp reader: a node of the cluster asked for a camera not pulled here (its view of the owners is out of date)", "camera", id)
		return nil, &base.Response{StatusCode: base.StatusServiceUnavailable}
	}
	s.mu.Lock()
	if f, ok := s.feeds[id]; ok {
		f.users++
		if f.linger != nil {
			f.linger.Stop()
			f.linger = nil
		}
		s.mu.Unlock()
		return f, nil
	}
	s.mu.Unlock()

	// Subscribing first makes an on-demand camera start.
	sub, err := hub.Subscribe(256)
	if err != nil {
		return nil, &base.Response{StatusCode: base.StatusNotFound}
	}
	track, err := waitTrack(s.ctx, hub, s.cfg.TrackWait.D())
	if err != nil {
		sub.Close()
		s.log.Info("rtsp reader: camera not streaming", "camera", id, "err", err)
		return nil, &base.Response{StatusCode: base.StatusServiceUnavailable}
	}
	desc, _, _, err := describe(track)
	if err != nil {
		sub.Close()
		return nil, &base.Response{StatusCode: base.StatusInternalServerError}
	}
	st := &gortsplib.ServerStream{Server: s.srv, Desc: desc}
	if err := st.Initialize(); err != nil {
		sub.Close()
		return nil, &base.Response{StatusCode: base.StatusInternalServerError}
	}
	f := &feed{id: id, hub: hub, track: track, stream: st, sub: sub, users: 1, stop: make(chan struct{}), stopped: make(chan struct{})}

	s.mu.Lock()
	if other, ok := s.feeds[id]; ok { // lost a race: use the other
		other.users++
		s.mu.Unlock()
		sub.Close()
		st.Close()
		return other, nil
	}
	s.feeds[id] = f
	s.mu.Unlock()

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f.hold()
	}()
	return f, nil
}

// reader is one RTSP session's stream of a camera: its own packetizer
// and timeline, fed from the hub by its own goroutine once it plays, so
// that every reader starts at the cached keyframe (a stream shared by all
// readers would start each new one wherever the others are, in the middle
// of a group of pictures).
type reader struct {
	feed    *feed
	stream  *gortsplib.ServerStream
	media   *description.Media
	enc     func([][]byte) ([]*rtp.Packet, error)
	once    sync.Once
	stop    chan struct{}
	stopped chan struct{}
}

func (s *Server) newReader(f *feed) (*reader, error) {
	desc, media, enc, err := describe(f.track)
	if err != nil {
		return nil, err
	}
	st := &gortsplib.ServerStream{Server: s.srv, Desc: desc}
	if err := st.Initialize(); err != nil {
		return nil, err
	}
	return &reader{feed: f, stream: st, media: media, enc: enc, stop: make(chan struct{}), stopped: make(chan struct{})}, nil
}

// start runs the reader's pump (once).
func (r *reader) start(s *Server) {
	r.once.Do(func() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			r.pump()
		}()
	})
}

// close stops the pump, if it ran, and closes the stream.
func (r *reader) close() {
	started := true
	r.once.Do(func() { started = false })
	close(r.stop)
	if started {
		<-r.stopped
	}
	r.stream.Close()
}

// release drops a hold on a feed; the last one closes it after the linger.
func (s *Server) release(f *feed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.users--
	if f.users > 0 || s.feeds[f.id] != f {
		return
	}
	f.linger = time.AfterFunc(s.cfg.Linger.D(), func() {
		s.mu.Lock()
		if f.users > 0 || s.feeds[f.id] != f {
			s.mu.Unlock()
			return
		}
		delete(s.feeds, f.id)
		s.mu.Unlock()
		f.close()
	})
}

func waitTrack(ctx context.Context, hub *stream.Hub, wait time.Duration) (stream.Track, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		ch := hub.Changed()
		if tr, ok := hub.Track(); ok && len(tr.SPS) > 0 {
			return tr, nil
		}
		select {
		case <-ctx.Done():
			return stream.Track{}, ctx.Err()
		case <-t.C:
			return stream.Track{}, errors.New("no video within " + wait.String())
		case <-ch:
		}
	}
}

// pump packetizes the hub's units into the reader's stream, from the
// cached keyframe on, keeping RTP timestamps continuous across camera
// reconnects and resubscriptions.
func (r *reader) pump() {
	defer close(r.stopped)
	sub, err := r.feed.hub.Subscribe(256)
	if err != nil {
		return
	}
	defer func() { sub.Close() }()
	var (
		base    uint32 // RTP time of the epoch's first unit
		epoch   uint32
		started bool
		first   time.Duration
		lastTS  uint32
		waitKey = true
		dropped bool
	)
	for {
		select {
		case <-r.stop:
			return
		case u, ok := <-sub.Units():
			if !ok {
				if sub.Err() != stream.ErrSlowConsumer {
					return
				}
				// Fell behind: start again from the cached keyframe.
				ns, err := r.feed.hub.Subscribe(256)
				if err != nil {
					return
				}
				sub, waitKey, dropped = ns, true, true
				continue
			}
			if waitKey && !u.Key {
				continue
			}
			waitKey = false
			if !started || u.Epoch != epoch || dropped {
				// New timeline: continue 40 ms after the last packet sent.
				base, first, epoch, started, dropped = lastTS+3600, u.PTS, u.Epoch, true, false
			}
			ts := base + uint32((u.PTS-first)*90000/time.Second)
			pkts, err := r.enc(u.NALUs)
			if err != nil {
				continue
			}
			for _, p := range pkts {
				p.Timestamp = ts
				r.stream.WritePacketRTPWithNTP(r.media, p, u.Received)
			}
			lastTS = ts
		}
	}
}

// The handlers below keep gortsplib from logging every bad packet through
// the standard logger: readers' problems are counted instead.

// OnStreamWriteError counts a reader whose queue was full.
func (s *Server) OnStreamWriteError(*gortsplib.ServerHandlerOnStreamWriteErrorCtx) {
	s.writeErrors.Add(1)
}

// OnDecodeError counts undecodable packets from readers (RTCP).
func (s *Server) OnDecodeError(*gortsplib.ServerHandlerOnDecodeErrorCtx) {}

// OnPacketsLost ignores loss reports on what readers send (RTCP only).
func (s *Server) OnPacketsLost(*gortsplib.ServerHandlerOnPacketsLostCtx) {}

// WriteErrors counts packets dropped because a reader fell behind.
func (s *Server) WriteErrors() uint64 { return s.writeErrors.Load() }

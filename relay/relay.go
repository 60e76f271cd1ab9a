package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/configs/conf"
	"sharpeye/console/api"
	"sharpeye/ingest/stream"
)

// Cameras finds a camera's hub. The camera registry implements it; for an
// on-demand camera, subscribing to the hub is what starts the pull.
type Cameras interface {
	// Lookup returns the camera's hub and the region it belongs to (for
	// scoping: a caller sees only cameras in its region subtree).
	Lookup(id string) (hub *stream.Hub, region string, ok bool)
}

// Relay serves live video to browsers over WebRTC (WHEP): one peer
// connection and one hub subscription per viewer, all media through one
// UDP port.
type Relay struct {
	cfg  Config
	cams Cameras
	log  *slog.Logger
	m    *metrics

	iceServers []webrtc.ICEServer
	ready      chan struct{} // closed once Run listens

	mu        sync.Mutex
	api       *webrtc.API // set while Run runs
	running   bool
	ran       bool
	sessions  map[string]*session
	perCamera map[string]int // sessions, including those being set up
	caches    map[*stream.Hub]*sharedCache
	total     int
	udpAddr   net.Addr
	media     *batchConn // the media socket, set while Run runs
	// viewing is len(sessions), for the streamers (see batchFrom).
	viewing atomic.Int32

	wg sync.WaitGroup // session goroutines
}

// New checks the configuration and builds a relay; it starts nothing. reg
// may be nil (no metrics exported).
func New(cfg Config, cams Cameras, reg prometheus.Registerer, log *slog.Logger) (*Relay, error) {
	if cams == nil {
		return nil, errors.New("relay: no camera registry")
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// Load with no file and no environment only validates.
	if err := conf.Load(&cfg, nil, "relay", nil); err != nil {
		return nil, fmt.Errorf("relay configuration: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	r := &Relay{
		cfg:       cfg,
		cams:      cams,
		log:       log,
		m:         m,
		ready:     make(chan struct{}),
		sessions:  map[string]*session{},
		perCamera: map[string]int{},
		caches:    map[*stream.Hub]*sharedCache{},
	}
	for _, s := range cfg.STUNServers {
		r.iceServers = append(r.iceServers, webrtc.ICEServer{URLs: []string{s}})
	}
	for _, t := range cfg.TURNServers {
		r.iceServers = append(r.iceServers, webrtc.ICEServer{URLs: []string{t.URL}, Username: t.Username, Credential: t.Credential.Reveal(), CredentialType: webrtc.ICECredentialTypePassword})
	}
	return r, nil
}

// Ready is closed once Run has opened its sockets and serves WHEP.
func (r *Relay) Ready() <-chan struct{} { return r.ready }

// UDPAddr is the bound media address (after Ready).
func (r *Relay) UDPAddr() net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.udpAddr
}

// Run opens the media sockets and serves viewers until ctx ends; then it
// closes every session, waits for their goroutines and closes the sockets.
// A relay runs once.
func (r *Relay) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.ran {
		r.mu.Unlock()
		return errors.New("relay: Run called twice")
	}
	r.ran = true
	r.mu.Unlock()

	pl := pionLogger{log: r.log.With("component", "pion")}
	addr, err := net.ResolveUDPAddr("udp", r.cfg.UDPListen)
	if err != nil {
		return fmt.Errorf("relay.udp_listen: %w", err)
	}
	udp, err := net.ListenUDP("udp", addr)
	if err != nil {
		return fmt.Errorf("relay.udp_listen: %w", err)
	}
	conn := newBatchConn(udp, r.m.sent)
	r.mu.Lock()
	r.media = conn
	r.mu.Unlock()
	udpMux := webrtc.NewICEUDPMux(pl.NewLogger("udpmux"), conn)
	defer udpMux.Close() // closes conn
	var tcpMux ice.TCPMux
	var tcpAddr net.Addr
	if r.cfg.ICETCPListen != "" {
		ln, err := net.Listen("tcp", r.cfg.ICETCPListen)
		if err != nil {
			return fmt.Errorf("relay.ice_tcp_listen: %w", err)
		}
		tcpAddr = ln.Addr()
		tcpMux = webrtc.NewICETCPMux(pl.NewLogger("tcpmux"), ln, 32)
		defer tcpMux.Close() // closes ln
	}
	a, err := newAPI(r.cfg, udpMux, tcpMux, pl)
	if err != nil {
		return err
	}

	r.mu.Lock()
	r.api, r.running, r.udpAddr = a, true, conn.LocalAddr()
	r.mu.Unlock()
	close(r.ready)
	r.log.Info("relay serving WHEP", "udp", conn.LocalAddr().String(), "ice_tcp", addrString(tcpAddr))

	// The janitor: sessions not connected for too long are closed.
	tick := time.NewTicker(janitorInterval(r.cfg.SessionIdleTimeout.D()))
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case now := <-tick.C:
			r.closeIdle(now)
		}
	}

	r.mu.Lock()
	r.running = false
	all := make([]*session, 0, len(r.sessions))
	for _, s := range r.sessions {
		all = append(all, s)
	}
	r.mu.Unlock()
	for _, s := range all {
		s.end(reasonShutdown)
	}
	r.wg.Wait()
	return nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

func janitorInterval(idle time.Duration) time.Duration {
	return min(max(idle/4, 100*time.Millisecond), time.Second)
}

// closeIdle ends the sessions whose peer connection has not been connected
// for the idle timeout.
func (r *Relay) closeIdle(now time.Time) {
	limit := r.cfg.SessionIdleTimeout.D()
	r.mu.Lock()
	var idle []*session
	for _, s := range r.sessions {
		if since := s.notConnectedSince.Load(); since != 0 && now.Sub(time.Unix(0, since)) > limit {
			idle = append(idle, s)
		}
	}
	r.mu.Unlock()
	for _, s := range idle {
		s.end(reasonIdle)
	}
}

// reserve takes a viewer slot on camera, or says why there is none.
func (r *Relay) reserve(camera string) *api.Error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !r.running:
		return api.Errorf(503, api.CodeUnavailable, "the video relay is not running on this node")
	case r.total >= r.cfg.MaxViewers:
		r.m.refused.WithLabelValues("max_viewers").Inc()
		return api.Errorf(503, api.CodeUnavailable, "the relay already serves its maximum of %d viewers (relay.max_viewers); close another video or try again later", r.cfg.MaxViewers)
	case r.perCamera[camera] >= r.cfg.MaxViewersPerCamera:
		r.m.refused.WithLabelValues("max_viewers_per_camera").Inc()
		return api.Errorf(503, api.CodeUnavailable, "camera %q already has its maximum of %d viewers (relay.max_viewers_per_camera); close another view of it or try again later", camera, r.cfg.MaxViewersPerCamera)
	}
	r.total++
	r.perCamera[camera]++
	r.m.viewers.WithLabelValues(camera).Set(float64(r.perCamera[camera]))
	return nil
}

// release gives back a slot taken by reserve.
func (r *Relay) release(camera string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total--
	if r.perCamera[camera]--; r.perCamera[camera] <= 0 {
		delete(r.perCamera, camera)
		r.m.viewers.DeleteLabelValues(camera)
		return
	}
	r.m.viewers.WithLabelValues(camera).Set(float64(r.perCamera[camera]))
}

// start registers a set-up session and starts its goroutines, unless the
// relay has stopped meanwhile.
func (r *Relay) start(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running {
		return false
	}
	r.sessions[s.id] = s
	r.viewing.Store(int32(len(r.sessions)))
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		s.readRTCP()
	}()
	go func() {
		defer r.wg.Done()
		s.run()
		r.remove(s)
	}()
	r.m.started.Inc()
	return true
}

// remove forgets an ended session and gives back its slot.
func (r *Relay) remove(s *session) {
	r.mu.Lock()
	delete(r.sessions, s.id)
	r.viewing.Store(int32(len(r.sessions)))
	r.mu.Unlock()
	r.release(s.camera)
	r.releaseCache(s.st.hub)
	reason := s.endReason()
	r.m.ended.WithLabelValues(reason).Inc()
	args := []any{"camera", s.camera, "session", s.id, "user", s.username, "reason", reason,
		"duration", time.Since(s.started).Round(time.Second), "bytes", s.c.bytes.Load(), "resubscriptions", s.c.resubs.Load()}
	if s.streamErr != nil {
		r.log.Warn("viewer stream failed", append(args, "err", s.streamErr)...)
	} else {
		r.log.Info("viewer left", args...)
	}
	close(s.done)
}

// session returns the session with id.
func (r *Relay) session(id string) (*session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sessions[id]
	return s, ok
}

// list returns the sessions keep selects, oldest first.
func (r *Relay) list(keep func(*session) bool) []*session {
	r.mu.Lock()
	out := make([]*session, 0, len(r.sessions))
	for _, s := range r.sessions {
		if keep(s) {
			out = append(out, s)
		}
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].started.Before(out[j].started) })
	return out
}

// Viewers is the number of sessions, including those being set up.
func (r *Relay) Viewers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// CameraViewers is the number of sessions on one camera.
func (r *Relay) CameraViewers(camera string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.perCamera[camera]
}

// Routes registers the WHEP endpoints, the session list and the play page.
func (r *Relay) Routes(rt *api.Router) {
	rt.Handle("POST", "/api/v1/cameras/{id}/whep", r.handleOffer, api.MaxBody(maxOfferBytes))
	rt.Handle("OPTIONS", "/api/v1/cameras/{id}/whep", r.handleEndpointOptions, api.Public())
	rt.Handle("GET", "/api/v1/whep", r.handleList)
	rt.Handle("DELETE", "/api/v1/whep/{session}", r.handleDelete)
	rt.Handle("PATCH", "/api/v1/whep/{session}", r.handlePatch, api.MaxBody(maxPatchBytes))
	rt.Handle("OPTIONS", "/api/v1/whep/{session}", r.handleSessionOptions, api.Public())
	playRoutes(rt)
}

// metrics are the relay's Prometheus series.
type metrics struct {
	viewers  *prometheus.GaugeVec
	started  prometheus.Counter
	ended    *prometheus.CounterVec
	refused  *prometheus.CounterVec
	bytes    prometheus.Counter
	packets  prometheus.Counter
	resubs   prometheus.Counter
	nacks    prometheus.Counter
	firstKey prometheus.Histogram
	// Datagrams leave the media socket in batches (batchConn).
	udpBatches, udpDatagrams, udpFailed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		viewers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sharpeye_relay_viewers",
			Help: "WebRTC viewers per camera, including sessions being set up.",
		}, []string{"camera"}),
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_relay_sessions_started_total",
			Help: "WHEP sessions set up.",
		}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_relay_sessions_ended_total",
			Help: "WHEP sessions ended, by reason (deleted, idle, failed, peer_closed, camera_removed, codec_changed, shutdown, error).",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_relay_whep_refused_total",
			Help: "WHEP offers refused, by reason.",
		}, []string{"reason"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_relay_sent_bytes_total",
			Help: "RTP bytes (headers and payload, before SRTP) written to viewers.",
		}),
		packets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_relay_sent_packets_total",
			Help: "RTP packets written to viewers (retransmissions excepted).",
		}),
		resubs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_relay_resubscriptions_total",
			Help: "Viewers that fell behind their camera, were dropped and restarted at the latest keyframe.",
		}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_relay_nacked_packets_total",
			Help: "Packets viewers asked to be retransmitted.",
		}),
		firstKey: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sharpeye_relay_time_to_first_keyframe_seconds",
			Help:    "Time from a WHEP offer's arrival to the first keyframe written to the viewer.",
			Buckets: []float64{.025, .05, .1, .2, .35, .5, .75, 1, 1.5, 2, 3, 5, 8, 12},
		}),
		udpBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_relay_udp_send_calls_total",
			Help: "System calls that sent the media socket's datagrams (several datagrams per call where the system has sendmmsg).",
		}),
		udpDatagrams: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_relay_udp_sent_datagrams_total",
			Help: "Datagrams (media, RTCP, ICE, DTLS) handed to the media socket.",
		}),
		udpFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_relay_udp_send_errors_total",
			Help: "Datagrams the system refused to send from the media socket.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.viewers, m.started, m.ended, m.refused, m.bytes, m.packets, m.resubs, m.nacks, m.firstKey, m.udpBatches, m.udpDatagrams, m.udpFailed} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("relay metrics: %w", err)
			}
		}
	}
	return m, nil
}

// sent counts a batch of datagrams sent from the media socket.
func (m *metrics) sent(calls, datagrams, failed int) {
	m.udpBatches.Add(float64(calls))
	m.udpDatagrams.Add(float64(datagrams))
	if failed > 0 {
		m.udpFailed.Add(float64(failed))
	}
}

package simcam

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
)

// DefaultAddress is the RTSP address used when Config.Address is empty: the
// loopback interface, on a port picked at run time.
const DefaultAddress = "127.0.0.1:0"

var (
	// ErrNotStarted is returned by Add before Start.
	ErrNotStarted = errors.New("simcam: server not started")
	// ErrClosed is returned by Start and Add after Close.
	ErrClosed = errors.New("simcam: server closed")
	// ErrPathInUse is returned by Add for a path that already has a camera.
	ErrPathInUse = errors.New("simcam: path in use")
)

// Config configures a Server.
type Config struct {
	// Address is the host:port of the RTSP listener (TCP). Port 0 picks a free
	// port; Addr tells which. It defaults to DefaultAddress. The TCP
	// transport (RTP interleaved in the RTSP connection) is offered unless
	// RefuseTCP is set.
	Address string

	// RefuseTCP, when set, is the status a SETUP for RTP interleaved in
	// the RTSP connection is answered with: 461 Unsupported Transport, as
	// most cameras that refuse it say, or another (some say 400). With the
	// UDP transport enabled it is then the only one. RefusedTCP counts the
	// refusals.
	RefuseTCP base.StatusCode

	// UDPRTPAddress and UDPRTCPAddress enable the UDP transport. gortsplib
	// serves every UDP client from one fixed pair of ports, the RTP one even
	// and the RTCP one next to it. Give both explicitly ("127.0.0.1:8000",
	// "127.0.0.1:8001"), or give UDPRTPAddress with port 0 ("127.0.0.1:0")
	// and leave UDPRTCPAddress empty to have a free pair picked at Start;
	// UDPPorts tells which. Both empty: TCP only.
	UDPRTPAddress, UDPRTCPAddress string

	// Username and Password, when Username is set, are required on every
	// path (checked on DESCRIBE and SETUP), with either Basic or Digest (MD5)
	// authentication. Neither may contain ':'.
	Username, Password string

	// OnUnitSent, if set, is called from the sending goroutine after each
	// access unit is written, with the camera path, the unit's index in its
	// clip, whether it is an IDR (never for garbage) and the wall-clock time
	// just before its first packet was written: the reference for
	// glass-to-glass latency measurements. It must return quickly, and it
	// delays every camera while it runs.
	OnUnitSent func(path string, unitIndex int, idr bool, at time.Time)
}

// Camera describes a simulated camera.
type Camera struct {
	// Path is the URL path, such as "cam01" or "site1/cam01", made of
	// characters that need no escaping in a URL path. Leading and trailing
	// slashes are ignored.
	Path string
	// Clip is looped forever. Cameras given the same *Clip share its memory.
	Clip *Clip
	// ParamsInSDP puts the clip's parameter sets in the SDP, as most
	// cameras do: SPS and PPS in sprop-parameter-sets for H.264; VPS, SPS
	// and PPS in sprop-vps, sprop-sps and sprop-pps for H.265. NewCamera
	// sets it.
	ParamsInSDP bool
	// Delay postpones the first unit after Add. Spreading cameras added
	// together over a GOP spreads their keyframes, which otherwise all leave
	// at the same instant.
	Delay time.Duration
}

// NewCamera returns a camera looping clip at path, with its parameter sets
// in the SDP.
func NewCamera(path string, clip *Clip) Camera {
	return Camera{Path: path, Clip: clip, ParamsInSDP: true}
}

// CameraStats are the counters of one camera since Add.
type CameraStats struct {
	// Units, Packets and Bytes count the access units, RTP packets and RTP
	// bytes (header included) the camera emitted, once however many readers
	// receive them. Units skipped while paused are not counted.
	Units, Packets, Bytes uint64
	// Skipped counts units dropped because the sending goroutine fell more
	// than a second behind (a starved or suspended process).
	Skipped uint64
	// Errors counts packets the stream refused; ReaderErrors counts packets
	// that could not be queued to one reader (its write queue was full).
	Errors, ReaderErrors uint64
	// Readers is the number of sessions playing the camera.
	Readers int
	// LastIDR is when the last keyframe was sent (zero before the first).
	LastIDR time.Time
}

// Server is an RTSP server hosting simulated cameras: each camera loops a
// clip at its frame rate to any number of readers, over TCP or UDP.
//
// All cameras are sent from a single goroutine. Methods are safe for
// concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	mu       sync.RWMutex
	started  bool
	closed   bool
	rtsp     *gortsplib.Server
	addr     string
	rtpPort  int
	rtcpPort int
	cams     map[string]*camera
	packs    map[*Clip]*packedClip
	sched    *scheduler

	refusedTCP atomic.Int64
}

// RefusedTCP is how many SETUPs for RTP over TCP were refused (see
// Config.RefuseTCP).
func (s *Server) RefusedTCP() int64 { return s.refusedTCP.Load() }

// NewServer checks cfg and returns a server; it binds and starts nothing.
// A nil log discards logs.
func NewServer(cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if _, _, err := splitPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("simcam: Address: %w", err)
	}
	if cfg.UDPRTPAddress == "" && cfg.UDPRTCPAddress != "" {
		return nil, errors.New("simcam: UDPRTCPAddress: set without UDPRTPAddress")
	}
	if cfg.UDPRTPAddress != "" {
		if _, _, err := splitPort(cfg.UDPRTPAddress); err != nil {
			return nil, fmt.Errorf("simcam: UDPRTPAddress: %w", err)
		}
	}
	if cfg.UDPRTCPAddress != "" {
		if _, _, err := splitPort(cfg.UDPRTCPAddress); err != nil {
			return nil, fmt.Errorf("simcam: UDPRTCPAddress: %w", err)
		}
	}
	if cfg.Username == "" && cfg.Password != "" {
		return nil, errors.New("simcam: Password: set without Username")
	}
	// gortsplib v4.16.2 splits Basic credentials at every ':' and refuses
	// them if there are more than one.
	if strings.Contains(cfg.Username, ":") {
		return nil, errors.New("simcam: Username: must not contain ':'")
	}
	if strings.Contains(cfg.Password, ":") {
		return nil, errors.New("simcam: Password: must not contain ':' (Basic authentication would fail)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:   cfg,
		log:   log.With("component", "simcam"),
		cams:  make(map[string]*camera),
		packs: make(map[*Clip]*packedClip),
	}, nil
}

// Start binds the listeners and starts the server. Addr is known once it
// returns.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.started:
		return errors.New("simcam: already started")
	}

	ln, err := net.Listen("tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("simcam: %w", err)
	}
	bound := &boundSockets{tcp: ln, udp: make(map[string]net.PacketConn)}
	rs := &gortsplib.Server{
		Handler:      &handler{s: s},
		RTSPAddress:  ln.Addr().String(),
		Listen:       bound.listen,
		ListenPacket: bound.listenPacket,
	}
	var rtpConn, rtcpConn *net.UDPConn
	if s.cfg.UDPRTPAddress != "" {
		rtpConn, rtcpConn, err = listenUDPPair(s.cfg.UDPRTPAddress, s.cfg.UDPRTCPAddress)
		if err != nil {
			ln.Close()
			return fmt.Errorf("simcam: %w", err)
		}
		rs.UDPRTPAddress = rtpConn.LocalAddr().String()
		rs.UDPRTCPAddress = rtcpConn.LocalAddr().String()
		bound.udp[rs.UDPRTPAddress] = rtpConn
		bound.udp[rs.UDPRTCPAddress] = rtcpConn
	}
	if err := rs.Start(); err != nil {
		// Close what gortsplib did not take (closing twice is harmless).
		ln.Close()
		if rtpConn != nil {
			rtpConn.Close()
			rtcpConn.Close()
		}
		return fmt.Errorf("simcam: %w", err)
	}

	s.rtsp = rs
	s.addr = dialable(ln.Addr())
	if rtpConn != nil {
		s.rtpPort = rtpConn.LocalAddr().(*net.UDPAddr).Port
		s.rtcpPort = rtcpConn.LocalAddr().(*net.UDPAddr).Port
	}
	s.sched = newScheduler(s.cfg.OnUnitSent)
	go s.sched.run()
	s.started = true

	s.log.Info("simulated cameras listening", "address", s.addr,
		"udp_rtp_port", s.rtpPort, "udp_rtcp_port", s.rtcpPort, "auth", s.cfg.Username != "")
	return nil
}

// Addr returns the host:port the RTSP listener is bound to, with an
// unspecified host replaced by 127.0.0.1; empty before Start.
func (s *Server) Addr() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.addr
}

// UDPPorts returns the RTP and RTCP ports of the UDP transport, or zeros
// when UDP is off or before Start.
func (s *Server) UDPPorts() (rtp, rtcp int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rtpPort, s.rtcpPort
}

// URL returns the rtsp:// URL of the camera at path, with the configured
// credentials in it.
func (s *Server) URL(path string) string {
	u := url.URL{
		Scheme: "rtsp",
		Host:   s.Addr(),
		Path:   "/" + cleanPath(path),
	}
	if s.cfg.Username != "" {
		u.User = url.UserPassword(s.cfg.Username, s.cfg.Password)
	}
	return u.String()
}

// Add starts a camera: from now on (or after cam.Delay) it sends its clip in
// a loop at the clip's frame rate, with or without readers.
func (s *Server) Add(cam Camera) error {
	path := cleanPath(cam.Path)
	if err := checkPath(path); err != nil {
		return fmt.Errorf("simcam: camera %q: %w", cam.Path, err)
	}
	if cam.Clip == nil {
		return fmt.Errorf("simcam: camera %s: no clip", path)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case !s.started:
		return ErrNotStarted
	case s.cams[path] != nil:
		return fmt.Errorf("simcam: camera %s: %w", path, ErrPathInUse)
	}

	pc := s.packs[cam.Clip]
	if pc == nil {
		var err error
		if pc, err = packClip(cam.Clip); err != nil {
			return fmt.Errorf("simcam: camera %s: clip %s: %w", path, cam.Clip.Name, err)
		}
	}

	var forma format.Format
	if cam.Clip.Codec == H265 {
		f := &format.H265{PayloadTyp: payloadType}
		if cam.ParamsInSDP {
			f.VPS, f.SPS, f.PPS = cam.Clip.VPS, cam.Clip.SPS, cam.Clip.PPS
		}
		forma = f
	} else {
		f := &format.H264{PayloadTyp: payloadType, PacketizationMode: 1}
		if cam.ParamsInSDP {
			f.SPS, f.PPS = cam.Clip.SPS, cam.Clip.PPS
		}
		forma = f
	}
	media := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{forma}}
	stream := &gortsplib.ServerStream{
		Server: s.rtsp,
		Desc:   &description.Session{Title: path, Medias: []*description.Media{media}},
	}
	if err := stream.Initialize(); err != nil {
		return fmt.Errorf("simcam: camera %s: %w", path, err)
	}

	pc.refs++
	s.packs[cam.Clip] = pc
	c := &camera{
		path:    path,
		clip:    pc,
		stream:  stream,
		media:   media,
		start:   time.Now().Add(max(cam.Delay, 0)),
		seq:     uint16(rand.Uint32()),
		rtpBase: rand.Uint32(),
		index:   -1,
	}
	s.cams[path] = c
	s.sched.add(c)
	s.log.Debug("camera added", "path", path, "clip", cam.Clip.Name, "params_in_sdp", cam.ParamsInSDP)
	return nil
}

// Remove stops the camera at path and forgets it: its readers' sessions are
// closed and DESCRIBE answers 404. It reports whether there was one.
func (s *Server) Remove(path string) bool {
	path = cleanPath(path)
	s.mu.Lock()
	c := s.cams[path]
	if c != nil {
		delete(s.cams, path)
		s.release(c.clip)
	}
	s.mu.Unlock()
	if c == nil {
		return false
	}
	s.sched.remove(c)
	c.stream.Close()
	s.log.Debug("camera removed", "path", path)
	return true
}

// release drops a camera's reference to a packed clip; s.mu is held.
func (s *Server) release(pc *packedClip) {
	pc.refs--
	if pc.refs == 0 {
		delete(s.packs, pc.clip)
	}
}

// Pause stops the camera at path sending packets, as a hung camera does:
// its path and its readers' sessions stay, and its timeline runs on, so that
// after Resume it carries on with the unit due then (not necessarily a
// keyframe), with timestamps showing the gap. Once Pause returns no packet
// is sent. It reports whether there is such a camera.
func (s *Server) Pause(path string) bool {
	return s.set(path, func(c *camera) { c.paused = true })
}

// Resume undoes Pause. It reports whether there is such a camera.
func (s *Server) Resume(path string) bool {
	return s.set(path, func(c *camera) { c.paused = false })
}

// SetGarbage switches the camera at path to sending random payloads in
// valid RTP packets (same sizes, sequence numbers and timestamps as the real
// ones) instead of video, or back. It reports whether there is such a
// camera.
func (s *Server) SetGarbage(path string, on bool) bool {
	return s.set(path, func(c *camera) { c.garbage = on })
}

func (s *Server) set(path string, f func(*camera)) bool {
	c := s.lookup(path)
	if c == nil {
		return false
	}
	c.sendMu.Lock()
	f(c)
	c.sendMu.Unlock()
	return true
}

func (s *Server) lookup(path string) *camera {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cams[cleanPath(path)]
}

// Paths returns the paths of the cameras, sorted.
func (s *Server) Paths() []string {
	s.mu.RLock()
	paths := make([]string, 0, len(s.cams))
	for p := range s.cams {
		paths = append(paths, p)
	}
	s.mu.RUnlock()
	slices.Sort(paths)
	return paths
}

// Stats returns the RTP packets and bytes the camera at path has sent since
// Add (counted once, whatever the number of readers) and its number of
// readers; zeros for an unknown path.
func (s *Server) Stats(path string) (packets, bytes uint64, readers int) {
	st, _ := s.Camera(path)
	return st.Packets, st.Bytes, st.Readers
}

// Camera returns the counters of the camera at path, and whether there is
// one.
func (s *Server) Camera(path string) (CameraStats, bool) {
	c := s.lookup(path)
	if c == nil {
		return CameraStats{}, false
	}
	st := CameraStats{
		Units:        c.units.Load(),
		Packets:      c.packets.Load(),
		Bytes:        c.bytes.Load(),
		Skipped:      c.skipped.Load(),
		Errors:       c.errors.Load(),
		ReaderErrors: c.readerErrors.Load(),
		Readers:      int(c.readers.Load()),
	}
	if ns := c.lastIDR.Load(); ns != 0 {
		st.LastIDR = time.Unix(0, ns)
	}
	return st, true
}

// Close stops every camera, closes every session and the listeners, and
// waits for all goroutines to end. The server cannot be started again.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	started := s.started
	cams := s.cams
	s.cams = make(map[string]*camera)
	s.packs = make(map[*Clip]*packedClip)
	s.mu.Unlock()

	if !started {
		return
	}
	s.sched.stop()
	for _, c := range cams {
		c.stream.Close()
	}
	s.rtsp.Close()
	s.log.Info("simulated cameras closed", "address", s.addr, "cameras", len(cams))
}

// cleanPath trims the slashes around a camera path.
func cleanPath(p string) string {
	return strings.Trim(p, "/")
}

// checkPath checks a cleaned camera path: non-empty segments that need no
// escaping in a URL path.
func checkPath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." || url.PathEscape(seg) != seg {
			return fmt.Errorf("bad path segment %q", seg)
		}
	}
	return nil
}

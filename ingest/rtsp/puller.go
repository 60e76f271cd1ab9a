// Package rtsp speaks RTSP for the ingest role: the Puller keeps one
// session per camera and feeds the camera's stream hub; the Server
// re-serves every camera at rtsp://host:8554/{camera-id} so that relays on
// other nodes, recorders and VLC pull from Sharpeye instead of the camera.
package rtsp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/pion/rtp"

	"sharpeye/configs/conf"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/stream"
)

// PullConfig is the ingest.pull section of the configuration.
type PullConfig struct {
	// ReadTimeout: a camera silent this long is offline.
	ReadTimeout conf.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds each RTSP request.
	WriteTimeout conf.Duration `yaml:"write_timeout"`
	// BackoffMin and BackoffMax bound the wait between reconnects, doubled
	// at each failure, with jitter.
	BackoffMin conf.Duration `yaml:"backoff_min"`
	BackoffMax conf.Duration `yaml:"backoff_max"`
	// OnDemandIdle stops an on-demand camera this long after its last
	// viewer left.
	OnDemandIdle conf.Duration `yaml:"on_demand_idle"`
	// ReadInterval: while cameras stream over TCP, their sockets are
	// looked at once this often and read together (see reactor); 0 reads
	// each burst as it comes, through Go's poller.
	ReadInterval conf.Duration `yaml:"read_interval"`
	// UDPReadBuffer is the receive buffer of each camera's RTP socket
	// over UDP (0: the system's default), at most net.core.rmem_max.
	UDPReadBuffer conf.Size `yaml:"udp_read_buffer"`
}

// Bounds of UDPReadBuffer.
const (
	MinUDPReadBuffer = 64 << 10
	MaxUDPReadBuffer = 64 << 20
)

// MaxReadInterval bounds ReadInterval: each packet may wait that long.
const MaxReadInterval = 20 * time.Millisecond

// DefaultPullConfig returns the compiled defaults.
func DefaultPullConfig() PullConfig {
	return PullConfig{
		ReadTimeout:   conf.Duration(10 * time.Second),
		WriteTimeout:  conf.Duration(10 * time.Second),
		BackoffMin:    conf.Duration(time.Second),
		BackoffMax:    conf.Duration(30 * time.Second),
		OnDemandIdle:  conf.Duration(30 * time.Second),
		ReadInterval:  conf.Duration(2 * time.Millisecond),
		UDPReadBuffer: 1 << 20,
	}
}

// Validate implements conf.Validator.
func (c *PullConfig) Validate(v *conf.V) {
	for _, f := range []struct {
		key string
		d   conf.Duration
	}{{"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}, {"backoff_min", c.BackoffMin}, {"backoff_max", c.BackoffMax}, {"on_demand_idle", c.OnDemandIdle}} {
		if f.d.D() <= 0 {
			v.Errorf(f.key, "must be positive")
		}
	}
	if d := c.ReadTimeout.D(); d > 0 && d < 2*time.Second {
		v.Errorf("read_timeout", "must be at least 2s (gortsplib counts whole seconds since a camera's last packet)")
	}
	if d := c.ReadInterval.D(); d < 0 || d > MaxReadInterval {
		v.Errorf("read_interval", "must be between 0 (off) and %s", MaxReadInterval)
	}
	if b := c.UDPReadBuffer; b != 0 && (b < MinUDPReadBuffer || b > MaxUDPReadBuffer) {
		v.Errorf("udp_read_buffer", "must be 0 (the system's default) or between %s and %s", conf.Size(MinUDPReadBuffer), conf.Size(MaxUDPReadBuffer))
	}
	if c.BackoffMax.D() < c.BackoffMin.D() {
		v.Errorf("backoff_max", "must be at least backoff_min")
	}
}

// State is where a camera's pull stands.
type State string

// The states.
const (
	StateIdle       State = "idle"       // on-demand, nobody watching
	StateConnecting State = "connecting" // session being set up
	StateOnline     State = "online"     // media flowing
	StateOffline    State = "offline"    // unreachable or silent; retrying
	StateError      State = "error"      // answered, but unusable (auth, codec); retrying
	StateDisabled   State = "disabled"
)

// Status is a camera's pull state and statistics.
type Status struct {
	State  State     `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// Transport actually used: udp or tcp.
	Transport string `json:"transport,omitempty"`
	Codec     string `json:"codec,omitempty"`
	Width     int    `json:"width,omitempty"`
	Height    int    `json:"height,omitempty"`
	// Bitrate (bit/s) and FrameRate over the last few seconds.
	Bitrate   float64 `json:"bitrate"`
	FrameRate float64 `json:"frame_rate"`
	// KeyframeInterval between the last two keyframes.
	KeyframeInterval float64 `json:"keyframe_interval_seconds"`
	PacketsReceived  uint64  `json:"rtp_packets_received"`
	PacketsLost      uint64  `json:"rtp_packets_lost"`
	// Jitter is the RTP interarrival jitter (RFC 3550), in milliseconds.
	Jitter       float64   `json:"rtp_jitter_ms"`
	DecodeErrors uint64    `json:"decode_errors"`
	LastPacket   time.Time `json:"last_packet,omitzero"`
	Reconnects   uint64    `json:"reconnects"`
}

// Puller keeps one camera's RTSP session alive and feeds its hub.
type Puller struct {
	cam camera.Camera
	hub *stream.Hub
	cfg PullConfig
	log *slog.Logger
	// upstream is set when the puller dials an ingest node's re-serve
	// rather than the camera: its errors then name that node.
	upstream bool
	// peer: the upstream is another node of a cluster (FromClusterPeer).
	peer bool
	// onFailed, if set, hears of each failed session.
	onFailed func(error)
	// idleOn is the hub's change signal at the last time the puller, on
	// demand, looked for viewers and found none.
	idleOn atomic.Value // <-chan struct{}

	mu     sync.Mutex
	status Status
	online time.Duration // in online stretches that have ended

	packets, lost, decodeErrs, reconnects atomic.Uint64
	// tapped: the current session's packets come through the tap.
	tapped     atomic.Bool
	jitterMs   atomic.Uint64 // float64 bits, of the current session
	lastPacket atomic.Int64
	transport  atomic.Value // string: udp or tcp
	// tcpRefusedAt is when the camera (transport auto) last refused RTSP
	// over TCP (Unix nanoseconds; 0: never, or UDP failed since): until
	// tcpRetryAfter has passed, its sessions ask for UDP.
	tcpRefusedAt atomic.Int64
}

// sessions counts the RTSP sessions running in the process, of every
// puller.
var sessions atomic.Int64

// Sessions is how many RTSP sessions run in the process.
func Sessions() int64 { return sessions.Load() }

// reactorMinSessions is how many RTSP sessions must run in the process
// for a new one's connection to be read by a reactor (see reactor).
var reactorMinSessions int64 = 64

// rmemMax is the largest receive buffer a socket may ask for
// (net.core.rmem_max; 0 where unknown).
var rmemMax = sync.OnceValue(func() int {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
})

// rmemWarned: the lowered UDP buffer is logged once.
var rmemWarned atomic.Bool

// udpReadBuffer is the receive buffer to ask gortsplib for: want, lowered
// to net.core.rmem_max, which the kernel would silently apply (gortsplib
// then refuses the session), with a warning the first time.
func udpReadBuffer(want int, log *slog.Logger) int {
	limit := rmemMax()
	if want <= 0 || limit <= 0 || want <= limit {
		return want
	}
	if rmemWarned.CompareAndSwap(false, true) {
		log.Warn("ingest.pull.udp_read_buffer is above the system's net.core.rmem_max: cameras over UDP get the smaller buffer and may lose packets in bursts; raise it with sysctl -w net.core.rmem_max=N",
			"udp_read_buffer", want, "rmem_max", limit)
	}
	return limit
}

// tcpRetryAfter is how long a camera that refused RTSP over TCP is pulled
// over UDP before TCP is asked for again (its firmware may change, or the
// refusal have been a passing limit on connections).
const tcpRetryAfter = 10 * time.Minute

// NewPuller returns a puller for cam feeding hub.
func NewPuller(cam camera.Camera, hub *stream.Hub, cfg PullConfig, log *slog.Logger) *Puller {
	p := &Puller{cam: cam, hub: hub, cfg: cfg, log: log.With("camera", cam.ID)}
	p.status = Status{State: StateConnecting, Since: time.Now().UTC()}
	if cam.OnDemand {
		p.status.State = StateIdle
	}
	return p
}

// FromUpstream tells the puller that it dials an ingest node's re-serve
// (relay.upstream), not the camera, so that its errors name the right
// peer. Call it before Run.
func (p *Puller) FromUpstream() { p.upstream = true }

// FromClusterPeer tells the puller that it dials the re-serve of another
// node of a cluster: it says so (PeerUserAgent), so that a node that does
// not pull the camera itself refuses it rather than relaying it. Call it
// before Run.
func (p *Puller) FromClusterPeer() { p.upstream, p.peer = true, true }

func (p *Puller) userAgent() string {
	if p.peer {
		return PeerUserAgent
	}
	return "Sharpeye"
}

// OnSessionFailed has fn called each time a session fails (not when it
// ends for want of viewers or because Run was stopped), before the wait
// to retry: a cluster node pulling from another looks at once for a new
// owner. Call it before Run.
func (p *Puller) OnSessionFailed(fn func(error)) { p.onFailed = fn }

// IdleSince reports whether the puller, on demand, has looked for viewers
// since the hub's last change (changed: the hub's Changed() now) and
// stayed idle: what a test waits for before asserting it did not start.
func (p *Puller) IdleSince(changed <-chan struct{}) bool {
	ch, _ := p.idleOn.Load().(<-chan struct{})
	return ch == changed
}

// Camera is the record the puller runs for.
func (p *Puller) Camera() camera.Camera { return p.cam }

// errIdle ends an on-demand session nobody watches.
var errIdle = errors.New("no viewers")

// Run keeps the camera pulled until ctx is cancelled: one session at a
// time, reconnecting with capped exponential backoff and jitter. A camera
// that never answers costs nothing but its timer.
func (p *Puller) Run(ctx context.Context) error {
	defer p.hub.ClearTrack()
	backoff := p.cfg.BackoffMin.D()
	for {
		if p.cam.OnDemand {
			p.setState(StateIdle, "")
			if !p.waitForViewers(ctx) {
				return nil
			}
		}
		p.setState(StateConnecting, "")
		start := time.Now()
		sessions.Add(1)
		err := p.session(ctx)
		sessions.Add(-1)
		p.hub.ClearTrack()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errIdle) {
			p.log.Info("on-demand camera stopped: no viewers")
			backoff = p.cfg.BackoffMin.D()
			continue
		}
		if time.Since(start) > 2*p.cfg.BackoffMax.D() {
			backoff = p.cfg.BackoffMin.D() // it worked for a good while
		}
		state := StateOffline
		var re *camError
		if errors.As(err, &re) {
			state = StateError
		}
		reason := conf.RedactURLs(errString(err))
		p.setState(state, reason)
		p.reconnects.Add(1)
		p.log.Warn("camera session ended", "state", state, "reason", reason, "retry_in", backoff.Round(time.Millisecond))
		if p.onFailed != nil {
			p.onFailed(err)
		}

		// Full jitter on the upper half: spreads a fleet's reconnects after
		// a network cut without making anyone wait longer than the cap.
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, p.cfg.BackoffMax.D())
	}
}

func errString(err error) string {
	if err == nil {
		return "session ended"
	}
	return err.Error()
}

// camError is a failure of the camera itself (it answered, but wrongly):
// the state is error rather than offline.
type camError struct{ msg string }

func (e *camError) Error() string { return e.msg }

func (p *Puller) waitForViewers(ctx context.Context) bool {
	for {
		ch := p.hub.Changed()
		if p.hub.Subscribers() > 0 {
			return true
		}
		p.idleOn.Store(ch)
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}

func (p *Puller) setState(s State, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status.State != s || p.status.Reason != reason {
		now := time.Now().UTC()
		if p.status.State == StateOnline {
			p.online += now.Sub(p.status.Since)
		}
		p.status.State, p.status.Reason, p.status.Since = s, reason, now
	}
	if s != StateOnline {
		p.status.Transport = ""
	}
}

// tcpRefusedError: the camera answered a SETUP for RTP over TCP with
// something other than OK, authentication or not found (461 Unsupported
// Transport, most often; some say 400 or 501), or with UDP.
type tcpRefusedError struct{ *camError }

func (e tcpRefusedError) Unwrap() error { return e.camError }

// tcpRefused describes a refusal of RTSP over TCP, naming the setting
// that chooses the transport.
func (p *Puller) tcpRefused(answer string) error {
	what, setting := "the camera", "set its transport to auto or udp"
	if p.peer {
		what, setting = "the ingest node pulling the camera", "set ingest.cluster.transport to auto or udp"
	} else if p.upstream {
		what, setting = "the upstream ingest node", "set relay.upstream.transport to auto or udp"
	}
	return tcpRefusedError{&camError{what + " refused RTSP over TCP (" + answer + "): " + setting}}
}

// session runs one RTSP session until it fails, ctx ends or (on demand)
// nobody watches. Transport auto asks for TCP first: every packet
// arrives, in order, through NATs and firewalls that drop UDP, and the
// tap reads it for less CPU than one read per datagram takes. A camera
// that refuses TCP (see sessionOver; not under TLS, which needs it) is
// asked for UDP at once, and for tcpRetryAfter more, unless UDP fails
// too.
func (p *Puller) session(ctx context.Context) error {
	auto := p.cam.Transport != camera.TransportUDP && p.cam.Transport != camera.TransportTCP
	transport := p.cam.Transport
	if auto {
		transport = camera.TransportTCP
		if at := p.tcpRefusedAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < tcpRetryAfter {
			transport = camera.TransportUDP
		}
	}
	err := p.sessionOver(ctx, transport)
	var refused tcpRefusedError
	if auto && errors.As(err, &refused) && ctx.Err() == nil {
		p.tcpRefusedAt.Store(time.Now().UnixNano())
		p.log.Info("camera refused RTSP over TCP; pulling over UDP", "reason", refused.msg, "url", p.cam.RedactedURL())
		transport = camera.TransportUDP
		err = p.sessionOver(ctx, transport)
	}
	if auto && transport == camera.TransportUDP && !p.wentOnline() && ctx.Err() == nil && !errors.Is(err, errIdle) {
		p.tcpRefusedAt.Store(0) // UDP does not work either: TCP again next time
	}
	return err
}

// wentOnline says whether the session that just ended was online: Run
// sets the state anew only after session returns.
func (p *Puller) wentOnline() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status.State == StateOnline
}

// sessionOver is session over one transport, tcp or udp.
func (p *Puller) sessionOver(ctx context.Context, transport string) error {
	u, err := base.ParseURL(p.cam.URL)
	if err != nil {
		return &camError{"bad url: " + conf.RedactURLs(err.Error())}
	}
	if user, pass := p.cam.Credentials(); user != "" {
		u.User = url.UserPassword(user, pass)
	}
	// Over TCP the tap takes the RTP packets out of the connection (see
	// tap); taken is what it hands them to, set once the track is known.
	var tapped atomic.Pointer[tap]
	var taken *receiver
	t := gortsplib.TransportTCP
	if transport == camera.TransportUDP {
		t = gortsplib.TransportUDP
	}
	p.transport.Store(transport)
	c := &gortsplib.Client{
		Scheme:        u.Scheme,
		Host:          u.Host,
		Transport:     &t,
		ReadTimeout:   p.cfg.ReadTimeout.D(),
		WriteTimeout:  p.cfg.WriteTimeout.D(),
		UserAgent:     p.userAgent(),
		OnPacketsLost: func(n uint64) { p.lost.Add(n) },
		OnDecodeError: func(error) { p.decodeErrs.Add(1) },
	}
	if t == gortsplib.TransportUDP {
		// Asked (and rmem_max looked at) only for UDP sessions: a node
		// whose cameras all stream over TCP is not warned about it.
		c.UDPReadBufferSize = udpReadBuffer(int(p.cfg.UDPReadBuffer), p.log)
	}
	if u.Scheme == "rtsp" && t == gortsplib.TransportTCP {
		// Under TLS the tap would read ciphertext.
		c.DialContext = tapDialer(&tapped, min(tapBeat, p.cfg.ReadTimeout.D()/4), p.cfg.ReadInterval.D(), func(pkt []byte, hl int, now time.Time) { taken.packet(pkt, hl, now) })
	}
	if err := c.Start2(); err != nil {
		return err
	}
	defer c.Close()

	// Close the client when ctx ends, so that a request in progress
	// returns at once.
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()

	desc, _, err := c.Describe(u)
	if err != nil {
		return p.describeError(err)
	}
	medi, forma, track, err := findVideo(desc)
	if err != nil {
		return err
	}
	res, err := c.Setup(desc.BaseURL, medi, 0, 0)
	if t == gortsplib.TransportTCP && u.Scheme == "rtsp" {
		// A refusal of TCP (under TLS, which needs TCP, the answer as it is).
		var status liberrors.ErrClientBadStatusCode
		var udp liberrors.ErrClientServerRequestedUDP
		switch {
		case errors.As(err, &status) && status.Code != base.StatusUnauthorized && status.Code != base.StatusForbidden && status.Code != base.StatusNotFound:
			return p.tcpRefused(fmt.Sprintf("%d %s", status.Code, status.Message))
		case errors.As(err, &udp):
			return p.tcpRefused("it offered UDP")
		}
	}
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	p.hub.SetTrack(track)
	p.jitterMs.Store(0)
	var jitter jitterMeter // the packet callback's own, like the depacketizer: gortsplib calls it from one goroutine

	recv := newReceiver(p, forma.PayloadType(), track.Codec, &jitter)
	if t, ch := tapped.Load(), interleavedChannel(res); t != nil && ch >= 0 {
		taken = recv
		t.take(ch)
		p.tapped.Store(true)
	} else {
		// gortsplib reads the packets (over UDP, or under TLS), puts them
		// in order and counts the losses.
		p.tapped.Store(false)
		c.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
			if m == medi {
				recv.take(rtpPacket{marker: pkt.Marker, seq: pkt.SequenceNumber, ts: pkt.Timestamp, payload: pkt.Payload}, pkt.PayloadType, nil, time.Now())
			}
		})
	}
	if _, err := c.Play(nil); err != nil {
		return fmt.Errorf("play: %w", err)
	}
	p.mu.Lock()
	p.status.State, p.status.Reason, p.status.Since = StateOnline, "", time.Now().UTC()
	p.status.Codec = string(track.Codec)
	p.mu.Unlock()
	p.log.Info("camera online", "codec", track.Codec, "url", p.cam.RedactedURL())

	if !p.cam.OnDemand {
		// Until the session fails or ctx ends (which closes the client):
		// no goroutine of its own to watch for viewers.
		return c.Wait()
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()

	var idle <-chan time.Time
	var idleTimer *time.Timer
	for {
		changed := p.hub.Changed()
		if p.hub.Subscribers() == 0 && idle == nil {
			idleTimer = time.NewTimer(p.cfg.OnDemandIdle.D())
			idle = idleTimer.C
		} else if idleTimer != nil && p.hub.Subscribers() > 0 {
			idleTimer.Stop()
			idle, idleTimer = nil, nil
		}
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			c.Close()
			<-done
			return nil
		case <-idle:
			c.Close()
			<-done
			return errIdle
		case <-changed:
		}
	}
}

func (p *Puller) describeError(err error) error {
	msg := err.Error()
	unauthorized := strings.Contains(msg, "401") || strings.Contains(strings.ToLower(msg), "unauthorized")
	switch {
	case unauthorized && p.upstream:
		return &camError{"authentication refused by the upstream ingest node (check relay.upstream username and password)"}
	case unauthorized:
		return &camError{"authentication refused by the camera (check username and password)"}
	case strings.Contains(msg, "404") && p.upstream:
		return &camError{"camera not found on the upstream ingest node (is it in that node's registry, and not disabled?)"}
	case strings.Contains(msg, "404"):
		return &camError{"stream not found on the camera (check the URL path)"}
	}
	return fmt.Errorf("describe: %w", err)
}

// findVideo picks the camera's video track (H.264, else H.265).
func findVideo(desc *description.Session) (*description.Media, format.Format, stream.Track, error) {
	var h264 *format.H264
	if medi := desc.FindFormat(&h264); medi != nil {
		if h264.PacketizationMode > 1 {
			// Interleaved mode (RFC 6184's STAP-B, MTAP and FU-B): cameras do not use it.
			return nil, nil, stream.Track{}, &camError{fmt.Sprintf("H.264 packetization-mode %d is not supported (only 0 and 1)", h264.PacketizationMode)}
		}
		return medi, h264, stream.Track{Codec: stream.H264, SPS: h264.SPS, PPS: h264.PPS}, nil
	}
	var h265 *format.H265
	if medi := desc.FindFormat(&h265); medi != nil {
		return medi, h265, stream.Track{Codec: stream.H265, VPS: h265.VPS, SPS: h265.SPS, PPS: h265.PPS}, nil
	}
	var codecs []string
	for _, m := range desc.Medias {
		for _, f := range m.Formats {
			codecs = append(codecs, f.Codec())
		}
	}
	return nil, nil, stream.Track{}, &camError{fmt.Sprintf("no H.264 or H.265 video (the camera offers %s)", strings.Join(codecs, ", "))}
}

// Status returns the camera's state and statistics.
func (p *Puller) Status() Status {
	p.mu.Lock()
	st := p.status
	p.mu.Unlock()
	var keyEvery time.Duration
	st.Bitrate, st.FrameRate, keyEvery = p.hub.Rates()
	st.KeyframeInterval = keyEvery.Seconds()
	st.Jitter = math.Float64frombits(p.jitterMs.Load())
	if t, ok := p.hub.Track(); ok {
		st.Width, st.Height = t.Width, t.Height
	}
	if st.State == StateOnline {
		st.Transport, _ = p.transport.Load().(string)
	}
	st.PacketsReceived, st.PacketsLost, st.DecodeErrors, st.Reconnects = p.packets.Load(), p.lost.Load(), p.decodeErrs.Load(), p.reconnects.Load()
	if n := p.lastPacket.Load(); n != 0 {
		st.LastPacket = time.Unix(0, n).UTC()
	}
	return st
}

// OnlineTime is how long the camera has been online since the puller was
// made, up to at (a time in the current online stretch or after it, such
// as a moment ago): the health reports diff it between window ends.
func (p *Puller) OnlineTime(at time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.online
	if p.status.State == StateOnline && at.After(p.status.Since) {
		d += at.Sub(p.status.Since)
	}
	return d
}

// jitterMeter is RFC 3550's interarrival jitter estimate at 90 kHz.
type jitterMeter struct {
	have    bool
	arrival time.Time
	ts      uint32
	j       float64 // in timestamp units
}

// add takes a packet's arrival and RTP timestamp; it reports whether the
// estimate changed (the first packet of a new timestamp).
func (m *jitterMeter) add(arrival time.Time, ts uint32) bool {
	if m.have && ts == m.ts {
		return false
	}
	changed := m.have
	if m.have {
		d := arrival.Sub(m.arrival).Seconds()*90000 - float64(int32(ts-m.ts))
		if d < 0 {
			d = -d
		}
		m.j += (d - m.j) / 16
	}
	m.have, m.arrival, m.ts = true, arrival, ts
	return changed
}

// arrived counts a packet of the session's video read at now, with RTP
// timestamp ts: both paths (the tap's and gortsplib's) call it for each
// packet.
func (p *Puller) arrived(j *jitterMeter, now time.Time, ts uint32) {
	p.packets.Add(1)
	p.lastPacket.Store(now.UnixNano())
	if j.add(now, ts) {
		p.jitterMs.Store(math.Float64bits(j.ms()))
	}
}

func (m *jitterMeter) ms() float64 { return m.j / 90 }

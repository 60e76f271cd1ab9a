package relay

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"sharpeye/ingest/stream"
)

// Reasons a session ends (label of sharpeye_relay_sessions_ended_total).
const (
	reasonDeleted       = "deleted"        // DELETE on the session
	reasonIdle          = "idle"           // not connected for session_idle_timeout
	reasonFailed        = "failed"         // ICE or DTLS failed
	reasonPeerClosed    = "peer_closed"    // the viewer closed its peer connection
	reasonCameraRemoved = "camera_removed" // the camera left the registry
	reasonCodecChanged  = "codec_changed"  // the camera restarted with another codec
	reasonShutdown      = "shutdown"       // the relay stopped
	reasonError         = "error"          // writing to the peer failed
)

// session is one viewer: a peer connection with one send-only video track
// fed by its own hub subscription.
type session struct {
	id, etag         string
	camera           string
	userID, username string
	started          time.Time
	codec            stream.Codec
	remoteUfrag      string

	pc     *webrtc.PeerConnection
	track  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	st     *streamer

	stop      chan struct{} // closed by end
	stopOnce  sync.Once
	reasonMu  sync.Mutex
	reason    string
	connected chan struct{} // closed once the peer's DTLS is up
	connOnce  sync.Once
	done      chan struct{} // closed when torn down and forgotten

	streamErr         error        // why the stream stopped, for reasonError
	state             atomic.Int32 // webrtc.PeerConnectionState
	notConnectedSince atomic.Int64 // unix nanos; 0 while connected
	c                 counters
}

// end asks the session to stop, for reason (the first reason given wins).
func (s *session) end(reason string) {
	s.stopOnce.Do(func() {
		s.reasonMu.Lock()
		s.reason = reason
		s.reasonMu.Unlock()
		close(s.stop)
	})
}

func (s *session) endReason() string {
	s.reasonMu.Lock()
	defer s.reasonMu.Unlock()
	return s.reason
}

// onState follows the peer connection's state (pion calls it on a
// goroutine of its own).
func (s *session) onState(st webrtc.PeerConnectionState) {
	s.state.Store(int32(st))
	switch st {
	case webrtc.PeerConnectionStateConnected:
		s.notConnectedSince.Store(0)
		s.connOnce.Do(func() {
			// pion reports the DTLS transport connected just before it
			// sets up SRTP, under the transport's lock; before SRTP is up,
			// writes are silently dropped, which would lose the burst.
			// State() takes that lock: once it returns, SRTP is ready.
			s.sender.Transport().State()
			close(s.connected)
		})
	case webrtc.PeerConnectionStateFailed:
		s.end(reasonFailed)
	case webrtc.PeerConnectionStateClosed:
		s.end(reasonPeerClosed)
	default: // new, connecting, disconnected
		s.notConnectedSince.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// writeRTP writes one packet to the viewer's track. Only a closed peer
// connection stops the stream; other errors are counted.
func (s *session) writeRTP(p *rtp.Packet) error {
	err := s.track.WriteRTP(p)
	if err == nil {
		return nil
	}
	if errors.Is(err, io.ErrClosedPipe) || errors.Is(err, io.EOF) {
		return err
	}
	s.c.packetErrors.Add(1)
	return nil
}

// run streams until the session ends, then tears the peer connection
// down.
func (s *session) run() {
	err := s.st.run(s.stop, s.connected)
	switch {
	case errors.Is(err, errStopped):
	case errors.Is(err, errCameraRemoved):
		s.end(reasonCameraRemoved)
	case errors.Is(err, errCodecChanged):
		s.end(reasonCodecChanged)
	case s.pc.ConnectionState() == webrtc.PeerConnectionStateClosed:
		s.end(reasonPeerClosed)
	case s.pc.ConnectionState() == webrtc.PeerConnectionStateFailed:
		s.end(reasonFailed)
	default:
		s.streamErr = err
		s.end(reasonError)
	}
	// Waits for pion's goroutines, including the end of readRTCP.
	_ = s.pc.GracefulClose()
}

// readRTCP reads the viewer's RTCP: reading is what runs the NACK
// responder; receiver reports give loss and round-trip time.
func (s *session) readRTCP() {
	var ssrc uint32
	if enc := s.sender.GetParameters().Encodings; len(enc) > 0 {
		ssrc = uint32(enc[0].SSRC)
	}
	for {
		pkts, _, err := s.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.ReceiverReport:
				s.report(p.Reports, ssrc)
			case *rtcp.SenderReport:
				s.report(p.Reports, ssrc)
			case *rtcp.TransportLayerNack:
				var n uint64
				for _, pair := range p.Nacks {
					pair.Range(func(uint16) bool { n++; return true })
				}
				s.c.nacks.Add(n)
				s.st.m.nacks.Add(float64(n))
			case *rtcp.PictureLossIndication:
				s.c.plis.Add(1)
			case *rtcp.FullIntraRequest:
				s.c.firs.Add(1)
			}
		}
	}
}

// report records a receiver report block about our stream.
func (s *session) report(reports []rtcp.ReceptionReport, ssrc uint32) {
	for _, r := range reports {
		if r.SSRC != ssrc {
			continue
		}
		s.c.fractionLost.Store(uint32(r.FractionLost))
		s.c.lost.Store(int64(r.TotalLost & 0xffffff))
		s.c.jitter.Store(int64(r.Jitter))
		if rtt, ok := roundTrip(r.LastSenderReport, r.Delay, time.Now()); ok {
			s.c.rttMicros.Store(rtt.Microseconds())
		}
	}
}

// roundTrip computes the round-trip time from a report block (RFC 3550
// §6.4.1): arrival - LSR - DLSR, in 1/65536 s of the NTP clock.
func roundTrip(lsr, dlsr uint32, now time.Time) (time.Duration, bool) {
	if lsr == 0 {
		return 0, false
	}
	d := int32(ntpCompact(now) - lsr - dlsr)
	if d < 0 {
		return 0, false
	}
	return time.Duration(int64(d) * int64(time.Second) / 65536), true
}

// ntpCompact is the middle 32 bits of the NTP timestamp of t.
func ntpCompact(t time.Time) uint32 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return uint32((secs<<32 | frac) >> 16)
}

// SessionInfo describes a WHEP session in GET /api/v1/whep.
type SessionInfo struct {
	ID       string    `json:"id"`
	Camera   string    `json:"camera"`
	UserID   string    `json:"user_id"`
	Username string    `json:"username"`
	Started  time.Time `json:"started"`
	// State is the peer connection's: new, connecting, connected,
	// disconnected, failed, closed.
	State string `json:"state"`
	Codec string `json:"codec"`
	// BytesSent and PacketsSent count RTP written (headers and payload,
	// before SRTP; retransmissions excepted).
	BytesSent   uint64 `json:"bytes_sent"`
	PacketsSent uint64 `json:"packets_sent"`
	UnitsSent   uint64 `json:"frames_sent"`
	// KeyframesSent counts keyframes, the burst's first included.
	KeyframesSent uint64 `json:"keyframes_sent"`
	// BurstFrames is how many frames of the camera's cached GOP started
	// the session at once.
	BurstFrames uint64 `json:"burst_frames"`
	// FirstKeyframeMillis is the time from the offer to the first
	// keyframe written; absent until then.
	FirstKeyframeMillis *float64 `json:"first_keyframe_ms,omitempty"`
	// NACKs counts packets the viewer asked again; PLIs its requests for
	// a keyframe (which only the camera's next keyframe answers).
	NACKs uint64 `json:"nacks"`
	PLIs  uint64 `json:"plis"`
	// RTTMillis, LossPercent, PacketsLost and Jitter come from the
	// viewer's last receiver report.
	RTTMillis   *float64 `json:"rtt_ms,omitempty"`
	LossPercent float64  `json:"loss_percent"`
	PacketsLost int64    `json:"packets_lost"`
	Jitter      int64    `json:"jitter"`
	// Resubscriptions counts restarts after the viewer fell behind the
	// camera; CameraRestarts the camera's sessions restarting under it
	// (and timestamp jumps, handled alike).
	Resubscriptions uint64 `json:"resubscriptions"`
	CameraRestarts  uint64 `json:"camera_restarts"`
	// FramesSkipped were not sent while waiting for a keyframe.
	FramesSkipped uint64 `json:"frames_skipped"`
	// WriteErrors are packets the peer connection refused.
	WriteErrors uint64 `json:"write_errors"`
}

// info snapshots the session.
func (s *session) info() SessionInfo {
	in := SessionInfo{
		ID: s.id, Camera: s.camera, UserID: s.userID, Username: s.username, Started: s.started,
		State: webrtc.PeerConnectionState(s.state.Load()).String(), Codec: string(s.codec),
		BytesSent: s.c.bytes.Load(), PacketsSent: s.c.packets.Load(), UnitsSent: s.c.units.Load(),
		KeyframesSent: s.c.keyframes.Load(), BurstFrames: s.c.burstUnits.Load(),
		NACKs: s.c.nacks.Load(), PLIs: s.c.plis.Load() + s.c.firs.Load(),
		LossPercent: float64(s.c.fractionLost.Load()) * 100 / 256, PacketsLost: s.c.lost.Load(), Jitter: s.c.jitter.Load(),
		Resubscriptions: s.c.resubs.Load(), CameraRestarts: s.c.restarts.Load(), FramesSkipped: s.c.skipped.Load(),
		WriteErrors: s.c.packetErrors.Load(),
	}
	if n := s.c.firstKeyNanos.Load(); n > 0 {
		ms := float64(n) / 1e6
		in.FirstKeyframeMillis = &ms
	}
	if us := s.c.rttMicros.Load(); us > 0 {
		ms := float64(us) / 1000
		in.RTTMillis = &ms
	}
	return in
}

package relay

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"sharpeye/ingest/stream"
)

// payloadMaxSize bounds an RTP payload: 1200 bytes plus RTP, SRTP, UDP
// and IP headers stay under the smallest MTU met on VPNs and tunnels.
const payloadMaxSize = 1200

// videoCodecs are the codecs the relay sends, as offered by browsers.
// Only packetization-mode=1 H.264 (FU-A and STAP-A): mode 0 cannot carry a
// keyframe larger than one packet. No RTX: retransmissions are sent on the
// media SSRC, which every browser accepts, and RTX would need a second
// stream and buffer per viewer.
func videoCodecs(c stream.Codec, withNACK bool) []webrtc.RTPCodecParameters {
	fb := []webrtc.RTCPFeedback{{Type: "nack", Parameter: "pli"}}
	if withNACK {
		fb = append(fb, webrtc.RTCPFeedback{Type: "nack"})
	}
	if c == stream.H265 {
		return []webrtc.RTPCodecParameters{
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 116},
		}
	}
	var out []webrtc.RTPCodecParameters
	for _, p := range []struct {
		profile string
		pt      webrtc.PayloadType
	}{{"42e01f", 106}, {"42001f", 102}, {"4d001f", 127}, {"64001f", 112}} {
		out = append(out, webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
				SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + p.profile,
				RTCPFeedback: fb,
			},
			PayloadType: p.pt,
		})
	}
	return out
}

// h264Preferences are the H.264 formats of the offer (packetization-mode
// 1), each under its own payload type and fmtp, those of the camera's
// profile first: the answer then names the viewer's own types, one per
// format, and the track binds to the camera's profile when it is offered.
func h264Preferences(o offer, t stream.Track, withNACK bool) []webrtc.RTPCodecParameters {
	fb := videoCodecs(stream.H264, withNACK)[0].RTCPFeedback
	profile := ""
	if len(t.SPS) >= 2 {
		profile = fmt.Sprintf("%02x", t.SPS[1])
	}
	var same, other []webrtc.RTPCodecParameters
	for _, c := range o.h264Offered {
		p := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: c.fmtp, RTCPFeedback: fb},
			PayloadType:        webrtc.PayloadType(c.pt),
		}
		if plid := fmtpParam(c.fmtp, "profile-level-id"); len(plid) >= 2 && profile != "" && strings.EqualFold(plid[:2], profile) {
			same = append(same, p)
		} else {
			other = append(other, p)
		}
	}
	return append(same, other...)
}

// trackCapability is the codec of a viewer's track. For H.264 the
// profile-level-id is the camera's own (from its SPS), so that the
// browser's matching payload type is chosen when it offers one.
func trackCapability(t stream.Track) webrtc.RTPCodecCapability {
	if t.Codec == stream.H265 {
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000}
	}
	profile := "42e01f"
	if len(t.SPS) >= 4 {
		profile = fmt.Sprintf("%02x%02x%02x", t.SPS[1], t.SPS[2], t.SPS[3])
	}
	return webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile,
	}
}

// newAPI builds the process's one webrtc.API.
//
// Interceptors are kept to what a send-only viewer needs, because each
// one is instantiated per peer connection and some keep buffers per
// stream:
//   - a NACK responder keeping nack_buffer packets (nackResponder: by
//     reference to the camera's shared payloads, where pion's copies each
//     packet into a 1460-byte buffer, which made it most of a viewer's
//     memory);
//   - the sender-report generator: without our sender reports, the
//     browser's receiver reports carry no LSR/DLSR and give no round-trip
//     time. The receiver reports themselves are read by the session (RTT,
//     loss), which costs nothing extra.
//
// Left out on purpose: the NACK generator and receiver-report generator
// (we receive no media), TWCC (we cannot adapt a camera's bitrate to one
// viewer, and it keeps per-packet arrival history), the stats interceptor
// (per-stream state duplicating what the receiver reports give), simulcast
// header extensions and interval PLI (we cannot ask a camera for a
// keyframe on behalf of one viewer).
func newAPI(cfg Config, udpMux ice.UDPMux, tcpMux ice.TCPMux, lf logging.LoggerFactory) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range append(videoCodecs(stream.H264, cfg.NACKBuffer > 0), videoCodecs(stream.H265, cfg.NACKBuffer > 0)...) {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("register codec %s: %w", c.MimeType, err)
		}
	}

	ir := &interceptor.Registry{}
	if cfg.NACKBuffer > 0 {
		ir.Add(nackFactory{size: cfg.NACKBuffer})
	}
	sr, err := report.NewSenderInterceptor(report.WithSenderLoggerFactory(lf))
	if err != nil {
		return nil, fmt.Errorf("sender reports: %w", err)
	}
	ir.Add(sr)

	se := webrtc.SettingEngine{LoggerFactory: lf}
	// All media through one UDP port: one firewall rule, and no socket
	// per viewer.
	se.SetICEUDPMux(udpMux)
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if tcpMux != nil {
		se.SetICETCPMux(tcpMux)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
		// Passive only: the viewer connects to ice_tcp_listen.
		se.DisableActiveTCP(true)
	}
	se.SetNetworkTypes(networks)
	// Chromium reaches a pion peer on the same machine only through a
	// loopback candidate.
	se.SetIncludeLoopbackCandidate(cfg.IncludeLoopback)
	// Browsers hide their own addresses behind mDNS names, but a server
	// has nothing to hide and its candidates must be resolvable by anyone.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if len(cfg.NAT1To1IPs) > 0 {
		// Append, not replace: viewers on the relay's own network keep
		// the direct path to the local address.
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        cfg.NAT1To1IPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteAppend,
		}); err != nil {
			return nil, fmt.Errorf("relay.nat_1to1_ips: %w", err)
		}
	}
	// Answers are sent with every candidate (no trickle): do not wait
	// long for a STUN server that does not answer.
	se.SetSTUNGatherTimeout(2 * time.Second)

	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// pionLogger sends pion's logs to slog. pion logs per-packet trouble
// (failed retransmissions, unknown SSRCs) at warning level: those go to
// debug; pion's errors become warnings; the rest is dropped.
type pionLogger struct{ log *slog.Logger }

func (p pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return pionScope{log: p.log.With("scope", scope)}
}

type pionScope struct{ log *slog.Logger }

func (pionScope) Trace(string)                        {}
func (pionScope) Tracef(string, ...any)               {}
func (pionScope) Debug(string)                        {}
func (pionScope) Debugf(string, ...any)               {}
func (pionScope) Info(string)                         {}
func (pionScope) Infof(string, ...any)                {}
func (p pionScope) Warn(msg string)                   { p.log.Debug(msg) }
func (p pionScope) Warnf(format string, args ...any)  { p.log.Debug(fmt.Sprintf(format, args...)) }
func (p pionScope) Error(msg string)                  { p.log.Warn(msg) }
func (p pionScope) Errorf(format string, args ...any) { p.log.Warn(fmt.Sprintf(format, args...)) }

var _ logging.LoggerFactory = pionLogger{}

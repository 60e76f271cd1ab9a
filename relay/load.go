package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// This file is a small WHEP client for load tests and the package's own
// tests: a pion peer that receives one camera, depacketizes its access
// units and times them.

// Frame is one access unit as a viewer received it.
type Frame struct {
	// RTPTimestamp is the unit's RTP timestamp (90 kHz, the relay's
	// per-viewer timeline); Seq is the sequence number of its last packet.
	RTPTimestamp uint32
	Seq          uint16
	// Received is when its last packet arrived.
	Received time.Time
	// Sent is when the relay sent it, by the relay's clock, from its
	// latest RTCP sender report (RTP time mapped to wall time); zero until
	// the first report (about a second). Received minus Sent is the
	// relay-to-viewer delay when both clocks agree (the same machine).
	Sent time.Time
	// Key is true for a random-access unit (IDR, IRAP).
	Key bool
	// NALUs of the unit, without start codes.
	NALUs [][]byte
	// Size is the total of the NAL units' lengths.
	Size int
}

// ViewerStats counts what a viewer received.
type ViewerStats struct {
	// FirstKeyframe is the time from the start of the WHEP POST to the
	// first complete keyframe depacketized; 0 until then.
	FirstKeyframe time.Duration
	Frames        uint64
	Keyframes     uint64
	// Bytes are RTP payload bytes; Packets RTP packets.
	Bytes   uint64
	Packets uint64
	// DecodeErrors are packets that could not be depacketized (loss).
	DecodeErrors uint64
}

// HTTPError is a refused WHEP request.
type HTTPError struct {
	Status  int
	Code    string
	Message string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("WHEP request refused: %d %s: %s", e.Status, e.Code, e.Message)
}

// DialOptions adjust Dial.
type DialOptions struct {
	// HTTPClient makes the WHEP requests; nil is http.DefaultClient.
	HTTPClient *http.Client
	// OnFrame, if set, is called for every access unit received, on the
	// viewer's reading goroutine: keep it short.
	OnFrame func(Frame)
	// API makes the peer connection; nil is a shared NewClientAPI().
	API *webrtc.API
}

// Viewer is one WHEP session watched by a pion peer.
type Viewer struct {
	pc       *webrtc.PeerConnection
	client   *http.Client
	token    string
	location string
	onFrame  func(Frame)
	start    time.Time

	trackCh chan *webrtc.TrackRemote
	closed  chan struct{} // peer connection failed or closed
	quit    chan struct{} // Close called
	once    sync.Once
	cOnce   sync.Once
	wg      sync.WaitGroup
	err     error

	sr                                         atomic.Pointer[senderReport]
	firstKey                                   atomic.Int64
	frames, keys, bytes, packets, decodeErrors atomic.Uint64
}

// clientAPI is shared by every Viewer of the process that does not bring
// its own.
var clientAPI = sync.OnceValues(func() (*webrtc.API, error) { return NewClientAPI() })

// NewClientAPI builds the pion API viewers use: H.264 and H.265, NACKs and
// receiver reports, loopback candidates, no mDNS. Interceptors in extra
// come first on the way in (they see packets before the NACK generator:
// a loss simulator, say).
func NewClientAPI(extra ...interceptor.Factory) (*webrtc.API, error) {
	return newClientAPI(nil, extra...)
}

func newClientAPI(adjust func(*webrtc.SettingEngine), extra ...interceptor.Factory) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: fb}, PayloadType: 106},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032", RTCPFeedback: fb}, PayloadType: 112},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 116},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
	}
	lf := pionLogger{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ir := &interceptor.Registry{}
	for _, f := range extra {
		ir.Add(f)
	}
	gen, err := nack.NewGeneratorInterceptor(nack.WithGeneratorLoggerFactory(lf))
	if err != nil {
		return nil, err
	}
	ir.Add(gen)
	rr, err := report.NewReceiverInterceptor(report.WithReceiverLoggerFactory(lf))
	if err != nil {
		return nil, err
	}
	ir.Add(rr)
	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	if adjust != nil {
		adjust(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// Dial opens a WHEP session on camera cameraID of the Sharpeye at baseURL
// (http://host:port), authenticating with an API token (none if empty).
// It returns once the answer is applied; media follows.
func Dial(ctx context.Context, baseURL, cameraID, token string) (*Viewer, error) {
	return DialWith(ctx, baseURL, cameraID, token, DialOptions{})
}

// DialWith is Dial with options.
func DialWith(ctx context.Context, baseURL, cameraID, token string, opt DialOptions) (*Viewer, error) {
	a := opt.API
	if a == nil {
		var err error
		if a, err = clientAPI(); err != nil {
			return nil, err
		}
	}
	base, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("base URL: %w", err)
	}
	v := &Viewer{
		client:  opt.HTTPClient,
		token:   token,
		onFrame: opt.OnFrame,
		trackCh: make(chan *webrtc.TrackRemote, 1),
		closed:  make(chan struct{}),
		quit:    make(chan struct{}),
	}
	if v.client == nil {
		v.client = http.DefaultClient
	}
	if v.pc, err = a.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = v.pc.GracefulClose()
		}
	}()
	tr, err := v.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	if err != nil {
		return nil, err
	}
	v.pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		select {
		case v.trackCh <- t:
		default:
		}
	})
	v.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			v.cOnce.Do(func() { close(v.closed) })
		}
	})
	offer, err := v.pc.CreateOffer(nil)
	if err != nil {
		return nil, err
	}
	gathered := webrtc.GatheringCompletePromise(v.pc)
	if err := v.pc.SetLocalDescription(offer); err != nil {
		return nil, err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	v.start = time.Now()
	endpoint := base.JoinPath("api/v1/cameras", cameraID, "whep")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.String(), strings.NewReader(v.pc.LocalDescription().SDP))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", sdpType)
	v.auth(req)
	res, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusCreated {
		return nil, httpError(res.StatusCode, body)
	}
	loc, err := base.Parse(res.Header.Get("Location"))
	if err != nil || res.Header.Get("Location") == "" {
		return nil, fmt.Errorf("WHEP answer without a valid Location")
	}
	v.location = loc.String()
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		_ = v.delete(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("apply the WHEP answer: %w", err)
	}
	ok = true
	v.wg.Add(2)
	go func() {
		defer v.wg.Done()
		v.readMedia()
	}()
	go func() {
		defer v.wg.Done()
		for {
			// Reading RTCP runs the receiver-report interceptor.
			pkts, _, err := tr.Receiver().ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if sr, ok := p.(*rtcp.SenderReport); ok {
					v.sr.Store(&senderReport{rtp: sr.RTPTime, wall: ntpTime(sr.NTPTime)})
				}
			}
		}
	}()
	return v, nil
}

// senderReport maps the relay's RTP time to its wall clock.
type senderReport struct {
	rtp  uint32
	wall time.Time
}

// ntpTime converts a 64-bit NTP timestamp.
func ntpTime(ntp uint64) time.Time {
	const ntpEpochOffset = 2208988800
	secs := int64(ntp>>32) - ntpEpochOffset
	nanos := (ntp & 0xffffffff) * uint64(time.Second) >> 32
	return time.Unix(secs, int64(nanos))
}

func httpError(status int, body []byte) error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
		return &HTTPError{Status: status, Message: string(bytes.TrimSpace(body))}
	}
	return &HTTPError{Status: status, Code: e.Error.Code, Message: e.Error.Message}
}

func (v *Viewer) auth(req *http.Request) {
	if v.token != "" {
		req.Header.Set("Authorization", "Bearer "+v.token)
	}
}

// readMedia depacketizes the track into access units.
func (v *Viewer) readMedia() {
	var track *webrtc.TrackRemote
	select {
	case track = <-v.trackCh:
	case <-v.quit:
		return
	}
	type decoder interface {
		Decode(*rtp.Packet) ([][]byte, error)
	}
	var dec decoder
	isKey := h264.IsRandomAccess
	if strings.EqualFold(track.Codec().MimeType, webrtc.MimeTypeH265) {
		d := &rtph265.Decoder{}
		_ = d.Init()
		dec, isKey = d, h265.IsRandomAccess
	} else {
		d := &rtph264.Decoder{PacketizationMode: 1}
		_ = d.Init()
		dec = d
	}
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		v.packets.Add(1)
		v.bytes.Add(uint64(len(pkt.Payload)))
		nalus, err := dec.Decode(pkt)
		if err != nil {
			if !errors.Is(err, rtph264.ErrMorePacketsNeeded) && !errors.Is(err, rtph265.ErrMorePacketsNeeded) {
				v.decodeErrors.Add(1)
			}
			continue
		}
		f := Frame{RTPTimestamp: pkt.Timestamp, Seq: pkt.SequenceNumber, Received: now, Key: isKey(nalus), NALUs: nalus}
		if sr := v.sr.Load(); sr != nil {
			f.Sent = sr.wall.Add(time.Duration(int32(pkt.Timestamp-sr.rtp)) * time.Second / 90000)
		}
		for _, n := range nalus {
			f.Size += len(n)
		}
		v.frames.Add(1)
		if f.Key {
			v.keys.Add(1)
			v.firstKey.CompareAndSwap(0, int64(now.Sub(v.start)))
		}
		if v.onFrame != nil {
			v.onFrame(f)
		}
	}
}

// Location is the session's URL.
func (v *Viewer) Location() string { return v.location }

// Done is closed when the peer connection fails or is closed (by either
// side).
func (v *Viewer) Done() <-chan struct{} { return v.closed }

// State is the peer connection's state.
func (v *Viewer) State() webrtc.PeerConnectionState { return v.pc.ConnectionState() }

// FirstKeyframe is the time from the WHEP POST to the first keyframe, if
// one has arrived.
func (v *Viewer) FirstKeyframe() (time.Duration, bool) {
	d := v.firstKey.Load()
	return time.Duration(d), d > 0
}

// Stats returns the counters so far.
func (v *Viewer) Stats() ViewerStats {
	return ViewerStats{
		FirstKeyframe: time.Duration(v.firstKey.Load()),
		Frames:        v.frames.Load(),
		Keyframes:     v.keys.Load(),
		Bytes:         v.bytes.Load(),
		Packets:       v.packets.Load(),
		DecodeErrors:  v.decodeErrors.Load(),
	}
}

// delete ends the session on the server (DELETE on its Location).
func (v *Viewer) delete(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, v.location, nil)
	if err != nil {
		return err
	}
	v.auth(req)
	res, err := v.client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent && res.StatusCode != http.StatusNotFound {
		return httpError(res.StatusCode, body)
	}
	return nil
}

// Close ends the session (DELETE) and the peer connection, and waits for
// the viewer's goroutines. It is safe to call more than once.
func (v *Viewer) Close() error {
	v.once.Do(func() {
		close(v.quit)
		v.err = v.delete(context.Background())
		if err := v.pc.GracefulClose(); err != nil && v.err == nil {
			v.err = err
		}
		v.wg.Wait()
	})
	return v.err
}

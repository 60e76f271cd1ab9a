package relay

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"sharpeye/ingest/stream"
)

// A Chrome offer (trimmed): video with VP8, H.264 in both packetization
// modes, RTX; audio first.
const chromeOffer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"a=group:BUNDLE 0 1\r\n" +
	"a=msid-semantic: WMS\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:Ab12\r\n" +
	"a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:0\r\n" +
	"a=recvonly\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 127\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:Ab12\r\n" +
	"a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:1\r\n" +
	"a=recvonly\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtpmap:96 VP8/90000\r\n" +
	"a=rtpmap:97 rtx/90000\r\n" +
	"a=fmtp:97 apt=96\r\n" +
	"a=rtpmap:102 H264/90000\r\n" +
	"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n" +
	"a=rtpmap:103 H264/90000\r\n" +
	"a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n" +
	"a=rtpmap:127 H265/90000\r\n"

func TestParseOffer(t *testing.T) {
	o, err := parseOffer([]byte(chromeOffer))
	if err != nil {
		t.Fatal(err)
	}
	if !o.video || !o.h264 || !o.h264Mode0 || !o.h265 || o.iceUfrag != "Ab12" {
		t.Fatalf("got %+v", o)
	}

	mode0 := strings.ReplaceAll(strings.ReplaceAll(chromeOffer, "packetization-mode=1", "packetization-mode=0"), "a=rtpmap:127 H265/90000\r\n", "")
	if o, err := parseOffer([]byte(mode0)); err != nil || o.h264 || !o.h264Mode0 || o.h265 {
		t.Fatalf("mode 0 only: %+v %v", o, err)
	}
	sendonly := strings.ReplaceAll(chromeOffer, "a=mid:1\r\na=recvonly", "a=mid:1\r\na=sendonly")
	if _, err := parseOffer([]byte(sendonly)); err == nil || !strings.Contains(err.Error(), "no video section") {
		t.Fatalf("sendonly video: %v", err)
	}
	for _, bad := range []string{"", "hello", "v=0\r\nx", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video\r\n"} {
		if _, err := parseOffer([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseSDPFrag(t *testing.T) {
	f, err := parseSDPFrag("a=ice-ufrag:Ab12\r\na=ice-pwd:secret\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:1\r\n" +
		"a=candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host\r\na=end-of-candidates\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if f.ufrag != "Ab12" || f.pwd != "secret" || len(f.candidates) != 1 || f.candidates[0].mid != "1" ||
		f.candidates[0].candidate != "candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host" {
		t.Fatalf("got %+v", f)
	}
	for _, bad := range []string{"a=candidate:1 1 udp 1 192.0.2.1 1 typ host\r\n", "m=video 9 x 0\r\nnot sdp\r\n", "m=video 9 x 0\r\n" + strings.Repeat("a=candidate:1 1 udp 1 192.0.2.1 1 typ host\r\n", maxFragCandidates+1)} {
		if _, err := parseSDPFrag(bad); err == nil {
			t.Errorf("%.40q: no error", bad)
		}
	}
}

// Offers are outside input: parsing one never panics.
func FuzzParseOffer(f *testing.F) {
	f.Add([]byte(chromeOffer))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96\r\na=fmtp:96\r\n"))
	f.Add([]byte("v=0\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		defer hangGuard(b)()
		o, err := parseOffer(b)
		if err == nil && !o.video {
			t.Fatal("accepted an offer without video")
		}
	})
}

func FuzzParseSDPFrag(f *testing.F) {
	f.Add("a=ice-ufrag:x\r\nm=video 9 x 0\r\na=mid:0\r\na=candidate:1 1 udp 1 192.0.2.1 1 typ host\r\n")
	f.Add("m=\na=candidate:")
	f.Fuzz(func(t *testing.T, s string) {
		fr, err := parseSDPFrag(s)
		if err == nil && len(fr.candidates) > maxFragCandidates {
			t.Fatal("too many candidates accepted")
		}
	})
}

// Offers that pass parseOffer go on to pion: setting one up never panics.
func FuzzOfferToAnswer(f *testing.F) {
	f.Add([]byte(chromeOffer))
	f.Add([]byte(offerSDP(f, h264Only, false)))
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	pl := pionLogger{log: testLogger(f)}
	mux := webrtc.NewICEUDPMux(pl.NewLogger("udpmux"), conn)
	defer mux.Close()
	cfg := Defaults()
	a, err := newAPI(cfg, mux, nil, pl)
	if err != nil {
		f.Fatal(err)
	}
	clip := loadClip(f, "street-360p")
	track := stream.Track{Codec: stream.H264, SPS: clip.SPS, PPS: clip.PPS}
	f.Fuzz(func(t *testing.T, b []byte) {
		defer hangGuard(b)()
		o, err := parseOffer(b)
		if err != nil || !o.h264 {
			return
		}
		pc, err := a.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		tl, _ := webrtc.NewTrackLocalStaticRTP(trackCapability(track), "video", "x")
		tr, err := pc.AddTransceiverFromTrack(tl, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			t.Fatal(err)
		}
		_ = tr.SetCodecPreferences(videoCodecs(stream.H264, true))
		if pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(b)}) != nil {
			return
		}
		if ans, err := pc.CreateAnswer(nil); err == nil {
			_ = pc.SetLocalDescription(ans)
		}
	})
}

// hangGuard crashes the fuzzing process, naming the input, when the body
// has not returned within 10 s: the fuzzer reports crashes, not hangs.
// Call as defer hangGuard(input)(). (Run long fuzzing sessions with
// -fuzzminimizetime, pion makes minimizing slow.)
func hangGuard(input []byte) func() {
	t := time.AfterFunc(10*time.Second, func() {
		buf := make([]byte, 1<<20)
		os.Stderr.Write(buf[:runtime.Stack(buf, true)])
		panic(fmt.Sprintf("no answer after 10s to %q", input))
	})
	return func() { t.Stop() }
}

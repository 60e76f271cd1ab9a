package relay

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// firefoxAPI is a pion API for a viewer that numbers H.264 as Firefox
// does: packetization-mode 1 as 126, mode 0 as 97.
func firefoxAPI(t testing.TB) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1", RTCPFeedback: fb}, PayloadType: 126},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "profile-level-id=42e01f;level-asymmetry-allowed=1", RTCPFeedback: fb}, PayloadType: 97},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{LoggerFactory: pionLogger{log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
}

// A viewer that numbers H.264 its own way (Firefox: 126) is answered
// under its own payload type and plays: the relay's preferred numbers
// (Chromium's) would be packets it drops.
func TestH264OfferedPayloadType(t *testing.T) {
	e := newEnv(t, nil)
	cam := e.camera(t, "avc", "county/east", loadClip(t, "street-360p"))
	cam.waitGOP(t, 10)
	rec := &frames{}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	v, err := DialWith(ctx, e.srv.URL, "avc", aliceToken, DialOptions{OnFrame: rec.add, API: firefoxAPI(t)})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	answer := v.pc.RemoteDescription().SDP
	if !strings.Contains(answer, "a=rtpmap:126 H264/90000") || strings.Contains(answer, "a=rtpmap:106 ") || strings.Contains(answer, "a=rtpmap:97 ") {
		t.Fatalf("answer does not name H.264 as the viewer's 126 (packetization-mode 1) only:\n%s", answer)
	}
	waitFor(t, "frames", func() bool { return rec.len() >= 30 })
	if fs := rec.get(); !fs[0].Key {
		t.Fatal("the first frame received is not a keyframe")
	}
	if st := v.Stats(); st.DecodeErrors != 0 {
		t.Fatalf("%d packets could not be depacketized", st.DecodeErrors)
	}
}

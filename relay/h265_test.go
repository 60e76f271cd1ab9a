package relay

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"sharpeye/console/api"
	"sharpeye/ingest/simcam"
	"sharpeye/ingest/stream"
)

// h265Clip is the simulated cameras' H.265 fixture: 640x360, 25 fps, an
// IDR with VPS, SPS and PPS every 50 units.
func h265Clip(t testing.TB) *simcam.Clip {
	t.Helper()
	c := loadClip(t, "street-360p-h265")
	if c.Codec != simcam.H265 {
		t.Fatalf("fixture is %s, want H265", c.Codec)
	}
	return c
}

func naluTypes265(nalus [][]byte) []h265.NALUType {
	out := make([]h265.NALUType, len(nalus))
	for i, n := range nalus {
		out[i] = h265.NALUType((n[0] >> 1) & 0x3f)
	}
	return out
}

// startsWithParams265 reports whether an access unit is VPS, SPS, PPS and
// then an IRAP slice segment: what a browser's H.265 decoder needs to
// start.
func startsWithParams265(nalus [][]byte) bool {
	types := naluTypes265(nalus)
	return len(types) >= 4 &&
		slices.Equal(types[:3], []h265.NALUType{h265.NALUType_VPS_NUT, h265.NALUType_SPS_NUT, h265.NALUType_PPS_NUT}) &&
		types[3] >= h265.NALUType_BLA_W_LP && types[3] <= h265.NALUType_CRA_NUT
}

func hashNALUs(nalus [][]byte) uint64 {
	h := fnv.New64a()
	for _, n := range nalus {
		fmt.Fprintf(h, "%d:", len(n))
		h.Write(n)
	}
	return h.Sum64()
}

// h265OnlyAPI is a pion API for a viewer that can decode H.265 only.
func h265OnlyAPI(t testing.TB) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}},
		PayloadType: 49,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{LoggerFactory: pionLogger{log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
}

// answerCodecs returns the codec names of the answer's video section.
func answerCodecs(t testing.TB, v *Viewer) []string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(v.pc.RemoteDescription().SDP); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "video" {
			continue
		}
		for _, a := range md.Attributes {
			if a.Key == "rtpmap" {
				_, name, _ := strings.Cut(a.Value, " ")
				out = append(out, name)
			}
		}
	}
	return out
}

// A viewer that can take H.265 watches an H.265 camera as it is: the
// answer (201) has H.265 only; the first access unit it depacketizes is an
// IRAP picture with VPS, SPS and PPS in front, every unit is one of the
// camera's, intact and in order, and it keeps receiving, past the next
// keyframe. A browser offering both codecs (Safari, Chromium with
// hardware H.265) and one offering H.265 only are served alike.
func TestH265Viewer(t *testing.T) {
	clip := h265Clip(t)
	index := make(map[uint64]int, len(clip.Units))
	for i, u := range clip.Units {
		index[hashNALUs(u.NALUs)] = i
	}
	for _, tc := range []struct {
		name string
		api  func(testing.TB) *webrtc.API
	}{
		{"offers H.264 and H.265", nil},
		{"offers H.265 only", h265OnlyAPI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			cam := e.camera(t, "hevc", "county/east", clip)
			cam.waitGOP(t, 10) // join mid-GOP: the burst starts at the cached IRAP

			rec := &frames{}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			opt := DialOptions{OnFrame: rec.add}
			if tc.api != nil {
				opt.API = tc.api(t)
			}
			v, err := DialWith(ctx, e.srv.URL, "hevc", aliceToken, opt)
			if err != nil {
				t.Fatalf("dial: %v", err) // anything but 201 is an error
			}
			t.Cleanup(func() { _ = v.Close() })
			if got := answerCodecs(t, v); len(got) != 1 || !strings.EqualFold(got[0], "H265/90000") {
				t.Fatalf("the answer's video codecs are %v, want H265/90000 only", got)
			}

			// More than a GOP (50 units) after the burst: live units
			// follow, and the next keyframe.
			waitFor(t, "frames", func() bool { return rec.len() >= 80 })
			fs := rec.get()
			if !fs[0].Key || !startsWithParams265(fs[0].NALUs) {
				t.Fatalf("first unit received: key=%v NAL units %v, want VPS, SPS, PPS and an IRAP slice", fs[0].Key, naluTypes265(fs[0].NALUs))
			}
			i, ok := index[hashNALUs(fs[0].NALUs)]
			if !ok || !clip.Units[i].IDR {
				t.Fatal("the first unit matches no keyframe of the camera")
			}
			keys := 1
			for k, f := range fs[1:] {
				j, ok := index[hashNALUs(f.NALUs)]
				if !ok {
					t.Fatalf("unit %d received (%v) matches no unit of the camera", k+1, naluTypes265(f.NALUs))
				}
				if j != (i+1)%len(clip.Units) {
					t.Fatalf("unit %d received is the camera's unit %d, after its unit %d", k+1, j, i)
				}
				if f.Key != clip.Units[j].IDR {
					t.Fatalf("unit %d received: key=%v, want %v", k+1, f.Key, clip.Units[j].IDR)
				}
				if f.Key {
					keys++
					if !startsWithParams265(f.NALUs) {
						t.Fatalf("keyframe %d received: %v, want VPS, SPS, PPS and an IRAP slice", k+1, naluTypes265(f.NALUs))
					}
				}
				if d := int32(f.RTPTimestamp - fs[k].RTPTimestamp); d <= 0 {
					t.Fatalf("unit %d received: RTP timestamp %d ticks after the previous", k+1, d)
				}
				i = j
			}
			if keys < 2 {
				t.Fatalf("%d keyframes in %d units, want the next GOP's too", keys, len(fs))
			}
			if st := v.Stats(); st.DecodeErrors != 0 {
				t.Fatalf("%d packets could not be depacketized", st.DecodeErrors)
			}
			info := e.sessionInfo(t, v)
			if info.Codec != string(stream.H265) || info.KeyframesSent < 2 || info.BurstFrames < 10 {
				t.Fatalf("session %+v, want H265, 2 keyframes sent and a burst of the cached GOP", info)
			}
			if fk, ok := v.FirstKeyframe(); !ok || fk <= 0 {
				t.Fatal("the viewer reports no first keyframe")
			}
		})
	}
}

// A viewer without the camera's codec is refused with 406 and a sentence
// that says what to do; no session is left behind.
func TestCodecMismatch(t *testing.T) {
	e := newEnv(t, nil)
	e.camera(t, "hevc", "county/east", h265Clip(t))
	e.camera(t, "avc", "county/east", loadClip(t, "street-360p"))
	h265Only := videoCodecs(stream.H265, true)
	for _, tc := range []struct {
		name, camera string
		codecs       []webrtc.RTPCodecParameters
		msg          string
	}{
		{"H.265 camera, H.264 viewer", "hevc", h264Only,
			`camera "hevc" sends H.265, which this browser does not offer; use a browser with H.265 WebRTC support or set the camera to H.264`},
		{"H.264 camera, H.265 viewer", "avc", h265Only,
			`camera "avc" sends H.264, which the offer does not include (packetization-mode=1)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body struct{ Error api.Error }
			res := do(t, "POST", e.srv.URL+"/api/v1/cameras/"+tc.camera+"/whep", aliceToken, offerSDP(t, tc.codecs, false), &body, "Content-Type", sdpType)
			if res.StatusCode != http.StatusNotAcceptable || body.Error.Code != codeNotAcceptable || body.Error.Message != tc.msg {
				t.Fatalf("got %d %s %q, want 406 %s %q", res.StatusCode, body.Error.Code, body.Error.Message, codeNotAcceptable, tc.msg)
			}
		})
	}

	// The same through the WHEP client: its error carries the answer.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var he *HTTPError
	_, err := DialWith(ctx, e.srv.URL, "avc", aliceToken, DialOptions{API: h265OnlyAPI(t)})
	if !errors.As(err, &he) || he.Status != http.StatusNotAcceptable || !strings.Contains(he.Message, "sends H.264") {
		t.Fatalf("H.265-only viewer of an H.264 camera: %v, want 406", err)
	}
	if n := e.relay.Viewers(); n != 0 {
		t.Fatalf("%d viewers left by refused offers", n)
	}
	if c := metricValue(t, e.relay.m.refused.WithLabelValues("codec")); c != 3 {
		t.Fatalf("offers refused for their codec: %v, want 3", c)
	}
}

// A camera that comes back from a restart in the other codec ends its
// viewers' sessions (the negotiated codec cannot carry the new video), so
// that players reconnect and negotiate again; it does not send them
// H.265 under an H.264 payload type. Reconnecting, a viewer gets H.265.
func TestCodecChangeEndsSession(t *testing.T) {
	e := newEnv(t, nil)
	avc := loadClip(t, "street-360p")
	cam := e.camera(t, "cam1", "county/east", avc)
	rec := &frames{}
	v := e.dial(t, "cam1", aliceToken, rec)
	waitFor(t, "a keyframe", func() bool { _, ok := v.FirstKeyframe(); return ok })

	// The camera restarts in H.265: the feeder stops, a new session
	// starts with the H.265 clip.
	cam.close()
	hevc := h265Clip(t)
	next := &feeder{hub: cam.hub, clip: hevc, restart: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	next.hub.SetTrack(next.track())
	go next.run()
	t.Cleanup(next.close)

	select {
	case <-v.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("the viewer's session is still %s after the camera changed codec", v.State())
	}
	// The viewer may see its peer connection close before the relay has
	// counted the session's end.
	waitFor(t, "the session's end counted", func() bool {
		return metricValue(t, e.relay.m.ended.WithLabelValues(reasonCodecChanged)) == 1 && e.relay.Viewers() == 0
	})
	for _, f := range rec.get() {
		if startsWithParams265(f.NALUs) {
			t.Fatal("the H.264 viewer was sent H.265")
		}
	}

	rec2 := &frames{}
	v2 := e.dial(t, "cam1", aliceToken, rec2)
	waitFor(t, "H.265 frames", func() bool { return rec2.len() >= 5 })
	if f := rec2.get()[0]; !f.Key || !startsWithParams265(f.NALUs) {
		t.Fatalf("first unit after reconnecting: %v", naluTypes265(f.NALUs))
	}
	if info := e.sessionInfo(t, v2); info.Codec != string(stream.H265) {
		t.Fatalf("new session in %s, want H265", info.Codec)
	}
}

package rtsp_test

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/pion/rtp"

	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/simcam"
	"sharpeye/ingest/stream"
)

// h265Fixture is the simulated cameras' H.265 clip.
const h265Fixture = "street-360p-h265"

func naluTypes265(nalus [][]byte) []h265.NALUType {
	out := make([]h265.NALUType, len(nalus))
	for i, n := range nalus {
		out[i] = h265.NALUType((n[0] >> 1) & 0x3f)
	}
	return out
}

// startsWithParams265 reports whether an access unit is VPS, SPS, PPS and
// then an IRAP slice segment.
func startsWithParams265(nalus [][]byte) bool {
	types := naluTypes265(nalus)
	return len(types) >= 4 &&
		slices.Equal(types[:3], []h265.NALUType{h265.NALUType_VPS_NUT, h265.NALUType_SPS_NUT, h265.NALUType_PPS_NUT}) &&
		types[3] >= h265.NALUType_BLA_W_LP && types[3] <= h265.NALUType_CRA_NUT
}

// hasParamSets265 reports whether any of nalus is a VPS, SPS or PPS.
func hasParamSets265(nalus [][]byte) bool {
	return slices.ContainsFunc(naluTypes265(nalus), func(t h265.NALUType) bool {
		return t == h265.NALUType_VPS_NUT || t == h265.NALUType_SPS_NUT || t == h265.NALUType_PPS_NUT
	})
}

func hashNALUs(nalus [][]byte) uint64 {
	h := fnv.New64a()
	for _, n := range nalus {
		fmt.Fprintf(h, "%d:", len(n))
		h.Write(n)
	}
	return h.Sum64()
}

// sliceIndex maps the slice segments of each unit of a clip (its NAL units
// without parameter sets, which the hub may add or not) to the unit's
// index.
func sliceIndex(c *simcam.Clip) map[uint64]int {
	m := make(map[uint64]int, len(c.Units))
	for i, u := range c.Units {
		m[hashNALUs(withoutParams265(u.NALUs))] = i
	}
	return m
}

func withoutParams265(nalus [][]byte) [][]byte {
	return slices.DeleteFunc(slices.Clone(nalus), func(n []byte) bool { return hasParamSets265([][]byte{n}) })
}

// TestPullH265: an H.265 camera, pulled over TCP and UDP, reaches the hub
// as an H.265 track with its parameter sets and picture size, and its
// units in order, keyframes flagged and led by VPS, SPS and PPS, whether
// the camera sends its parameter sets in the SDP and in band, in band
// only or in the SDP only.
func TestPullH265(t *testing.T) {
	cams := camServer(t, simcam.Config{UDPRTPAddress: "127.0.0.1:0"})
	clip := clip(t, h265Fixture)
	if clip.Codec != simcam.H265 {
		t.Fatalf("fixture %s is %s", h265Fixture, clip.Codec)
	}
	stripped := clip.StripParams()
	index := sliceIndex(clip)
	for _, tc := range []struct {
		path, transport string
		clip            *simcam.Clip
		inSDP           bool
	}{
		{"tcp", camera.TransportTCP, clip, true},
		{"udp", camera.TransportUDP, clip, true},
		{"params-in-band-only", camera.TransportTCP, clip, false},
		{"params-in-sdp-only", camera.TransportTCP, stripped, true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			path := tc.path
			if err := cams.Add(simcam.Camera{Path: path, Clip: tc.clip, ParamsInSDP: tc.inSDP}); err != nil {
				t.Fatal(err)
			}
			p, hub := pull(t, camera.Camera{ID: path, URL: cams.URL(path), Transport: tc.transport})
			sub, err := hub.Subscribe(256)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()

			var first *stream.Unit
			for first == nil {
				if u := nextUnit(t, sub); u.Key {
					first = u
				}
			}
			if !startsWithParams265(first.NALUs) {
				t.Fatalf("keyframe %v, want VPS, SPS, PPS and an IRAP slice", naluTypes265(first.NALUs))
			}
			i, ok := index[hashNALUs(withoutParams265(first.NALUs))]
			if !ok || !clip.Units[i].IDR {
				t.Fatal("the keyframe matches no keyframe of the clip")
			}
			keys := 1
			for range 60 { // more than a GOP
				u := nextUnit(t, sub)
				j, ok := index[hashNALUs(withoutParams265(u.NALUs))]
				if !ok {
					t.Fatalf("unit %v matches no unit of the clip", naluTypes265(u.NALUs))
				}
				if tc.transport == camera.TransportTCP && j != (i+1)%len(clip.Units) {
					t.Fatalf("unit %d after unit %d over TCP", j, i)
				}
				if u.Key != clip.Units[j].IDR {
					t.Fatalf("unit %d: Key = %v, want %v", j, u.Key, clip.Units[j].IDR)
				}
				if u.Key {
					keys++
					if !startsWithParams265(u.NALUs) {
						t.Fatalf("keyframe %d: %v, want VPS, SPS, PPS and an IRAP slice", j, naluTypes265(u.NALUs))
					}
				} else if hasParamSets265(u.NALUs) {
					t.Fatalf("unit %d is not a keyframe but has parameter sets: %v", j, naluTypes265(u.NALUs))
				}
				i = j
			}
			if keys < 2 {
				t.Fatalf("%d keyframes in 61 units, want 2", keys)
			}

			track, ok := hub.Track()
			if !ok || track.Codec != stream.H265 || !bytes.Equal(track.VPS, clip.VPS) || !bytes.Equal(track.SPS, clip.SPS) || !bytes.Equal(track.PPS, clip.PPS) {
				t.Fatalf("track %s (streaming %v), VPS %x SPS %x PPS %x; want H265 with the clip's parameter sets", track.Codec, ok, track.VPS, track.SPS, track.PPS)
			}
			st := p.Status()
			if st.State != rtsp.StateOnline || st.Transport != tc.transport || st.Codec != "H265" ||
				st.Width != 640 || st.Height != 360 || st.PacketsReceived == 0 {
				t.Fatalf("status %+v", st)
			}
			if tc.transport == camera.TransportTCP && (st.DecodeErrors != 0 || st.PacketsLost != 0) {
				t.Fatalf("%d decode errors, %d packets lost over TCP", st.DecodeErrors, st.PacketsLost)
			}
		})
	}
}

// readKeyframe265 plays rawURL with a gortsplib client over TCP and returns
// the first access unit and the SDP's H.265 format.
func readKeyframe265(t *testing.T, rawURL string) ([][]byte, *format.H265, error) {
	return readFirstUnit(t, rawURL, "H.265", func(f *format.H265) (func(*rtp.Packet) ([][]byte, error), error) {
		d, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		return d.Decode, nil
	}, rtph265.ErrMorePacketsNeeded, rtph265.ErrNonStartingPacketAndNoPrevious)
}

// TestReserveH265: the re-serve announces an H.265 camera as H.265, with
// its parameter sets in the SDP, and starts a reader at a keyframe led by
// VPS, SPS and PPS.
func TestReserveH265(t *testing.T) {
	cams := camServer(t, simcam.Config{})
	clip := clip(t, h265Fixture)
	cams.Add(simcam.Camera{Path: "street", Clip: clip, ParamsInSDP: true})
	_, hub := pull(t, camera.Camera{ID: "street", URL: cams.URL("street"), Transport: "tcp"})
	s := reserve(t, hubs{"street": hub})

	au, forma, err := readKeyframe265(t, "rtsp://viewer:sey_good@"+s.Addr()+"/street")
	if err != nil {
		t.Fatal(err)
	}
	if !h265.IsRandomAccess(au) || !startsWithParams265(au) {
		t.Fatalf("the re-serve's first access unit is %v, want VPS, SPS, PPS and an IRAP slice", naluTypes265(au))
	}
	if !bytes.Equal(forma.VPS, clip.VPS) || !bytes.Equal(forma.SPS, clip.SPS) || !bytes.Equal(forma.PPS, clip.PPS) {
		t.Fatalf("SDP parameter sets VPS %x SPS %x PPS %x, want the camera's", forma.VPS, forma.SPS, forma.PPS)
	}
	var sps h265.SPS
	if err := sps.Unmarshal(forma.SPS); err != nil || sps.Width() != 640 || sps.Height() != 360 {
		t.Fatalf("SDP SPS: %v %dx%d", err, sps.Width(), sps.Height())
	}
}

// TestFFmpegReadsTheReserveH265: ffmpeg pulls an H.265 camera from the
// re-serve and decodes 50 frames of 640x360.
func TestFFmpegReadsTheReserveH265(t *testing.T) {
	ffmpeg := requireFFmpeg(t)
	cams := camServer(t, simcam.Config{})
	clip := clip(t, h265Fixture)
	cams.Add(simcam.Camera{Path: "hevc", Clip: clip, ParamsInSDP: true})
	_, hub := pull(t, camera.Camera{ID: "hevc", URL: cams.URL("hevc"), Transport: "tcp"})
	s := reserve(t, hubs{"hevc": hub})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
		"-i", "rtsp://viewer:sey_good@"+s.Addr()+"/hevc", "-frames:v", "50", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, stderr.String())
	}
	if want := 50 * 640 * 360; stdout.Len() != want || clip.Width != 640 || clip.Height != 360 {
		t.Fatalf("ffmpeg decoded %d bytes, want 50 frames of 640x360 = %d", stdout.Len(), want)
	}
	if stderr.Len() > 0 {
		t.Errorf("ffmpeg complained while decoding: %s", stderr.String())
	}
}

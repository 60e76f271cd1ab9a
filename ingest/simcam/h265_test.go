package simcam

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

func naluTypes265(nalus [][]byte) []h265.NALUType {
	var types []h265.NALUType
	for _, n := range nalus {
		types = append(types, naluType265(n))
	}
	return types
}

// isIRAP reports whether t is the type of an IRAP slice segment (BLA, IDR,
// CRA).
func isIRAP(t h265.NALUType) bool {
	return t >= h265.NALUType_BLA_W_LP && t <= h265.NALUType_CRA_NUT
}

// checkUnit265 checks unit i of an H.265 fixture: no delimiter; a keyframe
// is VPS, SPS and PPS, then IRAP slice segments only; any other unit has
// non-IRAP slice segments only.
func checkUnit265(t *testing.T, i int, u AccessUnit) {
	t.Helper()
	types := naluTypes265(u.NALUs)
	if slices.Contains(types, h265.NALUType_AUD_NUT) {
		t.Errorf("unit %d: access unit delimiter kept", i)
	}
	vcl := types
	if u.IDR {
		if len(types) < 4 || !slices.Equal(types[:3], []h265.NALUType{h265.NALUType_VPS_NUT, h265.NALUType_SPS_NUT, h265.NALUType_PPS_NUT}) {
			t.Errorf("unit %d: keyframe without VPS, SPS and PPS in front: %v", i, types)
			return
		}
		vcl = types[3:]
	}
	for _, typ := range vcl {
		if typ > 31 || isIRAP(typ) != u.IDR {
			t.Errorf("unit %d (keyframe %v): NAL units %v", i, u.IDR, types)
			return
		}
	}
	if ra := h265.IsRandomAccess(u.NALUs); ra != u.IDR {
		t.Errorf("unit %d: keyframe %v, but mediacommon says random access %v", i, u.IDR, ra)
	}
}

func TestParseH265WithoutDelimiters(t *testing.T) {
	c := loadClip(t, "street-360p-h265")
	var all [][]byte
	for _, u := range c.Units {
		all = append(all, u.NALUs...)
	}
	stream, err := h264.AnnexB(all).Marshal() // Annex-B is the same for both
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseH265("noaud", stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Units) != len(c.Units) {
		t.Fatalf("%d units, want %d", len(got.Units), len(c.Units))
	}
	for i := range got.Units {
		if !slices.EqualFunc(got.Units[i].NALUs, c.Units[i].NALUs, bytes.Equal) || got.Units[i].IDR != c.Units[i].IDR {
			t.Fatalf("unit %d differs", i)
		}
	}
}

// h265NALU returns a NAL unit of type typ (layer 0, temporal id 1) with
// payload after its two-byte header.
func h265NALU(typ h265.NALUType, payload ...byte) []byte {
	return append([]byte{byte(typ) << 1, 1}, payload...)
}

func TestParseH265Slices(t *testing.T) {
	c := loadClip(t, "street-360p-h265")
	// Pictures of two slice segments each: the second's
	// first_slice_segment_in_pic_flag is 0, so it belongs to the same unit.
	idr0 := h265NALU(h265.NALUType_IDR_W_RADL, 0xaf, 0x01)
	idr1 := h265NALU(h265.NALUType_IDR_W_RADL, 0x2f, 0x01)
	cra0 := h265NALU(h265.NALUType_CRA_NUT, 0xaf, 0x02)
	p0 := h265NALU(h265.NALUType_TRAIL_R, 0x80, 0x03)
	p1 := h265NALU(h265.NALUType_TRAIL_R, 0x20, 0x03)
	sei := h265NALU(h265.NALUType_PREFIX_SEI_NUT, 0x05, 0x01, 0x80)
	suffix := h265NALU(h265.NALUType_SUFFIX_SEI_NUT, 0x84, 0x01, 0x80)
	nalus := [][]byte{
		p0, p1, // before the first IRAP: dropped
		c.VPS, c.SPS, c.PPS, idr0, idr1, suffix,
		sei, p0, p1,
		p0, p1,
		cra0,
		h265NALU(h265.NALUType_EOS_NUT), // dropped
		p0,
		h265NALU(h265.NALUType_EOB_NUT), // dropped
	}
	stream, err := h264.AnnexB(nalus).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseH265("slices", stream)
	if err != nil {
		t.Fatal(err)
	}
	want := []AccessUnit{
		{NALUs: [][]byte{c.VPS, c.SPS, c.PPS, idr0, idr1, suffix}, IDR: true},
		{NALUs: [][]byte{sei, p0, p1}},
		{NALUs: [][]byte{p0, p1}},
		{NALUs: [][]byte{cra0}, IDR: true},
		{NALUs: [][]byte{p0}},
	}
	if !slices.EqualFunc(got.Units, want, func(a, b AccessUnit) bool {
		return a.IDR == b.IDR && slices.EqualFunc(a.NALUs, b.NALUs, bytes.Equal)
	}) {
		t.Fatalf("units = %v, want %v", got.Units, want)
	}
	if got.Codec != H265 || got.Width != 640 || got.Height != 360 || !bytes.Equal(got.VPS, c.VPS) {
		t.Fatalf("clip %s %dx%d VPS %x", got.Codec, got.Width, got.Height, got.VPS)
	}
}

func TestParseH265Errors(t *testing.T) {
	c := loadClip(t, "street-360p-h265")
	idr := h265NALU(h265.NALUType_IDR_N_LP, 0xaf)
	marshal := func(nalus ...[]byte) []byte {
		b, err := h264.AnnexB(nalus).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	h264Clip := loadClip(t, "street-360p")
	for name, data := range map[string][]byte{
		"empty":          nil,
		"no start code":  []byte("hello, world"),
		"no VPS":         marshal(c.SPS, c.PPS, idr),
		"no SPS":         marshal(c.VPS, c.PPS, idr),
		"no PPS":         marshal(c.VPS, c.SPS, idr),
		"no IRAP":        marshal(c.VPS, c.SPS, c.PPS, h265NALU(h265.NALUType_TRAIL_R, 0x80)),
		"bad SPS":        marshal(c.VPS, h265NALU(h265.NALUType_SPS_NUT, 0xff), c.PPS, idr),
		"delimiter only": marshal(h265NALU(h265.NALUType_AUD_NUT, 0x50)),
		"H.264 stream":   marshal(h264Clip.SPS, h264Clip.PPS, h264Clip.Units[0].NALUs[len(h264Clip.Units[0].NALUs)-1]),
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := ParseH265(name, data); err == nil {
				t.Fatalf("ParseH265 succeeded: %d units", len(got.Units))
			}
		})
	}
	if _, err := ParseCodec("x", "VP8", marshal(c.VPS)); err == nil {
		t.Error("ParseCodec accepted an unknown codec")
	}
}

func TestStripParamsH265(t *testing.T) {
	c := loadClip(t, "street-360p-h265")
	s := c.StripParams()
	if s.Codec != H265 || !bytes.Equal(s.VPS, c.VPS) || !bytes.Equal(s.SPS, c.SPS) || !bytes.Equal(s.PPS, c.PPS) || len(s.Units) != len(c.Units) {
		t.Fatal("StripParams lost the clip's description")
	}
	for i, u := range s.Units {
		types := naluTypes265(u.NALUs)
		if slices.ContainsFunc(types, func(t h265.NALUType) bool { return t >= 32 && t <= 34 }) {
			t.Fatalf("unit %d still has parameter sets: %v", i, types)
		}
		if u.IDR != c.Units[i].IDR || len(types) == 0 || types[0] > 31 {
			t.Fatalf("unit %d lost its slices: %v", i, types)
		}
	}
}

func TestLoadFileH265(t *testing.T) {
	data, err := fixtures.ReadFile("fixtures/street-360p-h265.h265")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"lobby.h265", "lobby.HEVC", "lobby.265"} {
		file := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LoadFile(file)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Name != "lobby" || c.Codec != H265 || len(c.Units) != 100 || c.Width != 640 {
			t.Errorf("%s: got %s %s, %d units, width %d", name, c.Name, c.Codec, len(c.Units), c.Width)
		}
	}
	// The extension decides: H.265 data in a .h264 file does not parse.
	file := filepath.Join(t.TempDir(), "wrong.h264")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(file); err == nil {
		t.Error("H.265 data loaded as H.264")
	}
}

// nextIRAP skips to the next H.265 keyframe.
func (p *player) nextIRAP(t testing.TB) decodedAU {
	t.Helper()
	for {
		if au := p.next(t); h265.IsRandomAccess(au.nalus) {
			return au
		}
	}
}

// TestPlayH265: the camera announces H.265 (with its parameter sets in the
// SDP or not), and every access unit of the clip reaches the reader intact,
// keyframes with VPS, SPS and PPS in band, over TCP and UDP.
func TestPlayH265(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, Config{UDPRTPAddress: "127.0.0.1:0"})
	clip := loadClip(t, "street-360p-h265")
	index := unitIndex(clip)
	for _, inSDP := range []bool{true, false} {
		for _, transport := range []gortsplib.Transport{gortsplib.TransportTCP, gortsplib.TransportUDP} {
			path := fmt.Sprintf("h265-sdp-%v-%v", inSDP, transport)
			t.Run(path, func(t *testing.T) {
				addCamera(t, s, Camera{Path: path, Clip: clip, ParamsInSDP: inSDP, Delay: 300 * time.Millisecond})
				p := play(t, s.URL(path), transport)
				if p.forma265 == nil || p.forma != nil {
					t.Fatalf("SDP formats: H.264 %v, H.265 %v; want H.265 only", p.forma, p.forma265)
				}
				f := p.forma265
				if f.PayloadTyp != payloadType {
					t.Errorf("payload type %d", f.PayloadTyp)
				}
				hasSDPParams := bytes.Equal(f.VPS, clip.VPS) && bytes.Equal(f.SPS, clip.SPS) && bytes.Equal(f.PPS, clip.PPS)
				if inSDP != hasSDPParams || !inSDP && (f.VPS != nil || f.SPS != nil || f.PPS != nil) {
					t.Errorf("SDP parameter sets: VPS %x SPS %x PPS %x, want the clip's: %v", f.VPS, f.SPS, f.PPS, inSDP)
				}

				key := p.nextIRAP(t)
				types := naluTypes265(key.nalus)
				if len(types) < 3 || !slices.Equal(types[:3], []h265.NALUType{h265.NALUType_VPS_NUT, h265.NALUType_SPS_NUT, h265.NALUType_PPS_NUT}) {
					t.Errorf("first keyframe does not start with VPS, SPS and PPS: %v", types)
				}
				i, ok := index[hashAU(key.nalus)]
				if !ok || !clip.Units[i].IDR {
					t.Fatalf("keyframe matches no keyframe of the clip")
				}
				ts := key.timestamp
				for range 60 { // more than a GOP
					au := p.next(t)
					j, ok := index[hashAU(au.nalus)]
					if !ok {
						t.Fatalf("access unit %v matches no unit of the clip", naluTypes265(au.nalus))
					}
					if transport == gortsplib.TransportTCP {
						if j != (i+1)%len(clip.Units) {
							t.Fatalf("unit %d after unit %d over TCP", j, i)
						}
						if d := au.timestamp - ts; d != 3600 {
							t.Fatalf("unit %d: %d ticks after the previous, want 3600 (25 fps)", j, d)
						}
					}
					i, ts = j, au.timestamp
				}
				if n := p.errors.Load(); n != 0 && transport == gortsplib.TransportTCP {
					t.Errorf("%d decode errors over TCP", n)
				}
			})
		}
	}
}

func FuzzParseH265(f *testing.F) {
	c, err := Load("street-360p-h265")
	if err != nil {
		f.Fatal(err)
	}
	// Small seeds: the first three units with their slice segments cut
	// short, with and without access unit delimiters.
	var withAUD, withoutAUD [][]byte
	for _, u := range c.Units[:3] {
		withAUD = append(withAUD, h265NALU(h265.NALUType_AUD_NUT, 0x50))
		for _, n := range u.NALUs {
			n = n[:min(len(n), 64)]
			withAUD = append(withAUD, n)
			withoutAUD = append(withoutAUD, n)
		}
	}
	for _, nalus := range [][][]byte{withAUD, withoutAUD} {
		seed, err := h264.AnnexB(nalus).Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed)
	}
	f.Add([]byte{0, 0, 1, 0x40, 1, 0, 0, 1, 0x42, 1, 0, 0, 1, 0x44, 1, 0, 0, 1, 0x26, 1, 0xaf})

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseH265("fuzz", data)
		if err != nil {
			return
		}
		if len(c.Units) == 0 || !c.Units[0].IDR || c.VPS == nil || c.SPS == nil || c.PPS == nil || c.FPS < 1 || c.FPS > maxFPS {
			t.Fatalf("bad clip: %d units, VPS %x, SPS %x, PPS %x, FPS %d", len(c.Units), c.VPS, c.SPS, c.PPS, c.FPS)
		}
		for _, u := range c.Units {
			for _, n := range u.NALUs {
				if len(n) < 2 || naluType265(n) == h265.NALUType_AUD_NUT {
					t.Fatalf("bad NAL unit %x", n)
				}
			}
		}
		if _, err := packClip(c); err != nil {
			t.Fatalf("parsed clip does not pack: %v", err)
		}
		_ = c.StripParams()
	})
}

package simcam

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

func loadClip(t testing.TB, name string) *Clip {
	t.Helper()
	c, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFixtures(t *testing.T) {
	want := []struct {
		name          string
		codec         Codec
		width, height int
		units         int
	}{
		{"gate-720p", H264, 1280, 720, 250},
		{"square-1080p", H264, 1920, 1080, 250},
		{"street-360p", H264, 640, 360, 250},
		{"street-360p-h265", H265, 640, 360, 100},
	}
	var names []string
	for _, w := range want {
		names = append(names, w.name)
	}
	if got := Fixtures(); !slices.Equal(got, names) {
		t.Fatalf("Fixtures() = %q, want %q", got, names)
	}

	for _, w := range want {
		t.Run(w.name, func(t *testing.T) {
			c := loadClip(t, w.name)
			if c.Name != w.name || c.Codec != w.codec || c.Width != w.width || c.Height != w.height || c.FPS != 25 {
				t.Errorf("got %s %s %dx%d@%d, want %s %s %dx%d@25", c.Name, c.Codec, c.Width, c.Height, c.FPS, w.name, w.codec, w.width, w.height)
			}
			if len(c.Units) != w.units || c.Duration() != time.Duration(w.units)*40*time.Millisecond {
				t.Errorf("%d units (%v), want %d", len(c.Units), c.Duration(), w.units)
			}
			if n, want := c.IDRs(), w.units/50; n != want {
				t.Errorf("%d keyframes, want %d", n, want)
			}
			if !c.Units[0].IDR {
				t.Error("first unit is not a keyframe")
			}
			for i, u := range c.Units {
				if u.IDR != (i%50 == 0) {
					t.Errorf("unit %d: IDR = %v, want a keyframe exactly every 50 units", i, u.IDR)
				}
				if w.codec == H265 {
					checkUnit265(t, i, u)
					continue
				}
				types := naluTypes(u.NALUs)
				if slices.Contains(types, h264.NALUTypeAccessUnitDelimiter) {
					t.Errorf("unit %d: access unit delimiter kept", i)
				}
				hasParams := slices.Contains(types, h264.NALUTypeSPS) && slices.Contains(types, h264.NALUTypePPS)
				if u.IDR && !hasParams {
					t.Errorf("unit %d: IDR without SPS and PPS in band: %v", i, types)
				}
			}

			ext := ".h264"
			if w.codec == H265 {
				ext = ".h265"
			}
			again := loadClip(t, w.name+ext)
			if again != c {
				t.Error("Load returned a new *Clip for the same fixture")
			}
		})
	}

	if _, err := Load("nonexistent"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(nonexistent) = %v, want fs.ErrNotExist", err)
	}
	if _, err := Load("../clip.go"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(../clip.go) = %v, want fs.ErrNotExist", err)
	}
}

func TestFixturesSize(t *testing.T) {
	// The fixtures are committed: keep the repository small.
	total := 0
	entries, err := fixtures.ReadDir("fixtures")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := fixtures.ReadFile("fixtures/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		total += len(data)
	}
	if len(entries) != len(Fixtures()) {
		t.Errorf("%d files embedded for %d fixtures", len(entries), len(Fixtures()))
	}
	if total > 7<<20 {
		t.Errorf("fixtures total %d bytes, over 7 MB", total)
	}
}

func TestStripParams(t *testing.T) {
	c := loadClip(t, "street-360p")
	s := c.StripParams()
	if !bytes.Equal(s.SPS, c.SPS) || !bytes.Equal(s.PPS, c.PPS) || s.Width != c.Width || len(s.Units) != len(c.Units) {
		t.Fatal("StripParams lost the clip's description")
	}
	for i, u := range s.Units {
		types := naluTypes(u.NALUs)
		if slices.Contains(types, h264.NALUTypeSPS) || slices.Contains(types, h264.NALUTypePPS) {
			t.Fatalf("unit %d still has parameter sets: %v", i, types)
		}
		if u.IDR != c.Units[i].IDR || !slices.Contains(types, h264.NALUTypeNonIDR) && !slices.Contains(types, h264.NALUTypeIDR) {
			t.Fatalf("unit %d lost its slices: %v", i, types)
		}
	}
	if !slices.Contains(naluTypes(c.Units[0].NALUs), h264.NALUTypeSPS) {
		t.Fatal("StripParams modified the original clip")
	}
}

func TestParseWithoutDelimiters(t *testing.T) {
	c := loadClip(t, "street-360p")
	var all [][]byte
	for _, u := range c.Units {
		all = append(all, u.NALUs...)
	}
	stream, err := h264.AnnexB(all).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("noaud", stream)
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

func TestParseSlices(t *testing.T) {
	c := loadClip(t, "street-360p")
	// Pictures of two slices each: the second slice's first_mb_in_slice is
	// not 0 (first bit 0), so it belongs to the same access unit.
	idr0 := []byte{0x65, 0x88, 0x84}
	idr1 := []byte{0x65, 0x40, 0x84}
	p0 := []byte{0x41, 0x9a, 0x02}
	p1 := []byte{0x41, 0x20, 0x02}
	sei := []byte{0x06, 0x05, 0x01, 0x80}
	nalus := [][]byte{
		p0, p1, // before the first IDR: dropped
		c.SPS, c.PPS, idr0, idr1,
		sei, p0, p1,
		p0, p1,
		{0x0b}, // end of stream: dropped
	}
	stream, err := h264.AnnexB(nalus).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("slices", stream)
	if err != nil {
		t.Fatal(err)
	}
	want := []AccessUnit{
		{NALUs: [][]byte{c.SPS, c.PPS, idr0, idr1}, IDR: true},
		{NALUs: [][]byte{sei, p0, p1}},
		{NALUs: [][]byte{p0, p1}},
	}
	if !slices.EqualFunc(got.Units, want, func(a, b AccessUnit) bool {
		return a.IDR == b.IDR && slices.EqualFunc(a.NALUs, b.NALUs, bytes.Equal)
	}) {
		t.Fatalf("units = %v, want %v", got.Units, want)
	}
}

func TestParseLarge(t *testing.T) {
	// Larger than what h264.AnnexB.Unmarshal takes at once.
	data, err := fixtures.ReadFile("fixtures/square-1080p.h264")
	if err != nil {
		t.Fatal(err)
	}
	twice := slices.Concat(data, data)
	if len(twice) <= chunkSize {
		t.Fatalf("test stream of %d bytes does not exceed the chunk size", len(twice))
	}
	c, err := Parse("twice", twice)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Units) != 500 || c.IDRs() != 10 {
		t.Fatalf("%d units, %d IDRs; want 500, 10", len(c.Units), c.IDRs())
	}
}

func TestParseErrors(t *testing.T) {
	c := loadClip(t, "street-360p")
	marshal := func(nalus ...[]byte) []byte {
		b, err := h264.AnnexB(nalus).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, data := range map[string][]byte{
		"empty":          nil,
		"no start code":  []byte("hello, world"),
		"only zeros":     make([]byte, 100),
		"no SPS":         marshal(c.PPS, []byte{0x65, 0x88}),
		"no PPS":         marshal(c.SPS, []byte{0x65, 0x88}),
		"no IDR":         marshal(c.SPS, c.PPS, []byte{0x41, 0x9a}),
		"bad SPS":        marshal([]byte{0x67, 0xff}, c.PPS, []byte{0x65, 0x88}),
		"delimiter only": marshal([]byte{0x09, 0x10}),
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := Parse(name, data); err == nil {
				t.Fatalf("Parse succeeded: %d units", len(got.Units))
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	data, err := fixtures.ReadFile("fixtures/street-360p.h264")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "lobby.h264")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "lobby" || len(c.Units) != 250 || c.Width != 640 {
		t.Errorf("got %s, %d units, width %d", c.Name, len(c.Units), c.Width)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.h264")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadFile(missing) = %v, want fs.ErrNotExist", err)
	}
}

func FuzzParse(f *testing.F) {
	c, err := Load("street-360p")
	if err != nil {
		f.Fatal(err)
	}
	// Small seeds (large ones make the fuzzer crawl): the first three units
	// of a fixture with their slices cut short, with and without access unit
	// delimiters.
	var withAUD, withoutAUD [][]byte
	for _, u := range c.Units[:3] {
		withAUD = append(withAUD, []byte{0x09, 0x10})
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
	f.Add([]byte{0, 0, 1, 0x67, 0, 0, 1, 0x68, 0, 0, 1, 0x65})
	f.Add([]byte{0, 0, 0, 1})

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		if len(c.Units) == 0 || !c.Units[0].IDR || c.SPS == nil || c.PPS == nil || c.FPS < 1 || c.FPS > maxFPS {
			t.Fatalf("bad clip: %d units, SPS %x, PPS %x, FPS %d", len(c.Units), c.SPS, c.PPS, c.FPS)
		}
		for _, u := range c.Units {
			for _, n := range u.NALUs {
				if len(n) == 0 || naluType(n) == h264.NALUTypeAccessUnitDelimiter {
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

func naluTypes(nalus [][]byte) []h264.NALUType {
	var types []h264.NALUType
	for _, n := range nalus {
		types = append(types, naluType(n))
	}
	return types
}

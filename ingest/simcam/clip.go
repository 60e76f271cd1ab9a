package simcam

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

//go:embed fixtures/*.h264 fixtures/*.h265
var fixtures embed.FS

// Codec is the video codec of a clip. Its values are those of
// sharpeye/ingest/stream.Codec.
type Codec string

// The codecs a clip can be in.
const (
	H264 Codec = "H264"
	H265 Codec = "H265"
)

// fixtureExts are the file extensions of the embedded fixtures, by codec.
var fixtureExts = []struct {
	ext   string
	codec Codec
}{{".h264", H264}, {".h265", H265}}

// DefaultFPS is the frame rate of a clip whose SPS carries no timing
// information.
const DefaultFPS = 25

// maxFPS bounds the frame rate read from an SPS; above it the SPS is taken to
// be wrong and DefaultFPS is used.
const maxFPS = 240

// Clip is an H.264 or H.265 elementary stream split into access units,
// ready to be looped by a simulated camera. The first unit is a keyframe
// (an IDR; for H.265 an IRAP picture).
//
// A Clip is read-only once made: the Server shares it, and the RTP packets it
// derives from it, between all cameras given the same *Clip. To make a
// variant (a shorter clip, say) build a new Clip rather than modify one.
type Clip struct {
	// Name is the fixture name ("street-360p") or the file name without
	// extension.
	Name string
	// Codec is H264 or H265; the zero value is H264.
	Codec Codec
	// Width and Height are the picture size in pixels, from the first SPS.
	Width, Height int
	// FPS is the frame rate: one access unit is sent every 1/FPS s.
	FPS int
	// VPS (H.265 only), SPS and PPS are the first parameter sets of the
	// stream, without start code. They go in the SDP of cameras with
	// ParamsInSDP.
	VPS, SPS, PPS []byte
	// Units are the access units in decode order, which is also display
	// order since fixtures have no B-frames.
	Units []AccessUnit
}

// AccessUnit is one coded picture: its NAL units without start codes, access
// unit delimiters, end-of-sequence or end-of-stream NAL units.
type AccessUnit struct {
	NALUs [][]byte
	// IDR reports whether the unit is a keyframe: it holds an IDR slice
	// (H.264) or an IRAP slice segment (H.265: IDR, CRA or BLA).
	IDR bool
}

// IDRs returns the number of units that are keyframes.
func (c *Clip) IDRs() int {
	n := 0
	for _, u := range c.Units {
		if u.IDR {
			n++
		}
	}
	return n
}

// Duration returns the time it takes to play the clip once.
func (c *Clip) Duration() time.Duration {
	return time.Duration(len(c.Units)) * time.Second / time.Duration(c.fps())
}

// fps returns FPS, or DefaultFPS when FPS is not positive.
func (c *Clip) fps() int {
	if c.FPS <= 0 {
		return DefaultFPS
	}
	return c.FPS
}

// StripParams returns a copy of the clip whose units carry no parameter set
// NAL units (SPS and PPS, and VPS for H.265): a camera that announces its
// parameter sets only in the SDP. The copy keeps the VPS, SPS and PPS fields
// and shares the NAL unit bytes with c.
//
// Each call returns a new *Clip; call it once and share the result between
// cameras, since the Server shares packets only between cameras given the same
// *Clip.
func (c *Clip) StripParams() *Clip {
	out := *c
	out.Units = make([]AccessUnit, 0, len(c.Units))
	for _, u := range c.Units {
		nalus := make([][]byte, 0, len(u.NALUs))
		for _, n := range u.NALUs {
			if !isParamSet(c.Codec, n) {
				nalus = append(nalus, n)
			}
		}
		out.Units = append(out.Units, AccessUnit{NALUs: nalus, IDR: u.IDR})
	}
	return &out
}

// isParamSet reports whether n is a parameter set NAL unit of codec.
func isParamSet(codec Codec, n []byte) bool {
	if codec == H265 {
		switch naluType265(n) {
		case h265.NALUType_VPS_NUT, h265.NALUType_SPS_NUT, h265.NALUType_PPS_NUT:
			return true
		}
		return false
	}
	switch naluType(n) {
	case h264.NALUTypeSPS, h264.NALUTypePPS:
		return true
	}
	return false
}

// Fixtures returns the names of the embedded fixtures, sorted, for [Load]:
// H.264 ones (".h264" files) and H.265 ones (".h265" files, whose names end
// in "-h265").
func Fixtures() []string {
	entries, err := fixtures.ReadDir("fixtures")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		for _, fe := range fixtureExts {
			if name, ok := strings.CutSuffix(e.Name(), fe.ext); ok {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

var loaded sync.Map // fixture name -> *loadOnce

type loadOnce struct {
	once sync.Once
	clip *Clip
	err  error
}

// Load returns the embedded fixture called name ("street-360p", with or
// without its ".h264" or ".h265" extension); the codec is the file's. Every
// call for the same fixture returns the same *Clip, so that cameras looping
// it share one copy; do not modify it. An unknown name gives an error
// wrapping [fs.ErrNotExist].
func Load(name string) (*Clip, error) {
	for _, fe := range fixtureExts {
		name = strings.TrimSuffix(name, fe.ext)
	}
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("fixture %q: %w", name, fs.ErrNotExist)
	}
	v, _ := loaded.LoadOrStore(name, &loadOnce{})
	lo := v.(*loadOnce)
	lo.once.Do(func() {
		for _, fe := range fixtureExts {
			data, err := fixtures.ReadFile(path.Join("fixtures", name+fe.ext))
			if err == nil {
				lo.clip, lo.err = ParseCodec(name, fe.codec, data)
				return
			}
		}
		lo.err = fmt.Errorf("fixture %q: %w", name, fs.ErrNotExist)
	})
	return lo.clip, lo.err
}

// LoadFile reads an Annex-B elementary stream from a file: H.265 when its
// extension is ".h265", ".265" or ".hevc" (as [ParseH265] does), H.264
// otherwise (as [Parse] does). The clip is named after the file, without
// extension.
func LoadFile(file string) (*Clip, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	ext := filepath.Ext(file)
	name := strings.TrimSuffix(filepath.Base(file), ext)
	return ParseCodec(name, CodecOfFile(file), data)
}

// CodecOfFile returns the codec of an elementary stream file by its
// extension: H265 for ".h265", ".265" and ".hevc" (in any case), H264
// otherwise.
func CodecOfFile(file string) Codec {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".h265", ".265", ".hevc":
		return H265
	}
	return H264
}

// ParseCodec splits an Annex-B elementary stream of codec into access
// units: [Parse] for H264, [ParseH265] for H265.
func ParseCodec(name string, codec Codec, data []byte) (*Clip, error) {
	switch codec {
	case H264, "":
		return Parse(name, data)
	case H265:
		return ParseH265(name, data)
	}
	return nil, fmt.Errorf("clip %s: unknown codec %q", name, codec)
}

// Parse splits an H.264 Annex-B elementary stream into access units.
//
// Access units are delimited by access unit delimiters when the stream has
// them, and otherwise by the rules of ITU-T H.264 section 7.4.1.2.3 (a new
// unit starts at an SPS, PPS, SEI or AUD after a slice, or at a slice whose
// first_mb_in_slice is 0). Units before the first IDR, which cannot be
// decoded, are dropped. The stream must contain an SPS, a PPS and an IDR. The
// returned clip shares memory with data.
func Parse(name string, data []byte) (*Clip, error) {
	nalus, err := splitAnnexB(data)
	if err != nil {
		return nil, fmt.Errorf("clip %s: %w", name, err)
	}

	c := &Clip{Name: name, Codec: H264}
	var cur AccessUnit
	hasSlice := false
	flush := func() {
		if hasSlice {
			c.Units = append(c.Units, cur)
		}
		cur = AccessUnit{}
		hasSlice = false
	}

	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		typ := naluType(n)
		switch typ {
		case h264.NALUTypeAccessUnitDelimiter:
			flush()
			continue
		case h264.NALUTypeEndOfSequence, h264.NALUTypeEndOfStream:
			continue
		case h264.NALUTypeSPS, h264.NALUTypePPS, h264.NALUTypeSEI,
			h264.NALUTypePrefix, h264.NALUTypeSubsetSPS,
			h264.NALUTypeReserved16, h264.NALUTypeReserved17, h264.NALUTypeReserved18:
			if hasSlice {
				flush()
			}
		case h264.NALUTypeNonIDR, h264.NALUTypeIDR:
			// first_mb_in_slice is the first ue(v) after the NAL header;
			// it is 0 exactly when its first bit is 1.
			if hasSlice && len(n) >= 2 && n[1]&0x80 != 0 {
				flush()
			}
			hasSlice = true
			if typ == h264.NALUTypeIDR {
				cur.IDR = true
			}
		case h264.NALUTypeDataPartitionA, h264.NALUTypeDataPartitionB, h264.NALUTypeDataPartitionC:
			hasSlice = true
		}

		switch {
		case typ == h264.NALUTypeSPS && c.SPS == nil:
			c.SPS = n
		case typ == h264.NALUTypePPS && c.PPS == nil:
			c.PPS = n
		}
		cur.NALUs = append(cur.NALUs, n)
	}
	flush()

	first := slices.IndexFunc(c.Units, func(u AccessUnit) bool { return u.IDR })
	switch {
	case c.SPS == nil:
		return nil, fmt.Errorf("clip %s: no SPS", name)
	case c.PPS == nil:
		return nil, fmt.Errorf("clip %s: no PPS", name)
	case first < 0:
		return nil, fmt.Errorf("clip %s: no IDR", name)
	}
	c.Units = c.Units[first:]

	var sps h264.SPS
	if err := sps.Unmarshal(c.SPS); err != nil {
		return nil, fmt.Errorf("clip %s: parse SPS: %w", name, err)
	}
	c.Width, c.Height = sps.Width(), sps.Height()
	c.FPS = DefaultFPS
	if fps := sps.FPS(); fps >= 1 && fps <= maxFPS {
		c.FPS = int(math.Round(fps))
	}
	return c, nil
}

// ParseH265 splits an H.265 Annex-B elementary stream into access units.
//
// Access units are delimited by the rules of ITU-T H.265 section 7.4.2.4.4:
// a new unit starts at an access unit delimiter, a VPS, SPS, PPS or prefix
// SEI (or a reserved non-VCL type that does the same) after a slice segment
// of the current picture, or at a slice segment whose
// first_slice_segment_in_pic_flag is set. Units before the first IRAP
// picture (IDR, CRA or BLA), which cannot be decoded, are dropped; a stream
// that loops must have closed GOPs (no RASL pictures after its first IRAP).
// The stream must contain a VPS, an SPS, a PPS and an IRAP picture. The
// returned clip shares memory with data.
func ParseH265(name string, data []byte) (*Clip, error) {
	nalus, err := splitAnnexB(data)
	if err != nil {
		return nil, fmt.Errorf("clip %s: %w", name, err)
	}

	c := &Clip{Name: name, Codec: H265}
	var cur AccessUnit
	hasSlice := false
	flush := func() {
		if hasSlice {
			c.Units = append(c.Units, cur)
		}
		cur = AccessUnit{}
		hasSlice = false
	}

	for _, n := range nalus {
		// A NAL unit header is two bytes; anything shorter is not one.
		if len(n) < 2 {
			continue
		}
		typ := naluType265(n)
		switch {
		case typ == h265.NALUType_AUD_NUT:
			flush()
			continue
		case typ == h265.NALUType_EOS_NUT, typ == h265.NALUType_EOB_NUT:
			continue
		case typ == h265.NALUType_VPS_NUT, typ == h265.NALUType_SPS_NUT, typ == h265.NALUType_PPS_NUT,
			typ == h265.NALUType_PREFIX_SEI_NUT, typ >= 41 && typ <= 44, typ >= 48 && typ <= 55:
			if hasSlice {
				flush()
			}
		case typ <= 31: // VCL: a slice segment
			// first_slice_segment_in_pic_flag is the first bit after
			// the header.
			if hasSlice && len(n) >= 3 && n[2]&0x80 != 0 {
				flush()
			}
			hasSlice = true
			if typ >= h265.NALUType_BLA_W_LP && typ <= h265.NALUType_CRA_NUT {
				cur.IDR = true
			}
		}

		switch {
		case typ == h265.NALUType_VPS_NUT && c.VPS == nil:
			c.VPS = n
		case typ == h265.NALUType_SPS_NUT && c.SPS == nil:
			c.SPS = n
		case typ == h265.NALUType_PPS_NUT && c.PPS == nil:
			c.PPS = n
		}
		cur.NALUs = append(cur.NALUs, n)
	}
	flush()

	first := slices.IndexFunc(c.Units, func(u AccessUnit) bool { return u.IDR })
	switch {
	case c.VPS == nil:
		return nil, fmt.Errorf("clip %s: no VPS", name)
	case c.SPS == nil:
		return nil, fmt.Errorf("clip %s: no SPS", name)
	case c.PPS == nil:
		return nil, fmt.Errorf("clip %s: no PPS", name)
	case first < 0:
		return nil, fmt.Errorf("clip %s: no IRAP picture", name)
	}
	c.Units = c.Units[first:]

	var sps h265.SPS
	if err := sps.Unmarshal(c.SPS); err != nil {
		return nil, fmt.Errorf("clip %s: parse SPS: %w", name, err)
	}
	c.Width, c.Height = sps.Width(), sps.Height()
	c.FPS = DefaultFPS
	if fps := sps.FPS(); fps >= 1 && fps <= maxFPS {
		c.FPS = int(math.Round(fps))
	}
	return c, nil
}

// chunkSize bounds the slices of a stream handed to h264.AnnexB.Unmarshal,
// which refuses more than h264.MaxAccessUnitSize bytes at once.
const chunkSize = h264.MaxAccessUnitSize / 2

// splitAnnexB returns the NAL units of an Annex-B byte stream, sharing memory
// with data. Streams of any size are split into chunks at start codes.
func splitAnnexB(data []byte) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		chunk := data
		if len(chunk) > chunkSize {
			// Cut at the next start code after chunkSize; emulation
			// prevention guarantees 00 00 01 occurs only there.
			i := bytes.Index(data[chunkSize:], []byte{0, 0, 1})
			if i < 0 {
				return nil, errors.New("NAL unit too large")
			}
			cut := chunkSize + i
			if data[cut-1] == 0 { // four-byte start code
				cut--
			}
			chunk = data[:cut]
		}
		data = data[len(chunk):]

		var a h264.AnnexB
		if err := a.Unmarshal(chunk); err != nil {
			return nil, fmt.Errorf("Annex-B: %w", err)
		}
		out = append(out, a...)
	}
	if len(out) == 0 {
		return nil, errors.New("empty stream")
	}
	return out, nil
}

func naluType(n []byte) h264.NALUType {
	if len(n) == 0 {
		return 0
	}
	return h264.NALUType(n[0] & 0x1f)
}

func naluType265(n []byte) h265.NALUType {
	if len(n) == 0 {
		return 0
	}
	return h265.NALUType((n[0] >> 1) & 0x3f)
}

package detect

import (
	"encoding/binary"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"sharpeye/ingest/stream"
)

// Keyframes go to ffmpeg in IVF, the simplest container it reads: a
// 32-byte file header, then each frame as a 12-byte header (size, pts)
// and its bytes. Unlike a raw H.264 stream, it needs no parser to find
// where a frame ends (which holds a frame back until the next one starts)
// and lets garbage in one unit never bleed into the next; and the pts we
// set comes back on each decoded frame, which pairs frames with the
// keyframes they came from. ffmpeg's IVF reader knows H.264 by its
// fourcc; H.265 needs the decoder forced (-c:v hevc).

// ivfHeader returns an IVF file header for codec, with a millisecond
// timebase. The picture size in it is ignored: the decoder reads the SPS.
func ivfHeader(codec stream.Codec) []byte {
	h := make([]byte, 32)
	copy(h, "DKIF")
	binary.LittleEndian.PutUint16(h[4:], 0)  // version
	binary.LittleEndian.PutUint16(h[6:], 32) // header size
	if codec == stream.H265 {
		copy(h[8:], "HEVC")
	} else {
		copy(h[8:], "H264")
	}
	binary.LittleEndian.PutUint16(h[12:], 1920)
	binary.LittleEndian.PutUint16(h[14:], 1080)
	binary.LittleEndian.PutUint32(h[16:], 1000) // timebase denominator
	binary.LittleEndian.PutUint32(h[20:], 1)    // numerator
	return h
}

// ivfFrame appends one IVF frame with the unit's NAL units in Annex-B form
// (access unit delimiters left out) to dst.
func ivfFrame(dst []byte, codec stream.Codec, nalus [][]byte, pts int64) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, 12)...)
	for _, n := range nalus {
		if len(n) == 0 || isAUD(codec, n) {
			continue
		}
		dst = append(dst, 0, 0, 0, 1)
		dst = append(dst, n...)
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start-12))
	binary.LittleEndian.PutUint64(dst[start+4:], uint64(pts))
	return dst
}

func isAUD(codec stream.Codec, n []byte) bool {
	if codec == stream.H265 {
		return h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_AUD_NUT
	}
	return h264.NALUType(n[0]&0x1f) == h264.NALUTypeAccessUnitDelimiter
}

// decodable returns the NAL units of a keyframe that a decoder needs: the
// parameter sets and the IDR (IRAP) slices, nothing else (SEI and the
// like are where cameras stray from the standard, and ffmpeg, told to
// give up on any error, would then refuse the whole frame). It reports
// false for a unit that lacks one of them or whose SPS does not parse:
// sent to a decoder shared by cameras, its slices would be decoded with
// another camera's parameter sets.
func decodable(codec stream.Codec, nalus [][]byte) ([][]byte, bool) {
	out := make([][]byte, 0, len(nalus))
	var vps, sps, pps, slice bool
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		keep := true
		if codec == stream.H265 {
			switch t := h265.NALUType((n[0] >> 1) & 0x3f); {
			case t == h265.NALUType_VPS_NUT:
				vps = true
			case t == h265.NALUType_SPS_NUT:
				var s h265.SPS
				sps = s.Unmarshal(n) == nil
			case t == h265.NALUType_PPS_NUT:
				pps = true
			case t >= h265.NALUType_BLA_W_LP && t <= h265.NALUType_CRA_NUT:
				slice = true
			default:
				keep = false
			}
		} else {
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS:
				var s h264.SPS
				sps = s.Unmarshal(n) == nil
			case h264.NALUTypePPS:
				pps = true
			case h264.NALUTypeIDR:
				slice = true
			default:
				keep = false
			}
		}
		if keep {
			out = append(out, n)
		}
	}
	if codec != stream.H265 {
		vps = true
	}
	return out, vps && sps && pps && slice
}

// ffmpegCodec is the name of ffmpeg's decoder for codec.
func ffmpegCodec(codec stream.Codec) string {
	if codec == stream.H265 {
		return "hevc"
	}
	return "h264"
}

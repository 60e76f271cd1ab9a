// Package stream is the hub that fans one camera's video out to every
// consumer in the process: the WebRTC relay, the RTSP re-serve, the
// detectors. The puller publishes access units once; each consumer has its
// own bounded queue; a consumer that falls behind is dropped and counted,
// never slowing the others or the pull. The hub keeps the current group of
// pictures (from the last keyframe, parameter sets included) so that a new
// consumer can start decoding at once.
package stream

import (
	"bytes"
	"errors"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

// Codec names a video codec.
type Codec string

// Codecs the hub carries.
const (
	H264 Codec = "H264"
	H265 Codec = "H265"
)

// Track describes a camera's video as it is now.
type Track struct {
	Codec Codec
	// Parameter sets, the latest seen (from the SDP or in band). VPS is
	// H.265 only.
	VPS, SPS, PPS []byte
	// Width and Height come from the SPS; 0 until one is seen.
	Width, Height int
}

// Unit is one access unit: the NAL units of one picture. Units are shared
// by every consumer and must not be modified once published.
type Unit struct {
	// PTS is the presentation time on the camera's clock.
	PTS time.Duration
	// Received is when the unit's last packet arrived (for latency).
	Received time.Time
	// NALUs without start codes, none empty. A keyframe starts with the
	// parameter sets, whether or not the camera sent them in band.
	NALUs [][]byte
	// Key marks a random-access point (IDR, or IRAP for H.265).
	Key bool
	// Epoch changes when the camera's session restarts (timestamps jump).
	Epoch uint32
	// Size is the total of the NAL units' lengths.
	Size int

	// buf holds the NAL units, if the hub may release it; shared says the
	// unit reached a consumer, so it never may (both under the hub's
	// lock).
	buf    *Buffer
	shared bool
}

// Errors a subscription ends with.
var (
	// ErrSlowConsumer: the subscriber's queue filled up; it was dropped.
	ErrSlowConsumer = errors.New("consumer too slow: queue full, dropped")
	// ErrHubClosed: the camera was removed.
	ErrHubClosed = errors.New("camera removed")
)

// nalu types, enough to tell parameter sets and keyframes apart.
func isParamSet(c Codec, n []byte) bool {
	if len(n) == 0 {
		return false
	}
	if c == H265 {
		t := h265.NALUType((n[0] >> 1) & 0x3f)
		return t == h265.NALUType_VPS_NUT || t == h265.NALUType_SPS_NUT || t == h265.NALUType_PPS_NUT
	}
	t := h264.NALUType(n[0] & 0x1f)
	return t == h264.NALUTypeSPS || t == h264.NALUTypePPS
}

// IsKey reports whether an access unit is a random-access point.
func IsKey(c Codec, nalus [][]byte) bool {
	if c == H265 {
		return h265.IsRandomAccess(nalus)
	}
	return h264.IsRandomAccess(nalus)
}

// updateParams records in-band parameter sets in t; it reports whether any
// changed.
func (t *Track) updateParams(nalus [][]byte) bool {
	changed := false
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		var dst *[]byte
		if t.Codec == H265 {
			switch h265.NALUType((n[0] >> 1) & 0x3f) {
			case h265.NALUType_VPS_NUT:
				dst = &t.VPS
			case h265.NALUType_SPS_NUT:
				dst = &t.SPS
			case h265.NALUType_PPS_NUT:
				dst = &t.PPS
			}
		} else {
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS:
				dst = &t.SPS
			case h264.NALUTypePPS:
				dst = &t.PPS
			}
		}
		if dst != nil && !bytes.Equal(*dst, n) {
			*dst = bytes.Clone(n)
			changed = true
		}
	}
	if changed {
		t.parseSize()
	}
	return changed
}

// parseSize reads the picture size from the SPS.
func (t *Track) parseSize() {
	if len(t.SPS) == 0 {
		return
	}
	if t.Codec == H265 {
		var s h265.SPS
		if s.Unmarshal(t.SPS) == nil {
			t.Width, t.Height = s.Width(), s.Height()
		}
		return
	}
	var s h264.SPS
	if s.Unmarshal(t.SPS) == nil {
		t.Width, t.Height = s.Width(), s.Height()
	}
}

// params returns the parameter sets to put before a keyframe.
func (t *Track) params() [][]byte {
	var out [][]byte
	for _, p := range [][]byte{t.VPS, t.SPS, t.PPS} {
		if len(p) > 0 {
			out = append(out, p)
		}
	}
	return out
}

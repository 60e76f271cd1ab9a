package rtsp

import (
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"sharpeye/ingest/stream"
)

// depacketizer turns the RTP packets the tap takes into access units:
// H.264 (RFC 6184: single NAL units, STAP-A, FU-A) and H.265 (RFC 7798:
// single NAL units, aggregation and fragmentation units). The NAL units of
// a unit are gathered in a pooled buffer and copied out once, into one
// allocation, when the unit ends (the marker bit, or a new timestamp).
type depacketizer struct {
	codec stream.Codec

	buf   *[]byte // the unit so far, NAL units back to back
	ends  []int   // where each NAL unit ends in buf
	ts    uint32  // the unit's timestamp
	open  bool    // a unit is being gathered
	frag  bool    // the last NAL unit is a fragment still open
	seq   uint16
	first bool // no packet seen yet
	// synced says a NAL unit has started since the first packet: the
	// fragments before it end a NAL unit sent before the pull joined,
	// which is no loss.
	synced bool

	// last is the timestamp of the last unit, elapsed the time from the
	// first packet to it in 90 kHz ticks.
	last    uint32
	elapsed int64
}

// Limits of one access unit, against a camera sending garbage.
const (
	maxUnitBytes = 16 << 20
	maxUnitNALUs = 256
)

var (
	errBadPacket    = errors.New("malformed RTP payload")
	errLostFragment = errors.New("a fragment of a NAL unit was lost")
	errUnitTooLarge = errors.New("access unit too large")
	errUnsupported  = errors.New("unsupported RTP payload structure")
)

var unitPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func newDepacketizer(codec stream.Codec) *depacketizer {
	return &depacketizer{codec: codec, first: true}
}

// rtpPacket is the part of an RTP packet the depacketizer reads.
type rtpPacket struct {
	marker  bool
	seq     uint16
	ts      uint32
	payload []byte
}

// parseRTP reads pkt's header (whose length the tap checked) and strips
// its padding.
func parseRTP(pkt []byte, hl int) (rtpPacket, error) {
	p := rtpPacket{marker: pkt[1]&0x80 != 0, seq: binary.BigEndian.Uint16(pkt[2:]), ts: binary.BigEndian.Uint32(pkt[4:]), payload: pkt[hl:]}
	if pkt[0]&0x20 != 0 {
		if len(p.payload) == 0 {
			return p, errBadPacket
		}
		pad := int(p.payload[len(p.payload)-1])
		if pad == 0 || pad > len(p.payload) {
			return p, errBadPacket
		}
		p.payload = p.payload[:len(p.payload)-pad]
	}
	return p, nil
}

// pts is the presentation time of timestamp ts since the first packet.
func (d *depacketizer) pts(ts uint32) time.Duration {
	d.elapsed += int64(int32(ts - d.last))
	d.last = ts
	return time.Duration(d.elapsed) * time.Second / 90000
}

// push adds a packet and hands each unit it ends (a packet with the
// marker bit ends its own; one with a new timestamp ends the previous
// unit, whose last packet was lost or which had no marker) to emit, with
// its presentation time and the buffer that holds it. An error says the packet could not be used; the
// rest of its unit is kept, without the NAL unit it broke.
func (d *depacketizer) push(p rtpPacket, emit emitFunc) (err error) {
	if d.first {
		d.first, d.last = false, p.ts
	} else if p.seq != d.seq+1 && d.frag {
		d.dropFragment() // a gap inside a fragmented NAL unit
		err = errLostFragment
	}
	d.seq = p.seq
	if d.open && p.ts != d.ts {
		d.finish(emit)
	}
	if !d.open {
		d.open, d.ts = true, p.ts
		d.buf = unitPool.Get().(*[]byte)
		*d.buf = (*d.buf)[:0]
	}
	var perr error
	if d.codec == stream.H265 {
		perr = d.h265(p.payload)
	} else {
		perr = d.h264(p.payload)
	}
	if perr != nil {
		err = perr
	}
	if p.marker {
		d.finish(emit)
	}
	return err
}

func (d *depacketizer) h264(pl []byte) error {
	if len(pl) == 0 {
		return errBadPacket
	}
	switch typ := h264.NALUType(pl[0] & 0x1f); {
	case typ >= 1 && typ <= 23:
		return d.whole(pl)
	case typ == h264.NALUTypeSTAPA:
		return d.aggregate(pl[1:])
	case typ == h264.NALUTypeFUA:
		if len(pl) < 2 {
			return errBadPacket
		}
		fu := pl[1]
		return d.fragment(fu&0x80 != 0, fu&0x40 != 0, []byte{pl[0]&0xe0 | fu&0x1f}, pl[2:])
	default:
		return errUnsupported
	}
}

func (d *depacketizer) h265(pl []byte) error {
	if len(pl) < 2 {
		return errBadPacket
	}
	switch typ := h265.NALUType((pl[0] >> 1) & 0x3f); {
	case typ < h265.NALUType_AggregationUnit:
		return d.whole(pl)
	case typ == h265.NALUType_AggregationUnit:
		return d.aggregate(pl[2:])
	case typ == h265.NALUType_FragmentationUnit:
		if len(pl) < 3 {
			return errBadPacket
		}
		fu := pl[2]
		return d.fragment(fu&0x80 != 0, fu&0x40 != 0, []byte{pl[0]&0x81 | (fu&0x3f)<<1, pl[1]}, pl[3:])
	default:
		return errUnsupported
	}
}

// whole adds a NAL unit that came in one packet.
func (d *depacketizer) whole(nalu []byte) error {
	if d.frag {
		d.dropFragment() // its end never came
	}
	return d.add(nalu)
}

// aggregate adds the NAL units of an aggregation packet: each after its
// 16-bit size.
func (d *depacketizer) aggregate(b []byte) error {
	if d.frag {
		d.dropFragment()
	}
	n := 0
	for len(b) > 0 {
		if len(b) < 2 {
			return errBadPacket
		}
		size := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if size == 0 || size > len(b) {
			return errBadPacket
		}
		if err := d.add(b[:size]); err != nil {
			return err
		}
		b = b[size:]
		n++
	}
	if n == 0 {
		return errBadPacket
	}
	return nil
}

// fragment adds a piece of a fragmented NAL unit; header is the NAL
// unit's own header, rebuilt from the fragment's.
func (d *depacketizer) fragment(start, end bool, header, piece []byte) error {
	switch {
	case start:
		if d.frag {
			d.dropFragment()
		}
		if err := d.add(header); err != nil {
			return err
		}
		d.frag = true
	case !d.frag && !d.synced:
		return nil // the end of a NAL unit sent before the pull joined
	case !d.frag:
		return errLostFragment // its start was lost
	}
	if len(*d.buf)+len(piece) > maxUnitBytes {
		d.dropFragment()
		return errUnitTooLarge
	}
	*d.buf = append(*d.buf, piece...)
	d.ends[len(d.ends)-1] = len(*d.buf)
	if end {
		d.frag = false
	}
	return nil
}

// add starts a NAL unit with b.
func (d *depacketizer) add(b []byte) error {
	d.synced = true
	if len(d.ends) >= maxUnitNALUs || len(*d.buf)+len(b) > maxUnitBytes {
		return errUnitTooLarge
	}
	*d.buf = append(*d.buf, b...)
	d.ends = append(d.ends, len(*d.buf))
	return nil
}

// dropFragment forgets the open fragmented NAL unit.
func (d *depacketizer) dropFragment() {
	d.frag = false
	start := 0
	if len(d.ends) > 1 {
		start = d.ends[len(d.ends)-2]
	}
	*d.buf = (*d.buf)[:start]
	d.ends = d.ends[:len(d.ends)-1]
}

// emitFunc takes an access unit whose NAL units are in buf.
type emitFunc func(au [][]byte, pts time.Duration, buf *stream.Buffer)

// finish hands the unit gathered to emit, copied into a buffer of its
// size, and starts over.
func (d *depacketizer) finish(emit emitFunc) {
	if d.frag {
		d.dropFragment()
	}
	defer d.reset()
	if len(d.ends) == 0 {
		return
	}
	buf := stream.NewBuffer(len(*d.buf))
	data := buf.Bytes()
	copy(data, *d.buf)
	au := make([][]byte, len(d.ends))
	start := 0
	for i, end := range d.ends {
		au[i] = data[start:end:end]
		start = end
	}
	emit(au, d.pts(d.ts), buf)
}

func (d *depacketizer) reset() {
	if d.buf != nil {
		if cap(*d.buf) <= 1<<20 {
			unitPool.Put(d.buf)
		}
		d.buf = nil
	}
	d.ends = d.ends[:0]
	d.open, d.frag = false, false
}

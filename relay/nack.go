package relay

import (
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// nackFactory builds nackResponders: NACK responders (RFC 4585) that keep
// the last size packets of each stream by reference.
//
// pion's own responder copies every packet into a pooled 1460-byte buffer:
// about 2 KiB per packet kept, 500 KiB per viewer for 256 packets, most of
// a viewer's memory. The relay's payloads are immutable and shared by all
// viewers of a camera (packCache), so keeping a reference and the few
// header fields that differ per viewer costs about 40 bytes per packet.
// The price: everything written through a stream bound to this responder
// must leave its payloads unmodified afterwards, which holds for the relay's
// tracks and nothing else.
type nackFactory struct{ size int }

func (f nackFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackResponder{size: f.size, streams: map[uint32]*sentRing{}}, nil
}

type nackResponder struct {
	interceptor.NoOp
	size int

	mu      sync.Mutex
	streams map[uint32]*sentRing
}

// sentRing is one stream's last packets, indexed by sequence number.
type sentRing struct {
	mu     sync.Mutex
	slots  []sentPacket
	writer interceptor.RTPWriter
}

type sentPacket struct {
	payload        []byte
	ts, ssrc       uint32
	seq            uint16
	pt             uint8
	marker, stored bool
}

func supportsNACK(info *interceptor.StreamInfo) bool {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			return true
		}
	}
	return false
}

// BindLocalStream keeps what the stream writes.
func (n *nackResponder) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	if !supportsNACK(info) {
		return writer
	}
	ring := &sentRing{slots: make([]sentPacket, n.size), writer: writer}
	n.mu.Lock()
	n.streams[info.SSRC] = ring
	n.mu.Unlock()
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if h.SSRC == info.SSRC {
			ring.mu.Lock()
			ring.slots[int(h.SequenceNumber)%len(ring.slots)] = sentPacket{
				payload: payload, ts: h.Timestamp, ssrc: h.SSRC, seq: h.SequenceNumber, pt: h.PayloadType, marker: h.Marker, stored: true,
			}
			ring.mu.Unlock()
		}
		return writer.Write(h, payload, a)
	})
}

// UnbindLocalStream forgets the stream.
func (n *nackResponder) UnbindLocalStream(info *interceptor.StreamInfo) {
	n.mu.Lock()
	delete(n.streams, info.SSRC)
	n.mu.Unlock()
}

// BindRTCPReader answers the viewer's NACKs as its RTCP is read (by the
// session's RTCP loop): the packets still kept are sent again, on the
// media SSRC (no RTX).
func (n *nackResponder) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		i, attr, err := reader.Read(b, a)
		if err != nil {
			return 0, nil, err
		}
		if attr == nil {
			attr = interceptor.Attributes{}
		}
		pkts, err := attr.GetRTCPPackets(b[:i])
		if err != nil {
			return i, attr, nil // not ours to refuse; the session counts nothing either
		}
		for _, p := range pkts {
			if nack, ok := p.(*rtcp.TransportLayerNack); ok {
				n.resend(nack)
			}
		}
		return i, attr, nil
	})
}

func (n *nackResponder) resend(nack *rtcp.TransportLayerNack) {
	n.mu.Lock()
	ring, ok := n.streams[nack.MediaSSRC]
	n.mu.Unlock()
	if !ok {
		return
	}
	for _, pair := range nack.Nacks {
		pair.Range(func(seq uint16) bool {
			ring.mu.Lock()
			p := ring.slots[int(seq)%len(ring.slots)]
			ring.mu.Unlock()
			if p.stored && p.seq == seq {
				h := rtp.Header{Version: 2, Marker: p.marker, PayloadType: p.pt, SequenceNumber: p.seq, Timestamp: p.ts, SSRC: p.ssrc}
				_, _ = ring.writer.Write(&h, p.payload, nil)
			}
			return true
		})
	}
}

// Close forgets every stream.
func (n *nackResponder) Close() error {
	n.mu.Lock()
	n.streams = map[uint32]*sentRing{}
	n.mu.Unlock()
	return nil
}

var _ interceptor.Factory = nackFactory{}

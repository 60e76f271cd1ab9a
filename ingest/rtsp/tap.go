package rtsp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/headers"

	"sharpeye/ingest/stream"
)

// A tap sits between gortsplib's RTSP client and its TCP connection and
// takes the camera's RTP packets out of the interleaved stream itself,
// when the session runs over TCP: gortsplib would copy each packet into a
// new buffer, then each fragmented NAL unit into another (taking them
// out took the pull of 500 cameras from 0.72 to 0.60 core; see the
// README). The tap hands each packet, in its read buffer, to onRTP (which
// copies what it keeps, once, into the access unit, and counts the
// packets lost), and passes gortsplib the RTP header and the first
// tapKeep bytes of the payload of one packet every tapBeat, renumbered
// so that it sees no loss: enough for its read timeout. RTSP messages,
// RTCP and the other channels pass
// unchanged. On a socket the tap reads with RawConn (see fillRaw).
//
// The tap follows the stream's framing as gortsplib's reader does (an
// interleaved frame after '$', else a request or response, else one byte
// skipped) from the connection's first byte, so it must see the plain
// stream: it is not used under TLS (rtsps). A message header longer than
// the read buffer grows it, up to tapMaxHeader; a longer one ends the
// session with an error (the puller reconnects).
type tap struct {
	net.Conn

	// channel is the interleaved channel of the RTP packets to take, -1
	// for none (before SETUP, or with UDP).
	channel atomic.Int32
	// onRTP gets each RTP packet taken (header included, hl bytes long)
	// and when it was read. It runs on the reading goroutine and must not keep pkt.
	onRTP func(pkt []byte, hl int, received time.Time)

	in   []byte // read buffer: in[r:w] not yet handled
	r, w int
	out  []byte // bytes for gortsplib, in order
	// pass is how many more bytes of the current message or frame go
	// through unchanged.
	pass int
	// big holds an RTP packet longer than the read buffer while it is
	// read.
	big    []byte
	bigGot int
	now    time.Time

	// raw reads the connection when it is a socket (see fillRaw).
	raw syscall.RawConn
	// beat is when the tap last gave gortsplib an RTP packet, beatSeq the
	// sequence number the next one gets, beatEvery how often (see
	// packet).
	beat      time.Time
	beatSeq   uint16
	beatEvery time.Duration
	// deadline is the read deadline fillRaw set, probeEvery after a read
	// (tapProbe).
	deadline   time.Time
	probeEvery time.Duration
}

const (
	// tapBuffer is the read buffer: several RTP packets of the usual
	// size in one read; a larger packet is read apart.
	tapBuffer = 8 << 10
	// tapOut is how much the tap gives gortsplib in one Read at most.
	tapOut = 4 << 10
	// tapMaxHeader is the longest RTSP message header the tap reads.
	tapMaxHeader = 64 << 10
)

var errTapHeader = fmt.Errorf("an RTSP message header longer than %d KiB", tapMaxHeader>>10)

func newTap(nc net.Conn, onRTP func([]byte, int, time.Time)) *tap {
	t := &tap{Conn: nc, onRTP: onRTP, in: make([]byte, tapBuffer), out: make([]byte, 0, tapOut), beatEvery: tapBeat, probeEvery: tapProbe}
	t.channel.Store(-1)
	if sc, ok := nc.(syscall.Conn); ok && rawReads {
		if raw, err := sc.SyscallConn(); err == nil {
			t.raw = raw
		}
	}
	return t
}

// take starts taking the RTP packets of channel.
func (t *tap) take(channel int) { t.channel.Store(int32(channel)) }

// Read implements net.Conn for gortsplib.
func (t *tap) Read(p []byte) (int, error) {
	max := min(len(p), tapOut)
	for {
		t.handle(max)
		if len(t.out) > 0 {
			n := copy(p, t.out)
			t.out = t.out[:copy(t.out, t.out[n:])]
			return n, nil
		}
		var err error
		if t.raw != nil {
			err = t.fillRaw(max)
		} else {
			err = t.fill()
		}
		if err != nil {
			return 0, err
		}
	}
}

// space makes room after what is left of in for the next read.
func (t *tap) space() error {
	if t.r > 0 {
		t.w = copy(t.in, t.in[t.r:t.w])
		t.r = 0
	}
	if t.w == len(t.in) {
		// Full, and handle wants more: only a message header does (it
		// reads frames of any length).
		if len(t.in) >= tapMaxHeader {
			return errTapHeader
		}
		t.in = append(t.in, make([]byte, len(t.in))...)
	}
	return nil
}

// fill reads more of the connection into in.
func (t *tap) fill() error {
	if err := t.space(); err != nil {
		return err
	}
	n, err := t.Conn.Read(t.in[t.w:])
	t.now = time.Now()
	t.w += n
	if n > 0 {
		return nil
	}
	return err
}

// fillRaw reads the socket and handles what it reads until there are
// bytes for gortsplib. It stays in one RawConn.Read for that, so that a
// read that leaves the socket empty is followed by a wait for the next
// bytes: net.Conn.Read would read again first, find nothing and then
// wait, two system calls for each burst of packets instead of one.
//
// A short read can also stop at the camera's FIN (or a reset) queued
// behind the bytes, which then brings no readiness of its own: the wait
// has a deadline, probeEvery after the last read, at which the tap reads
// again (a camera that closes the session is seen within it, not after
// the read timeout).
func (t *tap) fillRaw(max int) error {
	for {
		var ferr error
		err := t.raw.Read(func(fd uintptr) bool {
			for {
				if ferr = t.space(); ferr != nil {
					return true
				}
				n, err := rawRead(fd, t.in[t.w:])
				switch {
				case err == syscall.EINTR:
					continue
				case err == syscall.EAGAIN:
					t.arm(time.Now())
					return false // wait until readable
				case err != nil:
					ferr = &net.OpError{Op: "read", Net: "tcp", Source: t.LocalAddr(), Addr: t.RemoteAddr(), Err: os.NewSyscallError("read", err)}
					return true
				case n == 0:
					ferr = io.EOF
					return true
				}
				t.now = time.Now()
				drained := t.w+n < len(t.in)
				t.w += n
				t.handle(max)
				if len(t.out) > 0 {
					return true
				}
				if drained {
					// The socket had no more: wait for the next bytes (the
					// poller saw any that came since) rather than read.
					t.arm(t.now)
					return false
				}
			}
		})
		if ferr != nil {
			return ferr
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && !t.deadline.IsZero() {
			// The probe's deadline, not the caller's (gortsplib sets
			// none): read again.
			t.deadline = time.Time{}
			if err := t.Conn.SetReadDeadline(time.Time{}); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

// arm sets the deadline of the wait that follows a read at now to
// probeEvery after it, unless the one set is still at least half that
// far off (so that a stream of packets moves it twice a probe at most).
func (t *tap) arm(now time.Time) {
	if !t.deadline.IsZero() && t.deadline.Sub(now) >= t.probeEvery/2 {
		return
	}
	t.deadline = now.Add(t.probeEvery)
	t.Conn.SetReadDeadline(t.deadline)
}

// handle turns what is in the read buffer into bytes for gortsplib, up to
// about max of them, and hands the RTP packets taken to onRTP.
func (t *tap) handle(max int) {
	for len(t.out) < max && t.r < t.w {
		avail := t.w - t.r
		switch {
		case t.big != nil:
			n := copy(t.big[t.bigGot:], t.in[t.r:t.w])
			t.r += n
			t.bigGot += n
			if t.bigGot == len(t.big) {
				t.packet(t.big)
				t.big = nil
			}
		case t.pass > 0:
			n := min(avail, max-len(t.out), t.pass)
			t.pass -= n
			t.out = append(t.out, t.in[t.r:t.r+n]...)
			t.r += n
		case t.in[t.r] == '$':
			if avail < 4 {
				return
			}
			size := int(binary.BigEndian.Uint16(t.in[t.r+2:]))
			if int32(t.in[t.r+1]) != t.channel.Load() {
				t.pass = 4 + size
				continue
			}
			if 4+size > len(t.in) {
				t.r += 4
				t.big, t.bigGot = make([]byte, size), 0
				continue
			}
			if avail < 4+size {
				return
			}
			t.packet(t.in[t.r+4 : t.r+4+size])
			t.r += 4 + size
		case avail < 2:
			return
		case isMessageStart(t.in[t.r], t.in[t.r+1]):
			n, ok := messageLength(t.in[t.r:t.w])
			if !ok {
				return
			}
			t.pass = n
		default:
			t.pass = 1 // gortsplib skips it
		}
	}
}

// tapKeep is how many bytes of a payload gortsplib still gets in a beat:
// the NAL unit and fragmentation headers of H.264 and H.265, which its
// format's PTSEqualsDTS reads for each packet it gets.
const tapKeep = 3

// tapBeat is how often gortsplib gets an RTP packet of those the tap
// takes (at most; a quarter of the read timeout when that is shorter):
// often enough for its read timeout, which counts whole seconds since the
// last packet, rarely enough that it costs nothing (parsing every
// packet's header was a sixth of the CPU of 500 cameras). Over TCP
// gortsplib sends no receiver reports, so the camera never sees the
// renumbering.
const tapBeat = 500 * time.Millisecond

// tapProbe bounds the wait after a short read (see fillRaw).
const tapProbe = time.Second

// packet hands an RTP packet to onRTP and, every tapBeat, gives gortsplib
// its header and the start of its payload, numbered on from the last it
// gave: gortsplib must not count the packets in between as lost (the
// receiver counts the camera's losses).
func (t *tap) packet(pkt []byte) {
	hl, ok := rtpHeaderLen(pkt)
	if !ok {
		// Not an RTP packet the tap can read: gortsplib has it whole and
		// counts the error.
		t.out = appendFrame(t.out, byte(t.channel.Load()), pkt)
		return
	}
	t.onRTP(pkt, hl, t.now)
	if !t.beat.IsZero() && t.now.Sub(t.beat) < t.beatEvery {
		return
	}
	if t.beat.IsZero() {
		t.beatSeq = binary.BigEndian.Uint16(pkt[2:])
	}
	t.beat = t.now
	payload := len(pkt) - hl
	if pkt[0]&0x20 != 0 {
		payload -= int(pkt[len(pkt)-1]) // padding
	}
	n := len(t.out)
	t.out = appendFrame(t.out, byte(t.channel.Load()), pkt[:hl+min(max(payload, 0), tapKeep)])
	t.out[n+4] &^= 0x20 // no padding: the payload is cut
	binary.BigEndian.PutUint16(t.out[n+6:], t.beatSeq)
	t.beatSeq++
}

func appendFrame(out []byte, channel byte, payload []byte) []byte {
	out = append(out, '$', channel, byte(len(payload)>>8), byte(len(payload)))
	return append(out, payload...)
}

// rtpHeaderLen is the length of the RTP header of pkt (with its CSRCs and
// extension), if pkt is an RTP version 2 packet.
func rtpHeaderLen(pkt []byte) (int, bool) {
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return 0, false
	}
	n := 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		if len(pkt) < n+4 {
			return 0, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(pkt[n+2:]))
	}
	if len(pkt) < n {
		return 0, false
	}
	return n, true
}

// isMessageStart says whether a request or response starts with these
// two bytes, as gortsplib's reader tells them.
func isMessageStart(a, b byte) bool {
	switch string([]byte{a, b}) {
	case "RT", "AN", "DE", "GE", "OP", "PA", "PL", "RE", "SE", "TE":
		return true
	}
	return false
}

// messageLength is the length of the RTSP message at the start of b
// (header and body), if its header is all in b.
func messageLength(b []byte) (int, bool) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, false
	}
	n := end + 4
	for _, line := range bytes.Split(b[:end], []byte("\r\n"))[1:] {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			if cl, err := strconv.Atoi(string(bytes.TrimSpace(v))); err == nil && cl > 0 {
				n += cl
			}
		}
	}
	return n, true
}

// tapDialer dials like gortsplib's default and wraps the connection in a
// tap, kept in *last for the session to start taking after SETUP, that
// gives gortsplib a packet every beat. With a read interval, and enough
// sessions running, the socket is read by a reactor (see reactor).
func tapDialer(last *atomic.Pointer[tap], beat, readInterval time.Duration, onRTP func([]byte, int, time.Time)) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		if sessions.Load() >= reactorMinSessions {
			nc = ownConn(nc, readInterval)
		}
		t := newTap(nc, onRTP)
		t.beatEvery = beat
		last.Store(t)
		return t, nil
	}
}

// interleavedChannel is the RTP channel a SETUP response gives for RTP
// over TCP, -1 for any other transport.
func interleavedChannel(res *base.Response) int {
	if res == nil {
		return -1
	}
	var th headers.Transport
	if err := th.Unmarshal(res.Header["Transport"]); err != nil || th.Protocol != headers.TransportProtocolTCP || th.InterleavedIDs == nil {
		return -1
	}
	return th.InterleavedIDs[0]
}

// receiver is a session's receiver of its video packets: those the tap
// takes over TCP, and those gortsplib reads over UDP (see Puller.session).
// Its depacketizer gathers each access unit into a pooled buffer that the
// hub may use again (gortsplib's would allocate each fragment, each unit
// and its list of NAL units).
type receiver struct {
	p      *Puller
	pt     uint8
	dep    *depacketizer
	jitter *jitterMeter
	now    time.Time // the packet being pushed was read then
	emit   emitFunc  // publishes a unit to the hub
	keyed  bool      // a keyframe has come (see emit)
	seq    uint16    // the last packet's sequence number
	seqOK  bool      // seq is set
}

func newReceiver(p *Puller, pt uint8, codec stream.Codec, jitter *jitterMeter) *receiver {
	r := &receiver{p: p, pt: pt, dep: newDepacketizer(codec), jitter: jitter}
	r.emit = func(au [][]byte, pts time.Duration, buf *stream.Buffer) {
		// The units before the first keyframe are dropped: nothing could
		// decode them.
		if !r.keyed && !stream.IsKey(codec, au) {
			buf.Release()
			return
		}
		r.keyed = true
		p.hub.PublishBuffer(pts, r.now, au, buf)
	}
	return r
}

// packet takes an RTP packet whose header, hl bytes, the tap has read.
func (r *receiver) packet(pkt []byte, hl int, now time.Time) {
	// Packets lost: gortsplib, which sees only some of them (see
	// tap.packet), cannot tell. A packet from before the last is late
	// or a duplicate, not a loss.
	seq := binary.BigEndian.Uint16(pkt[2:])
	if gap := seq - r.seq - 1; !r.seqOK || gap < 0x8000 {
		if r.seqOK && gap > 0 {
			r.p.lost.Add(uint64(gap))
		}
		r.seq, r.seqOK = seq, true
	}
	rp, err := parseRTP(pkt, hl)
	r.take(rp, pkt[1]&0x7f, err, now)
}

// take takes a packet of payload type pt (err: it could not be read),
// from the tap or from gortsplib.
func (r *receiver) take(rp rtpPacket, pt uint8, err error, now time.Time) {
	if pt != r.pt {
		r.p.packets.Add(1)
		return // another format of the media
	}
	r.p.arrived(r.jitter, now, rp.ts)
	if err != nil {
		r.p.decodeErrs.Add(1)
		return
	}
	r.now = now
	if err := r.dep.push(rp, r.emit); err != nil {
		r.p.decodeErrs.Add(1)
	}
}

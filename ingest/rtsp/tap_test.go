package rtsp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sharpeye/configs/conf"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/stream"

	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
)

// chunkConn gives its data in pieces of random sizes, then io.EOF.
type chunkConn struct {
	net.Conn
	data []byte
	rnd  *rand.Rand
	max  int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rnd.IntN(c.max))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// rtpPkt builds an RTP packet: csrcs CSRCs, an extension of ext words if
// ext >= 0, pad bytes of padding.
func rtpPkt(seq uint16, ts uint32, marker bool, payload []byte, csrcs, ext, pad int) []byte {
	b := []byte{0x80 | byte(csrcs), 96, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	for range csrcs {
		b = append(b, 9, 9, 9, 9)
	}
	if ext >= 0 {
		b[0] |= 0x10
		b = append(b, 0xbe, 0xde, byte(ext>>8), byte(ext))
		b = append(b, bytes.Repeat([]byte{7}, 4*ext)...)
	}
	b = append(b, payload...)
	if pad > 0 {
		b[0] |= 0x20
		b = append(b, bytes.Repeat([]byte{0}, pad-1)...)
		b = append(b, byte(pad))
	}
	return b
}

func frame(ch byte, payload []byte) []byte { return appendFrame(nil, ch, payload) }

// readAll reads the tap to the end with reads of random sizes.
func readAll(t *testing.T, tp *tap, rnd *rand.Rand) []byte {
	t.Helper()
	var out []byte
	for {
		p := make([]byte, 1+rnd.IntN(5000))
		n, err := tp.Read(p)
		out = append(out, p[:n]...)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestTapTakesTheRTPAndPassesTheRest(t *testing.T) {
	body := []byte("v=0\r\ns=$$$ not a frame\r\n")
	big := bytes.Repeat([]byte{0x41}, 3*tapBuffer) // longer than the read buffer
	pkts := [][]byte{
		rtpPkt(1, 3600, false, []byte{0x65, 1, 2, 3}, 0, -1, 0),
		rtpPkt(2, 3600, true, big, 0, -1, 0),
		rtpPkt(3, 7200, true, []byte{0x41, 5}, 2, 1, 3), // CSRCs, an extension, padding
	}
	var in, want bytes.Buffer
	both := func(b []byte) { in.Write(b); want.Write(b) }
	both([]byte("RTSP/1.0 200 OK\r\nCSeq: 4\r\ncontent-length: " + strconv.Itoa(len(body)) + "\r\n\r\n"))
	both(body)
	both(frame(1, []byte{0x80, 200, 0, 6, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24})) // RTCP
	both([]byte{'x'})                                                                                                              // skipped by gortsplib
	// gortsplib gets the first packet's header and the payload's first
	// three bytes, and no other packet: they come within the beat (see
	// TestTapBeat).
	for i, p := range pkts {
		in.Write(frame(0, p))
		if i == 0 {
			hl, _ := rtpHeaderLen(p)
			want.Write(frame(0, p[:hl+3]))
		}
		if i == 1 {
			both([]byte("RTSP/1.0 200 OK\r\nCSeq: 5\r\n\r\n")) // a keep-alive's answer between packets
		}
	}
	notRTP := []byte{0x00, 1, 2}
	both(frame(0, notRTP)) // gortsplib has it whole and counts the error
	both(frame(2, []byte("another channel")))

	for seed := range uint64(60) {
		rnd := rand.New(rand.NewPCG(seed, 1))
		var got [][]byte
		var conn net.Conn = &chunkConn{data: bytes.Clone(in.Bytes()), rnd: rnd, max: 1 + rnd.IntN(3*tapBuffer)}
		if seed%3 == 0 {
			conn = tcpWritten(t, in.Bytes(), rnd) // the raw reads of a socket
		}
		tp := newTap(conn, func(pkt []byte, hl int, _ time.Time) {
			if want, _ := rtpHeaderLen(pkt); hl != want {
				t.Fatalf("header length %d, want %d", hl, want)
			}
			got = append(got, bytes.Clone(pkt))
		})
		tp.beatEvery = time.Hour // however slow the machine
		tp.take(0)
		if out := readAll(t, tp, rnd); !bytes.Equal(out, want.Bytes()) {
			t.Fatalf("seed %d: gortsplib's side differs at byte %d of %d", seed, mismatch(out, want.Bytes()), want.Len())
		}
		if len(got) != len(pkts) {
			t.Fatalf("seed %d: %d packets taken, want %d", seed, len(got), len(pkts))
		}
		for i := range pkts {
			if !bytes.Equal(got[i], pkts[i]) {
				t.Fatalf("seed %d: packet %d differs", seed, i)
			}
		}
	}
}

// tcpWritten is the client end of a loopback TCP connection whose other
// end writes data in pieces of random sizes, some after a pause, and then
// closes.
func tcpWritten(t *testing.T, data []byte, rnd *rand.Rand) net.Conn {
	t.Helper()
	client, server := tcpPair(t)
	var pieces [][]byte
	for b := data; len(b) > 0; {
		n := min(len(b), 1+rnd.IntN(3*tapBuffer))
		pieces, b = append(pieces, b[:n]), b[n:]
	}
	pause := rnd.IntN(3)
	go func() {
		defer server.Close()
		for i, p := range pieces {
			if i%3 == pause {
				time.Sleep(time.Millisecond)
			}
			if _, err := server.Write(p); err != nil {
				return
			}
		}
	}()
	return client
}

// TestTapBeat: gortsplib gets the first packet the tap takes and then one
// every tapBeat, numbered one after the other whatever the camera's
// numbers in between (it would count those it did not get as lost).
func TestTapBeat(t *testing.T) {
	tp := newTap(nil, func([]byte, int, time.Time) {})
	tp.take(0)
	start := time.Now()
	var want []byte
	for i := range 12 {
		tp.now = start.Add(time.Duration(i) * 100 * time.Millisecond)
		pkt := rtpPkt(uint16(65530+3*i), uint32(i)*9000, true, []byte{0x41, 1, 2, 3, 4}, 0, -1, 0)
		tp.packet(pkt)
		if i%5 == 0 {
			h := bytes.Clone(pkt[:12+3])
			binary.BigEndian.PutUint16(h[2:], uint16(65530+i/5))
			want = append(want, frame(0, h)...)
		}
	}
	if !bytes.Equal(tp.out, want) {
		t.Fatalf("gortsplib got %x, want %x", tp.out, want)
	}
}

// TestTapReceiverCountsLosses: the receiver counts the packets lost from
// the camera's sequence numbers (gortsplib, which gets only the beat,
// cannot), across the wrap, and not a late or repeated packet.
func TestTapReceiverCountsLosses(t *testing.T) {
	hub := stream.NewHub("cam", stream.DefaultHubConfig())
	defer hub.Close()
	p := NewPuller(camera.Camera{ID: "cam"}, hub, PullConfig{}, slog.New(slog.DiscardHandler))
	r := newReceiver(p, 96, stream.H264, &jitterMeter{})
	now := time.Now()
	for _, seq := range []uint16{65533, 65534, 1, 2, 2, 1, 3, 7} { // 65535, 0 and 4-6 lost
		pkt := rtpPkt(seq, 0, false, []byte{0x41, 1}, 0, -1, 0)
		r.packet(pkt, 12, now)
	}
	if st := p.Status(); st.PacketsLost != 5 || st.PacketsReceived != 8 {
		t.Fatalf("%d packets lost of %d received, want 5 of 8", st.PacketsLost, st.PacketsReceived)
	}
}

func TestTapPassesAllBeforeTakingAndLongHeaders(t *testing.T) {
	rtp := rtpPkt(1, 0, true, []byte{0x65}, 0, -1, 0)
	pkt := frame(0, rtp)
	rnd := rand.New(rand.NewPCG(7, 7))
	taken := 0
	onRTP := func([]byte, int, time.Time) { taken++ }

	// Not taking (before SETUP, or over UDP): unchanged.
	tp := newTap(&chunkConn{data: bytes.Clone(pkt), rnd: rnd, max: 100}, onRTP)
	if out := readAll(t, tp, rnd); !bytes.Equal(out, pkt) || taken != 0 {
		t.Fatalf("a tap not taking changed the stream (%d packets taken)", taken)
	}

	// A message header longer than the read buffer: the buffer grows, the
	// header passes whole and the packet after it is taken.
	header := append([]byte("RTSP/1.0 200 OK\r\nX: "), bytes.Repeat([]byte{'a'}, 2*tapBuffer)...)
	header = append(header, "\r\n\r\n"...)
	in := append(bytes.Clone(header), pkt...)
	want := append(bytes.Clone(header), frame(0, rtp)...) // a one-byte payload: all of it
	tp = newTap(&chunkConn{data: bytes.Clone(in), rnd: rnd, max: 3000}, onRTP)
	tp.take(0)
	if out := readAll(t, tp, rnd); !bytes.Equal(out, want) || taken != 1 {
		t.Fatalf("a long header: %d bytes out, want %d; %d packets taken, want 1", len(out), len(want), taken)
	}

	// One that never ends: an error, not a stream passed on unread.
	endless := append([]byte("RTSP/1.0 200 OK\r\nX: "), bytes.Repeat([]byte{'a'}, tapMaxHeader)...)
	tp = newTap(&chunkConn{data: endless, rnd: rnd, max: 3000}, onRTP)
	tp.take(0)
	for {
		_, err := tp.Read(make([]byte, 4096))
		if errors.Is(err, errTapHeader) {
			break
		}
		if err != nil {
			t.Fatalf("an endless header: %v, want %v", err, errTapHeader)
		}
	}
}

// The tap holds back nothing that is whole: a response and a frame
// written and then nothing more (the camera waits for the client) are
// read in full without waiting for more bytes.
func TestTapHoldsNothingBack(t *testing.T) {
	t.Run("pipe", func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		defer server.Close()
		holdsNothingBack(t, client, server)
	})
	t.Run("tcp", func(t *testing.T) { // the raw reads of a socket
		client, server := tcpPair(t)
		holdsNothingBack(t, client, server)
	})
}

// tcpPair is both ends of a loopback TCP connection, closed when the test
// ends.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	if _, ok := client.(syscall.Conn); !ok {
		t.Fatal("a TCP connection is no syscall.Conn")
	}
	return client, server
}

// TestTapSeesACloseBehindTheLastBytes: a camera that sends its last
// packet and closes the connection while the tap is busy leaves the FIN
// behind bytes a read returns alone, with no readiness of its own; the
// tap reads again after probeEvery and ends with io.EOF instead of
// waiting for bytes that never come.
func TestTapSeesACloseBehindTheLastBytes(t *testing.T) {
	client, server := tcpPair(t)
	entered, release := make(chan struct{}), make(chan struct{})
	first := true
	tp := newTap(client, func([]byte, int, time.Time) {
		if first { // busy with the first packet while the rest comes
			first = false
			close(entered)
			<-release
		}
	})
	tp.beat, tp.beatEvery = time.Now(), time.Hour // nothing for gortsplib
	tp.probeEvery = 50 * time.Millisecond
	tp.take(0)
	go func() {
		server.Write(frame(0, rtpPkt(1, 0, false, []byte{0x41, 1}, 0, -1, 0)))
		<-entered
		// On loopback the bytes and the FIN are queued at the tap's end
		// when Write and Close return.
		server.Write(frame(0, rtpPkt(2, 0, true, []byte{0x41, 2}, 0, -1, 0)))
		server.Close()
		close(release)
	}()
	done := make(chan error, 1)
	go func() {
		_, err := tp.Read(make([]byte, 100))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("the tap's read after the camera closed: %v, want %v", err, io.EOF)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the tap still waits for bytes after the camera closed")
	}
}

func holdsNothingBack(t *testing.T, client, server net.Conn) {
	taken := 0
	tp := newTap(client, func([]byte, int, time.Time) { taken++ })
	tp.beatEvery = time.Hour // however slow the machine
	tp.take(0)
	// A response, a frame of another channel and two packets taken, and
	// after a pause another response: gortsplib gets the first packet's
	// header (the second comes within the beat) and both responses.
	resp1 := []byte("RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 3\r\n\r\nabc")
	other := frame(1, []byte{1, 2, 3, 4})
	pkt1, pkt2 := rtpPkt(1, 0, false, []byte{0x41, 1, 2, 3, 4}, 0, -1, 0), rtpPkt(2, 0, true, []byte{0x41, 5, 6}, 0, -1, 0)
	resp2 := []byte("RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n")
	go func() {
		server.Write(slices.Concat(resp1, other, frame(0, pkt1), frame(0, pkt2)))
		time.Sleep(20 * time.Millisecond)
		server.Write(resp2)
	}()
	want := slices.Concat(resp1, other, frame(0, pkt1[:15]), resp2)
	if err := client.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < len(want) {
		p := make([]byte, 100)
		n, err := tp.Read(p)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", len(got), len(want), err)
		}
		got = append(got, p[:n]...)
	}
	if !bytes.Equal(got, want) || taken != 2 {
		t.Fatalf("got %q and %d packets taken, want %q and 2", got, taken, want)
	}
}

func mismatch(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// units collects what a depacketizer emits.
type units struct {
	aus  [][][]byte
	ptss []time.Duration
}

func (u *units) emit(au [][]byte, pts time.Duration, _ *stream.Buffer) {
	u.aus = append(u.aus, au)
	u.ptss = append(u.ptss, pts)
}

func pushAll(t *testing.T, d *depacketizer, u *units, pkts ...[]byte) []error {
	t.Helper()
	var errs []error
	for _, pkt := range pkts {
		hl, ok := rtpHeaderLen(pkt)
		if !ok {
			t.Fatal("test packet not RTP")
		}
		rp, err := parseRTP(pkt, hl)
		if err != nil {
			t.Fatal(err)
		}
		errs = append(errs, d.push(rp, u.emit))
	}
	return errs
}

// fuA is an H.264 FU-A payload of an IDR slice: start and end flags and
// a piece of the NAL unit.
func fuA(start, end bool, piece ...byte) []byte {
	h := byte(0x05)
	if start {
		h |= 0x80
	}
	if end {
		h |= 0x40
	}
	return append([]byte{0x60 | 28, h}, piece...)
}

func TestDepacketizeH264(t *testing.T) {
	sps := []byte{0x67, 0x42, 0xc0, 0x1e}
	pps := []byte{0x68, 0xce, 0x3c, 0x80}
	idr := append([]byte{0x65}, bytes.Repeat([]byte{0xaa}, 3000)...)
	stapA := []byte{24}
	for _, n := range [][]byte{sps, pps} {
		stapA = append(stapA, byte(len(n)>>8), byte(len(n)))
		stapA = append(stapA, n...)
	}
	fu := func(start, end bool, piece []byte) []byte { return fuA(start, end, piece...) }
	d := newDepacketizer(stream.H264)
	var u units
	errs := pushAll(t, d, &u,
		rtpPkt(10, 90000, false, stapA, 0, -1, 0),
		rtpPkt(11, 90000, false, fu(true, false, idr[1:1000]), 0, -1, 0),
		rtpPkt(12, 90000, false, fu(false, false, idr[1000:2000]), 0, -1, 4),
		rtpPkt(13, 90000, true, fu(false, true, idr[2000:]), 0, -1, 0),
		rtpPkt(14, 93600, true, []byte{0x41, 1, 2}, 0, -1, 0),
	)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(u.aus) != 2 {
		t.Fatalf("%d units, want 2", len(u.aus))
	}
	if got := u.aus[0]; len(got) != 3 || !bytes.Equal(got[0], sps) || !bytes.Equal(got[1], pps) || !bytes.Equal(got[2], idr) {
		t.Fatalf("keyframe unit: %d NAL units", len(got))
	}
	if !stream.IsKey(stream.H264, u.aus[0]) || stream.IsKey(stream.H264, u.aus[1]) {
		t.Fatal("keyframe flags wrong")
	}
	if u.ptss[0] != 0 || u.ptss[1] != 40*time.Millisecond {
		t.Fatalf("pts %v", u.ptss)
	}

	// A fragment lost: the unit comes without that NAL unit, and an
	// error says so. A unit whose marker was lost ends at the next
	// timestamp.
	u = units{}
	errs = pushAll(t, d, &u,
		rtpPkt(20, 97200, false, []byte{0x41, 9}, 0, -1, 0),
		rtpPkt(21, 97200, false, fu(true, false, idr[1:1000]), 0, -1, 0),
		rtpPkt(23, 97200, true, fu(false, true, idr[2000:]), 0, -1, 0), // 22 lost
		rtpPkt(24, 100800, false, []byte{0x41, 3}, 0, -1, 0),           // its marker is lost
		rtpPkt(26, 104400, true, []byte{0x41, 4}, 0, -1, 0),
	)
	if errs[2] == nil {
		t.Fatal("no error for a lost fragment")
	}
	if len(u.aus) != 3 || len(u.aus[0]) != 1 || !bytes.Equal(u.aus[0][0], []byte{0x41, 9}) {
		t.Fatalf("units after a loss: %d", len(u.aus))
	}
	if u.ptss[1] != 120*time.Millisecond || u.ptss[2] != 160*time.Millisecond {
		t.Fatalf("pts %v", u.ptss)
	}
}

// TestDepacketizeJoinedMidFragment: a pull that joins in the middle of a
// fragmented NAL unit drops its tail without calling it a loss; a
// fragment whose start is lost later is one.
func TestDepacketizeJoinedMidFragment(t *testing.T) {
	fu := fuA
	d := newDepacketizer(stream.H264)
	var u units
	errs := pushAll(t, d, &u,
		rtpPkt(7, 0, false, fu(false, false, 1, 2), 0, -1, 0), // joined here
		rtpPkt(8, 0, true, fu(false, true, 3), 0, -1, 0),
		rtpPkt(9, 3600, false, fu(true, false, 4), 0, -1, 0),
		rtpPkt(10, 3600, true, fu(false, true, 5), 0, -1, 0),
		rtpPkt(12, 7200, true, fu(false, true, 6), 0, -1, 0), // 11, its start, lost
	)
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("the tail before the first NAL unit gave %v, %v", errs[0], errs[1])
	}
	if !errors.Is(errs[4], errLostFragment) {
		t.Fatalf("a fragment whose start was lost gave %v, want %v", errs[4], errLostFragment)
	}
	if len(u.aus) != 1 || !bytes.Equal(u.aus[0][0], []byte{0x65, 4, 5}) {
		t.Fatalf("units %x, want the one whole NAL unit", u.aus)
	}
}

func TestDepacketizeH265AndTimestampWrap(t *testing.T) {
	vps := []byte{0x40, 0x01, 0x0c}
	sps := []byte{0x42, 0x01, 0x01}
	ap := []byte{48 << 1, 1}
	for _, n := range [][]byte{vps, sps} {
		ap = append(ap, byte(len(n)>>8), byte(len(n)))
		ap = append(ap, n...)
	}
	idr := append([]byte{19 << 1, 1}, bytes.Repeat([]byte{0xbb}, 2000)...)
	fu := func(start, end bool, piece []byte) []byte {
		h := byte(19)
		if start {
			h |= 0x80
		}
		if end {
			h |= 0x40
		}
		return append([]byte{49 << 1, 1, h}, piece...)
	}
	d := newDepacketizer(stream.H265)
	var u units
	ts := uint32(1<<32 - 1800) // wraps in the second unit
	for _, err := range pushAll(t, d, &u,
		rtpPkt(65535, ts, false, ap, 0, -1, 0),
		rtpPkt(0, ts, false, fu(true, false, idr[2:1000]), 0, -1, 0),
		rtpPkt(1, ts, true, fu(false, true, idr[1000:]), 0, -1, 0),
		rtpPkt(2, ts+3600, true, []byte{1 << 1, 1, 5}, 0, -1, 0),
	) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(u.aus) != 2 || len(u.aus[0]) != 3 || !bytes.Equal(u.aus[0][0], vps) || !bytes.Equal(u.aus[0][2], idr) {
		t.Fatalf("units %d", len(u.aus))
	}
	if !stream.IsKey(stream.H265, u.aus[0]) {
		t.Fatal("the H.265 IDR is not a keyframe")
	}
	if u.ptss[1] != 40*time.Millisecond {
		t.Fatalf("pts across the wrap %v", u.ptss[1])
	}
}

// FuzzTap feeds anything through a tap taking channel 0 into a
// depacketizer: nothing panics, the tap ends, and what it gives gortsplib
// is never longer than what came in.
func FuzzTap(f *testing.F) {
	f.Add([]byte("RTSP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc"), uint8(7))
	f.Add(frame(0, rtpPkt(1, 0, true, []byte{28, 0x85, 1}, 1, 0, 2)), uint8(1))
	f.Add(frame(0, []byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 24, 0, 9, 1}), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		for _, codec := range []stream.Codec{stream.H264, stream.H265} {
			d := newDepacketizer(codec)
			rnd := rand.New(rand.NewPCG(uint64(chunk), 0))
			tp := newTap(&chunkConn{data: bytes.Clone(data), rnd: rnd, max: 1 + int(chunk)}, func(pkt []byte, hl int, _ time.Time) {
				if want, ok := rtpHeaderLen(pkt); !ok || hl != want {
					t.Fatal("the tap took a packet it cannot read, or misread its header")
				}
				if rp, err := parseRTP(pkt, hl); err == nil {
					d.push(rp, func([][]byte, time.Duration, *stream.Buffer) {})
				}
			})
			tp.take(0)
			if out := readAll(t, tp, rnd); len(out) > len(data) {
				t.Fatalf("the tap gave %d bytes for %d", len(out), len(data))
			}
		}
	})
}

// FuzzDepacketize pushes payloads cut from data (each after a length
// byte and a flags byte: marker, sequence gap, new timestamp) into both
// depacketizers: nothing panics, and every unit has NAL units.
func FuzzDepacketize(f *testing.F) {
	f.Add([]byte{5, 0, 28, 0x85, 1, 2, 3, 4, 1, 28, 0x45, 9, 9})
	f.Add([]byte{9, 1, 24, 0, 2, 0x67, 1, 0, 2, 0x68, 2})
	f.Add([]byte{7, 3, 49 << 1, 1, 0x93, 1, 2, 3, 4, 96, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, codec := range []stream.Codec{stream.H264, stream.H265} {
			d := newDepacketizer(codec)
			seq, ts := uint16(0), uint32(0)
			for b := data; len(b) >= 2; {
				n, flags := int(b[0]), b[1]
				b = b[2:]
				n = min(n, len(b))
				seq++
				if flags&2 != 0 {
					seq++
				}
				if flags&4 != 0 {
					ts += 3600
				}
				d.push(rtpPacket{marker: flags&1 != 0, seq: seq, ts: ts, payload: b[:n]}, func(au [][]byte, _ time.Duration, _ *stream.Buffer) {
					for _, n := range au {
						if len(n) == 0 {
							t.Fatal("an empty NAL unit")
						}
					}
				})
				b = b[n:]
			}
		}
	})
}

// TestFindVideoRefusesInterleavedH264: a camera announcing H.264 in
// interleaved mode, which no depacketizer here reads, is told so.
func TestFindVideoRefusesInterleavedH264(t *testing.T) {
	desc := &description.Session{Medias: []*description.Media{{
		Type:    description.MediaTypeVideo,
		Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 2}},
	}}}
	_, _, _, err := findVideo(desc)
	var ce *camError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "packetization-mode 2") {
		t.Fatalf("findVideo: %v, want an error naming packetization-mode 2", err)
	}
	desc.Medias[0].Formats[0].(*format.H264).PacketizationMode = 1
	if _, _, track, err := findVideo(desc); err != nil || track.Codec != stream.H264 {
		t.Fatalf("mode 1: %v, %v", track.Codec, err)
	}
}

// TestReadTimeoutAtLeastTwoSeconds: gortsplib counts whole seconds since
// a camera's last packet (and the tap gives it one every beat), so a
// shorter read timeout would take streaming cameras offline.
func TestReadTimeoutAtLeastTwoSeconds(t *testing.T) {
	var c struct {
		Pull PullConfig `yaml:"pull"`
	}
	c.Pull = DefaultPullConfig()
	err := conf.Load(&c, []byte("pull:\n  read_timeout: 1500ms\n"), "test.yml", nil)
	if err == nil || !strings.Contains(err.Error(), "read_timeout") || !strings.Contains(err.Error(), "at least 2s") {
		t.Fatalf("read_timeout 1.5s: %v", err)
	}
	if err := conf.Load(&c, []byte("pull:\n  read_timeout: 2s\n"), "test.yml", nil); err != nil {
		t.Fatalf("read_timeout 2s: %v", err)
	}
}

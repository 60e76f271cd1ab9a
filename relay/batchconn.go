package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

const (
	// maxBatch is the most messages one sendmmsg(2) call carries.
	maxBatch = 64
	// maxSegments is the most datagrams one message carries with
	// segmentation offload (the kernel's UDP_MAX_SEGMENTS is 64 or 128).
	maxSegments = 64
	// maxMessage bounds a segmented message (the largest UDP payload
	// over IPv4).
	maxMessage = 65507
	// flushAfter bounds how long a queued datagram waits when no streamer
	// flushes (STUN, DTLS and RTCP written by pion's own goroutines).
	flushAfter = time.Millisecond
	// batchFrom: with this many sessions or more, a streamer that has
	// written a unit leaves its packets queued for the next streamers'
	// (sent when maxBatch messages are queued, or flushAfter after the
	// first): each viewer's unit in a system call of its own, and the
	// thread switches around them, had been a tenth of the relay's CPU
	// at 200 viewers. Fewer sessions send each unit at once.
	batchFrom = 16
	// slotSize fits one datagram of the MTU; slots grow when datagrams
	// are joined.
	slotSize = 1500
	// maxReady bounds the batches waiting for the sender: a writer that
	// finds that many waits for one to leave.
	maxReady = 4
)

// batchWriter sends several messages in one system call (sendmmsg on
// Linux, one by one elsewhere): ipv4.PacketConn or ipv6.PacketConn.
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// slot is one queued message: one datagram, or with segmentation offload
// several of the same size (the last may be shorter) for one address.
type slot struct {
	addr   netip.AddrPort
	udp    net.UDPAddr
	segs   int  // datagrams joined
	size   int  // size of each but the last
	sealed bool // the last datagram was shorter: nothing more may join
}

// batch is one set of queued messages, filled under batchConn.mu and sent
// by the sender outside it.
type batch struct {
	msgs   []ipv4.Message
	slots  []slot
	index  map[netip.AddrPort]int // the open message of each address
	n      int
	queued int // datagrams queued
}

func newBatch() *batch {
	b := &batch{
		msgs:  make([]ipv4.Message, maxBatch),
		slots: make([]slot, maxBatch),
		index: make(map[netip.AddrPort]int, maxBatch),
	}
	for i := range b.msgs {
		b.msgs[i].Buffers = [][]byte{make([]byte, 0, slotSize)}
		b.slots[i].udp.IP = make(net.IP, 0, net.IPv6len)
	}
	return b
}

// add queues a copy of p for addr, joined to addr's open message when
// gso allows, and tells whether the batch is now full.
func (b *batch) add(p []byte, addr netip.AddrPort, gso bool) (full bool) {
	b.queued++
	if gso && len(p) > 0 {
		if i, ok := b.index[addr]; ok && b.joins(i, len(p)) {
			s := &b.slots[i]
			b.msgs[i].Buffers[0] = append(b.msgs[i].Buffers[0], p...)
			s.segs++
			s.sealed = len(p) < s.size
			return false
		}
	}
	i := b.n
	b.n++
	s := &b.slots[i]
	s.addr, s.segs, s.size, s.sealed = addr, 1, len(p), false
	ip := addr.Addr().Unmap()
	if ip.Is4() {
		a4 := ip.As4()
		s.udp.IP = append(s.udp.IP[:0], a4[:]...)
	} else {
		a16 := ip.As16()
		s.udp.IP = append(s.udp.IP[:0], a16[:]...)
	}
	s.udp.Port, s.udp.Zone = int(addr.Port()), ip.Zone()
	m := &b.msgs[i]
	m.Buffers[0] = append(m.Buffers[0][:0], p...)
	m.Addr = &s.udp
	if gso {
		b.index[addr] = i
	}
	return b.n == len(b.msgs)
}

// joins tells whether a datagram of n bytes may join message i.
func (b *batch) joins(i, n int) bool {
	s := &b.slots[i]
	return !s.sealed && n <= s.size && s.segs < maxSegments && len(b.msgs[i].Buffers[0])+n <= maxMessage
}

// reset empties b for reuse.
func (b *batch) reset() {
	for i := range b.n {
		b.msgs[i].Addr = nil
	}
	clear(b.index)
	b.n, b.queued = 0, 0
}

// batchConn is the media socket under the ICE UDP mux. Every viewer's
// packets leave through it, and sending them one system call at a time
// was most of the relay's CPU. Writes are queued and sent in batches:
// when maxBatch messages are queued, when a streamer has written a unit
// to its viewer (Flush; with fewer than batchFrom sessions), and at the
// latest flushAfter after the first queued one. Where the kernel offers
// UDP segmentation offload, the packets of a unit for one viewer (same
// size but the last) travel as one message that the kernel (or the
// network card) cuts into datagrams, so a unit costs one trip through the
// network stack instead of one per packet. A write is copied, so the
// caller may reuse its buffer at once. A refused message is counted and
// the rest of the batch still goes: UDP promises no delivery either way.
//
// The system call is made outside the lock: a full batch joins a queue
// that one goroutine at a time (the sender, whoever found no sender at
// work) sends in order, while the others go on filling the next batch.
// Sending under the lock had the streamers of the other core wait for
// each call, and the waits were 99 % of the relay's lock contention.
type batchConn struct {
	*net.UDPConn
	w      batchWriter
	r      *rawReader // nil: the UDPConn's reads
	onSend func(calls, datagrams, failed int)
	gso    atomic.Bool

	mu      sync.Mutex
	cur     *batch   // being filled
	ready   []*batch // to send, in order
	free    []*batch
	sending bool       // a sender is at work
	left    *sync.Cond // on mu: a batch left, or the sender stopped
	timer   *time.Timer
	after   time.Duration // flushAfter
	armed   bool
	closed  bool
}

// newBatchConn wraps conn; onSend (may be nil) is told of every batch
// sent.
func newBatchConn(conn *net.UDPConn, onSend func(calls, datagrams, failed int)) *batchConn {
	c := &batchConn{UDPConn: conn, onSend: onSend, after: flushAfter, cur: newBatch()}
	c.left = sync.NewCond(&c.mu)
	c.gso.Store(gsoSupported(conn))
	c.r = newRawReader(conn)
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil && !la.IP.IsUnspecified() {
		c.w = newBatchWriter(conn, ipv6.NewPacketConn(conn))
	} else {
		c.w = newBatchWriter(conn, ipv4.NewPacketConn(conn))
	}
	c.timer = time.AfterFunc(time.Hour, c.Flush)
	c.timer.Stop()
	return c
}

// WriteTo queues b for addr (a *net.UDPAddr).
func (c *batchConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: errors.New("not a UDP address")}
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// WriteToAddrPort queues b for addr; pion's UDP mux uses it when the
// connection offers it.
func (c *batchConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	c.mu.Lock()
	for len(c.ready) >= maxReady && c.sending && !c.closed {
		c.left.Wait()
	}
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	// The current batch is never full here: the write that fills it
	// queues it before letting go of the lock.
	if c.cur.add(b, addr, c.gso.Load()) {
		c.flushLocked()
		return len(b), nil
	}
	if !c.armed {
		c.armed = true
		c.timer.Reset(c.after)
	}
	c.mu.Unlock()
	return len(b), nil
}

// ReadFromAddrPort reads one datagram; with WriteToAddrPort it lets pion
// handle addresses without allocating.
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	if c.r != nil {
		return c.r.ReadFromAddrPort(b)
	}
	return c.UDPConn.ReadFromUDPAddrPort(b)
}

// unitFlush is what a streamer does after writing a unit: sends the queue
// while fewer than batchFrom sessions (*sessions) run; with more, leaves
// it to the next streamers' packets and the timer.
func unitFlush(c *batchConn, sessions *atomic.Int32) func() {
	return func() {
		if sessions.Load() < batchFrom {
			c.Flush()
		}
	}
}

// Flush sends what is queued (or leaves it to the sender at work).
func (c *batchConn) Flush() {
	c.mu.Lock()
	c.flushLocked()
}

// flushLocked queues the current batch and, unless a sender is at work,
// becomes the sender until the queue is empty. Called with c.mu held; it
// returns with c.mu released.
func (c *batchConn) flushLocked() {
	if c.armed {
		c.armed = false
		c.timer.Stop()
	}
	if c.cur.n > 0 {
		c.ready = append(c.ready, c.cur)
		if k := len(c.free); k > 0 {
			c.cur, c.free = c.free[k-1], c.free[:k-1]
		} else {
			c.cur = newBatch()
		}
	}
	if c.sending {
		c.mu.Unlock()
		return
	}
	c.sending = true
	for len(c.ready) > 0 {
		b := c.ready[0]
		c.ready = append(c.ready[:0], c.ready[1:]...)
		c.mu.Unlock()
		c.send(b)
		c.mu.Lock()
		b.reset()
		c.free = append(c.free, b)
		c.left.Broadcast()
	}
	c.sending = false
	c.left.Broadcast()
	c.mu.Unlock()
}

// send sends b's messages. A segmented message the kernel refuses turns
// segmentation off and goes again datagram by datagram; any other refused
// message is counted and skipped.
func (c *batchConn) send(b *batch) {
	for i := range b.n {
		m, s := &b.msgs[i], &b.slots[i]
		if s.segs > 1 {
			m.OOB = gsoControl(m.OOB, s.size)
		} else {
			m.OOB = m.OOB[:0]
		}
	}
	calls, failed := 0, 0
	for sent := 0; sent < b.n; {
		k, err := c.w.WriteBatch(b.msgs[sent:b.n], 0)
		calls++
		sent += max(k, 0)
		if err == nil {
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			for i := sent; i < b.n; i++ {
				failed += b.slots[i].segs
			}
			break
		}
		if sent < b.n {
			// The message at sent was refused.
			if s := &b.slots[sent]; s.segs > 1 {
				c.gso.Store(false)
				calls += s.segs
				failed += c.sendApart(b, sent)
			} else {
				failed++
			}
			sent++
		}
	}
	if c.onSend != nil {
		c.onSend(calls, b.queued, failed)
	}
}

// sendApart sends message i of b datagram by datagram and returns how many
// were refused.
func (c *batchConn) sendApart(b *batch, i int) int {
	s, p := &b.slots[i], b.msgs[i].Buffers[0]
	failed := 0
	for len(p) > 0 {
		n := min(s.size, len(p))
		if _, err := c.UDPConn.WriteToUDPAddrPort(p[:n], s.addr); err != nil {
			failed++
		}
		p = p[n:]
	}
	return failed
}

// Close sends what is queued and closes the socket.
func (c *batchConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.UDPConn.Close()
	}
	c.closed = true
	for c.sending {
		c.left.Wait()
	}
	c.flushLocked()
	return c.UDPConn.Close()
}

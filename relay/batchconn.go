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

// batchConn is the media socket under the ICE UDP mux. Every viewer's
// packets leave through it, and sending them one system call at a time
// was most of the relay's CPU. Writes are queued and sent in batches:
// when maxBatch messages are queued, when a streamer has written a unit
// to its viewer (Flush; with fewer than batchFrom sessions), and at the
// latest flushAfter after the first queued one. Where the kernel offers UDP segmentation offload, the
// packets of a unit for one viewer (same size but the last) travel as one
// message that the kernel (or the network card) cuts into datagrams, so
// a unit costs one trip through the network stack instead of one per
// packet. A write is copied, so the caller may reuse its buffer at once.
// A refused message is counted and the rest of the batch still goes: UDP
// promises no delivery either way.
type batchConn struct {
	*net.UDPConn
	w      batchWriter
	onSend func(calls, datagrams, failed int)

	mu     sync.Mutex
	gso    bool
	msgs   []ipv4.Message
	slots  []slot
	index  map[netip.AddrPort]int // the open message of each address
	n      int
	queued int // datagrams queued
	timer  *time.Timer
	after  time.Duration // flushAfter
	armed  bool
	closed bool
}

// newBatchConn wraps conn; onSend (may be nil) is told of every batch
// sent.
func newBatchConn(conn *net.UDPConn, onSend func(calls, datagrams, failed int)) *batchConn {
	c := &batchConn{
		UDPConn: conn,
		onSend:  onSend,
		after:   flushAfter,
		gso:     gsoSupported(conn),
		msgs:    make([]ipv4.Message, maxBatch),
		slots:   make([]slot, maxBatch),
		index:   make(map[netip.AddrPort]int, maxBatch),
	}
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil && !la.IP.IsUnspecified() {
		c.w = newBatchWriter(conn, ipv6.NewPacketConn(conn))
	} else {
		c.w = newBatchWriter(conn, ipv4.NewPacketConn(conn))
	}
	for i := range c.msgs {
		c.msgs[i].Buffers = [][]byte{make([]byte, 0, slotSize)}
		c.slots[i].udp.IP = make(net.IP, 0, net.IPv6len)
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
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	c.queued++
	if c.gso && len(b) > 0 {
		if i, ok := c.index[addr]; ok && c.joins(i, len(b)) {
			s := &c.slots[i]
			c.msgs[i].Buffers[0] = append(c.msgs[i].Buffers[0], b...)
			s.segs++
			s.sealed = len(b) < s.size
			return len(b), nil
		}
	}
	i := c.n
	c.n++
	s := &c.slots[i]
	s.addr, s.segs, s.size, s.sealed = addr, 1, len(b), false
	ip := addr.Addr().Unmap()
	if ip.Is4() {
		a4 := ip.As4()
		s.udp.IP = append(s.udp.IP[:0], a4[:]...)
	} else {
		a16 := ip.As16()
		s.udp.IP = append(s.udp.IP[:0], a16[:]...)
	}
	s.udp.Port, s.udp.Zone = int(addr.Port()), ip.Zone()
	m := &c.msgs[i]
	m.Buffers[0] = append(m.Buffers[0][:0], b...)
	m.Addr = &s.udp
	if c.gso {
		c.index[addr] = i
	}
	if c.n == len(c.msgs) {
		c.sendLocked()
	} else if !c.armed {
		c.armed = true
		c.timer.Reset(c.after)
	}
	return len(b), nil
}

// joins tells whether a datagram of n bytes may join message i.
func (c *batchConn) joins(i, n int) bool {
	s := &c.slots[i]
	return !s.sealed && n <= s.size && s.segs < maxSegments && len(c.msgs[i].Buffers[0])+n <= maxMessage
}

// ReadFromAddrPort reads one datagram; with WriteToAddrPort it lets pion
// handle addresses without allocating.
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
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

// Flush sends what is queued.
func (c *batchConn) Flush() {
	c.mu.Lock()
	c.sendLocked()
	c.mu.Unlock()
}

// sendLocked sends the queued messages. A segmented message the kernel
// refuses turns segmentation off and goes again datagram by datagram;
// any other refused message is counted and skipped.
func (c *batchConn) sendLocked() {
	if c.armed {
		c.armed = false
		c.timer.Stop()
	}
	if c.n == 0 {
		return
	}
	for i := range c.n {
		m, s := &c.msgs[i], &c.slots[i]
		if s.segs > 1 {
			m.OOB = gsoControl(m.OOB, s.size)
		} else {
			m.OOB = m.OOB[:0]
		}
	}
	calls, failed := 0, 0
	for sent := 0; sent < c.n; {
		k, err := c.w.WriteBatch(c.msgs[sent:c.n], 0)
		calls++
		sent += max(k, 0)
		if err == nil {
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			for i := sent; i < c.n; i++ {
				failed += c.slots[i].segs
			}
			break
		}
		if sent < c.n {
			// The message at sent was refused.
			if s := &c.slots[sent]; s.segs > 1 {
				c.gso = false
				calls += s.segs
				failed += c.sendApart(sent)
			} else {
				failed++
			}
			sent++
		}
	}
	if c.onSend != nil {
		c.onSend(calls, c.queued, failed)
	}
	for i := range c.n {
		c.msgs[i].Addr = nil
	}
	clear(c.index)
	c.n, c.queued = 0, 0
}

// sendApart sends message i's datagrams one by one and returns how many
// were refused.
func (c *batchConn) sendApart(i int) int {
	s, b := &c.slots[i], c.msgs[i].Buffers[0]
	failed := 0
	for len(b) > 0 {
		n := min(s.size, len(b))
		if _, err := c.UDPConn.WriteToUDPAddrPort(b[:n], s.addr); err != nil {
			failed++
		}
		b = b[n:]
	}
	return failed
}

// Close sends what is queued and closes the socket.
func (c *batchConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.sendLocked()
		c.closed = true
	}
	c.mu.Unlock()
	return c.UDPConn.Close()
}

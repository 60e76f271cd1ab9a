package relay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// sendStats adds up what a batchConn reports.
type sendStats struct {
	mu                       sync.Mutex
	calls, datagrams, failed int
}

func (s *sendStats) add(calls, datagrams, failed int) {
	s.mu.Lock()
	s.calls += calls
	s.datagrams += datagrams
	s.failed += failed
	s.mu.Unlock()
}

func (s *sendStats) get() (int, int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.datagrams, s.failed
}

func listenUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive reads n datagrams from c.
func receive(t *testing.T, c *net.UDPConn, n int) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 70000)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(got) < n {
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), n, err)
		}
		got = append(got, bytes.Clone(buf[:k]))
	}
	return got
}

// datagram is the i-th test datagram for a destination: size bytes
// starting with its tag and number.
func datagram(tag string, i, size int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, size)
	copy(b, fmt.Sprintf("%s%03d", tag, i))
	return b
}

func newTestBatchConn(t *testing.T) (*batchConn, *sendStats) {
	t.Helper()
	st := &sendStats{}
	c := newBatchConn(listenUDP(t), st.add)
	return c, st
}

// Units of equal-sized packets for two viewers, interleaved as the
// viewers' streamers write them, arrive whole and in order at each; with
// segmentation offload each viewer's run travels as one message.
func TestBatchConnKeepsOrderPerDestination(t *testing.T) {
	c, st := newTestBatchConn(t)
	a, b := listenUDP(t), listenUDP(t)
	aa := a.LocalAddr().(*net.UDPAddr).AddrPort()
	sizes := []int{1228, 1228, 1228, 1228, 700, 1228, 300}
	for i, size := range sizes {
		if _, err := c.WriteToAddrPort(datagram("a", i, size), aa); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteTo(datagram("b", i, size), b.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	// Per viewer with offload: 4×1228+700 in one message, 1228+300 in
	// another; without, a message per datagram.
	want := 2 * len(sizes)
	if c.gso.Load() {
		want = 4
	}
	if c.cur.n != want {
		t.Fatalf("%d messages queued, want %d (offload %v)", c.cur.n, want, c.gso.Load())
	}
	c.Flush()
	for _, r := range []struct {
		tag  string
		conn *net.UDPConn
	}{{"a", a}, {"b", b}} {
		got := receive(t, r.conn, len(sizes))
		for i, size := range sizes {
			if want := datagram(r.tag, i, size); !bytes.Equal(got[i], want) {
				t.Fatalf("%s: datagram %d is %q… (%d bytes), want %q… (%d bytes)", r.tag, i, got[i][:4], len(got[i]), want[:4], len(want))
			}
		}
	}
	calls, datagrams, failed := st.get()
	if datagrams != 2*len(sizes) || failed != 0 || calls != 1 {
		t.Fatalf("calls %d, datagrams %d, failed %d; want 1, %d, 0", calls, datagrams, failed, 2*len(sizes))
	}
}

// A datagram nobody flushes leaves by itself (RTCP and ICE are written by
// pion's goroutines, not by a streamer).
func TestBatchConnSendsUnflushed(t *testing.T) {
	c, st := newTestBatchConn(t)
	r := listenUDP(t)
	if _, err := c.WriteTo([]byte("stun"), r.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, r, 1); string(got[0]) != "stun" {
		t.Fatalf("got %q", got[0])
	}
	// The count is reported right after the send.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, d, _ := st.get(); d == 1 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d datagrams reported, want 1", d)
		}
	}
}

// More messages than a batch holds (growing sizes: none can join the one
// before), some larger than a slot: every datagram arrives, in order.
func TestBatchConnFullBatchesAndLargeDatagrams(t *testing.T) {
	c, st := newTestBatchConn(t)
	var rs []*net.UDPConn
	for range 3 {
		rs = append(rs, listenUDP(t))
	}
	const each = 60
	for i := range each {
		for j, r := range rs {
			size := 100 + 10*i
			if i == each-1 {
				size = 4000 // larger than a slot
			}
			if _, err := c.WriteTo(datagram(fmt.Sprint(j), i, size), r.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.Flush()
	for j, r := range rs {
		got := receive(t, r, each)
		for i := range each {
			if !bytes.HasPrefix(got[i], []byte(fmt.Sprintf("%d%03d", j, i))) {
				t.Fatalf("receiver %d: datagram %d starts %q", j, i, got[i][:4])
			}
		}
	}
	if calls, d, f := st.get(); d != 3*each || f != 0 || calls < 3 {
		t.Fatalf("%d datagrams in %d calls, %d failed; want %d in at least 3, 0", d, calls, f, 3*each)
	}
}

// refusingWriter is a kernel without segmentation offload: it refuses
// any message that asks for it.
type refusingWriter struct{ w batchWriter }

func (r refusingWriter) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	for i := range ms {
		if len(ms[i].OOB) > 0 {
			if i == 0 {
				return 0, errors.New("sendmmsg: input/output error")
			}
			k, err := r.w.WriteBatch(ms[:i], flags)
			if err != nil {
				return k, err
			}
			return i, errors.New("sendmmsg: input/output error")
		}
	}
	return r.w.WriteBatch(ms, flags)
}

// Where the kernel refuses segmented messages, the refused one goes
// datagram by datagram, segmentation is turned off and nothing is lost.
func TestBatchConnFallsBackWithoutOffload(t *testing.T) {
	c, st := newTestBatchConn(t)
	if !c.gso.Load() {
		t.Skip("no UDP segmentation offload here: the fallback is the only path")
	}
	c.w = refusingWriter{c.w}
	r := listenUDP(t)
	for round := range 2 {
		for i := range 5 {
			if _, err := c.WriteTo(datagram("r", round*5+i, 1000), r.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		c.Flush()
	}
	got := receive(t, r, 10)
	for i := range 10 {
		if want := datagram("r", i, 1000); !bytes.Equal(got[i], want) {
			t.Fatalf("datagram %d starts %q", i, got[i][:4])
		}
	}
	if c.gso.Load() {
		t.Fatal("segmentation still on after the kernel refused it")
	}
	if _, d, f := st.get(); d != 10 || f != 0 {
		t.Fatalf("%d datagrams, %d failed; want 10, 0", d, f)
	}
}

func TestBatchConnClosed(t *testing.T) {
	c, _ := newTestBatchConn(t)
	r := listenUDP(t)
	if _, err := c.WriteTo([]byte("last"), r.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, r, 1); string(got[0]) != "last" {
		t.Fatalf("queued datagram lost at close: got %q", got[0])
	}
	if _, err := c.WriteTo([]byte("x"), r.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
	if _, err := c.WriteTo([]byte("x"), &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)}); err == nil {
		t.Fatal("write to a non-UDP address accepted")
	}
}

// After a unit, a streamer sends the queue while few sessions run; with
// batchFrom or more it leaves the packets to be joined by the next
// streamers', and they still leave within flushAfter.
func TestUnitFlushBatchesManyViewers(t *testing.T) {
	c, st := newTestBatchConn(t)
	r := listenUDP(t)
	var sessions atomic.Int32
	flush := unitFlush(c, &sessions)
	c.mu.Lock()
	c.after = time.Hour // only the flushes of the test send
	c.mu.Unlock()

	sessions.Store(batchFrom - 1)
	c.WriteTo([]byte("few"), r.LocalAddr())
	flush()
	if calls, d, _ := st.get(); calls != 1 || d != 1 {
		t.Fatalf("with %d sessions: %d calls, %d datagrams sent at the flush; want 1, 1", sessions.Load(), calls, d)
	}
	receive(t, r, 1)

	sessions.Store(batchFrom)
	for i := range 3 {
		c.WriteTo(datagram("m", i, 100+i), r.LocalAddr())
		flush()
	}
	if calls, _, _ := st.get(); calls != 1 {
		t.Fatalf("with %d sessions a unit's flush sent: %d calls, want the first only", sessions.Load(), calls)
	}
	c.mu.Lock()
	queued := c.cur.queued
	c.mu.Unlock()
	if queued != 3 {
		t.Fatalf("%d datagrams queued, want 3", queued)
	}
	c.Flush() // as the timer would
	receive(t, r, 3)
	if calls, d, _ := st.get(); calls != 2 || d != 4 {
		t.Fatalf("%d calls, %d datagrams; want the three in one call", calls, d)
	}
}

// Writers on several goroutines fill batches while others are sent: every
// datagram arrives, in order for each destination, and what is queued at
// Close still leaves.
func TestBatchConnConcurrentWriters(t *testing.T) {
	c, st := newTestBatchConn(t)
	const writers, each = 8, 400
	recv := make([]*net.UDPConn, writers)
	for i := range recv {
		recv[i] = listenUDP(t)
		if err := recv[i].SetReadBuffer(1 << 20); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := c.WriteTo(datagram(fmt.Sprintf("w%d-", w), i, 100+i%3*50), recv[w].LocalAddr()); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 49 {
					c.Flush()
				}
			}
		})
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for w, r := range recv {
		got := receive(t, r, each)
		for i, d := range got {
			if want := datagram(fmt.Sprintf("w%d-", w), i, 100+i%3*50); !bytes.Equal(d, want) {
				t.Fatalf("writer %d: datagram %d starts %q, want %q", w, i, d[:8], want[:8])
			}
		}
	}
	if _, d, f := st.get(); d != writers*each || f != 0 {
		t.Fatalf("%d datagrams reported, %d failed; want %d, 0", d, f, writers*each)
	}
}

// heldWriter holds the first batch in the system call until released.
type heldWriter struct {
	w                batchWriter
	entered, release chan struct{}
	once             *sync.Once
}

func (h heldWriter) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	h.once.Do(func() {
		close(h.entered)
		<-h.release
	})
	return h.w.WriteBatch(ms, flags)
}

// While one goroutine is in the system call, the others go on queueing
// (and a flush leaves its batch to that sender): the call is made outside
// the lock. What was queued meanwhile follows the held batch, in order.
func TestBatchConnSendsOutsideTheLock(t *testing.T) {
	c, st := newTestBatchConn(t)
	h := heldWriter{w: c.w, entered: make(chan struct{}), release: make(chan struct{}), once: &sync.Once{}}
	c.w = h
	r := listenUDP(t)
	if _, err := c.WriteTo([]byte("first"), r.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	sent := make(chan struct{})
	go func() {
		c.Flush() // becomes the sender, held in the call
		close(sent)
	}()
	<-h.entered
	queued := make(chan error)
	go func() {
		_, err := c.WriteTo([]byte("second"), r.LocalAddr())
		if err == nil {
			c.Flush()
		}
		queued <- err
	}()
	select {
	case err := <-queued:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(h.release)
		t.Fatal("a write and a flush waited for another goroutine's system call")
	}
	close(h.release)
	<-sent
	got := receive(t, r, 2)
	if string(got[0]) != "first" || string(got[1]) != "second" {
		t.Fatalf("received %q, %q", got[0], got[1])
	}
	if calls, d, _ := st.get(); calls != 2 || d != 2 {
		t.Fatalf("%d calls, %d datagrams; want the held batch and the next, one each", calls, d)
	}
}

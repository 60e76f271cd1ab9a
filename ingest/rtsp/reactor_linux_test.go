//go:build linux

package rtsp

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// reactorPair returns a connection read by a reactor of interval and its
// peer, over TCP on loopback.
func reactorPair(t *testing.T, interval time.Duration) (*reactorConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { peer.Close() })
	c, ok := ownConn(nc, interval).(*reactorConn)
	if !ok {
		t.Fatal("the reactor did not take the connection")
	}
	t.Cleanup(func() { c.Close() })
	return c, peer
}

// waitingIn waits until a goroutine is blocked in fn (a frame of its
// stack, e.g. "(*reactorConn).wait"), so that what the test does next
// happens while it waits, not before.
func waitingIn(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		stacks := string(buf[:runtime.Stack(buf, true)])
		for g := range strings.SplitSeq(stacks, "\n\n") {
			if strings.Contains(g, fn) && (strings.Contains(g, "[select") || strings.Contains(g, "[chan receive")) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine waits in %s", fn)
		}
	}
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// Bytes written in bursts of random sizes come out whole and in order,
// through reads of random sizes; writes reach the peer.
func TestReactorConnCarriesBytes(t *testing.T) {
	c, peer := reactorPair(t, 2*time.Millisecond)
	rnd := rand.New(rand.NewPCG(1, 2))
	want := make([]byte, 3<<20)
	for i := range want {
		want[i] = byte(rnd.Uint32())
	}
	go func() {
		rest := want
		for len(rest) > 0 {
			n := min(len(rest), 1+rnd.IntN(20000))
			if _, err := peer.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
			if rnd.IntN(4) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 9000)
	for len(got) < len(want) {
		n, err := c.Read(buf[:1+rand.IntN(len(buf))])
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes read differ from those written")
	}

	msg := []byte("GET_PARAMETER rtsp://camera/ RTSP/1.0\r\nCSeq: 7\r\n\r\n")
	if n, err := c.Write(msg); n != len(msg) || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(peer, back); err != nil || !bytes.Equal(back, msg) {
		t.Fatalf("peer read %q, %v", back, err)
	}
	if _, ok := c.RemoteAddr().(*net.TCPAddr); !ok {
		t.Fatalf("remote address %T, gortsplib wants *net.TCPAddr", c.RemoteAddr())
	}
}

// A write larger than the sockets' buffers waits for the peer to read
// (the reactor's writable token), and completes.
func TestReactorConnLongWrite(t *testing.T) {
	c, peer := reactorPair(t, time.Millisecond)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := c.Write(want)
		res <- result{n, err}
	}()
	waitingIn(t, "(*reactorConn).wait") // the buffers are full: the write waits
	var got bytes.Buffer
	if _, err := io.CopyN(&got, peer, int64(len(want))); err != nil {
		t.Fatalf("peer read %d bytes: %v", got.Len(), err)
	}
	if r := <-res; r.n != len(want) || r.err != nil {
		t.Fatalf("write: %d of %d, %v", r.n, len(want), r.err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("the peer got other bytes than those written")
	}
}

// Deadlines: a read waits until its deadline and fails with a timeout; a
// deadline set while a read waits ends it; cleared, reads work again. The
// same for a write that cannot go on.
func TestReactorConnDeadlines(t *testing.T) {
	c, peer := reactorPair(t, 2*time.Millisecond)
	buf := make([]byte, 100)

	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err := c.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%v is not a timeout", err)
	}

	c.SetReadDeadline(time.Time{})
	res := make(chan error, 1)
	go func() {
		_, err := c.Read(buf)
		res <- err
	}()
	waitingIn(t, "(*reactorConn).wait")
	c.SetReadDeadline(time.Now())
	if err := <-res; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read whose deadline was set while it waited: %v", err)
	}

	c.SetReadDeadline(time.Time{})
	peer.Write([]byte("hello"))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read after the deadline was cleared: %q, %v", buf[:n], err)
	}

	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	big := make([]byte, 64<<20) // more than the buffers hold; the peer does not read
	n, err := c.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n == len(big) {
		t.Fatalf("write past its deadline: %d bytes, %v", n, err)
	}
}

// Close ends a read in progress with net.ErrClosed, closes the socket (the
// peer sees the end), releases the descriptor and, with the last
// connection, stops the reactor. A second Close says it was closed.
func TestReactorConnClose(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close() // Go's poller is started, its descriptors open
	}
	before := openFDs(t)
	c, peer := reactorPair(t, 3*time.Millisecond)
	r := c.r
	if fl, err := unix.FcntlInt(uintptr(c.fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Fatalf("descriptor flags %#x, %v: not close-on-exec (child processes would keep cameras' connections open)", fl, err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		res <- err
	}()
	waitingIn(t, "(*reactorConn).wait")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read in progress at Close: %v", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer after Close: %v", err)
	}
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the reactor still runs without connections")
	}
	peer.Close()
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after", before, after)
	}
}

// The peer's close reads as io.EOF after the bytes sent before it.
func TestReactorConnEOF(t *testing.T) {
	c, peer := reactorPair(t, 2*time.Millisecond)
	peer.Write([]byte("last words"))
	peer.Close()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last words" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// Connections of one interval share a reactor, which runs while any is
// open; another interval has its own.
func TestReactorShared(t *testing.T) {
	a, _ := reactorPair(t, 4*time.Millisecond)
	b, _ := reactorPair(t, 4*time.Millisecond)
	other, _ := reactorPair(t, 5*time.Millisecond)
	if a.r != b.r || a.r == other.r {
		t.Fatal("one reactor per interval")
	}
	if n := ReactorConnections(); n != 3 {
		t.Fatalf("ReactorConnections %d, want 3", n)
	}
	r := a.r
	a.Close() // release stops the reactor before it returns, if it does
	select {
	case <-r.done:
		t.Fatal("the reactor stopped with a connection left")
	default:
	}
	b.Close()
	<-r.done
	reactorsMu.Lock()
	_, left := reactors[4*time.Millisecond]
	reactorsMu.Unlock()
	if left {
		t.Fatal("a stopped reactor is still listed")
	}
}

// Without an interval, or for another kind of connection, Go's poller
// keeps the connection.
func TestOwnConnDeclines(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if ownConn(a, time.Millisecond) != a {
		t.Fatal("a pipe was taken")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if ownConn(nc, 0) != nc {
		t.Fatal("taken with interval 0")
	}
}

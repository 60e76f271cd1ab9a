//go:build linux

package rtsp

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A reactor waits for the cameras' TCP connections to have bytes to read,
// for all of them at once, in place of Go's network poller
// (ingest.pull.read_interval).
//
// Pulling 500 cameras over TCP, each of their 12,500 pictures a second
// arrived as a burst of packets that woke the poller, which woke an idle
// thread to run the camera's reader: about 9,000 thread wake-ups a second,
// a quarter of the process's CPU spent switching threads (in a virtual
// machine each switch costs microseconds), and the scheduler's search for
// work as much again. A reactor holds the sockets in an epoll set of its
// own; while they are busy it looks at the set once an interval (2 ms by
// default) and wakes the readers of every socket that had bytes, so that
// threads are woken once an interval and find many readers to run each
// time (at 500 cameras 1,300 thread switches a second, from 9,000). That
// took the pull of 500 cameras from 0.51–0.53 to 0.34–0.39 core on the
// project's 2-core machine, and 200 from 0.25 to 0.18–0.21 (see
// docs/performance.md). The cost is latency: a packet waits up to an
// interval before it is read, and arrival times (the jitter statistic)
// are as coarse. When no socket had bytes in an interval the reactor
// waits in epoll for the next, so a quiet ingest costs nothing.
//
// Each interval is a timer, which wakes a thread and the runtime's
// monitor: with few cameras there are too few readers to wake at once
// for that to pay (50 cameras took 0.07 core through Go's poller and
// 0.10 through a reactor; 100 took 0.13–0.14 and 0.12). So the reactor
// takes the connections of sessions that start while at least
// reactorMinSessions sessions run in the process.
//
// Go's poller must not see the sockets too, or it would still wake for
// each burst: ownConn moves a dialed connection's socket to the reactor
// (a duplicate of its descriptor, the original closed) and reads and
// writes it itself. One reactor runs for each interval in use, while it
// has connections.
type reactor struct {
	interval time.Duration
	epfd     int
	wake     int // an eventfd in the set: written to stop run
	done     chan struct{}

	mu    sync.Mutex
	conns map[int32]*reactorConn // by descriptor
	refs  int                    // connections, under reactorsMu
}

var (
	reactorsMu sync.Mutex
	reactors   = map[time.Duration]*reactor{}
)

// ReactorConnections is how many connections the process's reactors read.
func ReactorConnections() int {
	reactorsMu.Lock()
	defer reactorsMu.Unlock()
	n := 0
	for _, r := range reactors {
		n += r.refs
	}
	return n
}

// reactorEvents is how many ready sockets one epoll_wait returns at most;
// more are taken at once by further calls.
const reactorEvents = 512

// acquireReactor returns the reactor of interval, started if none runs, for
// one more connection.
func acquireReactor(interval time.Duration) (*reactor, error) {
	reactorsMu.Lock()
	defer reactorsMu.Unlock()
	if r := reactors[interval]; r != nil {
		select {
		case <-r.done:
			// Its epoll set failed: leave it to the connections it has
			// (their read timeouts end them) and start another.
			delete(reactors, interval)
		default:
			r.refs++
			return r, nil
		}
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(wake)
		unix.Close(epfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	r := &reactor{interval: interval, epfd: epfd, wake: wake, done: make(chan struct{}), conns: map[int32]*reactorConn{}, refs: 1}
	reactors[interval] = r
	go r.run()
	return r, nil
}

// release gives back a connection's hold on r, and stops r with the last.
func (r *reactor) release() {
	reactorsMu.Lock()
	r.refs--
	last := r.refs == 0
	if last && reactors[r.interval] == r {
		delete(reactors, r.interval)
	}
	reactorsMu.Unlock()
	if !last {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(r.wake, one[:])
	<-r.done
	unix.Close(r.wake)
	unix.Close(r.epfd)
}

// run waits in epoll while the sockets are quiet, and takes their events
// once an interval while they are not.
func (r *reactor) run() {
	defer close(r.done)
	events := make([]unix.EpollEvent, reactorEvents)
	timeout := -1
	for {
		n, err := unix.EpollWait(r.epfd, events, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// Only a broken set fails (EBADF, EINVAL): nothing would
			// wake the readers again; the read timeout ends their
			// sessions and the reconnects make a new reactor.
			return
		}
		if r.dispatch(events[:n]) {
			return
		}
		switch {
		case n == len(events):
			timeout = 0 // more are ready: take them now
		case n > 0:
			time.Sleep(r.interval)
			timeout = 0
		default:
			timeout = -1
		}
	}
}

// dispatch wakes the reader or writer of each socket ready, and says
// whether the reactor is to stop.
func (r *reactor) dispatch(events []unix.EpollEvent) (stop bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range events {
		if ev.Fd == int32(r.wake) {
			stop = true
			continue
		}
		c := r.conns[ev.Fd]
		if c == nil {
			continue // closed since
		}
		if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			signal(c.readable)
		}
		if ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			signal(c.writable)
		}
	}
	return stop
}

// signal leaves a token in ch (of capacity 1) unless one is there.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// A reactorConn is a TCP connection whose socket the reactor watches.
// Its reads and writes are non-blocking system calls; a read that finds
// nothing, or leaves the socket empty, is followed by a wait for the
// reactor's next token (edge-triggered: a token for each arrival since
// the last call that found the socket empty). Deadlines and Close end
// waits as net.Conn's do.
type reactorConn struct {
	r            *reactor
	fd           int
	laddr, raddr net.Addr

	// sys is held shared by each system call on fd and exclusively by
	// Close, so that the descriptor is not closed (and its number
	// reused) under a call.
	sys     sync.RWMutex
	closing atomic.Bool
	closed  chan struct{}

	readable, writable chan struct{} // the reactor's tokens
	rdl, wdl           atomic.Int64  // deadlines, Unix nanoseconds; 0: none

	// drained: the last read left the socket empty (the reader's).
	drained bool
	rtimer  *time.Timer // the reader's
	wmu     sync.Mutex  // one Write at a time
	wtimer  *time.Timer // under wmu
}

// ownConn hands nc's socket to the reactor of interval and returns the
// connection that reads it there; nc itself with interval 0, or when nc
// is not a TCP connection or the reactor cannot take it (Go's poller then
// keeps it: the pull works as before).
func ownConn(nc net.Conn, interval time.Duration) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if interval <= 0 || !ok {
		return nc
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	fd, derr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return nc
	}
	// The duplicate shares the socket's flags, non-blocking under Go's
	// poller; said again because readNB and writeNB must never wait.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nc
	}
	r, err := acquireReactor(interval)
	if err != nil {
		unix.Close(fd)
		return nc
	}
	c := &reactorConn{r: r, fd: fd, laddr: nc.LocalAddr(), raddr: nc.RemoteAddr(), closed: make(chan struct{}),
		readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
	r.mu.Lock()
	r.conns[int32(fd)] = c
	r.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		r.forget(fd)
		unix.Close(fd)
		r.release()
		return nc
	}
	// Go's poller drops the socket; the duplicate keeps it open (closing
	// one of two descriptors sends no FIN).
	nc.Close()
	return c
}

// forget takes fd out of the set and the table.
func (r *reactor) forget(fd int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	delete(r.conns, int32(fd))
}

// Read implements net.Conn.
func (c *reactorConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		var err error
		if c.drained {
			err = c.wait(c.readable, &c.rtimer, &c.rdl)
			c.drained = err != nil
		} else {
			err = c.usable(&c.rdl)
		}
		if err != nil {
			return 0, c.opError("read", err)
		}
		c.sys.RLock()
		n, err := -1, net.ErrClosed
		if !c.closing.Load() {
			n, err = readNB(c.fd, p)
		}
		c.sys.RUnlock()
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			c.drained = true
			continue
		case err == net.ErrClosed:
			return 0, c.opError("read", err)
		case err != nil:
			return 0, c.opError("read", os.NewSyscallError("read", err))
		case n == 0:
			return 0, io.EOF
		}
		// A short read emptied the socket: the next waits for a token
		// instead of finding nothing.
		c.drained = n < len(p)
		return n, nil
	}
}

// Write implements net.Conn.
func (c *reactorConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	done := 0
	for done < len(p) {
		if err := c.usable(&c.wdl); err != nil {
			return done, c.opError("write", err)
		}
		c.sys.RLock()
		n, err := -1, net.ErrClosed
		if !c.closing.Load() {
			n, err = writeNB(c.fd, p[done:])
		}
		c.sys.RUnlock()
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := c.wait(c.writable, &c.wtimer, &c.wdl); err != nil {
				return done, c.opError("write", err)
			}
			continue
		case err == net.ErrClosed:
			return done, c.opError("write", err)
		case err != nil:
			return done, c.opError("write", os.NewSyscallError("write", err))
		}
		done += n
	}
	return done, nil
}

// usable is the error a call would meet now: the connection closed or the
// deadline passed.
func (c *reactorConn) usable(deadline *atomic.Int64) error {
	if c.closing.Load() {
		return net.ErrClosed
	}
	if d := deadline.Load(); d != 0 && time.Now().UnixNano() >= d {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// wait waits for a token of ch, until the deadline or Close. A deadline
// set meanwhile leaves a token, so that it is waited for anew.
func (c *reactorConn) wait(ch chan struct{}, timer **time.Timer, deadline *atomic.Int64) error {
	if err := c.usable(deadline); err != nil {
		return err
	}
	var expired <-chan time.Time
	if d := deadline.Load(); d != 0 {
		left := time.Until(time.Unix(0, d))
		if *timer == nil {
			*timer = time.NewTimer(left)
		} else {
			(*timer).Reset(left)
		}
		expired = (*timer).C
	}
	select {
	case <-ch:
		return nil
	case <-expired:
		return os.ErrDeadlineExceeded
	case <-c.closed:
		return net.ErrClosed
	}
}

// Close implements net.Conn: waits in progress end, the socket leaves the
// reactor and is closed.
func (c *reactorConn) Close() error {
	if !c.closing.CompareAndSwap(false, true) {
		return c.opError("close", net.ErrClosed)
	}
	close(c.closed)
	c.sys.Lock() // calls in progress are non-blocking: microseconds
	c.r.forget(c.fd)
	err := unix.Close(c.fd)
	c.sys.Unlock()
	c.r.release()
	if err != nil {
		return c.opError("close", os.NewSyscallError("close", err))
	}
	return nil
}

func (c *reactorConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
}

// LocalAddr implements net.Conn.
func (c *reactorConn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr implements net.Conn.
func (c *reactorConn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline implements net.Conn.
func (c *reactorConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline implements net.Conn.
func (c *reactorConn) SetReadDeadline(t time.Time) error {
	c.rdl.Store(unixNano(t))
	signal(c.readable)
	return nil
}

// SetWriteDeadline implements net.Conn.
func (c *reactorConn) SetWriteDeadline(t time.Time) error {
	c.wdl.Store(unixNano(t))
	signal(c.writable)
	return nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

package relay

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of sendmmsg(2); Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// mmsgWriter sends a batch with sendmmsg(2) made as a raw system call: the
// socket is non-blocking, so the call never waits, and the runtime is not
// told of it. Told of it (syscall.Syscall, as golang.org/x/net does), a call
// longer than the runtime monitor's 20 µs tick, which a batch to many
// viewers is, lets the monitor take the thread's processor away and hand
// it to another thread, and the monitor, finding such calls every
// millisecond, keeps its tick short. At 200 viewers the monitor was a
// tenth of the relay's CPU in perf, and under 4 % without it; the relay
// took an eighth less CPU in alternating runs. When the socket's buffer
// is full the call fails with EAGAIN and the send waits for room in Go's
// poller, as before.
type mmsgWriter struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // each big enough for either family
	zones map[string]uint32       // interface index of each IPv6 zone met
}

// newBatchWriter returns the sendmmsg writer for conn, or golang.org/x/net's
// when conn offers no raw access.
func newBatchWriter(conn *net.UDPConn, fallback batchWriter) batchWriter {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fallback
	}
	return &mmsgWriter{rc: rc}
}

// WriteBatch sends ms in one call (the kernel may take fewer) and returns
// how many it took; an error means ms[n] was refused.
func (w *mmsgWriter) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	if err := w.prepare(ms); err != nil {
		return 0, err
	}
	sent, errno := 0, syscall.Errno(0)
	err := w.rc.Write(func(fd uintptr) bool {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[0])), uintptr(len(ms)), uintptr(flags), 0, 0)
		if e == unix.EAGAIN {
			return false // wait in the poller for room, then again
		}
		sent, errno = int(r), e
		return true
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, os.NewSyscallError("sendmmsg", errno)
	}
	for i := range sent {
		ms[i].N = int(w.hdrs[i].len)
	}
	return sent, nil
}

// prepare fills the headers, buffers and addresses of ms.
func (w *mmsgWriter) prepare(ms []ipv4.Message) error {
	if cap(w.hdrs) < len(ms) {
		w.hdrs = make([]mmsghdr, len(ms))
		w.names = make([]unix.RawSockaddrInet6, len(ms))
	}
	w.hdrs, w.names = w.hdrs[:len(ms)], w.names[:len(ms)]
	iovs := 0
	for i := range ms {
		iovs += len(ms[i].Buffers)
	}
	if cap(w.iovs) < iovs {
		w.iovs = make([]unix.Iovec, iovs)
	}
	w.iovs = w.iovs[:iovs]
	iov := 0
	for i := range ms {
		m, h := &ms[i], &w.hdrs[i]
		*h = mmsghdr{}
		first := iov
		for _, b := range m.Buffers {
			v := &w.iovs[iov]
			v.Base = nil
			if len(b) > 0 {
				v.Base = &b[0]
			}
			v.SetLen(len(b))
			iov++
		}
		if iov > first {
			h.hdr.Iov = &w.iovs[first]
			h.hdr.SetIovlen(iov - first)
		}
		if len(m.OOB) > 0 {
			h.hdr.Control = &m.OOB[0]
			h.hdr.SetControllen(len(m.OOB))
		}
		if m.Addr != nil {
			n, err := w.putSockaddr(&w.names[i], m.Addr)
			if err != nil {
				return err
			}
			h.hdr.Name = (*byte)(unsafe.Pointer(&w.names[i]))
			h.hdr.Namelen = n
		}
	}
	return nil
}

// putSockaddr writes addr into sa as a sockaddr_in (IPv4, which Linux takes
// on a dual-stack socket too) or a sockaddr_in6, and returns its length.
func (w *mmsgWriter) putSockaddr(sa *unix.RawSockaddrInet6, addr net.Addr) (uint32, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.AddrError{Err: "not a UDP address", Addr: addr.String()}
	}
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port[0], port[1] = byte(ua.Port>>8), byte(ua.Port)
	if ip4 := ua.IP.To4(); ip4 != nil {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		copy(sa4.Addr[:], ip4)
		sa4.Zero = [8]uint8{}
		return unix.SizeofSockaddrInet4, nil
	}
	if len(ua.IP) != net.IPv6len {
		return 0, &net.AddrError{Err: "invalid IP address", Addr: ua.String()}
	}
	sa.Family = unix.AF_INET6
	sa.Flowinfo = 0
	copy(sa.Addr[:], ua.IP)
	sa.Scope_id = 0
	if ua.Zone != "" {
		sa.Scope_id = w.zoneIndex(ua.Zone)
	}
	return unix.SizeofSockaddrInet6, nil
}

// zoneIndex is the interface index of an IPv6 zone (a name, or the index
// itself), looked up once per zone: a lookup asks the kernel for its
// interfaces, too much for every datagram to a link-local viewer.
func (w *mmsgWriter) zoneIndex(zone string) uint32 {
	if i, ok := w.zones[zone]; ok {
		return i
	}
	var i uint32
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		i = uint32(n)
	} else if ifi, err := net.InterfaceByName(zone); err == nil {
		i = uint32(ifi.Index)
	}
	if w.zones == nil {
		w.zones = make(map[string]uint32)
	}
	w.zones[zone] = i
	return i
}

// rawReader reads datagrams with recvfrom(2) made as a raw system call, for
// the reason mmsgWriter sends that way: pion's UDP mux reads every
// viewer's RTCP and STUN (600 datagrams a second at 200 viewers), and a
// read the runtime is told of (syscall.Recvfrom) that comes while every
// processor is idle, as it does between a camera's frames, wakes the
// runtime's monitor and resets its tick to 20 µs: at 200 viewers those
// reads kept the monitor sleeping and waking 1,400 times a second. A read
// that finds nothing waits in Go's poller, deadlines included.
type rawReader struct {
	rc syscall.RawConn

	mu    sync.Mutex // one read at a time: the fields below are its state
	buf   []byte
	n     int
	errno syscall.Errno
	from  unix.RawSockaddrAny
	read  func(fd uintptr) bool // r.recv, bound once
	zones map[uint32]string     // name of each IPv6 zone index met
}

// newRawReader returns the raw reader of conn, or nil when conn offers no
// raw access.
func newRawReader(conn *net.UDPConn) *rawReader {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawReader{rc: rc}
	r.read = r.recv
	return r
}

// recv is one recvfrom(2) into r.buf; false when nothing is there yet.
func (r *rawReader) recv(fd uintptr) bool {
	var b unsafe.Pointer
	if len(r.buf) > 0 {
		b = unsafe.Pointer(&r.buf[0])
	}
	size := uint32(unsafe.Sizeof(r.from))
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(b), uintptr(len(r.buf)), 0,
		uintptr(unsafe.Pointer(&r.from)), uintptr(unsafe.Pointer(&size)))
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	r.n, r.errno = int(n), e
	return true
}

// ReadFromAddrPort reads one datagram into p, as net.UDPConn's does.
func (r *rawReader) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = p
	err := r.rc.Read(r.read)
	r.buf = nil
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if r.errno != 0 {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvfrom", r.errno)}
	}
	return r.n, r.source(), nil
}

// source is the address r.from holds, as net.UDPConn gives it: an IPv4
// sender of a dual-stack socket as an IPv4-mapped IPv6 address, a zone by
// its interface's name.
func (r *rawReader) source() netip.AddrPort {
	switch r.from.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.from))
		port := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(port[0])<<8|uint16(port[1]))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.from))
		port := (*[2]byte)(unsafe.Pointer(&sa.Port))
		ip := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			ip = ip.WithZone(r.zoneName(sa.Scope_id))
		}
		return netip.AddrPortFrom(ip, uint16(port[0])<<8|uint16(port[1]))
	}
	return netip.AddrPort{}
}

// zoneName is the name of interface index i (its number when it has
// none), looked up once per index.
func (r *rawReader) zoneName(i uint32) string {
	if name, ok := r.zones[i]; ok {
		return name
	}
	name := strconv.FormatUint(uint64(i), 10)
	if ifi, err := net.InterfaceByIndex(int(i)); err == nil {
		name = ifi.Name
	}
	if r.zones == nil {
		r.zones = make(map[uint32]string)
	}
	r.zones[i] = name
	return name
}

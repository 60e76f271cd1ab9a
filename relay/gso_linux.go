package relay

import (
	"encoding/binary"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gsoSupported tells whether the kernel segments UDP for conn
// (UDP_SEGMENT, Linux 4.18 and later).
func gsoSupported(conn *net.UDPConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT)
		ok = err == nil
	})
	return ok
}

// gsoControl writes into b the control message asking the kernel to cut
// a datagram into segments of size bytes, and returns it.
func gsoControl(b []byte, size int) []byte {
	n := unix.CmsgSpace(2)
	if cap(b) < n {
		b = make([]byte, n)
	}
	b = b[:n]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}

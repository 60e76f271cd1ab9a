package rtsp

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// readNB and writeNB are read(2) and write(2) on a non-blocking socket,
// made as raw system calls: they never wait, so the runtime need not be
// told of them. Told of them (syscall.Read), a call longer than the
// runtime monitor's 20 µs tick, as a read is on loopback when it sends
// the camera's acknowledgement, lets the monitor take the thread's
// processor away and hand it to another thread, and keeps the monitor's
// tick short (at 500 cameras its sleeps fell from 300-1,400 to 190-310 a
// second; the CPU saved is within the bench's noise).
// The descriptor must be non-blocking: a raw call that waits holds its
// processor for as long.
func readNB(fd int, p []byte) (int, error) { return rawIO(unix.SYS_READ, fd, p) }

// writeNB: see readNB.
func writeNB(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

// rawIO makes the read or write trap on fd with p.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	var b unsafe.Pointer
	if len(p) > 0 {
		b = unsafe.Pointer(&p[0])
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(b), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

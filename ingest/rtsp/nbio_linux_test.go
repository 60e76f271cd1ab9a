package rtsp

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadWriteNB(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	buf := make([]byte, 16)
	if n, err := readNB(fds[0], buf); n != -1 || err != unix.EAGAIN {
		t.Fatalf("read of an empty socket: %d, %v; want -1, EAGAIN", n, err)
	}
	if n, err := writeNB(fds[1], []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if n, err := writeNB(fds[1], nil); n != 0 || err != nil {
		t.Fatalf("empty write: %d, %v", n, err)
	}
	if n, err := readNB(fds[0], buf); n != 5 || err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read: %d, %v, %q", n, err, buf[:max(n, 0)])
	}
	unix.Close(fds[1])
	if n, err := readNB(fds[0], buf); n != 0 || err != nil {
		t.Fatalf("read after the peer closed: %d, %v; want 0 (end of stream)", n, err)
	}
	if _, err := readNB(-1, buf); err != unix.EBADF {
		t.Fatalf("read of a bad descriptor: %v, want EBADF", err)
	}
}

//go:build unix && !linux

package rtsp

import "syscall"

// rawReads: the tap reads sockets itself (see tap.fillRaw).
const rawReads = true

func rawRead(fd uintptr, b []byte) (int, error) { return syscall.Read(int(fd), b) }

//go:build !unix

package rtsp

import "errors"

// rawReads: elsewhere the tap reads through net.Conn.
const rawReads = false

func rawRead(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }

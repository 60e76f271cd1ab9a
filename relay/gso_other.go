//go:build !linux

package relay

import "net"

// gsoSupported: segmentation offload is used on Linux only.
func gsoSupported(*net.UDPConn) bool { return false }

func gsoControl(b []byte, _ int) []byte { return b[:0] }

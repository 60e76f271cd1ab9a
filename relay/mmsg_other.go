//go:build !linux

package relay

import (
	"net"
	"net/netip"
)

// newBatchWriter: elsewhere golang.org/x/net's writer (one message at a
// time outside Linux).
func newBatchWriter(_ *net.UDPConn, fallback batchWriter) batchWriter { return fallback }

// rawReader: Linux's raw reads; elsewhere net.UDPConn reads.
type rawReader struct{}

func newRawReader(*net.UDPConn) *rawReader { return nil }

func (*rawReader) ReadFromAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}

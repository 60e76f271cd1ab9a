//go:build !linux

package relay

import "net"

// newBatchWriter: elsewhere golang.org/x/net's writer (one message at a
// time outside Linux).
func newBatchWriter(_ *net.UDPConn, fallback batchWriter) batchWriter { return fallback }

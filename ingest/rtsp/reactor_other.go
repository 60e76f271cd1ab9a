//go:build !linux

package rtsp

import (
	"net"
	"time"
)

// ownConn: the reactor is Linux's (epoll); elsewhere Go's poller keeps
// the connection.
func ownConn(nc net.Conn, _ time.Duration) net.Conn { return nc }

// ReactorConnections: there are no reactors here.
func ReactorConnections() int { return 0 }

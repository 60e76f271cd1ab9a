package simcam

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
)

// udpPairAttempts bounds the search for two free consecutive UDP ports.
const udpPairAttempts = 100

// listenUDPPair binds the RTP and RTCP sockets of the UDP transport.
//
// gortsplib's server needs fixed ports: the RTP port even and the RTCP port
// the next one, since it advertises them in the Transport header and checks
// that. When rtpAddr has port 0 the pair is picked at run time: bind an
// ephemeral port, then its even/odd neighbour, and retry on a clash. The
// sockets stay bound and are handed to gortsplib through its ListenPacket
// hook, so no other process can take the ports between the pick and the use.
func listenUDPPair(rtpAddr, rtcpAddr string) (rtp, rtcp *net.UDPConn, err error) {
	host, rtpPort, err := splitPort(rtpAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("UDPRTPAddress: %w", err)
	}

	if rtpPort != 0 {
		rtcpHost, rtcpPort, err := splitPort(rtcpAddr)
		switch {
		case err != nil:
			return nil, nil, fmt.Errorf("UDPRTCPAddress: %w", err)
		case rtpPort%2 != 0:
			return nil, nil, fmt.Errorf("UDPRTPAddress: port %d must be even", rtpPort)
		case rtcpPort != rtpPort+1:
			return nil, nil, fmt.Errorf("UDPRTCPAddress: port %d must be UDPRTPAddress's plus one (%d)", rtcpPort, rtpPort+1)
		}
		rtp, err = listenUDP(host, rtpPort)
		if err != nil {
			return nil, nil, err
		}
		rtcp, err = listenUDP(rtcpHost, rtcpPort)
		if err != nil {
			rtp.Close()
			return nil, nil, err
		}
		return rtp, rtcp, nil
	}

	if rtcpAddr != "" {
		rtcpHost, rtcpPort, err := splitPort(rtcpAddr)
		switch {
		case err != nil:
			return nil, nil, fmt.Errorf("UDPRTCPAddress: %w", err)
		case rtcpPort != 0 || rtcpHost != host:
			return nil, nil, errors.New("UDPRTCPAddress: must be empty or equal to UDPRTPAddress when that has port 0")
		}
	}

	var lastErr error
	for range udpPairAttempts {
		first, err := listenUDP(host, 0)
		if err != nil {
			return nil, nil, err
		}
		p := first.LocalAddr().(*net.UDPAddr).Port
		if p%2 == 0 {
			second, err := listenUDP(host, p+1)
			if err == nil {
				return first, second, nil
			}
			lastErr = err
		} else {
			second, err := listenUDP(host, p-1)
			if err == nil {
				return second, first, nil
			}
			lastErr = err
		}
		first.Close()
	}
	return nil, nil, fmt.Errorf("no two consecutive free UDP ports on %q after %d attempts: %w",
		host, udpPairAttempts, lastErr)
}

func listenUDP(host string, port int) (*net.UDPConn, error) {
	pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// splitPort splits "host:port" and checks the port.
func splitPort(addr string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, int(n), nil
}

// boundSockets hands sockets bound in advance to gortsplib's Listen and
// ListenPacket hooks, each once, and binds anything else as usual.
type boundSockets struct {
	mu  sync.Mutex
	tcp net.Listener
	udp map[string]net.PacketConn
}

func (b *boundSockets) listen(network, address string) (net.Listener, error) {
	b.mu.Lock()
	ln := b.tcp
	b.tcp = nil
	b.mu.Unlock()
	if ln != nil {
		return ln, nil
	}
	return net.Listen(network, address)
}

func (b *boundSockets) listenPacket(network, address string) (net.PacketConn, error) {
	b.mu.Lock()
	pc, ok := b.udp[address]
	delete(b.udp, address)
	b.mu.Unlock()
	if ok {
		return pc, nil
	}
	return net.ListenPacket(network, address)
}

// dialable returns addr with an unspecified host (0.0.0.0, ::) replaced by
// 127.0.0.1, so that it can be dialled.
func dialable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

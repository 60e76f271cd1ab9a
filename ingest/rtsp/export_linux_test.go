//go:build linux

package rtsp

import "time"

// ReactorConns is how many connections the reactor of interval reads, -1
// where there are no reactors.
func ReactorConns(interval time.Duration) int {
	reactorsMu.Lock()
	r := reactors[interval]
	reactorsMu.Unlock()
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

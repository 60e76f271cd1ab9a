package rtsp

// Tapped says whether the current session's packets come through the tap.
func (p *Puller) Tapped() bool { return p.tapped.Load() }

// AgeTCPRefusal makes the camera's last refusal of TCP tcpRetryAfter old,
// as if that long had passed.
func (p *Puller) AgeTCPRefusal() {
	if at := p.tcpRefusedAt.Load(); at != 0 {
		p.tcpRefusedAt.Store(at - int64(tcpRetryAfter))
	}
}

// UseReactorFrom sets how many sessions must run for a new one's
// connection to be read by a reactor, until the test ends.
func UseReactorFrom(t interface{ Cleanup(func()) }, n int64) {
	old := reactorMinSessions
	reactorMinSessions = n
	t.Cleanup(func() { reactorMinSessions = old })
}

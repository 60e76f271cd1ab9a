package rtsp

// Tapped says whether the current session's packets come through the tap.
func (p *Puller) Tapped() bool { return p.tapped.Load() }

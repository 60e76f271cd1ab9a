package mqtt

import (
	"sync"
	"time"

	"sharpeye/ingest/device"
)

// graceFactor is how many reporting intervals a device may stay silent
// before it is offline.
const graceFactor = 1.5

// liveness tracks each device's state from the messages it sends; a
// ticker (Intake.Run) looks for devices silent past their interval. There
// is no goroutine or timer per device.
type liveness struct {
	start time.Time

	mu   sync.RWMutex
	devs map[string]*devState
}

type devState struct {
	mu            sync.Mutex
	state         device.State // unknown, online or offline
	since         time.Time
	lastSeen      time.Time
	sessions      int // sessions on the embedded broker
	messages      uint64
	rejected      uint64
	lastRejection string
}

func newLiveness(start time.Time) *liveness {
	return &liveness{start: start, devs: map[string]*devState{}}
}

func (l *liveness) get(id string) *devState {
	l.mu.RLock()
	s, ok := l.devs[id]
	l.mu.RUnlock()
	if ok {
		return s
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok = l.devs[id]; !ok {
		s = &devState{state: device.StateUnknown, since: l.start}
		l.devs[id] = s
	}
	return s
}

// seen records an accepted message from device id. explicit is the state
// a status message announced ("" for any other message). It reports the
// state the device entered, if its state changed in a way worth an event:
// to online after offline (or on an explicit online from unknown), and to
// offline on an explicit offline. A device heard for the first time since
// start goes from unknown to online without an event.
func (l *liveness) seen(id string, now time.Time, explicit device.State) (device.State, bool) {
	s := l.get(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages++
	if explicit != device.StateOffline {
		s.lastSeen = now
	}
	to := device.StateOnline
	if explicit == device.StateOffline {
		to = device.StateOffline
	}
	if s.state == to {
		return "", false
	}
	from := s.state
	s.state, s.since = to, now
	if from == device.StateUnknown && explicit == "" {
		return "", false
	}
	return to, true
}

// rejected records a refused message from device id.
func (l *liveness) rejected(id, reason string) {
	s := l.get(id)
	s.mu.Lock()
	s.rejected++
	s.lastRejection = reason
	s.mu.Unlock()
}

// session records a session of device id opening (+1) or closing (-1) on
// the embedded broker.
func (l *liveness) session(id string, delta int) {
	s := l.get(id)
	s.mu.Lock()
	s.sessions = max(s.sessions+delta, 0)
	s.mu.Unlock()
}

// silent marks offline every device silent for more than graceFactor of
// its interval (counting from start for devices not heard since), and
// returns them with when each was last seen (zero: never since start).
// Devices no longer in the registry are forgotten.
func (l *liveness) silent(now time.Time, devices []device.Entry) (offline []device.Entry, lastSeen []time.Time) {
	known := make(map[string]bool, len(devices))
	for _, e := range devices {
		known[e.ID] = true
		iv := e.Interval.D()
		if e.Disabled || iv <= 0 {
			continue
		}
		s := l.get(e.ID)
		s.mu.Lock()
		ref := s.lastSeen
		if ref.IsZero() {
			ref = l.start
		}
		if s.state != device.StateOffline && now.Sub(ref) > time.Duration(float64(iv)*graceFactor) {
			s.state, s.since = device.StateOffline, now
			offline = append(offline, e)
			lastSeen = append(lastSeen, s.lastSeen)
		}
		s.mu.Unlock()
	}
	l.mu.Lock()
	for id := range l.devs {
		if !known[id] {
			delete(l.devs, id)
		}
	}
	l.mu.Unlock()
	return offline, lastSeen
}

// status reports device id's state.
func (l *liveness) status(id string) device.Status {
	s := l.get(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := device.Status{
		State:         s.state,
		Connected:     s.sessions > 0,
		Messages:      s.messages,
		Rejected:      s.rejected,
		LastRejection: s.lastRejection,
	}
	if s.state != device.StateUnknown {
		since := s.since
		st.Since = &since
	}
	if !s.lastSeen.IsZero() {
		ls := s.lastSeen
		st.LastSeen = &ls
	}
	return st
}

package detect

import "time"

// latch is one reported condition (offline, frozen, dark...) with
// hysteresis: it is raised once its enter condition has held for a while,
// and cleared once its leave condition (a stricter one, so that a value
// wavering around a threshold does not flap) has held for a while; and it
// never changes twice within a hold time. A flapping input therefore
// yields at most one event per hold time, whatever it does.
type latch struct {
	on      bool
	changed time.Time // last change; zero: never changed
	pending time.Time // when the condition for the next change began to hold; zero: it does not
	// since is when the latch was last raised (for durations in events).
	since time.Time
}

// update feeds the latch the conditions observed at now: enter (to raise
// it) and leave (to clear it), each required to hold for its delay; hold
// is the least time between changes. It reports whether the latch changed.
func (l *latch) update(now time.Time, enter, leave bool, enterAfter, leaveAfter, hold time.Duration) bool {
	want, after := enter, enterAfter
	if l.on {
		want, after = leave, leaveAfter
	}
	if !want {
		l.pending = time.Time{}
		return false
	}
	if l.pending.IsZero() || now.Before(l.pending) {
		l.pending = now
	}
	if now.Sub(l.pending) < after {
		return false
	}
	if !l.changed.IsZero() && now.Sub(l.changed) < hold && !now.Before(l.changed) {
		return false
	}
	l.on = !l.on
	l.changed = now
	l.pending = time.Time{}
	if l.on {
		l.since = now
	}
	return true
}

// idle forgets a change in progress: the condition could not be judged.
func (l *latch) idle() { l.pending = time.Time{} }

package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter rate-limits login attempts per key (a client address, a
// username). Its map is bounded: idle entries are swept when it grows.
type limiter struct {
	mu      sync.Mutex
	perMin  float64
	burst   int
	entries map[string]*limitEntry
	max     int
}

type limitEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perMinute float64, burst, maxKeys int) *limiter {
	return &limiter{perMin: perMinute, burst: burst, entries: map[string]*limitEntry{}, max: maxKeys}
}

// allow takes one attempt for key; when refused it says how long to wait.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[key]
	if !ok {
		if len(l.entries) >= l.max {
			l.sweep(now)
		}
		e = &limitEntry{lim: rate.NewLimiter(rate.Limit(l.perMin/60), l.burst)}
		l.entries[key] = e
	}
	e.seen = now
	r := e.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep drops entries whose bucket has refilled; if none has, the oldest
// half goes (an attacker rotating keys then only resets his own buckets).
func (l *limiter) sweep(now time.Time) {
	full := time.Duration(float64(l.burst) / l.perMin * float64(time.Minute))
	for k, e := range l.entries {
		if now.Sub(e.seen) > full {
			delete(l.entries, k)
		}
	}
	if len(l.entries) < l.max {
		return
	}
	var oldest time.Time
	for _, e := range l.entries {
		if oldest.IsZero() || e.seen.Before(oldest) {
			oldest = e.seen
		}
	}
	mid := oldest.Add(now.Sub(oldest) / 2)
	for k, e := range l.entries {
		if !e.seen.After(mid) {
			delete(l.entries, k)
		}
	}
}

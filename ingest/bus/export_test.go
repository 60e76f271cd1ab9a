package bus

import "time"

// SetClock replaces the clock of retention; call it before Run.
func SetClock(e *Embedded, now func() time.Time) { e.now = now }

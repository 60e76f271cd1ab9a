package bus

import "time"

// SetClock replaces the clock of retention; call it before Run.
func SetClock(e *Embedded, now func() time.Time) { e.now = now }

// SetUpgradeChunk has the schema upgrade read n old rows at a time, and
// returns the previous setting.
func SetUpgradeChunk(n int) int {
	old := upgradeChunk
	upgradeChunk = n
	return old
}

package outbox

import (
	"context"
	"time"
)

// SetClock replaces the dispatcher's clock; call it before Run.
func SetClock(d *Dispatcher, now func() time.Time) { d.now = now }

// SetSleep replaces the dispatcher's backoff wait; call it before Run.
func SetSleep(d *Dispatcher, sleep func(ctx context.Context, d time.Duration) error) { d.sleep = sleep }

// Prune runs one pruning pass.
func Prune(ctx context.Context, d *Dispatcher) (int64, error) { return d.prune(ctx) }

// VerifySignatureAt is VerifySignature with a given clock and tolerance.
var VerifySignatureAt = verifySignature

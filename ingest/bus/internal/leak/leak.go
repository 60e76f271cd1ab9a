// Package leak checks, at the end of a test, that the goroutines the bus
// started (its own, kafka-go's, database/sql's) are gone.
package leak

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// owners are the stack fragments of the goroutines checked.
var owners = []string{
	"sharpeye/ingest/bus",
	"github.com/segmentio/kafka-go",
	"database/sql.",
	"modernc.org/sqlite",
}

// Check records the goroutines running now and, when the test ends (after
// the cleanups registered later), fails it if goroutines started since
// and belonging to the bus are still running after a grace period: the
// components must reap what they start. Call it first in the test.
func Check(t testing.TB) {
	t.Helper()
	before := goroutines()
	t.Cleanup(func() {
		var leaked []string
		for deadline := time.Now().Add(10 * time.Second); ; {
			leaked = leaked[:0]
			for id, stack := range goroutines() {
				if _, ok := before[id]; ok || !owned(stack) {
					continue
				}
				leaked = append(leaked, stack)
			}
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			// Goroutines being reaped need a moment to be scheduled;
			// this waits for them to finish, it does not synchronise.
			time.Sleep(20 * time.Millisecond)
		}
		if len(leaked) > 0 {
			t.Errorf("%d goroutines leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
	})
}

func owned(stack string) bool {
	// Skip the goroutine running this check.
	if strings.Contains(stack, "ingest/bus/internal/leak.") {
		return false
	}
	for _, o := range owners {
		if strings.Contains(stack, o) {
			return true
		}
	}
	return false
}

// goroutines returns the stack of every goroutine by id.
func goroutines() map[uint64]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[uint64]string{}
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		s := string(g)
		rest, ok := strings.CutPrefix(s, "goroutine ")
		if !ok {
			continue
		}
		idStr, _, ok := strings.Cut(rest, " ")
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(idStr, 10, 64)
		if err != nil {
			continue
		}
		out[id] = s
	}
	return out
}

package cases

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/ingest/event"
)

// BenchmarkAlertOpen measures cases opened per second from rule firings
// (each in its own group: a new case with its evidence, history, timers and
// outbox hand-off) on SQLite.
func BenchmarkAlertOpen(b *testing.B) {
	f := benchFixture(b)
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		e := smokeEvent(f.clock.now(), fmt.Sprintf("g-%d", i%500), 0.5)
		if _, out, err := f.s.Alert(ctx, Alert{Rule: "smoke", GroupKey: fmt.Sprint("k", i), Category: "public_safety", Title: "t", Risk: 60, Events: []*event.Event{e}}); err != nil || out != Opened {
			b.Fatal(out, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cases/s")
}

// BenchmarkAlertAttach measures repeat firings attached to open cases.
func BenchmarkAlertAttach(b *testing.B) {
	f := benchFixture(b)
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		e := smokeEvent(f.clock.now(), "g-1", 0.5)
		if _, _, err := f.s.Alert(ctx, Alert{Rule: "smoke", GroupKey: fmt.Sprint("k", i%50), Category: "public_safety", Title: "t", Risk: 60, Repeat: i > 50, Events: []*event.Event{e}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
}

func benchFixture(b *testing.B) *fixture {
	f := newFixtureOn(b, casedbtest.Open(b, casedb.SQLite), &clock{t: time.Date(2026, 11, 21, 9, 0, 0, 0, shanghai)})
	f.s.SetPublisher(nil)
	return f
}

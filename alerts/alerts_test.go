package alerts

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/cases"
	"sharpeye/alerts/rules"
	"sharpeye/console/auth"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/event"
)

func newRole(t *testing.T, db *casedb.DB) *Alerts {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := bus.NewMemory(bus.Defaults(), prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.Rules = rules.Rules{{ID: "button", Name: "一键报警", Match: rules.Match{Types: []string{"sensor.alarm_button.pressed"}},
		Case: rules.Case{Category: "public_order", Risk: 90, Title: "一键报警"}}}
	reg := prometheus.NewRegistry()
	a, err := New(cfg, db, b, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

func messages(t *testing.T, evs ...*event.Event) []bus.Message {
	var out []bus.Message
	for _, e := range evs {
		v, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bus.Message{Topic: bus.TopicEvents, Key: e.PartitionKey(), Value: v})
	}
	return out
}

func openCases(t *testing.T, a *Alerts) int {
	t.Helper()
	page, err := a.Cases().List(context.Background(), &auth.Principal{Role: auth.Admin}, cases.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Cases)
}

func button() *event.Event {
	e := event.New(event.SourceDevice, "lx-alarm-school", "sensor.alarm_button.pressed")
	e.Location = event.Location{Region: "lanxi/dongcheng", Grid: "grid-01"}
	e.Severity = event.SeverityCritical
	return e
}

// TestFiringSurvivesCrashBeforeCase: the rule state of a batch is written
// only once its firings are cases, so a process that dies in between
// evaluates the batch again after the restart and the case still opens;
// and a batch redelivered after the case was opened opens no second one.
func TestFiringSurvivesCrashBeforeCase(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			ctx := context.Background()
			msgs := messages(t, button())

			// The first process evaluates the batch and dies before the case is written.
			crashed := newRole(t, db)
			evs := []*event.Event{}
			for _, m := range msgs {
				e, _ := event.Decode(m.Value)
				evs = append(evs, e)
			}
			firings, err := crashed.engine.Process(ctx, evs)
			if err != nil || len(firings) != 1 {
				t.Fatalf("first evaluation: %d firings, %v", len(firings), err)
			}

			// The restarted process gets the uncommitted batch again.
			a := newRole(t, db)
			if err := a.handle(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			if n := openCases(t, a); n != 1 {
				t.Fatalf("%d cases after the restart, want 1", n)
			}
			// Redelivered once more (committed offset lost): still one case.
			if err := a.handle(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			b := newRole(t, db)
			if err := b.handle(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			if n := openCases(t, b); n != 1 {
				t.Fatalf("%d cases after redeliveries, want 1", n)
			}
		})
	}
}

// TestStateWrittenWithCases: a batch's rule state is written in the
// transaction of its cases; a case database that refuses the transaction
// leaves neither the case nor the state, and the retry writes both.
func TestStateWrittenWithCases(t *testing.T) {
	db := casedbtest.Open(t, casedb.SQLite)
	ctx := context.Background()
	a := newRole(t, db)
	stateRows := func() int {
		var n int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM rule_state").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// A trigger makes the case insert fail, as a full disk would.
	if _, err := db.Exec(ctx, `CREATE TRIGGER refuse BEFORE INSERT ON cases BEGIN SELECT RAISE(ABORT, 'disk full'); END`); err != nil {
		t.Fatal(err)
	}
	evs := []*event.Event{button()}
	firings, err := a.engine.Process(ctx, evs)
	if err != nil || len(firings) != 1 {
		t.Fatalf("%d firings, %v", len(firings), err)
	}
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond) // gives up retrying
	if err := a.take(tctx, firings); err == nil {
		t.Fatal("take succeeded with the case database refusing cases")
	}
	cancel()
	if n := stateRows(); n != 0 || openCases(t, a) != 0 {
		t.Fatalf("%d state rows and %d cases after the failed transaction, want neither", n, openCases(t, a))
	}
	if _, err := db.Exec(ctx, `DROP TRIGGER refuse`); err != nil {
		t.Fatal(err)
	}
	if err := a.take(ctx, firings); err != nil {
		t.Fatal(err)
	}
	if n := stateRows(); n != 1 || openCases(t, a) != 1 {
		t.Fatalf("%d state rows and %d cases after the retry, want 1 and 1", n, openCases(t, a))
	}
	if len(a.state.snapshot()) != 0 {
		t.Fatal("state still pending after it was written with the cases")
	}
}

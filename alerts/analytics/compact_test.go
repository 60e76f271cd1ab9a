package analytics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/analytics"
)

// TestCompactSettledPartitions: the fixture inserted in three interleaved
// batches leaves several parts in each day's partition; compaction merges
// every settled day into one part, leaves the days not yet settled, and
// every question answers exactly what it answered before. A second round
// finds nothing to do, and a budget stops a round after one merge.
func TestCompactSettledPartitions(t *testing.T) {
	f := buildFixture()
	ctx := context.Background()
	cfg, s, st := openClickHouse(t)
	for k := range 3 {
		b := analytics.Batch{Events: third(f.batch.Events, k), Cases: third(f.batch.Cases, k), Health: third(f.batch.Health, k)}
		if _, err := s.Insert(ctx, &b, false); err != nil {
			t.Fatal(err)
		}
	}
	q := analytics.NewQuestions(cfg, s, prometheus.NewRegistry())
	ask := func() map[string][]answer {
		out := map[string][]answer{}
		for _, qu := range questions(f) {
			got, err := qu.ask(ctx, q)
			if err != nil {
				t.Fatalf("%s: %v", qu.name, err)
			}
			out[qu.name] = got
		}
		return out
	}
	before := ask()
	if n := splitPartitions(t, s, end); n == 0 {
		t.Fatal("no partition holds several parts after three inserts: a weak test")
	}

	// Nothing is settled two days after the fixture's first day.
	if n, more, err := st.Compact(ctx, start.AddDate(0, 0, 1), 0); err != nil || n != 0 || more {
		t.Fatalf("compacted %d partitions (more: %v) before any day was settled: %v", n, more, err)
	}
	// A budget already spent stops the round after one merge.
	n, more, err := st.Compact(ctx, end.AddDate(0, 0, 3), time.Nanosecond)
	if err != nil || n != 1 || !more {
		t.Fatalf("with a spent budget: %d merged, more %v, %v; want 1 and more", n, more, err)
	}
	// Days up to two days before now are settled; the last day is not.
	lastDay := end.AddDate(0, 0, -1)
	n, more, err = st.Compact(ctx, lastDay.AddDate(0, 0, 1), 0)
	if err != nil || n == 0 || more {
		t.Fatalf("compacted %d partitions (more: %v): %v", n, more, err)
	}
	if left := splitPartitions(t, s, lastDay.AddDate(0, 0, -1)); left != 0 {
		t.Errorf("%d settled partitions still hold several parts", left)
	}
	if splitPartitions(t, s, end) == 0 {
		t.Error("the last day, not settled, was merged too")
	}
	n, _, err = st.Compact(ctx, end.AddDate(0, 0, 3), 0)
	if err != nil || n == 0 {
		t.Fatalf("the last days once settled: %d merged: %v", n, err)
	}
	if left := splitPartitions(t, s, end); left != 0 {
		t.Errorf("%d partitions still hold several parts", left)
	}
	if n, _, err := st.Compact(ctx, end.AddDate(0, 0, 3), 0); err != nil || n != 0 {
		t.Errorf("a second round merged %d partitions: %v", n, err)
	}

	after := ask()
	for _, qu := range questions(f) {
		a, b := before[qu.name], after[qu.name]
		if len(a) != len(b) {
			t.Errorf("%s: %d tables before, %d after", qu.name, len(a), len(b))
			continue
		}
		for i := range a {
			if !equalTables(a[i].table, b[i].table) {
				t.Errorf("%s %s changed:\nbefore %v\nafter  %v", qu.name, a[i].name, brief(a[i].table), brief(b[i].table))
			}
		}
		if qu.check != nil {
			t.Run(qu.name, func(t *testing.T) { qu.check(t, b) })
		}
	}
}

// third is the rows of s whose index is k modulo 3.
func third[T any](s []T, k int) []T {
	var out []T
	for i, x := range s {
		if i%3 == k {
			out = append(out, x)
		}
	}
	return out
}

// splitPartitions counts the store's partitions of days before until
// (by their last day) that hold more than one active part.
func splitPartitions(t *testing.T, s analytics.Store, until time.Time) int {
	t.Helper()
	rows, err := s.DB().QueryContext(context.Background(), `SELECT table, partition FROM system.parts
		WHERE database = currentDatabase() AND active GROUP BY table, partition HAVING count() > 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var table, partition string
		if err := rows.Scan(&table, &partition); err != nil {
			t.Fatal(err)
		}
		if day, ok := analytics.PartitionDay(partition); ok && day.Before(until) {
			n++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestExpireDropsOldDays: retention drops whole days of the tables it
// bounds once their last second is older than it, and leaves the others
// (case events are kept forever by default) and the younger days whole.
func TestExpireDropsOldDays(t *testing.T) {
	f := buildFixture()
	ctx := context.Background()
	_, s, st := openClickHouse(t)
	f.insert(t, s)
	count := func(q string) int64 {
		t.Helper()
		var n int64
		if err := s.DB().QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Partitions are UTC days: the fixture's first days end by this.
	cut := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)
	old := fmt.Sprintf("SELECT count() FROM events WHERE time < toDateTime(%d)", cut.Unix())
	young := fmt.Sprintf("SELECT count() FROM events WHERE time >= toDateTime(%d)", cut.Unix())
	oldN, youngN, cases := count(old), count(young), count("SELECT count() FROM case_events")
	if oldN == 0 || youngN == 0 || cases == 0 {
		t.Fatalf("fixture: %d events before %s, %d after, %d case events: a weak test", oldN, cut, youngN, cases)
	}
	if err := st.Expire(ctx, end); err != nil {
		t.Fatal(err)
	}
	if count(old) != oldN || count(young) != youngN {
		t.Fatal("retention dropped days younger than 400 days")
	}
	days := analytics.Defaults().Retention.Events
	if err := st.Expire(ctx, cut.AddDate(0, 0, days)); err != nil {
		t.Fatal(err)
	}
	if n := count(old); n != 0 {
		t.Errorf("%d events older than the retention left", n)
	}
	if n := count(young); n != youngN {
		t.Errorf("%d younger events left, want %d", n, youngN)
	}
	if n := count("SELECT count() FROM case_events"); n != cases {
		t.Errorf("%d case events left, want all %d (kept forever)", n, cases)
	}
}

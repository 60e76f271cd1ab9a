package analytics_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/analytics"
)

// rollupQueries read each summed rollup, merged, in a fixed order,
// without the groups whose sums are all zero (SummingMergeTree drops them
// when it merges).
var rollupQueries = map[string]string{
	"events_hourly":        "SELECT hour, type, region, source_kind, severity, sum(n) FROM events_hourly GROUP BY hour, type, region, source_kind, severity ORDER BY hour, type, region, source_kind, severity",
	"camera_events_hourly": "SELECT hour, camera, type, region, sum(n) FROM camera_events_hourly GROUP BY hour, camera, type, region ORDER BY hour, camera, type, region",
	"cases_hourly":         "SELECT hour, category, colour, region, source, sum(opened), sum(closed) FROM cases_hourly GROUP BY hour, category, colour, region, source HAVING sum(opened) + sum(closed) > 0 ORDER BY hour, category, colour, region, source",
	"camera_health_hourly": "SELECT hour, camera, region, grid, vendor, sum(minutes), round(sum(online_sum), 3), round(sum(window_sum), 3), sum(intact) FROM camera_health_hourly GROUP BY hour, camera, region, grid, vendor ORDER BY hour, camera, region, grid, vendor",
}

// snapshot is every rollup's merged rows as text.
func snapshot(t *testing.T, s analytics.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, q := range rollupQueries {
		rows, err := s.DB().QueryContext(context.Background(), q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cols, _ := rows.Columns()
		var b strings.Builder
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			fmt.Fprintln(&b, vals...)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rows.Close()
		out[name] = b.String()
	}
	return out
}

// TestRollupsRepaired: rows stored in their tables whose inserts stopped
// before the materialized views wrote the rollups (here: the rollups
// emptied) are found when the batch is delivered again, and once their
// hours are over the rollups are brought back to what the views would
// have written, exactly, once.
func TestRollupsRepaired(t *testing.T) {
	f := buildFixture()
	ctx := context.Background()
	_, s, st := openClickHouse(t)
	b := f.insert(t, s)
	want := snapshot(t, s)
	for name, rows := range want {
		if rows == "" {
			t.Fatalf("%s is empty after the insert", name)
		}
	}
	var first, last time.Time
	for _, e := range f.batch.Events {
		if first.IsZero() || e.Time.Before(first) {
			first = e.Time
		}
		if e.Time.After(last) {
			last = e.Time
		}
	}
	for name := range rollupQueries {
		if err := st.Exec(ctx, "TRUNCATE TABLE "+name); err != nil {
			t.Fatal(err)
		}
	}

	replay := analytics.Batch{Events: slices.Clone(f.batch.Events), Cases: slices.Clone(f.batch.Cases), Health: slices.Clone(f.batch.Health)}
	n, err := s.Insert(ctx, &replay, true)
	if err != nil {
		t.Fatal(err)
	}
	if n.Skipped != b.Len() || n.Events+n.Cases+n.Health != 0 {
		t.Fatalf("replay: %+v, want all %d rows skipped", n, b.Len())
	}
	// Not before the hours are over.
	if hours, corrected, err := st.RepairRollups(ctx, first); err != nil || hours+corrected != 0 {
		t.Fatalf("repaired %d hours (%d rows) before any was over: %v", hours, corrected, err)
	}
	// The first round brings the rollups back; an hour is done only when
	// the next round finds it whole.
	hours, corrected, err := st.RepairRollups(ctx, last.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if corrected == 0 {
		t.Fatalf("repaired %d hours, %d rows", hours, corrected)
	}
	got := snapshot(t, s)
	for name := range rollupQueries {
		if got[name] != want[name] {
			t.Errorf("%s after the repair:\n%s\nwant:\n%s", name, got[name], want[name])
		}
	}
	done, again0, err := st.RepairRollups(ctx, last.Add(3*time.Hour))
	if err != nil || again0 != 0 || done == 0 {
		t.Fatalf("the round after the repair: %d hours done, %d rows inserted (%v); want whole hours done", done, again0, err)
	}
	t.Logf("%d rollup rows inserted; %d hours then found whole", corrected, hours+done)

	// Done: a third round checks nothing, and a replay of rows whose
	// rollups are whole changes nothing.
	if hours, _, err := st.RepairRollups(ctx, last.Add(3*time.Hour)); err != nil || hours != 0 {
		t.Fatalf("third round: %d hours: %v", hours, err)
	}
	again := analytics.Batch{Events: slices.Clone(f.batch.Events[:10])}
	if _, err := s.Insert(ctx, &again, true); err != nil {
		t.Fatal(err)
	}
	hours, corrected, err = st.RepairRollups(ctx, last.Add(3*time.Hour))
	if err != nil || hours == 0 || corrected != 0 {
		t.Fatalf("whole rollups: %d hours checked, %d rows inserted: %v", hours, corrected, err)
	}
	if got := snapshot(t, s); got["events_hourly"] != want["events_hourly"] {
		t.Errorf("events_hourly changed by a needless repair")
	}
}

// TestRollupRepairTakesBackADoubleCount: an event of an hour stored while
// that hour's repair runs (after the table, before the view) is counted by
// the repair and by the view. Here the test adds that second count after
// the repair round (which marks no hour done, having repaired); the next
// round finds the rollup one over and takes it back, so the rollup ends
// exact, and the hour is done.
func TestRollupRepairTakesBackADoubleCount(t *testing.T) {
	f := buildFixture()
	ctx := context.Background()
	_, s, st := openClickHouse(t)
	b := analytics.Batch{Events: slices.Clone(f.batch.Events)}
	if _, err := s.Insert(ctx, &b, false); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, s)
	var last time.Time
	for _, e := range f.batch.Events {
		if e.Time.After(last) {
			last = e.Time
		}
	}
	// The views' rows of every event lost, then the batch delivered again.
	if err := st.Exec(ctx, "TRUNCATE TABLE events_hourly"); err != nil {
		t.Fatal(err)
	}
	replay := analytics.Batch{Events: slices.Clone(f.batch.Events)}
	if _, err := s.Insert(ctx, &replay, true); err != nil {
		t.Fatal(err)
	}
	if hours, _, err := st.RepairRollups(ctx, last.Add(3*time.Hour)); err != nil || hours != 0 {
		t.Fatalf("the repair round marked %d hours done (%v); a round that repairs marks none", hours, err)
	}
	if got := snapshot(t, s); got["events_hourly"] != want["events_hourly"] {
		t.Fatal("the first round did not repair events_hourly")
	}
	// The second count an event stored during that repair would have added.
	if err := st.Exec(ctx, `INSERT INTO events_hourly SELECT hour, type, region, source_kind, severity, 1 FROM events_hourly
		WHERE hour = (SELECT max(hour) FROM events_hourly) LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, s); got["events_hourly"] == want["events_hourly"] {
		t.Fatal("the second count did not land: the test shows nothing")
	}
	// The next round takes the second count back, and then every hour is
	// whole and done.
	_, corrected, err := st.RepairRollups(ctx, last.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, s); got["events_hourly"] != want["events_hourly"] {
		t.Fatalf("events_hourly after a double count during the repair:\n%s\nwant:\n%s", got["events_hourly"], want["events_hourly"])
	}
	t.Logf("the next round inserted %d rollup rows, taking the double count back", corrected)
	if _, _, err := st.RepairRollups(ctx, last.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if hours, _, err := st.RepairRollups(ctx, last.Add(3*time.Hour)); err != nil || hours != 0 {
		t.Fatalf("hours still noted after the repair: %d (%v)", hours, err)
	}
}

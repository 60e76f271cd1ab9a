package analytics_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/analyticstest"
	"sharpeye/deploy/testpeer"
)

// TestCasesCurrentExact: the case questions read each case as the store
// keeps it (cases_current, and cases_opened on ClickHouse), and that stays
// exact when case events arrive late (a case's later rows before its
// earlier ones), when batches are replayed (the sink's replay rules: a
// batch that may have been written is inserted with check set), and when
// the migration that builds the table from case_events runs again over a
// filled store (a migration cut short).
func TestCasesCurrentExact(t *testing.T) {
	f := buildFixture()
	ctx := context.Background()
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			cfg := analyticstest.Config(t, driver)
			s := analyticstest.OpenConfig(t, cfg)
			q := analytics.NewQuestions(cfg, s, prometheus.NewRegistry())

			// Every case's history newest first, in batches of 7 that cut
			// through cases; each batch is inserted, then replayed with the
			// one before it.
			rows := slices.Clone(f.batch.Cases)
			slices.Reverse(rows)
			const size = 7
			var prev []analytics.CaseRow
			stored := 0
			for i := 0; i < len(rows); i += size {
				cur := rows[i:min(i+size, len(rows))]
				b := analytics.Batch{Cases: slices.Clone(cur)}
				n, err := s.Insert(ctx, &b, true)
				if err != nil {
					t.Fatal(err)
				}
				stored += n.Cases
				replay := analytics.Batch{Cases: append(slices.Clone(prev), cur...)}
				n, err = s.Insert(ctx, &replay, true)
				if err != nil {
					t.Fatal(err)
				}
				if n.Cases != 0 || n.Skipped != len(prev)+len(cur) {
					t.Fatalf("replay of %d rows inserted %+v, want every row skipped", len(prev)+len(cur), n)
				}
				prev = cur
			}
			if stored != len(rows) {
				t.Fatalf("%d case events stored, want %d", stored, len(rows))
			}

			check := func(t *testing.T) {
				t.Helper()
				if got := count(t, s.DB(), "SELECT count(*) FROM (SELECT case_id FROM cases_current GROUP BY case_id)"); got != caseCount {
					t.Errorf("cases_current holds %d cases, want %d", got, caseCount)
				}
				if driver == analytics.ClickHouse {
					if got := count(t, s.DB(), "SELECT count() FROM cases_opened"); got != caseCount {
						t.Errorf("cases_opened holds %d rows, want %d", got, caseCount)
					}
					checkFlat(t, s, caseCount)
				}
				rules, err := q.Rules(ctx, analytics.RulesParams{Range: all}, "")
				if err != nil {
					t.Fatal(err)
				}
				checkRules(t, f, rules)
				checkCaseQuestions(t, q, f, "state", "colour", "department", "category")
			}
			t.Run("late-and-replayed", check)

			if st, ok := s.(*analytics.CHStore); ok {
				// Every cancelled pair of cases_flat merged away.
				if err := st.Exec(ctx, "OPTIMIZE TABLE cases_flat FINAL"); err != nil {
					t.Fatal(err)
				}
				t.Run("merged", check)
			}

			// The migrations that fill the tables from case_events, again.
			switch st := s.(type) {
			case *analytics.CHStore:
				for _, v := range []int{2, 4} {
					if err := st.Remigrate(ctx, v); err != nil {
						t.Fatal(err)
					}
				}
			case *analytics.LiteStore:
				if err := st.Remigrate(ctx, 1); err != nil {
					t.Fatal(err)
				}
			}
			t.Run("backfilled", check)
		})
	}
}

// checkFlat: ClickHouse's cases_flat holds one live row for each of the
// n cases (sign 1, not cancelled), and the signs of each case add up to 1.
func checkFlat(t *testing.T, s analytics.Store, n int) {
	t.Helper()
	if got := count(t, s.DB(), "SELECT count() FROM cases_flat WHERE sign = 1 AND row_id NOT IN (SELECT row_id FROM cases_flat WHERE sign = -1)"); got != n {
		t.Errorf("cases_flat holds %d live rows, want %d", got, n)
	}
	if got := count(t, s.DB(), "SELECT uniqExact(case_id) FROM cases_flat WHERE sign = 1 AND row_id NOT IN (SELECT row_id FROM cases_flat WHERE sign = -1)"); got != n {
		t.Errorf("cases_flat's live rows are of %d cases, want %d", got, n)
	}
	if got := count(t, s.DB(), "SELECT count() FROM (SELECT case_id, sum(sign) AS n FROM cases_flat GROUP BY case_id HAVING n != 1)"); got != 0 {
		t.Errorf("%d cases of cases_flat have signs that do not add up to 1", got)
	}
}

// checkCaseQuestions compares the case performance (by department,
// category and overall) and the daily case series split by each of
// seriesBy with the fixture's reference answers.
func checkCaseQuestions(t *testing.T, q *analytics.Questions, f fixture, seriesBy ...string) {
	t.Helper()
	ctx := context.Background()
	for _, by := range []string{"department", "category", ""} {
		perf, err := q.Performance(ctx, analytics.PerformanceParams{Range: all, By: by}, "")
		if err != nil {
			t.Fatal(err)
		}
		checkPerformance(t, f, perf, by, "")
	}
	for _, by := range seriesBy {
		p := analytics.SeriesParams{Subject: analytics.Cases, Bucket: analytics.Day, Range: all, By: by}
		got, err := q.Series(ctx, p, "")
		if err != nil {
			t.Fatal(err)
		}
		if want := refSeries(f, p, ""); !equalTables(got, want) {
			t.Errorf("cases by %s:\n got %v\nwant %v", by, brief(got), brief(want))
		}
	}
}

// openClickHouse opens a new, empty ClickHouse store, or skips the test
// when ClickHouse is not among the test peers.
func openClickHouse(t *testing.T) (analytics.Config, analytics.Store, *analytics.CHStore) {
	t.Helper()
	testpeer.Require(t, testpeer.ClickHouse)
	cfg := analyticstest.Config(t, analytics.ClickHouse)
	s := analyticstest.OpenConfig(t, cfg)
	return cfg, s, s.(*analytics.CHStore)
}

// TestCasesFlatRepaired: a batch delivered again after the sync of
// cases_flat failed (here: the table emptied, or a case holding a second,
// wrong live row as after two syncs raced) brings it back in line, though
// every case event of the batch is skipped as stored.
func TestCasesFlatRepaired(t *testing.T) {
	f := buildFixture()
	ctx := context.Background()
	cfg, s, st := openClickHouse(t)
	q := analytics.NewQuestions(cfg, s, prometheus.NewRegistry())
	b := analytics.Batch{Cases: slices.Clone(f.batch.Cases)}
	if _, err := s.Insert(ctx, &b, false); err != nil {
		t.Fatal(err)
	}
	damage := map[string]string{
		"emptied": "TRUNCATE TABLE cases_flat",
		"second live row": `INSERT INTO cases_flat SELECT case_id, time, category, region, source, rule, grid, 'closed', 'green',
			department, created, dispatched, accepted, resolved, urge_count + 1, escalations, alert_count, satisfaction, outcome,
			on_time, late, satisfied, basically, dissatisfied, generateUUIDv4(), version, 1 FROM cases_flat WHERE sign = 1 AND case_id IN ('case-02', 'case-07')`,
	}
	for _, name := range []string{"emptied", "second live row"} {
		t.Run(name, func(t *testing.T) {
			if err := st.Exec(ctx, damage[name]); err != nil {
				t.Fatal(err)
			}
			// Without the cases' seq = 1 rows: their opening is read
			// from cases_opened when cases_flat lacks it.
			var replay analytics.Batch
			for _, r := range f.batch.Cases {
				if r.Seq > 1 {
					replay.Cases = append(replay.Cases, r)
				}
			}
			n, err := s.Insert(ctx, &replay, true)
			if err != nil {
				t.Fatal(err)
			}
			if n.Cases != 0 {
				t.Fatalf("replay stored %d case events again", n.Cases)
			}
			checkFlat(t, s, caseCount)
			checkCaseQuestions(t, q, f, "state", "colour")
		})
	}
}

// TestEventTypeHash: the raw events grouped by type read events.type_hash
// and name the hashes from event_types. The migration that adds the
// column writes it into the parts stored before it (the store's answers
// are the same before, when ClickHouse computes it on every read, and
// after), and running it again changes nothing.
func TestEventTypeHash(t *testing.T) {
	f := buildFixture()
	ctx := context.Background()
	cfg, s, st := openClickHouse(t)
	b := analytics.Batch{Events: slices.Clone(f.batch.Events)}
	if _, err := s.Insert(ctx, &b, false); err != nil {
		t.Fatal(err)
	}
	q := analytics.NewQuestions(cfg, s, prometheus.NewRegistry())
	series := func(t *testing.T, path string) analytics.Table {
		t.Helper()
		got, err := q.Series(ctx, analytics.SeriesParams{Subject: analytics.Events, Bucket: analytics.Day, Range: all, By: "type", Path: path}, "")
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := series(t, analytics.PathRollup)
	if len(want.Rows) == 0 {
		t.Fatal("no events by type")
	}
	check := func(t *testing.T) {
		t.Helper()
		if got := series(t, analytics.PathRaw); !equalTables(got, want) {
			t.Errorf("raw events by type:\n got %v\nwant %v", brief(got), brief(want))
		}
	}
	parts := func(t *testing.T) (all, hashed int) {
		t.Helper()
		return count(t, s.DB(), "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'events' AND active"),
			count(t, s.DB(), "SELECT count() FROM system.parts_columns WHERE database = currentDatabase() AND table = 'events' AND active AND column = 'type_hash'")
	}
	check(t)
	// The store as it was before the column: parts without it.
	for _, stmt := range []string{"ALTER TABLE events DROP COLUMN type_hash", "ALTER TABLE events ADD COLUMN type_hash UInt64 MATERIALIZED cityHash64(type)"} {
		if err := st.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	if n, hashed := parts(t); n == 0 || hashed != 0 {
		t.Fatalf("%d of %d parts hold type_hash after it was dropped, want none", hashed, n)
	}
	t.Run("computed", check)
	for _, run := range []string{"backfilled", "again"} {
		if err := st.Remigrate(ctx, 5); err != nil {
			t.Fatal(err)
		}
		if n, hashed := parts(t); hashed != n {
			t.Fatalf("%s: %d of %d parts hold type_hash", run, hashed, n)
		}
		t.Run(run, check)
	}
	if got := count(t, s.DB(), "SELECT uniqExact(type) FROM event_types"); got != 4+2 {
		t.Errorf("event_types names %d types, want 6", got)
	}
}

// TestQuantilesNearestRank: every store's percentiles are the nearest
// rank, ceil(p·n/100), of the values for every count of values up to 1000
// (ClickHouse's quantilesExact indexes floor(level·n), so its levels are
// chosen just under p/100).
func TestQuantilesNearestRank(t *testing.T) {
	pcts := []int{1, 25, 50, 90, 99, 100}
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			s := analyticstest.Open(t, driver)
			exprs := analytics.Quantiles(driver, "x * 7 % 1009", "x % 3 != 1", pcts...)
			for _, n := range []int{1, 2, 3, 7, 10, 99, 100, 101, 333, 1000} {
				from := fmt.Sprintf("(SELECT number AS x FROM numbers(%d))", n)
				if driver == analytics.SQLite {
					from = fmt.Sprintf("(WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < %d) SELECT x FROM n)", n-1)
				}
				got := make([]any, len(pcts))
				ptrs := make([]any, len(pcts))
				for i := range got {
					ptrs[i] = &got[i]
				}
				q := "SELECT " + strings.Join(exprs, ", ") + " FROM " + from
				if err := s.DB().QueryRowContext(context.Background(), q).Scan(ptrs...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				var vals []int64
				for x := range n {
					if x%3 != 1 {
						vals = append(vals, int64(x*7%1009))
					}
				}
				for i, p := range pcts {
					want := nearestRank(vals, p)
					if fmt.Sprint(got[i]) != fmt.Sprint(want) {
						t.Errorf("n = %d: percentile %d is %v, want %v (nearest rank)", n, p, got[i], want)
					}
				}
			}
		})
	}
}

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
				}
				for _, by := range []string{"department", "category", ""} {
					perf, err := q.Performance(ctx, analytics.PerformanceParams{Range: all, By: by}, "")
					if err != nil {
						t.Fatal(err)
					}
					checkPerformance(t, f, perf, by, "")
				}
				rules, err := q.Rules(ctx, analytics.RulesParams{Range: all}, "")
				if err != nil {
					t.Fatal(err)
				}
				checkRules(t, f, rules)
				for _, by := range []string{"state", "colour", "department", "category"} {
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
			t.Run("late-and-replayed", check)

			// The migration that fills the table from case_events, again.
			switch st := s.(type) {
			case *analytics.CHStore:
				if err := st.Remigrate(ctx, 2); err != nil {
					t.Fatal(err)
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

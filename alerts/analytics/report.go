package analytics

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"sharpeye/console/auth"
)

// Report kinds (DOMAIN.md: 日汇总、周研判、月通报).
const (
	Daily   = "daily"
	Weekly  = "weekly"
	Monthly = "monthly"
)

// Section is one named table of a report.
type Section struct {
	Name string `json:"name"`
	Table
}

// Report is the summary of one period within a scope.
type Report struct {
	Kind string    `json:"kind"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Region is the scope the report covers ("" for everything).
	Region   string    `json:"region"`
	Sections []Section `json:"sections"`
}

// Section returns the section named name.
func (r *Report) Section(name string) (Table, bool) {
	for _, s := range r.Sections {
		if s.Name == name {
			return s.Table, true
		}
	}
	return Table{}, false
}

// Period is the period of kind holding date (in the configured zone): the
// day, the week from Monday, or the month; and the one before it.
func (q *Questions) Period(kind string, date time.Time) (cur, prev Range, err error) {
	y, m, d := date.In(q.loc).Date()
	switch kind {
	case Daily:
		from := time.Date(y, m, d, 0, 0, 0, 0, q.loc)
		return Range{from, from.AddDate(0, 0, 1)}, Range{from.AddDate(0, 0, -1), from}, nil
	case Weekly:
		back := (int(time.Date(y, m, d, 12, 0, 0, 0, q.loc).Weekday()) + 6) % 7
		from := time.Date(y, m, d-back, 0, 0, 0, 0, q.loc)
		return Range{from, from.AddDate(0, 0, 7)}, Range{from.AddDate(0, 0, -7), from}, nil
	case Monthly:
		from := time.Date(y, m, 1, 0, 0, 0, 0, q.loc)
		return Range{from, from.AddDate(0, 1, 0)}, Range{from.AddDate(0, -1, 0), from}, nil
	}
	return Range{}, Range{}, paramErr("kind", "must be daily, weekly or monthly, not %q", kind)
}

// Report summarises the period of kind holding date within scope, in
// sections: cases_by_category_colour, cases_by_source,
// performance_total, performance_by_department, hot_grids (cases per grid
// against the previous period, top 10), cameras_by_region (one level
// below the scope), worst_cameras (10), rules; weekly and monthly reports
// add compare_by_category (cases this period, the previous one, and the
// change).
func (q *Questions) Report(ctx context.Context, kind string, date time.Time, scope string) (r Report, err error) {
	defer q.observe(qReport, time.Now(), &err)
	cur, prev, err := q.Period(kind, date)
	if err != nil {
		return Report{}, err
	}
	r = Report{Kind: kind, From: cur.From, To: cur.To, Region: scope}
	// One level below the caller's region: townships for the county.
	depth := 2
	if scope != "" {
		depth = min(strings.Count(scope, "/")+2, auth.MaxRegionDepth)
	}
	one := func(t Table, err error) ([]Table, error) { return []Table{t}, err }
	jobs := []struct {
		sections []string
		ask      func(ctx context.Context) ([]Table, error)
	}{
		{[]string{"cases_by_category_colour"}, func(ctx context.Context) ([]Table, error) {
			return one(q.countTable(ctx, Cases, []string{"category", "colour"}, cur, scope))
		}},
		{[]string{"cases_by_source"}, func(ctx context.Context) ([]Table, error) {
			return one(q.countTable(ctx, Cases, []string{"source"}, cur, scope))
		}},
		// The total is the last row of the table by department (one pass
		// over the cases for both sections).
		{[]string{"performance_total", "performance_by_department"}, func(ctx context.Context) ([]Table, error) {
			t, err := q.performance(ctx, PerformanceParams{Range: cur, By: "department"}, scope)
			return []Table{totalOf(t), t}, err
		}},
		{[]string{"hot_grids"}, func(ctx context.Context) ([]Table, error) {
			return one(q.hotspots(ctx, Cases, cur, prev, 10, "", scope, "this_period", "previous_period"))
		}},
		{[]string{"cameras_by_region"}, func(ctx context.Context) ([]Table, error) {
			return one(q.cameras(ctx, CamerasParams{Range: cur, By: "region", RegionDepth: depth}, scope))
		}},
		{[]string{"worst_cameras"}, func(ctx context.Context) ([]Table, error) {
			return one(q.worstCameras(ctx, WorstParams{Range: cur, Limit: 10}, scope))
		}},
		{[]string{"rules"}, func(ctx context.Context) ([]Table, error) {
			return one(q.rules(ctx, RulesParams{Range: cur}, scope))
		}},
		{[]string{"compare_by_category"}, func(ctx context.Context) ([]Table, error) {
			return one(q.compare(ctx, cur, prev, scope))
		}},
	}
	if kind == Daily {
		jobs = jobs[:len(jobs)-1] // no comparison of single days
	}
	// The sections are independent: a few are asked at a time, each
	// waiting on the store for most of its time.
	tables := make([][]Table, len(jobs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(reportQueries)
	for i, j := range jobs {
		g.Go(func() error {
			ts, err := j.ask(gctx)
			if err != nil {
				return fmt.Errorf("report section %s: %w", j.sections[0], err)
			}
			tables[i] = ts
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Report{}, err
	}
	for i, j := range jobs {
		for k, name := range j.sections {
			r.Sections = append(r.Sections, Section{Name: name, Table: tables[i][k]})
		}
	}
	return r, nil
}

// reportQueries is how many of a report's sections are asked at once.
const reportQueries = 3

// totalOf is the performance table of the total alone (By ""), taken from
// a performance table split by a key, whose last row is the total.
func totalOf(t Table) Table {
	out := Table{Columns: append([]string{"total"}, PerformanceColumns...), Rows: [][]any{}}
	if n := len(t.Rows); n > 0 && t.Rows[n-1][0] == TotalKey {
		out.Rows = append(out.Rows, t.Rows[n-1])
	}
	return out
}

// countTable counts a subject in rng per dims (rollups when they answer).
func (q *Questions) countTable(ctx context.Context, subject string, dims []string, rng Range, scope string) (Table, error) {
	rows, truncated, err := q.counts(ctx, countQuery{subject: subject, by: dims, rng: rng.whole(), scope: scope})
	if err != nil {
		return Table{}, err
	}
	t := Table{Columns: append(slices.Clone(dims), "count"), Rows: [][]any{}, Truncated: truncated}
	for _, r := range rows {
		row := make([]any, 0, len(dims)+1)
		for _, k := range r.keys {
			row = append(row, k)
		}
		t.Rows = append(t.Rows, append(row, r.n))
	}
	return t, nil
}

// compare is the cases per category in cur and prev.
func (q *Questions) compare(ctx context.Context, cur, prev Range, scope string) (Table, error) {
	count := func(rng Range) (map[string]int64, error) {
		rows, _, err := q.counts(ctx, countQuery{subject: Cases, by: []string{"category"}, rng: rng.whole(), scope: scope})
		out := map[string]int64{}
		for _, r := range rows {
			out[r.keys[0]] = r.n
		}
		return out, err
	}
	a, err := count(cur)
	if err != nil {
		return Table{}, err
	}
	b, err := count(prev)
	if err != nil {
		return Table{}, err
	}
	var cats []string
	for k := range a {
		cats = append(cats, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			cats = append(cats, k)
		}
	}
	slices.Sort(cats)
	t := Table{Columns: []string{"category", "this_period", "previous_period", "change", "change_pct"}, Rows: [][]any{}}
	for _, c := range cats {
		t.Rows = append(t.Rows, []any{c, a[c], b[c], a[c] - b[c], ratioPct(a[c]-b[c], b[c])})
	}
	return t, nil
}

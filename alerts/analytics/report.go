package analytics

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

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
	add := func(name string, t Table, err error) error {
		if err != nil {
			return fmt.Errorf("report section %s: %w", name, err)
		}
		r.Sections = append(r.Sections, Section{Name: name, Table: t})
		return nil
	}
	byCat, err := q.countTable(ctx, Cases, []string{"category", "colour"}, cur, scope)
	if err := add("cases_by_category_colour", byCat, err); err != nil {
		return Report{}, err
	}
	bySource, err := q.countTable(ctx, Cases, []string{"source"}, cur, scope)
	if err := add("cases_by_source", bySource, err); err != nil {
		return Report{}, err
	}
	total, err := q.performance(ctx, PerformanceParams{Range: cur}, scope)
	if err := add("performance_total", total, err); err != nil {
		return Report{}, err
	}
	byDept, err := q.performance(ctx, PerformanceParams{Range: cur, By: "department"}, scope)
	if err := add("performance_by_department", byDept, err); err != nil {
		return Report{}, err
	}
	hot, err := q.hotspots(ctx, Cases, cur, prev, 10, "", scope, "this_period", "previous_period")
	if err := add("hot_grids", hot, err); err != nil {
		return Report{}, err
	}
	// One level below the caller's region: townships for the county.
	depth := 2
	if scope != "" {
		depth = min(strings.Count(scope, "/")+2, auth.MaxRegionDepth)
	}
	fleet, err := q.cameras(ctx, CamerasParams{Range: cur, By: "region", RegionDepth: depth}, scope)
	if err := add("cameras_by_region", fleet, err); err != nil {
		return Report{}, err
	}
	worst, err := q.worstCameras(ctx, WorstParams{Range: cur, Limit: 10}, scope)
	if err := add("worst_cameras", worst, err); err != nil {
		return Report{}, err
	}
	rules, err := q.rules(ctx, RulesParams{Range: cur}, scope)
	if err := add("rules", rules, err); err != nil {
		return Report{}, err
	}
	if kind != Daily {
		cmp, err := q.compare(ctx, cur, prev, scope)
		if err := add("compare_by_category", cmp, err); err != nil {
			return Report{}, err
		}
	}
	return r, nil
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

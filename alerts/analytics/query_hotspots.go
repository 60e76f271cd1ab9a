package analytics

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// HotspotsParams asks which grids rose most in the week ending at To
// against the week before.
type HotspotsParams struct {
	// Subject is Events or Cases (counted when opened, in the grid they
	// were opened in).
	Subject string
	To      time.Time
	// Limit is how many grids (default 10).
	Limit int
	// Region narrows the scope.
	Region string
}

// Hotspots answers the grids within scope whose counts rose most in the
// seven days before To against the seven before those: grid, region,
// this_week, last_week, rise and rise_pct (null when last week had
// none); only grids that rose, greatest rise first.
func (q *Questions) Hotspots(ctx context.Context, p HotspotsParams, scope string) (t Table, err error) {
	defer q.observe(qHotspots, time.Now(), &err)
	if p.To.IsZero() {
		return Table{}, paramErr("to", "is required")
	}
	to := p.To.Truncate(time.Second).In(q.loc)
	mid := to.AddDate(0, 0, -7)
	return q.hotspots(ctx, p.Subject, Range{mid, to}, Range{mid.AddDate(0, 0, -7), mid}, p.Limit, p.Region, scope, "this_week", "last_week")
}

// hotspots compares the grids' counts in cur with those in prev (prev
// ends where cur begins).
func (q *Questions) hotspots(ctx context.Context, subject string, cur, prev Range, limit int, region, scope, curName, prevName string) (Table, error) {
	if subject != Events && subject != Cases {
		return Table{}, paramErr("subject", "must be events or cases, not %q", subject)
	}
	if limit == 0 {
		limit = 10
	}
	if limit < 1 || limit > 1000 {
		return Table{}, paramErr("limit", "must be 1 to 1000")
	}
	if err := (Range{prev.From, cur.To}).check(maxRange); err != nil {
		return Table{}, err
	}
	scope, err := narrow(scope, region)
	if err != nil {
		return Table{}, err
	}
	table := "events"
	var w conds
	if subject == Cases {
		table, _ = q.d.opened()
		w = q.d.openedConds()
	}
	w.add("time >= " + q.d.ts(prev.From))
	w.add("time < " + q.d.ts(cur.To))
	w.add("grid != ''")
	w.subtree(q.d, "region", scope)
	mid := q.d.ts(cur.From)
	query := fmt.Sprintf(`SELECT grid AS k_, max(region) AS region_,
		sum(CASE WHEN time >= %[1]s THEN 1 ELSE 0 END) AS cur_, sum(CASE WHEN time < %[1]s THEN 1 ELSE 0 END) AS prev_
		FROM %[2]s%[3]s GROUP BY k_`, mid, table, w.where())
	rows, truncated, err := q.rows(ctx, query, w.args...)
	if err != nil {
		return Table{}, err
	}
	type grid struct {
		id, region string
		cur, prev  int64
	}
	var grids []grid
	for _, r := range rows {
		g := grid{asString(r[0]), asString(r[1]), asInt(r[2]), asInt(r[3])}
		if g.cur > g.prev {
			grids = append(grids, g)
		}
	}
	slices.SortFunc(grids, func(a, b grid) int {
		if c := cmp.Compare(b.cur-b.prev, a.cur-a.prev); c != 0 {
			return c
		}
		if c := cmp.Compare(b.cur, a.cur); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	t := Table{Columns: []string{"grid", "region", curName, prevName, "rise", "rise_pct"}, Rows: [][]any{}, Truncated: truncated}
	for _, g := range grids[:min(limit, len(grids))] {
		t.Rows = append(t.Rows, []any{g.id, g.region, g.cur, g.prev, g.cur - g.prev, ratioPct(g.cur-g.prev, g.prev)})
	}
	return t, nil
}

// ratioPct is 100·a/b, or nil when b is 0.
func ratioPct(a, b int64) any {
	if b == 0 {
		return nil
	}
	return 100 * float64(a) / float64(b)
}

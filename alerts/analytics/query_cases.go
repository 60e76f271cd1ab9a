package analytics

import (
	"context"
	"fmt"
	"time"

	"sharpeye/console/auth"
)

// TotalKey is the key of a table's total row.
const TotalKey = "(total)"

// PerformanceParams asks how the cases opened in a range were handled.
type PerformanceParams struct {
	Range
	// By is department, region or category ("" for the total only).
	By string
	// RegionDepth cuts regions to that many segments (By "region").
	RegionDepth int
	// Region narrows the scope.
	Region string
}

// PerformanceColumns are the columns of a performance table after its key.
var PerformanceColumns = []string{
	"opened", "open", "closed", "on_time", "late", "on_time_rate",
	"dispatch_median_s", "dispatch_p90_s", "accept_median_s", "accept_p90_s", "resolve_median_s", "resolve_p90_s",
	"urges", "escalations", "satisfied", "basically", "dissatisfied", "satisfaction_rate",
}

// perfBy maps a performance split to caseView's column.
var perfBy = map[string]string{"department": "c_department", "region": "c_region", "category": "c_category"}

// cohort is caseView (with the columns cols) over the cases opened in rng
// within scope, with extra conditions on their opening row; it returns the
// query and its arguments.
func (q *Questions) cohort(rng Range, scope string, cols []string, extra ...string) (string, []any) {
	c := q.d.openedConds()
	c.add("time >= " + q.d.ts(rng.From))
	c.add("time < " + q.d.ts(rng.To))
	c.subtree(q.d, "region", scope)
	for _, e := range extra {
		c.add(e)
	}
	return q.d.caseView(c, cols...)
}

// Performance answers, per department, region or category and in total
// (the last row, key TotalKey), for the cases opened in the range within
// scope: how many were opened, are open and closed now (latest state);
// resolve actions on time and late (against the deadline then running)
// and the on-time rate; seconds from creation to dispatch, acceptance and
// resolution (median and 90th percentile, nearest rank, over the cases
// that reached the step); urges and escalations (latest counts); the
// follow-ups by satisfaction (every follow-up counts) and the satisfaction rate
// (satisfied + basically) / answered. Cases count under the category and
// region they were opened with and the department that has them now.
func (q *Questions) Performance(ctx context.Context, p PerformanceParams, scope string) (t Table, err error) {
	defer q.observe(qPerformance, time.Now(), &err)
	return q.performance(ctx, p, scope)
}

func (q *Questions) performance(ctx context.Context, p PerformanceParams, scope string) (Table, error) {
	p.Range = p.Range.whole()
	if err := p.Range.check(maxRange); err != nil {
		return Table{}, err
	}
	key, ok := perfBy[p.By]
	if !ok && p.By != "" {
		return Table{}, paramErr("by", "must be department, region or category, not %q", p.By)
	}
	if p.RegionDepth != 0 && (p.By != "region" || p.RegionDepth < 1 || p.RegionDepth > auth.MaxRegionDepth) {
		return Table{}, paramErr("region_depth", "applies with by=region, 1 to %d", auth.MaxRegionDepth)
	}
	scope, err := narrow(scope, p.Region)
	if err != nil {
		return Table{}, err
	}
	if p.By == "region" {
		key = q.d.region(key, p.RegionDepth)
	}
	cols := []string{"c_state", "c_created", "c_dispatched", "c_accepted", "c_resolved", "c_urges", "c_escalations",
		"c_on_time", "c_late", "c_satisfied", "c_basically", "c_dissatisfied"}
	if p.By != "" {
		cols = append(cols, perfBy[p.By])
	}
	view, args := q.cohort(p.Range, scope, cols)
	t := Table{Columns: append([]string{p.By}, PerformanceColumns...), Rows: [][]any{}}
	if p.By == "" {
		t.Columns[0] = "total"
	}
	// One pass over the cases: each counts under its key (t_ = 0) and in
	// the total (t_ = 1, last).
	rows, truncated, err := q.rows(ctx, q.perfSQL(key, view), args...)
	if err != nil {
		return Table{}, err
	}
	var total []any
	for _, r := range rows {
		if asInt(r[0]) == 1 {
			total = r[2:]
			continue
		}
		t.Rows = append(t.Rows, perfRow(asString(r[1]), r[2:]))
	}
	t.Truncated = truncated
	if total == nil {
		// No cases (the total is a row of zeros then), or the rows were
		// cut before the total: ask for it alone.
		rows, _, err := q.rows(ctx, q.perfSQL("", view), args...)
		if err != nil {
			return Table{}, err
		}
		if len(rows) == 1 {
			total = rows[0][2:]
		}
	}
	if total != nil {
		t.Rows = append(t.Rows, perfRow(TotalKey, total))
	}
	return t, nil
}

// perfSQL aggregates a caseView: columns t_ (0 for a key's row, 1 for the
// total), k_ and the aggregates; per key and a total row last, or the
// total row alone when key is "".
func (q *Questions) perfSQL(key, view string) string {
	d := q.d
	if key != "" && d.ch {
		return q.perfSQLMerged(key, view)
	}
	since := func(col string) (string, string) {
		return d.unix(col) + " - " + d.unix("c_created"), d.unix(col) + " > 0 AND " + d.unix("c_created") + " > 0"
	}
	var b sqlb
	if key == "" {
		b.f("SELECT 1 AS t_, '' AS k_, ")
	} else {
		b.f("SELECT t_, CASE WHEN t_ = 1 THEN '' ELSE %s END AS k_, ", key)
	}
	b.f("count() AS opened_, sum(CASE WHEN c_state = 'closed' THEN 1 ELSE 0 END) AS closed_, ")
	b.f("sum(c_on_time) AS on_time_, sum(c_late) AS late_")
	for _, col := range []string{"c_dispatched", "c_accepted", "c_resolved"} {
		x, cond := since(col)
		qs := d.quantiles(x, cond, 50, 90)
		b.f(", %s AS %s_p50, %s AS %s_p90", qs[0], col, qs[1], col)
	}
	b.f(", sum(c_urges) AS urges_, sum(c_escalations) AS escalations_")
	for _, s := range []string{"satisfied", "basically", "dissatisfied"} {
		b.f(", sum(c_%s) AS %s_", s, s)
	}
	b.f(" FROM (%s)", view)
	if key != "" {
		b.f("%s GROUP BY t_, k_ ORDER BY t_, k_", d.twice())
	}
	return b.String()
}

// perfSQLMerged is perfSQL per key on ClickHouse: the cases are
// aggregated once, per key, with the percentiles as states, and the total
// row merges the keys' rows (ARRAY JOIN doubles a dozen rows rather than
// every case).
func (q *Questions) perfSQLMerged(key, view string) string {
	d := q.d
	levels := chLevels(50, 90)
	var in, out sqlb
	in.f("SELECT %s AS k_, count() AS opened_, sum(CASE WHEN c_state = 'closed' THEN 1 ELSE 0 END) AS closed_, ", key)
	in.f("sum(c_on_time) AS on_time_, sum(c_late) AS late_")
	out.f("SELECT t_, CASE WHEN t_ = 1 THEN '' ELSE k_ END AS kk_, sum(opened_), sum(closed_), sum(on_time_), sum(late_)")
	for _, col := range []string{"c_dispatched", "c_accepted", "c_resolved"} {
		x := d.unix(col) + " - " + d.unix("c_created")
		cond := d.unix(col) + " > 0 AND " + d.unix("c_created") + " > 0"
		in.f(", countIf(%s) AS %s_n, quantilesExactIfState(%s)(%s, %s) AS %s_q", cond, col, levels, x, cond, col)
		for i := range 2 {
			out.f(", if(sum(%[1]s_n) = 0, NULL, arrayElement(quantilesExactIfMerge(%[2]s)(%[1]s_q), %[3]d))", col, levels, i+1)
		}
	}
	in.f(", sum(c_urges) AS urges_, sum(c_escalations) AS escalations_")
	out.f(", sum(urges_), sum(escalations_)")
	for _, s := range []string{"satisfied", "basically", "dissatisfied"} {
		in.f(", sum(c_%s) AS %s_", s, s)
		out.f(", sum(%s_)", s)
	}
	in.f(" FROM (%s) GROUP BY k_", view)
	out.f(" FROM (%s) ARRAY JOIN [0, 1] AS t_ GROUP BY t_, kk_ ORDER BY t_, kk_", in.String())
	return out.String()
}

// perfRow turns perfSQL's columns (after the key) into a table row.
func perfRow(key string, v []any) []any {
	opened, closed := asInt(v[0]), asInt(v[1])
	onTime, late := asInt(v[2]), asInt(v[3])
	sat, basic, dis := asInt(v[12]), asInt(v[13]), asInt(v[14])
	return []any{key, opened, opened - closed, closed, onTime, late, ratio(float64(onTime), float64(onTime+late)),
		intOrNil(v[4]), intOrNil(v[5]), intOrNil(v[6]), intOrNil(v[7]), intOrNil(v[8]), intOrNil(v[9]),
		asInt(v[10]), asInt(v[11]), sat, basic, dis, ratio(float64(sat+basic), float64(sat+basic+dis))}
}

// RulesParams asks how each alert rule's cases turned out.
type RulesParams struct {
	Range
	// Region narrows the scope.
	Region string
}

// Rules answers, per alert rule, for the cases it opened in the range
// within scope: cases, alerts (the cases' latest alert counts summed),
// alerts per case, cases whose latest outcome is "unsubstantiated" (false
// alerts) and the false rate; most cases first.
func (q *Questions) Rules(ctx context.Context, p RulesParams, scope string) (t Table, err error) {
	defer q.observe(qRules, time.Now(), &err)
	return q.rules(ctx, p, scope)
}

func (q *Questions) rules(ctx context.Context, p RulesParams, scope string) (Table, error) {
	p.Range = p.Range.whole()
	if err := p.Range.check(maxRange); err != nil {
		return Table{}, err
	}
	scope, err := narrow(scope, p.Region)
	if err != nil {
		return Table{}, err
	}
	view, args := q.cohort(p.Range, scope, []string{"c_rule", "c_alerts", "c_outcome"}, "rule != ''")
	query := fmt.Sprintf(`SELECT c_rule AS k_, count() AS cases_, sum(c_alerts) AS alerts_,
		sum(CASE WHEN c_outcome = 'unsubstantiated' THEN 1 ELSE 0 END) AS unsub_
		FROM (%s) GROUP BY k_ ORDER BY cases_ DESC, k_`, view)
	rows, truncated, err := q.rows(ctx, query, args...)
	if err != nil {
		return Table{}, err
	}
	t := Table{Columns: []string{"rule", "cases", "alerts", "alerts_per_case", "unsubstantiated", "false_rate"}, Rows: [][]any{}, Truncated: truncated}
	for _, r := range rows {
		n, alerts, unsub := asInt(r[1]), asInt(r[2]), asInt(r[3])
		t.Rows = append(t.Rows, []any{asString(r[0]), n, alerts, ratio(float64(alerts), float64(n)), unsub, ratio(float64(unsub), float64(n))})
	}
	return t, nil
}

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

// cohort selects the ids of the cases opened in rng within scope (their
// seq = 1 row), with extra conditions on that row.
func (q *Questions) cohort(rng Range, scope string, extra ...string) (string, []any) {
	var c conds
	c.add("seq = 1")
	c.add("time >= " + q.d.ts(rng.From))
	c.add("time < " + q.d.ts(rng.To))
	c.subtree(q.d, "region", scope)
	for _, e := range extra {
		c.add(e)
	}
	return "SELECT case_id FROM case_events" + c.where(), c.args
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
	ids, args := q.cohort(p.Range, scope)
	t := Table{Columns: append([]string{p.By}, PerformanceColumns...), Rows: [][]any{}}
	if p.By == "" {
		t.Columns[0] = "total"
	} else {
		rows, truncated, err := q.rows(ctx, q.perfSQL(key, ids), args...)
		if err != nil {
			return Table{}, err
		}
		t.Truncated = truncated
		for _, r := range rows {
			t.Rows = append(t.Rows, perfRow(asString(r[0]), r[1:]))
		}
	}
	rows, _, err := q.rows(ctx, q.perfSQL("", ids), args...)
	if err != nil {
		return Table{}, err
	}
	if len(rows) == 1 {
		t.Rows = append(t.Rows, perfRow(TotalKey, rows[0][1:]))
	}
	return t, nil
}

// perfSQL aggregates caseView per key ("" for one total row).
func (q *Questions) perfSQL(key, ids string) string {
	d := q.d
	k := "''"
	if key != "" {
		k = key
	}
	since := func(col string) (string, string) {
		return d.unix(col) + " - " + d.unix("c_created"), d.unix(col) + " > 0 AND " + d.unix("c_created") + " > 0"
	}
	var b sqlb
	b.f("SELECT %s AS k_, count() AS opened_, sum(CASE WHEN c_state = 'closed' THEN 1 ELSE 0 END) AS closed_, ", k)
	b.f("sum(c_on_time) AS on_time_, sum(c_late) AS late_")
	for _, col := range []string{"c_dispatched", "c_accepted", "c_resolved"} {
		x, cond := since(col)
		b.f(", %s AS %s_p50, %s AS %s_p90", d.quantile(x, cond, 50), col, d.quantile(x, cond, 90), col)
	}
	b.f(", sum(c_urges) AS urges_, sum(c_escalations) AS escalations_")
	for _, s := range []string{"satisfied", "basically", "dissatisfied"} {
		b.f(", sum(c_%s) AS %s_", s, s)
	}
	b.f(" FROM (%s)", d.caseView(ids))
	if key != "" {
		b.f(" GROUP BY k_ ORDER BY k_")
	}
	return b.String()
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
	ids, args := q.cohort(p.Range, scope, "rule != ''")
	query := fmt.Sprintf(`SELECT c_rule AS k_, count() AS cases_, sum(c_alerts) AS alerts_,
		sum(CASE WHEN c_outcome = 'unsubstantiated' THEN 1 ELSE 0 END) AS unsub_
		FROM (%s) GROUP BY k_ ORDER BY cases_ DESC, k_`, q.d.caseView(ids))
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

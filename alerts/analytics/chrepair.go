package analytics

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The hourly rollups on ClickHouse are filled by materialized views, which
// ClickHouse 18.16 writes after the table in the same INSERT, with no
// transaction around them: an insert that fails between the two leaves the
// rows in the table and not in the rollups, and its retry then skips them
// as already stored. So when a retried batch finds rows already stored,
// the store notes the hours of those rows (rollup_repairs), and once such
// an hour is over (repairSettle after its end, when no more of its events
// are expected but late ones) it compares each rollup of the hour with its
// raw rows and inserts the difference. An hour is done only once a check
// finds it whole: an event of the hour stored while its repair reads the
// table and the rollup (after the table, before the view) is counted
// twice, by the repair and by the view, and the next round's check (the
// sink repairs every repairEvery) takes that count back.

// repairSettle is how long after an hour's end its rollups are checked.
const repairSettle = 10 * time.Minute

// rollupRepairsDDL is migration 6.
var rollupRepairsDDL = []string{
	`CREATE TABLE IF NOT EXISTS rollup_repairs (
		source String,
		hour DateTime,
		noted DateTime,
		done UInt8,
		version UInt64
	) ENGINE = ReplacingMergeTree(version) ORDER BY (source, hour)`,
}

// summedRollup is an hourly rollup of a raw table, as its materialized view
// computes it.
type summedRollup struct {
	table   string // the summedRollup
	source  string // the raw table
	timeCol string // the raw table's time, whose hour the summedRollup keys by
	keys    []string
	sums    []rollupSum
	where   string // the view's filter, if any
}

// rollupSum is a summed column and its expression over the raw rows;
// float sums are compared with a tolerance.
type rollupSum struct {
	col, expr string
	float     bool
}

// chRollups are the summed rollups of migrations 1 and 3 (the others are
// idempotent: cases_opened and event_types keep one row per key whatever
// they are given, cases_flat is kept by the store itself).
var chRollups = []summedRollup{
	{table: "events_hourly", source: "events", timeCol: "time",
		keys: []string{"type", "region", "source_kind", "severity"},
		sums: []rollupSum{{col: "n", expr: "count()"}}},
	{table: "camera_events_hourly", source: "events", timeCol: "time",
		keys: []string{"camera", "type", "region"},
		sums: []rollupSum{{col: "n", expr: "count()"}}, where: "camera != ''"},
	{table: "cases_hourly", source: "case_events", timeCol: "time",
		keys: []string{"category", "colour", "region", "source"},
		sums: []rollupSum{{col: "opened", expr: "countIf(seq = 1)"}, {col: "closed", expr: "countIf(to_state = 'closed')"}}},
	{table: "camera_health_hourly", source: "camera_health", timeCol: "minute",
		keys: []string{"camera", "region", "grid", "vendor"},
		sums: []rollupSum{{col: "minutes", expr: "count()"},
			{col: "online_sum", expr: "sum(toFloat64(online_seconds))", float: true},
			{col: "window_sum", expr: "sum(toFloat64(window_seconds))", float: true},
			{col: "intact", expr: "countIf(online_seconds > 0 AND empty(faults))"}}},
}

// diff is the query of the rows that bring the rollup of hour in line with
// the raw rows: per key, the raw sums (each row once: FINAL) less the
// rollup's. Keys only the rollup has (rows counted twice before a merge
// removed one) are left as they are.
func (r summedRollup) diff(hour time.Time) string {
	keys := strings.Join(r.keys, ", ")
	var out, raw, roll, differs []string
	for _, s := range r.sums {
		out = append(out, fmt.Sprintf("raw_%s - roll_%s", s.col, s.col))
		raw = append(raw, fmt.Sprintf("%s AS raw_%s", s.expr, s.col))
		roll = append(roll, fmt.Sprintf("sum(%s) AS roll_%s", s.col, s.col))
		if s.float {
			differs = append(differs, fmt.Sprintf("abs(raw_%s - roll_%s) > 1e-6 * greatest(abs(raw_%s), 1)", s.col, s.col, s.col))
		} else {
			differs = append(differs, fmt.Sprintf("raw_%s != roll_%s", s.col, s.col))
		}
	}
	where := fmt.Sprintf("%s >= toDateTime(%d) AND %s < toDateTime(%d)", r.timeCol, hour.Unix(), r.timeCol, hour.Unix()+3600)
	if r.where != "" {
		where += " AND " + r.where
	}
	return fmt.Sprintf(`SELECT toDateTime(%d) AS hour, %s, %s FROM (
		SELECT %s, %s FROM %s FINAL WHERE %s GROUP BY %s
	) ANY LEFT JOIN (
		SELECT %s, %s FROM %s WHERE hour = toDateTime(%d) GROUP BY %s
	) USING (%s) WHERE %s`,
		hour.Unix(), keys, strings.Join(out, ", "),
		keys, strings.Join(raw, ", "), r.source, where, keys,
		keys, strings.Join(roll, ", "), r.table, hour.Unix(), keys,
		keys, strings.Join(differs, " OR "))
}

// columns is the rollup's column list for the INSERT of diff.
func (r summedRollup) columns() string {
	cols := append([]string{"hour"}, r.keys...)
	for _, s := range r.sums {
		cols = append(cols, s.col)
	}
	return strings.Join(cols, ", ")
}

// recordRepairs records that the rollups of these hours of source may
// miss rows (a retried batch found some of its rows stored), or, done,
// that they were checked.
func (s *CHStore) recordRepairs(ctx context.Context, source string, hours []time.Time, done bool) error {
	if len(hours) == 0 {
		return nil
	}
	now := time.Now()
	return s.send(ctx, "rollup_repairs", len(hours), func(b driver.Batch) error {
		for _, h := range hours {
			if err := b.Append(source, h, now, b2u(done), uint64(now.UnixNano())); err != nil {
				return err
			}
		}
		return nil
	})
}

// RepairRollups checks the rollups of the hours recordRepairs noted that
// ended repairSettle before now and inserts what brings them in line; an
// hour found whole is marked done. It returns the hours marked done and
// the rollup rows inserted.
func (s *CHStore) RepairRollups(ctx context.Context, now time.Time) (hours, corrected int, err error) {
	type due struct {
		source string
		hour   time.Time
	}
	var list []due
	rows, err := s.conn.Query(ctx, `SELECT source, hour FROM rollup_repairs FINAL WHERE done = 0 AND hour <= toDateTime(?) ORDER BY hour`,
		now.Add(-time.Hour-repairSettle).Unix())
	if err != nil {
		return 0, 0, fmt.Errorf("list rollup repairs: %w", err)
	}
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.source, &d.hour); err != nil {
			rows.Close()
			return 0, 0, err
		}
		list = append(list, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("list rollup repairs: %w", err)
	}
	for _, d := range list {
		whole := true
		for _, r := range chRollups {
			if r.source != d.source {
				continue
			}
			n, err := s.repairOnce(ctx, r, d.hour)
			if err != nil {
				return hours, corrected, err
			}
			corrected += n
			whole = whole && n == 0
		}
		if !whole {
			continue // checked again at the next round
		}
		if err := s.recordRepairs(ctx, d.source, []time.Time{d.hour}, true); err != nil {
			return hours, corrected, fmt.Errorf("mark rollup repair done: %w", err)
		}
		hours++
	}
	return hours, corrected, nil
}

// repairOnce inserts into rollup r the rows that bring its hour in line
// with the raw rows (negative ones where the rollup counted more), and
// says how many.
func (s *CHStore) repairOnce(ctx context.Context, r summedRollup, hour time.Time) (int, error) {
	q := r.diff(hour)
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM ("+q+")").Scan(&n); err != nil {
		return 0, fmt.Errorf("check %s at %s: %w", r.table, hour.UTC().Format(time.RFC3339), err)
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.conn.Exec(ctx, "INSERT INTO "+r.table+" ("+r.columns()+") "+q); err != nil {
		return 0, fmt.Errorf("repair %s at %s: %w", r.table, hour.UTC().Format(time.RFC3339), err)
	}
	s.log.Warn("analytics rollup repaired: an insert had stopped between the table and its views",
		"rollup", r.table, "hour", hour.UTC().Format(time.RFC3339), "rows", n)
	return int(n), nil
}

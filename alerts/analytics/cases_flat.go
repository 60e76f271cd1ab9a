package analytics

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"sharpeye/ingest/event"
)

// casesFlatDDL is ClickHouse's cases_flat: each case as SQLite's
// cases_current holds it (as opened, as it stands, what its history adds
// up to), in plain columns, so that the case questions read one row per
// case with no merging at query time.
//
// A materialized view sees only the rows it is given, never the case as
// stored, so the aggregate states of cases_current must be merged per case
// when read: about 0.1 s per 200,000 cases here, and more with each column,
// which put the 90-day case questions over 200 ms. cases_flat is kept by
// the store instead: after each insert of case events the cases they touch
// are brought in line with cases_current (syncCases), cancelling a case's
// live row and writing the new one in one block. It is a
// VersionedCollapsingMergeTree: a row and its cancel (sign -1, same
// version and row_id) disappear together when parts merge, and until then
// the live rows are those with sign 1 whose row_id no cancel names
// (dialect.caseView). A case has a row once its seq = 1 row is stored, as
// in SQLite (first_seq = 1). Partitioned by the creation day every row of
// a case carries (as cases_current: a sync finds a case's rows by it) and
// by the opening day (which the questions select by); the two are the
// same day for all but a few cases, so a day is one partition.
//
// The migration fills it from case_events (emptied first, so that a
// migration cut short is run again exactly); as for cases_current, the
// sinks of other nodes should be stopped while a node applies it.
var casesFlatDDL = []string{
	`CREATE TABLE IF NOT EXISTS cases_flat (
		case_id String,
		time {{dt}},
		category {{lc}},
		region {{lc}},
		source {{lc}},
		rule String,
		grid String,
		state {{lc}},
		colour {{lc}},
		department {{lc}},
		created DateTime,
		dispatched DateTime,
		accepted DateTime,
		resolved DateTime,
		urge_count UInt32,
		escalations UInt32,
		alert_count UInt32,
		satisfaction {{lc}},
		outcome {{lc}},
		on_time UInt64,
		late UInt64,
		satisfied UInt64,
		basically UInt64,
		dissatisfied UInt64,
		row_id UUID,
		version UInt32,
		sign Int8
	) ENGINE = VersionedCollapsingMergeTree(sign, version)
		PARTITION BY (toYYYYMMDD(created), toYYYYMMDD(time)) ORDER BY (time, case_id)`,
	`TRUNCATE TABLE cases_flat`,
	`INSERT INTO cases_flat SELECT case_id, argMin(time, seq), argMin(category, seq), argMin(region, seq), argMin(source, seq),
		argMin(rule, seq), argMin(grid, seq), argMax(state, seq), argMax(colour, seq), argMax(department, seq),
		argMax(created, seq), argMax(dispatched, seq), argMax(accepted, seq), argMax(resolved, seq),
		argMax(urge_count, seq), argMax(escalations, seq), argMax(alert_count, seq), argMax(satisfaction, seq), argMax(outcome, seq),
		sum(toUInt64(action = 'resolve' AND late = 0)), sum(toUInt64(action = 'resolve' AND late = 1)),
		sum(toUInt64(action = 'follow_up' AND satisfaction = 'satisfied')),
		sum(toUInt64(action = 'follow_up' AND satisfaction = 'basically')),
		sum(toUInt64(action = 'follow_up' AND satisfaction = 'dissatisfied')),
		generateUUIDv4(), toUInt32(1), toInt8(1)
		FROM case_events GROUP BY case_id HAVING min(seq) = 1`,
}

// flatOpened is a case as it was opened (its seq = 1 row).
type flatOpened struct {
	opened                               int64
	category, region, source, rule, grid string
}

// flatCase is one case's columns of cases_flat (times as Unix seconds, so
// that two are equal with ==).
type flatCase struct {
	id string
	flatOpened
	state, colour, department                     string
	created, dispatched, accepted, resolved       int64
	urges, escalations, alerts                    uint32
	satisfaction, outcome                         string
	onTime, late, satisfied, basically, dissatisf uint64
}

// flatRow is a row of cases_flat.
type flatRow struct {
	flatCase
	rowID   string
	version uint32
	sign    int8
}

// flatCols are cases_flat's columns up to dissatisfied, and scan their
// destinations in c (done turns the times into c's).
const flatCols = "case_id, time, category, region, source, rule, grid, state, colour, department, created, dispatched, accepted, resolved, " +
	"urge_count, escalations, alert_count, satisfaction, outcome, on_time, late, satisfied, basically, dissatisfied"

func (c *flatCase) scan() (dest []any, done func()) {
	var opened, created, dispatched, accepted, resolved time.Time
	dest = []any{&c.id, &opened, &c.category, &c.region, &c.source, &c.rule, &c.grid,
		&c.state, &c.colour, &c.department, &created, &dispatched, &accepted, &resolved,
		&c.urges, &c.escalations, &c.alerts, &c.satisfaction, &c.outcome,
		&c.onTime, &c.late, &c.satisfied, &c.basically, &c.dissatisf}
	return dest, func() {
		c.opened, c.created, c.dispatched, c.accepted, c.resolved = opened.Unix(), created.Unix(), dispatched.Unix(), accepted.Unix(), resolved.Unix()
	}
}

func (r *flatRow) values() []any {
	t := func(s int64) time.Time { return time.Unix(s, 0).UTC() }
	c := &r.flatCase
	return []any{c.id, t(c.opened), c.category, c.region, c.source, c.rule, c.grid,
		c.state, c.colour, c.department, t(c.created), t(c.dispatched), t(c.accepted), t(c.resolved),
		c.urges, c.escalations, c.alerts, c.satisfaction, c.outcome,
		c.onTime, c.late, c.satisfied, c.basically, c.dissatisf, r.rowID, r.version, r.sign}
}

// syncCases brings cases_flat in line for the cases of rows (a batch's
// case events, those skipped as stored included, so that a retry after a
// sync that failed completes it): each such case whose seq = 1 row is
// stored ends with exactly one live row, the case as cases_current keeps
// it with its opening fields. It writes nothing for a case already in
// line, so it may run any number of times. Two syncs of one case must not
// run at once; the bus keys case changes by case, so one sink writes a
// case at a time.
//
// A case's rows are looked up by its creation day (the partition of
// cases_current and cases_flat), its opening fields taken from its row in
// cases_flat, else from its seq = 1 row in the batch, else (a row missing
// from cases_flat) from cases_opened.
func (s *CHStore) syncCases(ctx context.Context, rows []CaseRow) error {
	created := map[string]int64{}
	opened := map[string]flatOpened{}
	for i := range rows {
		r := &rows[i]
		created[r.CaseID] = epoch(r.Created).Unix()
		if r.Seq == 1 {
			opened[r.CaseID] = flatOpened{r.Time.Unix(), r.Category, r.Region, r.Source, r.Rule, r.Grid}
		}
	}
	ids := make([]string, 0, len(created))
	for id := range created {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Sink.InsertTimeout.D())
	defer cancel()
	var out []flatRow
	for start := 0; start < len(ids); start += idChunk {
		part := ids[start:min(start+idChunk, len(ids))]
		lo, hi := created[part[0]], created[part[0]]
		for _, id := range part {
			lo, hi = min(lo, created[id]), max(hi, created[id])
		}
		where := fmt.Sprintf(" WHERE created >= toDateTime(%d) AND created <= toDateTime(%d) AND case_id IN (%s)", lo, hi, idList(part))
		have, err := s.flatStored(ctx, where)
		if err != nil {
			return err
		}
		now, err := s.flatCurrent(ctx, where)
		if err != nil {
			return err
		}
		var missing []string
		for _, id := range part {
			if _, ok := opened[id]; ok {
				continue
			}
			if rs := have[id]; len(rs) > 0 {
				opened[id] = rs[0].flatOpened
			} else {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			if err := s.flatOpenedStored(ctx, missing, opened); err != nil {
				return err
			}
		}
		for _, id := range part {
			c, ok := now[id]
			o, isOpen := opened[id]
			if !ok || !isOpen {
				continue // seq 1 not stored yet: the case is not counted
			}
			c.flatOpened = o
			out = append(out, flatChanges(c, have[id])...)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return s.send(ctx, "cases_flat", len(out), func(b driver.Batch) error {
		for i := range out {
			if err := b.Append(out[i].values()...); err != nil {
				return err
			}
		}
		return nil
	})
}

// flatChanges are the rows that make rows (a case's rows in cases_flat)
// hold want as its one live row: a cancel of each live row and want,
// unless want is the live row already.
func flatChanges(want flatCase, rows []flatRow) []flatRow {
	cancelled := map[string]bool{}
	var version uint32
	for _, r := range rows {
		if r.sign < 0 {
			cancelled[r.rowID] = true
		}
		version = max(version, r.version)
	}
	var live []flatRow
	for _, r := range rows {
		if r.sign > 0 && !cancelled[r.rowID] {
			live = append(live, r)
		}
	}
	if len(live) == 1 && live[0].flatCase == want {
		return nil
	}
	out := make([]flatRow, 0, len(live)+1)
	for _, r := range live {
		r.sign = -1
		out = append(out, r)
	}
	return append(out, flatRow{flatCase: want, rowID: event.NewID().String(), version: version + 1, sign: 1})
}

// idList is ids as a list of ClickHouse string literals.
func idList(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = quote(id)
	}
	return strings.Join(q, ",")
}

// bigQuery lets a query of n bytes through the server's max_query_size.
func bigQuery(ctx context.Context, n int) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_query_size": n + 1024}))
}

// flatStored is the rows of cases_flat where selects, by case.
func (s *CHStore) flatStored(ctx context.Context, where string) (map[string][]flatRow, error) {
	q := "SELECT toString(row_id), version, sign, " + flatCols + " FROM cases_flat" + where
	rows, err := s.conn.Query(bigQuery(ctx, len(q)), q)
	if err != nil {
		return nil, fmt.Errorf("read cases_flat: %w", err)
	}
	defer rows.Close()
	out := map[string][]flatRow{}
	for rows.Next() {
		var r flatRow
		dest, done := r.scan()
		if err := rows.Scan(append([]any{&r.rowID, &r.version, &r.sign}, dest...)...); err != nil {
			return nil, fmt.Errorf("read cases_flat: %w", err)
		}
		done()
		out[r.id] = append(out[r.id], r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cases_flat: %w", err)
	}
	return out, nil
}

// flatCurrent is the cases of cases_current where selects as they stand
// (no opening fields), by case.
func (s *CHStore) flatCurrent(ctx context.Context, where string) (map[string]flatCase, error) {
	q := "SELECT case_id, argMaxMerge(s_state), argMaxMerge(s_colour), argMaxMerge(s_department), argMaxMerge(s_created), " +
		"argMaxMerge(s_dispatched), argMaxMerge(s_accepted), argMaxMerge(s_resolved), argMaxMerge(s_urges), argMaxMerge(s_escalations), " +
		"argMaxMerge(s_alerts), argMaxMerge(s_satisfaction), argMaxMerge(s_outcome), sumMerge(n_on_time), sumMerge(n_late), " +
		"sumMerge(n_satisfied), sumMerge(n_basically), sumMerge(n_dissatisfied) FROM cases_current" + where + " GROUP BY case_id"
	rows, err := s.conn.Query(bigQuery(ctx, len(q)), q)
	if err != nil {
		return nil, fmt.Errorf("read cases_current: %w", err)
	}
	defer rows.Close()
	out := map[string]flatCase{}
	for rows.Next() {
		var c flatCase
		var created, dispatched, accepted, resolved time.Time
		if err := rows.Scan(&c.id, &c.state, &c.colour, &c.department, &created, &dispatched, &accepted, &resolved,
			&c.urges, &c.escalations, &c.alerts, &c.satisfaction, &c.outcome,
			&c.onTime, &c.late, &c.satisfied, &c.basically, &c.dissatisf); err != nil {
			return nil, fmt.Errorf("read cases_current: %w", err)
		}
		c.created, c.dispatched, c.accepted, c.resolved = created.Unix(), dispatched.Unix(), accepted.Unix(), resolved.Unix()
		out[c.id] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cases_current: %w", err)
	}
	return out, nil
}

// flatOpenedStored adds to opened the opening fields of those of ids
// whose seq = 1 row cases_opened holds (it is ordered by the opening
// time, not known here, so this reads every case id it holds: the
// exception, for a case whose row is missing from cases_flat).
func (s *CHStore) flatOpenedStored(ctx context.Context, ids []string, opened map[string]flatOpened) error {
	q := "SELECT case_id, time, category, region, source, rule, grid FROM cases_opened WHERE case_id IN (" + idList(ids) + ")"
	rows, err := s.conn.Query(bigQuery(ctx, len(q)), q)
	if err != nil {
		return fmt.Errorf("read cases_opened: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var at time.Time
		var o flatOpened
		if err := rows.Scan(&id, &at, &o.category, &o.region, &o.source, &o.rule, &o.grid); err != nil {
			return fmt.Errorf("read cases_opened: %w", err)
		}
		o.opened = at.Unix()
		opened[id] = o
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read cases_opened: %w", err)
	}
	return nil
}

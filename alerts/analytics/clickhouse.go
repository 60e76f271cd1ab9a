package analytics

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// CHStore is the ClickHouse store: batches go in over the native protocol
// (clickhouse-go's column batches), queries through database/sql.
type CHStore struct {
	cfg     Config
	conn    driver.Conn
	db      *sql.DB
	ro      *sql.DB
	log     *slog.Logger
	version serverVersion
	feat    features
	closed  sync.Once
	err     error
}

// OpenClickHouse connects, creates the database when missing and applies
// the migrations.
func OpenClickHouse(ctx context.Context, cfg Config, log *slog.Logger) (*CHStore, error) {
	c := cfg.ClickHouse
	// The database may not exist yet: create it over a connection to "default".
	boot, err := clickhouse.Open(c.options(c.Username, c.Password.Reveal(), "default", cfg.Sink.InsertTimeout.D()))
	if err != nil {
		return nil, fmt.Errorf("analytics: clickhouse: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, c.DialTimeout.D()+time.Second)
	err = boot.Ping(pctx)
	if err == nil {
		err = boot.Exec(pctx, "CREATE DATABASE IF NOT EXISTS "+c.Database)
	}
	cancel()
	boot.Close()
	if err != nil {
		return nil, fmt.Errorf("analytics: connect to clickhouse at %s: %w", strings.Join(c.Addr, ","), err)
	}
	s := &CHStore{cfg: cfg, log: log}
	if s.conn, err = clickhouse.Open(c.options(c.Username, c.Password.Reveal(), c.Database, cfg.Sink.InsertTimeout.D())); err != nil {
		return nil, fmt.Errorf("analytics: clickhouse: %w", err)
	}
	s.db = c.openDB(c.Username, c.Password.Reveal(), cfg.Query.Timeout.D())
	if c.SQLUsername != "" {
		s.ro = c.openDB(c.SQLUsername, c.SQLPassword.Reveal(), cfg.Query.Timeout.D())
	}
	v, err := s.serverVersion(ctx)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.version, s.feat = v, featuresOf(v)
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.applyTTL(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (c ClickHouseConfig) options(user, password, database string, readTimeout time.Duration) *clickhouse.Options {
	return &clickhouse.Options{
		Addr:             c.Addr,
		Auth:             clickhouse.Auth{Database: database, Username: user, Password: password},
		DialTimeout:      c.DialTimeout.D(),
		ReadTimeout:      readTimeout + 5*time.Second,
		MaxOpenConns:     c.MaxOpen,
		MaxIdleConns:     min(c.MaxOpen, 4),
		ConnMaxLifetime:  time.Hour,
		Compression:      &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
	}
}

// openDB opens a database/sql pool (clickhouse-go refuses pool settings in
// its options there: they are set on the pool).
func (c ClickHouseConfig) openDB(user, password string, readTimeout time.Duration) *sql.DB {
	o := c.options(user, password, c.Database, readTimeout)
	o.MaxOpenConns, o.MaxIdleConns, o.ConnMaxLifetime = 0, 0, 0
	db := clickhouse.OpenDB(o)
	db.SetMaxOpenConns(c.MaxOpen)
	db.SetMaxIdleConns(min(c.MaxOpen, 4))
	db.SetConnMaxLifetime(time.Hour)
	return db
}

// Driver implements Store.
func (s *CHStore) Driver() string { return ClickHouse }

// DB implements Store.
func (s *CHStore) DB() *sql.DB { return s.db }

// ReadOnly implements Store.
func (s *CHStore) ReadOnly() *sql.DB { return s.ro }

// Version is the server's version, such as "18.16.1".
func (s *CHStore) Version() string { return s.version.String() }

// Close implements Store.
func (s *CHStore) Close() error {
	s.closed.Do(func() {
		var errs []error
		if s.conn != nil {
			errs = append(errs, s.conn.Close())
		}
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
		if s.ro != nil {
			errs = append(errs, s.ro.Close())
		}
		s.err = errors.Join(errs...)
	})
	return s.err
}

// Insert implements Store: one column batch per table, then cases_flat
// brought in line for the cases the batch touches.
func (s *CHStore) Insert(ctx context.Context, b *Batch, check bool) (Inserted, error) {
	var n Inserted
	// The case events before stored ones are dropped: a retry after a
	// failed sync of cases_flat must sync their cases all the same.
	touched := b.Cases
	if check {
		var err error
		if b, n.Skipped, err = s.dropStored(ctx, b); err != nil {
			return n, err
		}
	}
	if len(b.Events) > 0 {
		if err := s.insertEvents(ctx, b.Events); err != nil {
			return n, err
		}
		n.Events = len(b.Events)
	}
	if len(b.Cases) > 0 {
		if err := s.insertCases(ctx, b.Cases); err != nil {
			return n, err
		}
		n.Cases = len(b.Cases)
	}
	if len(touched) > 0 {
		if err := s.syncCases(ctx, touched); err != nil {
			return n, fmt.Errorf("sync cases_flat: %w", err)
		}
	}
	if len(b.Health) > 0 {
		if err := s.insertHealth(ctx, b.Health); err != nil {
			return n, err
		}
		n.Health = len(b.Health)
	}
	return n, nil
}

// dropStored returns b without the rows whose ids the store already holds
// (and duplicates within b), looking only in the partitions the batch's
// times fall in. The hours of the rows found stored are noted for repair
// (see RepairRollups): the insert that stored them may have stopped before
// their rollups.
func (s *CHStore) dropStored(ctx context.Context, b *Batch) (*Batch, int, error) {
	var out Batch
	var err error
	if out.Events, err = keepNew(ctx, s, "events", "time", b.Events, func(r EventRow) (string, time.Time) { return r.ID, r.Time }); err != nil {
		return nil, 0, err
	}
	if out.Cases, err = keepNew(ctx, s, "case_events", "time", b.Cases, func(r CaseRow) (string, time.Time) { return r.ID, r.Time }); err != nil {
		return nil, 0, err
	}
	if out.Health, err = keepNew(ctx, s, "camera_health", "minute", b.Health, func(r HealthRow) (string, time.Time) { return r.ID, r.Minute }); err != nil {
		return nil, 0, err
	}
	return &out, b.Len() - out.Len(), nil
}

// idChunk bounds the ids of one lookup query (the query's text must stay
// under the server's max_query_size, raised per query below).
const idChunk = 5000

// keepNew returns the rows whose ids tbl does not hold, and notes the
// hours of those it does for repair.
func keepNew[R any](ctx context.Context, s *CHStore, tbl, timeCol string, rows []R, key func(R) (string, time.Time)) ([]R, error) {
	if len(rows) == 0 {
		return rows, nil
	}
	stored := map[string]bool{}
	for start := 0; start < len(rows); start += idChunk {
		part := rows[start:min(start+idChunk, len(rows))]
		var sb strings.Builder
		lo, hi := time.Time{}, time.Time{}
		for i, r := range part {
			id, t := key(r)
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(quote(id))
			if lo.IsZero() || t.Before(lo) {
				lo = t
			}
			if t.After(hi) {
				hi = t
			}
		}
		q := fmt.Sprintf("SELECT id FROM %s WHERE %s >= toDateTime(%d) AND %s <= toDateTime(%d) AND id IN (%s)",
			tbl, timeCol, lo.Unix(), timeCol, hi.Unix()+1, sb.String())
		res, err := s.conn.Query(bigQuery(ctx, len(q)), q)
		if err != nil {
			return nil, fmt.Errorf("look up stored %s: %w", tbl, err)
		}
		for res.Next() {
			var id string
			if err := res.Scan(&id); err != nil {
				res.Close()
				return nil, err
			}
			stored[id] = true
		}
		err = res.Err()
		res.Close()
		if err != nil {
			return nil, fmt.Errorf("look up stored %s: %w", tbl, err)
		}
	}
	hours := map[time.Time]bool{}
	// A new slice: the caller's batch stays whole for a retry.
	out := make([]R, 0, len(rows))
	for _, r := range rows {
		id, t := key(r)
		if stored[id] {
			hours[t.UTC().Truncate(time.Hour)] = true
			continue
		}
		stored[id] = true // a duplicate within the batch
		out = append(out, r)
	}
	if err := s.recordRepairs(ctx, tbl, slices.Collect(maps.Keys(hours)), false); err != nil {
		return nil, err
	}
	return out, nil
}

// quote writes s as a ClickHouse string literal.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

func (s *CHStore) send(ctx context.Context, tbl string, n int, fill func(driver.Batch) error) error {
	ictx, cancel := context.WithTimeout(ctx, s.cfg.Sink.InsertTimeout.D())
	defer cancel()
	batch, err := s.conn.PrepareBatch(ictx, "INSERT INTO "+tbl)
	if err != nil {
		return fmt.Errorf("insert into %s: %w", tbl, err)
	}
	if err := fill(batch); err != nil {
		batch.Abort()
		return fmt.Errorf("insert into %s: %w", tbl, err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s: %w", n, tbl, err)
	}
	return nil
}

func bools(b []bool) []uint8 {
	out := make([]uint8, len(b))
	for i, v := range b {
		if v {
			out[i] = 1
		}
	}
	return out
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func nz[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// insertEvents sends rows column by column: clickhouse-go's Append by row
// boxes each of a row's 32 values in an interface (an allocation for each
// string) and converts it back by reflection, which was a fifth of the
// sink's CPU per event.
func (s *CHStore) insertEvents(ctx context.Context, rows []EventRow) error {
	return s.send(ctx, "events", len(rows), func(b driver.Batch) error {
		cols := []func(driver.BatchColumn) error{
			column(rows, func(r *EventRow) string { return r.ID }),
			column(rows, func(r *EventRow) time.Time { return r.Time }),
			column(rows, func(r *EventRow) uint16 { return uint16(r.Time.Nanosecond() / 1e6) }),
			column(rows, func(r *EventRow) time.Time { return r.Received }),
			column(rows, func(r *EventRow) uint8 { return uint8(r.Schema) }),
			column(rows, func(r *EventRow) string { return r.Type }),
			column(rows, func(r *EventRow) string { return r.Severity }),
			column(rows, func(r *EventRow) string { return r.SourceKind }),
			column(rows, func(r *EventRow) string { return r.SourceID }),
			column(rows, func(r *EventRow) string { return r.SourceName }),
			column(rows, func(r *EventRow) string { return r.Region }),
			column(rows, func(r *EventRow) string { return r.Grid }),
			column(rows, func(r *EventRow) uint8 { return b2u(r.HasLocation) }),
			column(rows, func(r *EventRow) float64 { return r.Lat }),
			column(rows, func(r *EventRow) float64 { return r.Lon }),
			column(rows, func(r *EventRow) string { return r.Camera }),
			column(rows, func(r *EventRow) string { return r.DeviceKind }),
			arrays(rows, func(r *EventRow) []string { return r.StrKeys }),
			arrays(rows, func(r *EventRow) []string { return r.StrValues }),
			arrays(rows, func(r *EventRow) []string { return r.NumKeys }),
			arrays(rows, func(r *EventRow) []float64 { return r.NumValues }),
			arrays(rows, func(r *EventRow) []string { return r.BoolKeys }),
			arrays(rows, func(r *EventRow) []uint8 { return bools(r.BoolValues) }),
			arrays(rows, func(r *EventRow) []string { return r.Tags }),
			arrays(rows, func(r *EventRow) []string { return r.EvKinds }),
			arrays(rows, func(r *EventRow) []string { return r.EvRefs }),
			arrays(rows, func(r *EventRow) []string { return r.EvTypes }),
			arrays(rows, func(r *EventRow) []string { return r.EvSHA256 }),
			arrays(rows, func(r *EventRow) []int64 { return r.EvTimes }),
			column(rows, func(r *EventRow) string { return r.Key }),
			column(rows, func(r *EventRow) uint32 { return uint32(r.Partition) }),
			column(rows, func(r *EventRow) uint64 { return uint64(max(r.Offset, 0)) }),
		}
		for i, c := range cols {
			if err := c(b.Column(i)); err != nil {
				return fmt.Errorf("column %d: %w", i, err)
			}
		}
		return nil
	})
}

// column appends one column of rows at once (clickhouse-go takes a slice
// of a scalar type without reflection).
func column[R, T any](rows []R, f func(*R) T) func(driver.BatchColumn) error {
	return func(c driver.BatchColumn) error {
		out := make([]T, len(rows))
		for i := range rows {
			out[i] = f(&rows[i])
		}
		return c.Append(out)
	}
}

// arrays appends an array column row by row: clickhouse-go appends a
// row's typed slice without reflection, but a slice of them through
// reflection, element by element.
func arrays[R, T any](rows []R, f func(*R) []T) func(driver.BatchColumn) error {
	return func(c driver.BatchColumn) error {
		for i := range rows {
			if err := c.AppendRow(nz(f(&rows[i]))); err != nil {
				return err
			}
		}
		return nil
	}
}

// epoch writes a zero time as the Unix epoch (ClickHouse's zero DateTime).
func epoch(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return t
}

func (s *CHStore) insertCases(ctx context.Context, rows []CaseRow) error {
	return s.send(ctx, "case_events", len(rows), func(b driver.Batch) error {
		for i := range rows {
			r := &rows[i]
			err := b.Append(r.ID, r.CaseID, r.Number, uint32(r.Seq), r.Time, uint16(r.Time.Nanosecond()/1e6), r.Action, r.FromState, r.ToState, r.State,
				r.Actor, r.ActorRole, r.Category, r.Colour, uint8(min(max(r.Risk, 0), 255)), r.Source, r.Rule, r.Region, r.Grid, r.Level,
				r.Department, nz(r.CoDepartments), uint32(r.AlertCount), uint32(r.UrgeCount), uint32(r.Escalations), r.Satisfaction, r.Outcome, r.MergedInto,
				epoch(r.Created), epoch(r.Dispatched), epoch(r.Accepted), epoch(r.Resolved), epoch(r.Closed), epoch(r.Deadline), epoch(r.Due),
				b2u(r.Late), uint64(max(r.Version, 0)), uint32(r.Partition), uint64(max(r.Offset, 0)))
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *CHStore) insertHealth(ctx context.Context, rows []HealthRow) error {
	return s.send(ctx, "camera_health", len(rows), func(b driver.Batch) error {
		for i := range rows {
			r := &rows[i]
			err := b.Append(r.ID, r.Camera, r.Minute, r.Region, r.Grid, r.Vendor, float32(r.WindowSeconds), float32(r.OnlineSeconds),
				float32(r.BitrateKbps), float32(r.FPS), uint32(r.Packets), uint32(r.PacketsLost), nz(r.Faults), r.State, r.EventID,
				uint32(r.Partition), uint64(max(r.Offset, 0)))
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Expire implements Store. Where the server has TTL the tables expire by
// themselves (applyTTL); otherwise whole days are dropped here.
func (s *CHStore) Expire(ctx context.Context, now time.Time) error {
	if s.feat.TTL {
		return nil
	}
	parts, err := s.dayPartitions(ctx)
	if err != nil {
		return err
	}
	var errs []error
	chTables := tablesOf(ClickHouse)
	for _, p := range parts {
		i := slices.IndexFunc(chTables, func(t table) bool { return t.name == p.table })
		if i < 0 {
			continue
		}
		days := chTables[i].days(s.cfg.Retention)
		if days == 0 {
			continue
		}
		// A day's partition goes once its last second is older than the retention.
		if p.day.Add(24 * time.Hour).After(now.AddDate(0, 0, -days)) {
			continue
		}
		if err := s.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP PARTITION %s", p.table, p.partition)); err != nil {
			errs = append(errs, fmt.Errorf("drop %s partition %s: %w", p.table, p.partition, err))
			continue
		}
		s.log.Info("analytics partition dropped (retention)", "table", p.table, "partition", p.partition, "retention_days", days)
	}
	return errors.Join(errs...)
}

// dayPartition is one active partition by day of the store's tables.
type dayPartition struct {
	table, partition string
	day              time.Time // its last day (partitionDay)
	parts            int       // active parts in it
}

// dayPartitions lists the store's active partitions by day, oldest
// first (tables not partitioned by day are left out).
func (s *CHStore) dayPartitions(ctx context.Context) ([]dayPartition, error) {
	rows, err := s.conn.Query(ctx, `SELECT table, partition, count() FROM system.parts
		WHERE database = ? AND active GROUP BY table, partition`, s.cfg.ClickHouse.Database)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	defer rows.Close()
	var out []dayPartition
	for rows.Next() {
		var p dayPartition
		var n uint64
		if err := rows.Scan(&p.table, &p.partition, &n); err != nil {
			return nil, err
		}
		var ok bool
		if p.day, ok = partitionDay(p.partition); ok {
			p.parts = int(n)
			out = append(out, p)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b dayPartition) int { return a.day.Compare(b.day) })
	return out, nil
}

// Compact merges each settled day's partition that holds more than one
// part into one (OPTIMIZE ... FINAL), oldest first, until budget has been
// spent (0: no bound; one at least is merged); it reports how many it
// merged and whether any were left. A day is settled once it has been
// over for a day (two days after its start, whatever the time zone).
//
// ClickHouse's own merges leave two or three parts in most partitions of
// a table partitioned by day, and each part read adds a fixed cost to a
// question: over 90 days the case performance question read 229 parts of
// cases_flat and took 157-186 ms, with one part a day 119-122 ms (bench
// analytics query, 2 cores).
// The merge also applies what FINAL means for each engine, as the
// server's merges would in time: duplicate events go (ReplacingMergeTree),
// rollup rows are summed, a case's cancelled rows collapse. Late rows for
// a settled day make a new part, merged again next time.
func (s *CHStore) Compact(ctx context.Context, now time.Time, budget time.Duration) (merged int, more bool, err error) {
	all, err := s.dayPartitions(ctx)
	if err != nil {
		return 0, false, err
	}
	settled := now.UTC().AddDate(0, 0, -2)
	var parts []dayPartition
	for _, p := range all {
		if p.parts > 1 && p.day.Before(settled) {
			parts = append(parts, p)
		}
	}
	start := time.Now()
	for _, p := range parts {
		if err := s.conn.Exec(ctx, fmt.Sprintf("OPTIMIZE TABLE %s PARTITION %s FINAL", p.table, p.partition)); err != nil {
			return merged, true, fmt.Errorf("merge %s partition %s: %w", p.table, p.partition, err)
		}
		merged++
		if budget > 0 && time.Since(start) > budget && merged < len(parts) {
			return merged, true, nil
		}
	}
	return merged, false, nil
}

// partitionDay is the day of a partition by day (20261121), or the last
// day of one by days ((20261120,20261121): cases_flat's creation and
// opening days).
func partitionDay(p string) (time.Time, bool) {
	var last time.Time
	for d := range strings.SplitSeq(strings.Trim(p, "()"), ",") {
		day, err := time.Parse("20060102", strings.TrimSpace(d))
		if err != nil {
			return time.Time{}, false
		}
		if day.After(last) {
			last = day
		}
	}
	return last, true
}

// applyTTL sets each table's TTL where the server has TTL (19.6 and later).
func (s *CHStore) applyTTL(ctx context.Context) error {
	if !s.feat.TTL {
		return nil
	}
	for _, t := range tablesOf(ClickHouse) {
		days := t.days(s.cfg.Retention)
		var q string
		if days == 0 {
			q = fmt.Sprintf("ALTER TABLE %s REMOVE TTL", t.name)
		} else {
			q = fmt.Sprintf("ALTER TABLE %s MODIFY TTL %s + INTERVAL %d DAY", t.name, t.timeCol, days)
		}
		if err := s.conn.Exec(ctx, q); err != nil && days != 0 {
			return fmt.Errorf("analytics: set TTL of %s: %w", t.name, err)
		}
	}
	return nil
}

// serverVersion is a ClickHouse release, such as 18.16.1.
type serverVersion struct{ major, minor, patch int }

func (v serverVersion) String() string {
	return fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch)
}

func (v serverVersion) atLeast(major, minor int) bool {
	return v.major > major || v.major == major && v.minor >= minor
}

func parseVersion(s string) (serverVersion, error) {
	var v serverVersion
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 2 {
		return v, fmt.Errorf("server version %q is not major.minor[.patch...]", s)
	}
	nums := []*int{&v.major, &v.minor, &v.patch}
	for i := 0; i < len(parts) && i < 3; i++ {
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return v, fmt.Errorf("server version %q: %w", s, err)
		}
		*nums[i] = n
	}
	return v, nil
}

func (s *CHStore) serverVersion(ctx context.Context) (serverVersion, error) {
	var text string
	if err := s.conn.QueryRow(ctx, "SELECT version()").Scan(&text); err != nil {
		return serverVersion{}, fmt.Errorf("analytics: clickhouse version: %w", err)
	}
	return parseVersion(text)
}

// features are what the schema uses beyond ClickHouse 18.16 when the
// server has them.
type features struct {
	// TTL expires rows by itself (19.6).
	TTL bool
	// LowCardinality is production-ready (19.3); 18.16 has it only as an
	// experiment.
	LowCardinality bool
	// Codecs compress time columns by their deltas (19.11).
	Codecs bool
}

func featuresOf(v serverVersion) features {
	return features{TTL: v.atLeast(19, 6), LowCardinality: v.atLeast(19, 3), Codecs: v.atLeast(19, 11)}
}

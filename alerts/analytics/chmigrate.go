package analytics

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// chMigration is one version of the ClickHouse schema. Its statements are
// templates over the server's features, so that a newer server gets
// LowCardinality columns and codecs while 18.16 gets plain ones; each is
// idempotent (IF NOT EXISTS), so a migration cut short is run again whole.
//
// goose is not used here: its ClickHouse dialect records versions with
// INSERT ... VALUES through database/sql, which hangs against 18.16.
type chMigration struct {
	version int
	name    string
	stmts   []string
	// run, when set, follows stmts: a step SQL alone cannot make
	// idempotent on 18.16 (it has no ADD COLUMN IF NOT EXISTS).
	run func(ctx context.Context, s *CHStore, conn driver.Conn) error
}

var chMigrations = []chMigration{
	{1, "events, case_events, camera_health and their hourly rollups", []string{
		`CREATE TABLE IF NOT EXISTS events (
			id String,
			time {{dt}},
			ms UInt16,
			received {{dt}},
			schema UInt8,
			type {{lc}},
			severity {{lc}},
			source_kind {{lc}},
			source_id String,
			source_name String,
			region {{lc}},
			grid String,
			has_location UInt8,
			lat Float64,
			lon Float64,
			camera String,
			device_kind {{lc}},
			str_keys Array(String),
			str_values Array(String),
			num_keys Array(String),
			num_values Array(Float64),
			bool_keys Array(String),
			bool_values Array(UInt8),
			tags Array(String),
			evidence_kinds Array(String),
			evidence_refs Array(String),
			evidence_types Array(String),
			evidence_sha256 Array(String),
			evidence_times Array(Int64),
			key String,
			bus_partition UInt32,
			bus_offset UInt64
		) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMMDD(time) ORDER BY (toStartOfHour(time), type, source_id, id)`,

		`CREATE TABLE IF NOT EXISTS case_events (
			id String,
			case_id String,
			number String,
			seq UInt32,
			time {{dt}},
			ms UInt16,
			action {{lc}},
			from_state {{lc}},
			to_state {{lc}},
			state {{lc}},
			actor String,
			actor_role {{lc}},
			category {{lc}},
			colour {{lc}},
			risk UInt8,
			source {{lc}},
			rule String,
			region {{lc}},
			grid String,
			level {{lc}},
			department {{lc}},
			co_departments Array(String),
			alert_count UInt32,
			urge_count UInt32,
			escalations UInt32,
			satisfaction {{lc}},
			outcome {{lc}},
			merged_into String,
			created DateTime,
			dispatched DateTime,
			accepted DateTime,
			resolved DateTime,
			closed DateTime,
			deadline DateTime,
			due DateTime,
			late UInt8,
			version UInt64,
			bus_partition UInt32,
			bus_offset UInt64
		) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMMDD(time) ORDER BY (case_id, seq, id)`,

		`CREATE TABLE IF NOT EXISTS camera_health (
			id String,
			camera String,
			minute {{dt}},
			region {{lc}},
			grid String,
			vendor {{lc}},
			window_seconds Float32,
			online_seconds Float32,
			bitrate_kbps Float32,
			fps Float32,
			packets UInt32,
			packets_lost UInt32,
			faults Array(String),
			state {{lc}},
			event_id String,
			bus_partition UInt32,
			bus_offset UInt64
		) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMMDD(minute) ORDER BY (camera, minute, id)`,

		`CREATE TABLE IF NOT EXISTS events_hourly (
			hour DateTime,
			type {{lc}},
			region {{lc}},
			source_kind {{lc}},
			severity {{lc}},
			n UInt64
		) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (hour, type, region, source_kind, severity)`,

		`CREATE MATERIALIZED VIEW IF NOT EXISTS events_hourly_mv TO events_hourly AS
			SELECT toStartOfHour(time) AS hour, type, region, source_kind, severity, count() AS n
			FROM events GROUP BY hour, type, region, source_kind, severity`,

		`CREATE TABLE IF NOT EXISTS camera_events_hourly (
			hour DateTime,
			camera String,
			type {{lc}},
			region {{lc}},
			n UInt64
		) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (hour, camera, type, region)`,

		`CREATE MATERIALIZED VIEW IF NOT EXISTS camera_events_hourly_mv TO camera_events_hourly AS
			SELECT toStartOfHour(time) AS hour, camera, type, region, count() AS n
			FROM events WHERE camera != '' GROUP BY hour, camera, type, region`,

		`CREATE TABLE IF NOT EXISTS cases_hourly (
			hour DateTime,
			category {{lc}},
			colour {{lc}},
			region {{lc}},
			source {{lc}},
			opened UInt64,
			closed UInt64
		) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (hour, category, colour, region, source)`,

		`CREATE MATERIALIZED VIEW IF NOT EXISTS cases_hourly_mv TO cases_hourly AS
			SELECT toStartOfHour(time) AS hour, category, colour, region, source,
				countIf(seq = 1) AS opened, countIf(to_state = 'closed') AS closed
			FROM case_events GROUP BY hour, category, colour, region, source`,
	}, nil},
	{2, "cases_opened and cases_current: each case as opened and as it stands", casesCurrentDDL, nil},
	{3, "camera_health_hourly: each camera's hours", cameraHealthHourlyDDL, nil},
	{4, "cases_flat: each case as it stands, one live row", casesFlatDDL, nil},
	{5, "events.type_hash and event_types: the raw events grouped by type", eventTypesDDL, addTypeHash},
	{6, "rollup_repairs: hours whose rollups a retried insert may have left short", rollupRepairsDDL, nil},
}

// cameraHealthHourlyDDL sums each camera's minutes per hour (hours, not
// days, so that days may begin in any zone): the minutes, online and
// window seconds and the intact minutes (online, no fault) the fleet
// questions ask for, 60 times fewer rows than camera_health. Filled by a
// materialized view and, for the rows already stored, by the migration
// (emptied first, so that running it again is exact).
var cameraHealthHourlyDDL = []string{
	`CREATE TABLE IF NOT EXISTS camera_health_hourly (
		hour DateTime,
		camera String,
		region {{lc}},
		grid String,
		vendor {{lc}},
		minutes UInt64,
		online_sum Float64,
		window_sum Float64,
		intact UInt64
	) ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (hour, camera, region, grid, vendor)`,
	`TRUNCATE TABLE camera_health_hourly`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS camera_health_hourly_mv TO camera_health_hourly AS ` + cameraHealthHourlySelect,
	`INSERT INTO camera_health_hourly ` + cameraHealthHourlySelect,
}

const cameraHealthHourlySelect = `SELECT toStartOfHour(minute) AS hour, camera, region, grid, vendor,
		count() AS minutes, sum(toFloat64(online_seconds)) AS online_sum, sum(toFloat64(window_seconds)) AS window_sum,
		countIf(online_seconds > 0 AND empty(faults)) AS intact
	FROM camera_health GROUP BY hour, camera, region, grid, vendor`

// casesCurrentDDL keeps each case's state by the store, so that the case
// questions read one row per case instead of rebuilding every case from
// its history at query time:
//
//   - cases_opened: the seq = 1 row of each case (opened time, category,
//     region, source, rule, grid), which never changes; the questions
//     choose their cases here.
//   - cases_current: one row per case (after merges) of aggregate states:
//     the latest state, colour, department, milestone times, counts,
//     satisfaction and outcome (argMax by seq, so rows may arrive in any
//     order), and the resolve actions on time and late and the follow-ups
//     by satisfaction (sums). Partitioned by the case's creation day, which
//     every row of a case carries.
//
// Materialized views fill both from case_events: the sink inserts a row
// once (a replayed batch is filtered by id first), so the views see it
// once. The tables are emptied and filled again from case_events, so a
// migration cut short is run again exactly; rows inserted while the
// backfill runs could count twice, so the sinks of other nodes should be
// stopped while a node applies it (its own sink starts after).
var casesCurrentDDL = []string{
	`CREATE TABLE IF NOT EXISTS cases_opened (
		case_id String,
		time {{dt}},
		category {{lc}},
		region {{lc}},
		source {{lc}},
		rule String,
		grid String
	) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMMDD(time) ORDER BY (time, case_id)`,

	`CREATE TABLE IF NOT EXISTS cases_current (
		case_id String,
		created DateTime,
		s_state AggregateFunction(argMax, String, UInt32),
		s_colour AggregateFunction(argMax, String, UInt32),
		s_department AggregateFunction(argMax, String, UInt32),
		s_created AggregateFunction(argMax, DateTime, UInt32),
		s_dispatched AggregateFunction(argMax, DateTime, UInt32),
		s_accepted AggregateFunction(argMax, DateTime, UInt32),
		s_resolved AggregateFunction(argMax, DateTime, UInt32),
		s_urges AggregateFunction(argMax, UInt32, UInt32),
		s_escalations AggregateFunction(argMax, UInt32, UInt32),
		s_alerts AggregateFunction(argMax, UInt32, UInt32),
		s_satisfaction AggregateFunction(argMax, String, UInt32),
		s_outcome AggregateFunction(argMax, String, UInt32),
		n_on_time AggregateFunction(sum, UInt64),
		n_late AggregateFunction(sum, UInt64),
		n_satisfied AggregateFunction(sum, UInt64),
		n_basically AggregateFunction(sum, UInt64),
		n_dissatisfied AggregateFunction(sum, UInt64)
	) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMMDD(created) ORDER BY case_id`,

	`TRUNCATE TABLE cases_opened`,
	`TRUNCATE TABLE cases_current`,

	`CREATE MATERIALIZED VIEW IF NOT EXISTS cases_opened_mv TO cases_opened AS ` + casesOpenedSelect,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS cases_current_mv TO cases_current AS ` + casesCurrentSelect,

	`INSERT INTO cases_opened ` + casesOpenedSelect,
	`INSERT INTO cases_current ` + casesCurrentSelect,
}

const casesOpenedSelect = `SELECT case_id, time, category, region, source, rule, grid FROM case_events WHERE seq = 1`

const casesCurrentSelect = `SELECT case_id, created,
		argMaxState({{str "state"}}, seq) AS s_state, argMaxState({{str "colour"}}, seq) AS s_colour, argMaxState({{str "department"}}, seq) AS s_department,
		argMaxState(created, seq) AS s_created, argMaxState(dispatched, seq) AS s_dispatched,
		argMaxState(accepted, seq) AS s_accepted, argMaxState(resolved, seq) AS s_resolved,
		argMaxState(urge_count, seq) AS s_urges, argMaxState(escalations, seq) AS s_escalations, argMaxState(alert_count, seq) AS s_alerts,
		argMaxState({{str "satisfaction"}}, seq) AS s_satisfaction, argMaxState({{str "outcome"}}, seq) AS s_outcome,
		sumState(toUInt64(action = 'resolve' AND late = 0)) AS n_on_time, sumState(toUInt64(action = 'resolve' AND late = 1)) AS n_late,
		sumState(toUInt64(action = 'follow_up' AND satisfaction = 'satisfied')) AS n_satisfied,
		sumState(toUInt64(action = 'follow_up' AND satisfaction = 'basically')) AS n_basically,
		sumState(toUInt64(action = 'follow_up' AND satisfaction = 'dissatisfied')) AS n_dissatisfied
	FROM case_events GROUP BY case_id, created`

// eventTypesDDL and addTypeHash let the raw events be grouped by type
// without reading the type strings: on 18.16 (no LowCardinality) reading
// and hashing ten million of them is most of the time a series by type
// takes. events.type_hash is cityHash64(type), a column materialized at
// insert; event_types names each hash (filled by a materialized view and,
// for the events already stored, by the migration). Types are few and the
// hash is 64 bits wide, so two types sharing one is not a concern.
var eventTypesDDL = []string{
	`CREATE TABLE IF NOT EXISTS event_types (
		type_hash UInt64,
		type String
	) ENGINE = ReplacingMergeTree ORDER BY (type_hash, type)`,
	`TRUNCATE TABLE event_types`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS event_types_mv TO event_types AS ` + eventTypesSelect,
	`INSERT INTO event_types ` + eventTypesSelect,
}

const eventTypesSelect = `SELECT cityHash64(type) AS type_hash, type FROM events GROUP BY type_hash, type`

// addTypeHash adds events.type_hash unless the table has it, then writes
// it into the parts stored before it existed (until then ClickHouse
// computes it from type on every read, which is right but slow): each
// day's partition holding such a part is merged once (OPTIMIZE ... FINAL;
// about 40 s for ten million events on 2 cores). Partitions already
// written with the column are left alone, so running it again is cheap.
func addTypeHash(ctx context.Context, s *CHStore, conn driver.Conn) error {
	db := s.cfg.ClickHouse.Database
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = 'events' AND name = 'type_hash'", db).Scan(&n); err != nil {
		return fmt.Errorf("look up events.type_hash: %w", err)
	}
	if n == 0 {
		if err := conn.Exec(ctx, "ALTER TABLE events ADD COLUMN type_hash UInt64 MATERIALIZED cityHash64(type)"); err != nil {
			return fmt.Errorf("add events.type_hash: %w", err)
		}
	}
	rows, err := conn.Query(ctx, `SELECT DISTINCT partition FROM system.parts
		WHERE database = ? AND table = 'events' AND active AND name NOT IN (
			SELECT name FROM system.parts_columns WHERE database = ? AND table = 'events' AND active AND column = 'type_hash')
		ORDER BY partition`, db, db)
	if err != nil {
		return fmt.Errorf("list events partitions without type_hash: %w", err)
	}
	var parts []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return err
		}
		parts = append(parts, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	start := time.Now()
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil {
			return fmt.Errorf("events partition %q is not a day", p)
		}
		if err := conn.Exec(ctx, "OPTIMIZE TABLE events PARTITION "+p+" FINAL"); err != nil {
			return fmt.Errorf("write events.type_hash into partition %s: %w", p, err)
		}
	}
	if len(parts) > 0 {
		s.log.Info("analytics events.type_hash written into the stored events", "partitions", len(parts), "took", time.Since(start))
	}
	return nil
}

func (s *CHStore) render(stmt string) (string, error) {
	t, err := template.New("ddl").Funcs(template.FuncMap{
		"lc": func() string {
			if s.feat.LowCardinality {
				return "LowCardinality(String)"
			}
			return "String"
		},
		// str is an LC column as plain String (aggregate states are declared over String).
		"str": func(col string) string {
			if s.feat.LowCardinality {
				return "CAST(" + col + " AS String)"
			}
			return col
		},
		"dt": func() string {
			if s.feat.Codecs {
				return "DateTime CODEC(DoubleDelta, LZ4)"
			}
			return "DateTime"
		},
	}).Parse(stmt)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, nil); err != nil {
		return "", err
	}
	return b.String(), nil
}

// migrateTimeout bounds one migration statement: a backfill reads a whole
// table (case_events: a minute or two for 1.6 million rows on 2 cores).
const migrateTimeout = time.Hour

// migrate applies the migrations not yet recorded in schema_migrations.
// Nodes starting together may both apply one: every statement is
// idempotent, and the versions are read with DISTINCT.
func (s *CHStore) migrate(ctx context.Context) error {
	err := s.conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version UInt32, name String, applied DateTime
	) ENGINE = MergeTree ORDER BY version`)
	if err != nil {
		return fmt.Errorf("analytics: create schema_migrations: %w", err)
	}
	done := map[int]bool{}
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("analytics: read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		done[int(v)] = true
	}
	rows.Close()
	var conn driver.Conn // for statements that may run long (backfills)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for _, m := range chMigrations {
		if done[m.version] {
			continue
		}
		if conn == nil {
			c := s.cfg.ClickHouse
			if conn, err = clickhouse.Open(c.options(c.Username, c.Password.Reveal(), c.Database, migrateTimeout)); err != nil {
				return fmt.Errorf("analytics: clickhouse: %w", err)
			}
		}
		start := time.Now()
		for i, stmt := range m.stmts {
			q, err := s.render(stmt)
			if err != nil {
				return fmt.Errorf("analytics: migration %d statement %d: %w", m.version, i+1, err)
			}
			if err := conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("analytics: migration %d (%s) statement %d: %w", m.version, m.name, i+1, err)
			}
		}
		if m.run != nil {
			if err := m.run(ctx, s, conn); err != nil {
				return fmt.Errorf("analytics: migration %d (%s): %w", m.version, m.name, err)
			}
		}
		b, err := s.conn.PrepareBatch(ctx, "INSERT INTO schema_migrations")
		if err == nil {
			if err = b.Append(uint32(m.version), m.name, time.Now()); err == nil {
				err = b.Send()
			} else {
				b.Abort()
			}
		}
		if err != nil {
			return fmt.Errorf("analytics: record migration %d: %w", m.version, err)
		}
		s.log.Info("analytics store migrated", "driver", ClickHouse, "server", s.version.String(), "version", m.version, "name", m.name, "took", time.Since(start))
	}
	return nil
}

// Migrations returns how many times each migration version was recorded
// (tests: applying the migrations again must record nothing).
func (s *CHStore) Migrations(ctx context.Context) (map[int]int, error) {
	rows, err := s.conn.Query(ctx, "SELECT version, count() FROM schema_migrations GROUP BY version")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var v uint32
		var n uint64
		if err := rows.Scan(&v, &n); err != nil {
			return nil, err
		}
		out[int(v)] = int(n)
	}
	return out, rows.Err()
}

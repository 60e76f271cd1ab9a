package analytics

import (
	"context"
	"fmt"
	"strings"
	"text/template"
	"time"
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
	}},
}

func (s *CHStore) render(stmt string) (string, error) {
	t, err := template.New("ddl").Funcs(template.FuncMap{
		"lc": func() string {
			if s.feat.LowCardinality {
				return "LowCardinality(String)"
			}
			return "String"
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
	for _, m := range chMigrations {
		if done[m.version] {
			continue
		}
		start := time.Now()
		for i, stmt := range m.stmts {
			q, err := s.render(stmt)
			if err != nil {
				return fmt.Errorf("analytics: migration %d statement %d: %w", m.version, i+1, err)
			}
			if err := s.conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("analytics: migration %d (%s) statement %d: %w", m.version, m.name, i+1, err)
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

package analytics

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"
)

// Store is where the rows go: ClickHouse in production, SQLite embedded.
// Both hold the same tables (events, case_events, camera_health, the
// hourly rollups events_hourly, camera_events_hourly, cases_hourly and
// camera_health_hourly, and each case as it stands, cases_current, with
// cases_opened, cases_flat and event_types on ClickHouse) and answer the
// same questions through DB.
type Store interface {
	// Driver is SQLite or ClickHouse.
	Driver() string
	// Insert writes b. Rows are idempotent by id: when check is set (the
	// batch may have been written before: the first batch of a partition
	// after a start, or a batch retried after an error), rows already
	// stored are skipped first, so that nothing is counted twice. It
	// leaves b as it was, so that a failed insert can be retried with it.
	Insert(ctx context.Context, b *Batch, check bool) (Inserted, error)
	// Expire drops rows older than their table's retention at now.
	Expire(ctx context.Context, now time.Time) error
	// DB answers queries (database/sql over the store).
	DB() *sql.DB
	// ReadOnly is the connection analysts' raw SQL runs on (ClickHouse's
	// read-only user); nil when raw SQL is not available.
	ReadOnly() *sql.DB
	Close() error
}

// Inserted counts the rows written and those skipped as already stored.
type Inserted struct {
	Events, Cases, Health int
	Skipped               int
}

// Open connects to the store cfg names (the SQLite file under dataDir by
// default) and applies its migrations.
func Open(ctx context.Context, cfg Config, dataDir string, log *slog.Logger) (Store, error) {
	switch cfg.Driver {
	case ClickHouse:
		return OpenClickHouse(ctx, cfg, log)
	case SQLite, "":
		return OpenSQLite(ctx, cfg, dataDir, log)
	}
	return nil, fmt.Errorf("analytics: unknown driver %q", cfg.Driver)
}

// tables with their time column and the retention that applies; driver
// is set for a table only one store has.
type table struct {
	name, timeCol string
	days          func(Retention) int
	driver        string
}

var tables = []table{
	{"events", "time", func(r Retention) int { return r.Events }, ""},
	{"events_hourly", "hour", func(r Retention) int { return r.Events }, ""},
	{"camera_events_hourly", "hour", func(r Retention) int { return r.Events }, ""},
	{"case_events", "time", func(r Retention) int { return r.CaseEvents }, ""},
	{"cases_hourly", "hour", func(r Retention) int { return r.CaseEvents }, ""},
	{"camera_health", "minute", func(r Retention) int { return r.CameraHealth }, ""},
	{"camera_health_hourly", "hour", func(r Retention) int { return r.CameraHealth }, ""},
	// A case goes with its opening (ClickHouse: the creation day every
	// row of the case carries, which its partitions are by).
	{"cases_opened", "time", func(r Retention) int { return r.CaseEvents }, ClickHouse},
	{"cases_current", "created", func(r Retention) int { return r.CaseEvents }, ClickHouse},
	{"cases_flat", "time", func(r Retention) int { return r.CaseEvents }, ClickHouse},
	{"cases_current", "time", func(r Retention) int { return r.CaseEvents }, SQLite},
}

// tablesOf lists the tables of driver's store.
func tablesOf(driver string) []table {
	var out []table
	for _, t := range tables {
		if t.driver == "" || t.driver == driver {
			out = append(out, t)
		}
	}
	return out
}

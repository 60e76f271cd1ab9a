package analytics

import (
	"context"
	"io/fs"

	"github.com/pressly/goose/v3"
)

// ExecSQL runs raw SQL on the read-only connection without CheckSQL: tests
// show that the server refuses writes by itself.
func (q *Questions) ExecSQL(ctx context.Context, query string) (Table, error) {
	return q.execSQL(ctx, query)
}

// CHMigrations is the number of ClickHouse schema versions.
var CHMigrations = len(chMigrations)

// Remigrate applies ClickHouse migration version again, as after a
// migration cut short (its backfill over the rows already stored).
func (s *CHStore) Remigrate(ctx context.Context, version int) error {
	for _, m := range chMigrations {
		if m.version != version {
			continue
		}
		for _, stmt := range m.stmts {
			q, err := s.render(stmt)
			if err != nil {
				return err
			}
			if err := s.conn.Exec(ctx, q); err != nil {
				return err
			}
		}
		if m.run != nil {
			if err := m.run(ctx, s, s.conn); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remigrate rolls the SQLite schema back to version and up again (the
// later migrations' backfills over the rows already stored).
func (s *LiteStore) Remigrate(ctx context.Context, version int64) error {
	fsys, err := fs.Sub(sqliteMigrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.db, fsys)
	if err != nil {
		return err
	}
	if _, err := p.DownTo(ctx, version); err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// Quantiles is the dialect's nearest-rank percentiles of x on driver.
func Quantiles(driver, x, cond string, pcts ...int) []string {
	return dialect{ch: driver == ClickHouse}.quantiles(x, cond, pcts...)
}

// Exec runs a statement on the store's native connection (tests reach
// past the store to damage or rebuild its tables).
func (s *CHStore) Exec(ctx context.Context, query string) error {
	return s.conn.Exec(ctx, query)
}

// EventRowAttributes is the attribute columns EventFromEvent fills.
func EventRowAttributes(attrs map[string]any) EventRow {
	var r EventRow
	r.attributes(attrs)
	return r
}

// PartitionDay is the last day of a partition's key.
var PartitionDay = partitionDay

// Package casedb opens the case database: SQLite embedded by default,
// PostgreSQL in production. Both run the same migrations (embedded, applied
// at start by goose) and are used through database/sql with one dialect
// difference papered over: placeholders are written "?" and rebound to "$n"
// for PostgreSQL.
//
// The case database holds users, sessions and API tokens, and (with the case
// workflow) the cases themselves. Times are stored as Unix milliseconds in
// BIGINT columns and booleans as 0/1 integers so that one schema serves both.
package casedb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // SQLite driver "sqlite", pure Go

	"sharpeye/configs/conf"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Drivers.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Config is the casedb section of the configuration.
type Config struct {
	// Driver is sqlite (embedded, a file in the data directory) or postgres.
	Driver string `yaml:"driver"`
	// DSN is the PostgreSQL connection URL, or the SQLite file path; empty
	// means <data_dir>/cases.db for SQLite.
	DSN conf.Secret `yaml:"dsn"`
	// MaxOpen bounds the connection pool.
	MaxOpen int `yaml:"max_open"`
	// ConnectTimeout bounds the first connection at start.
	ConnectTimeout conf.Duration `yaml:"connect_timeout"`
}

// Defaults returns the compiled defaults.
func Defaults() Config {
	return Config{Driver: SQLite, MaxOpen: 16, ConnectTimeout: conf.Duration(10 * time.Second)}
}

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	switch c.Driver {
	case SQLite:
	case Postgres:
		dsn := c.DSN.Reveal()
		if dsn == "" {
			v.Errorf("dsn", "required when driver is postgres (postgres://user:pass@host:5432/db)")
		} else if u, err := url.Parse(dsn); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			v.Errorf("dsn", "must be a postgres:// URL")
		}
	default:
		v.Errorf("driver", "must be sqlite or postgres, not %q", c.Driver)
	}
	if c.MaxOpen < 1 || c.MaxOpen > 1000 {
		v.Errorf("max_open", "must be between 1 and 1000")
	}
	if c.ConnectTimeout.D() <= 0 {
		v.Errorf("connect_timeout", "must be positive")
	}
}

// DB is an open, migrated case database.
type DB struct {
	*sql.DB
	driver string
}

// Driver returns SQLite or Postgres.
func (db *DB) Driver() string { return db.driver }

// Open connects to the database named by cfg (an SQLite file under dataDir
// unless cfg.DSN says otherwise), waits for it to answer and applies every
// pending migration.
func Open(ctx context.Context, cfg Config, dataDir string, log *slog.Logger) (*DB, error) {
	var (
		sqldb *sql.DB
		err   error
	)
	switch cfg.Driver {
	case SQLite:
		path := cfg.DSN.Reveal()
		if path == "" {
			path = filepath.Join(dataDir, "cases.db")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("create case database directory: %w", err)
		}
		sqldb, err = sql.Open("sqlite", sqliteDSN(path))
	case Postgres:
		sqldb, err = sql.Open("pgx", cfg.DSN.Reveal())
	default:
		return nil, fmt.Errorf("case database: unknown driver %q", cfg.Driver)
	}
	if err != nil {
		return nil, fmt.Errorf("open case database: %w", err)
	}
	sqldb.SetMaxOpenConns(cfg.MaxOpen)
	sqldb.SetMaxIdleConns(min(cfg.MaxOpen, 4))
	sqldb.SetConnMaxIdleTime(5 * time.Minute)

	pctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout.D())
	defer cancel()
	if err := sqldb.PingContext(pctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("connect to case database (%s): %w", cfg.Driver, redactErr(err, cfg.DSN.Reveal()))
	}
	db := &DB{DB: sqldb, driver: cfg.Driver}
	if err := db.migrate(ctx, log); err != nil {
		sqldb.Close()
		return nil, err
	}
	return db, nil
}

func sqliteDSN(path string) string {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

// redactErr keeps a connection error from repeating the DSN's password.
func redactErr(err error, dsn string) error {
	u, perr := url.Parse(dsn)
	if perr != nil || u.User == nil {
		return err
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), pw, "<redacted>"))
}

func (db *DB) migrate(ctx context.Context, log *slog.Logger) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	dialect := goose.DialectSQLite3
	var opts []goose.ProviderOption
	if db.driver == Postgres {
		dialect = goose.DialectPostgres
		// Nodes starting together take turns: one migrates, the others wait.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db.DB, fsys, opts...)
	if err != nil {
		return fmt.Errorf("load case database migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate case database: %w", err)
	}
	for _, r := range results {
		log.Info("case database migrated", "version", r.Source.Version, "file", filepath.Base(r.Source.Path), "took", r.Duration)
	}
	return nil
}

// Version returns the newest applied migration.
func (db *DB) Version(ctx context.Context) (int64, error) {
	var v int64
	err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version WHERE is_applied").Scan(&v)
	return v, err
}

// Rebind rewrites "?" placeholders as "$1", "$2"... for PostgreSQL. Queries
// must not contain literal question marks.
func (db *DB) Rebind(query string) string { return Rebind(db.driver, query) }

// Placeholders is the VALUES list of a multi-row INSERT: rows groups of
// cols "?" placeholders, "(?, ?), (?, ?)"; with one row, an IN list.
// Both must be at least 1.
// On PostgreSQL each statement is a round trip: many rows a statement is
// what makes batches fast there.
func Placeholders(rows, cols int) string {
	one := "(" + strings.Repeat("?, ", cols-1) + "?)"
	return strings.Repeat(one+", ", rows-1) + one
}

// Rebind rewrites query's "?" placeholders for driver (see DB.Rebind), for
// code handed a transaction and its driver rather than the DB.
func Rebind(driver, query string) string {
	if driver != Postgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// Exec runs a statement written with "?" placeholders.
func (db *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return db.DB.ExecContext(ctx, db.Rebind(query), args...)
}

// Query runs a query written with "?" placeholders.
func (db *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return db.DB.QueryContext(ctx, db.Rebind(query), args...)
}

// QueryRow runs a single-row query written with "?" placeholders.
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return db.DB.QueryRowContext(ctx, db.Rebind(query), args...)
}

// IsUniqueViolation reports whether err is a unique-constraint violation on
// either backend.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || // SQLite
		strings.Contains(s, "SQLSTATE 23505") // PostgreSQL
}

// Millis is the storage form of a time: Unix milliseconds, 0 for the zero time.
func Millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// FromMillis is the inverse of Millis.
func FromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// Poll calls load every interval until ctx ends: how registries kept in
// the case database see changes made on other nodes. A failure of load
// ends the poll (and the role running it) unless ctx is already done.
func Poll(ctx context.Context, interval time.Duration, load func(context.Context) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := load(ctx); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}

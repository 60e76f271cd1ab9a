// Package casedbtest opens throw-away case databases for tests: a fresh
// SQLite file, and with PostgreSQL switched on (see testpeer) a fresh
// PostgreSQL database dropped when the test ends.
package casedbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
	"sharpeye/deploy/testpeer"
)

// PostgresEnv names the variable with the administrative PostgreSQL URL
// used to create test databases.
const PostgresEnv = "SHARPEYE_TEST_POSTGRES_URL"

// DefaultPostgresURL is where .ci/run starts PostgreSQL.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable"

// Drivers lists the backends a conformance test should run on: SQLite
// always, PostgreSQL when switched on.
func Drivers() []string {
	d := []string{casedb.SQLite}
	if testpeer.Enabled(testpeer.Postgres) {
		d = append(d, casedb.Postgres)
	}
	return d
}

// Config returns a configuration for a new, empty database on driver.
func Config(t testing.TB, driver string) casedb.Config {
	t.Helper()
	cfg := casedb.Defaults()
	cfg.Driver = driver
	switch driver {
	case casedb.SQLite:
		cfg.DSN = conf.Secret(t.TempDir() + "/cases.db")
	case casedb.Postgres:
		cfg.DSN = conf.Secret(newPostgresDB(t))
	default:
		t.Fatalf("unknown driver %q", driver)
	}
	return cfg
}

// Open opens and migrates a new, empty database on driver, closed when the
// test ends.
func Open(t testing.TB, driver string) *casedb.DB {
	t.Helper()
	db, err := casedb.Open(context.Background(), Config(t, driver), t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("open %s case database: %v", driver, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newPostgresDB(t testing.TB) string {
	t.Helper()
	admin := testpeer.Setting(PostgresEnv, DefaultPostgresURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer db.Close()
	name := "sharpeye_test_" + rand.Text()[:12]
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+strings.ToLower(name)); err != nil {
		t.Fatalf("postgres switched on but unusable at %s: %v", admin, err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", admin)
		if err != nil {
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+strings.ToLower(name)+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database: %v", err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	u.Path = "/" + strings.ToLower(name)
	return u.String()
}

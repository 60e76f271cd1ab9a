package casedb_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/configs/conf"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestMigrationsTwiceAreNoOp(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			cfg := casedbtest.Config(t, driver)
			ctx := context.Background()
			db, err := casedb.Open(ctx, cfg, t.TempDir(), discard)
			if err != nil {
				t.Fatal(err)
			}
			v1, err := db.Version(ctx)
			if err != nil || v1 < 1 {
				t.Fatalf("version %d, %v", v1, err)
			}
			if _, err := db.Exec(ctx, "INSERT INTO users (id, username, password_hash, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)", "u1", "kept", "!", "clerk", 1, 1); err != nil {
				t.Fatal(err)
			}
			db.Close()

			db, err = casedb.Open(ctx, cfg, t.TempDir(), discard)
			if err != nil {
				t.Fatalf("second open: %v", err)
			}
			defer db.Close()
			v2, _ := db.Version(ctx)
			var n int
			db.QueryRow(ctx, "SELECT COUNT(*) FROM users WHERE username = ?", "kept").Scan(&n)
			if v2 != v1 || n != 1 {
				t.Fatalf("after reopening: version %d->%d, rows %d", v1, v2, n)
			}
			_, err = db.Exec(ctx, "INSERT INTO users (id, username, password_hash, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)", "u2", "kept", "!", "clerk", 1, 1)
			if !casedb.IsUniqueViolation(err) {
				t.Fatalf("duplicate username: %v", err)
			}
		})
	}
}

func TestRebind(t *testing.T) {
	sqlite := casedbtest.Open(t, casedb.SQLite)
	q := "SELECT a FROM t WHERE b = ? AND c IN (?, ?)"
	if got := sqlite.Rebind(q); got != q {
		t.Fatalf("sqlite rebind changed the query: %s", got)
	}
}

func TestPostgresUnreachable(t *testing.T) {
	cfg := casedb.Defaults()
	cfg.Driver = casedb.Postgres
	cfg.DSN = conf.Secret("postgres://sharpeye:topsecret99@127.0.0.1:1/sharpeye?connect_timeout=1")
	cfg.ConnectTimeout = conf.Duration(2e9)
	_, err := casedb.Open(context.Background(), cfg, t.TempDir(), discard)
	if err == nil {
		t.Fatal("connected to nothing")
	}
	if msg := err.Error(); len(msg) == 0 || errors.Is(err, context.Canceled) || strings.Contains(msg, "topsecret99") {
		t.Fatalf("error %q", msg)
	}
}

func TestPlaceholders(t *testing.T) {
	for _, c := range []struct {
		rows, cols int
		want       string
	}{{1, 1, "(?)"}, {1, 3, "(?, ?, ?)"}, {2, 2, "(?, ?), (?, ?)"}, {3, 1, "(?), (?), (?)"}} {
		if got := casedb.Placeholders(c.rows, c.cols); got != c.want {
			t.Errorf("%d×%d: %q, want %q", c.rows, c.cols, got, c.want)
		}
	}
}

// Package analyticstest opens throw-away analytics stores for tests: a
// fresh SQLite file, and with ClickHouse switched on (see testpeer) a fresh
// ClickHouse database dropped when the test ends.
package analyticstest

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"sharpeye/alerts/analytics"
	"sharpeye/deploy/testpeer"
)

// Settings naming the ClickHouse peer started outside the tests.
const (
	AddrEnv   = "SHARPEYE_TEST_CLICKHOUSE_ADDR"
	ROUserEnv = "SHARPEYE_TEST_CLICKHOUSE_RO_USER"
	// HTTPEnv is the server's HTTP interface (default: the native
	// port + 1, as .ci/clickhouse-start opens it).
	HTTPEnv = "SHARPEYE_TEST_CLICKHOUSE_HTTP"
)

// Defaults: where .ci/clickhouse-start puts the server and its read-only user.
const (
	DefaultAddr   = "127.0.0.1:19000"
	DefaultROUser = "sharpeye_ro"
)

// Drivers lists the stores a conformance test runs on: SQLite always,
// ClickHouse when switched on.
func Drivers() []string {
	d := []string{analytics.SQLite}
	if testpeer.Enabled(testpeer.ClickHouse) {
		d = append(d, analytics.ClickHouse)
	}
	return d
}

// Config returns a configuration for a new, empty store on driver.
func Config(t testing.TB, driver string) analytics.Config {
	t.Helper()
	cfg := analytics.Defaults()
	cfg.Driver = driver
	switch driver {
	case analytics.SQLite:
		cfg.SQLite = t.TempDir() + "/analytics.db"
	case analytics.ClickHouse:
		testpeer.Require(t, testpeer.ClickHouse)
		cfg.ClickHouse.Addr = []string{testpeer.Setting(AddrEnv, DefaultAddr)}
		cfg.ClickHouse.Database = "sharpeye_test_" + strings.ToLower(rand.Text()[:12])
		cfg.ClickHouse.SQLUsername = testpeer.Setting(ROUserEnv, DefaultROUser)
		t.Cleanup(func() { Drop(t, cfg) })
	default:
		t.Fatalf("unknown analytics driver %q", driver)
	}
	return cfg
}

// Drop removes a test's ClickHouse database.
func Drop(t testing.TB, cfg analytics.Config) {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: cfg.ClickHouse.Addr, Auth: clickhouse.Auth{Database: "default", Username: cfg.ClickHouse.Username}})
	if err != nil {
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.ClickHouse.Database); err != nil {
		t.Logf("drop test database %s: %v", cfg.ClickHouse.Database, err)
	}
}

// Open opens and migrates a new, empty store on driver, closed when the
// test ends.
func Open(t testing.TB, driver string) analytics.Store {
	t.Helper()
	return OpenConfig(t, Config(t, driver))
}

// OpenConfig opens the store cfg names, closed when the test ends.
func OpenConfig(t testing.TB, cfg analytics.Config) analytics.Store {
	t.Helper()
	s, err := analytics.Open(context.Background(), cfg, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("open %s analytics store: %v", cfg.Driver, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// HTTPAddr is the HTTP interface of the ClickHouse peer whose native
// protocol is at addr.
func HTTPAddr(addr string) string {
	if v := testpeer.Setting(HTTPEnv, ""); v != "" {
		return v
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(n+1))
}

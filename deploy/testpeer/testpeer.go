// Package testpeer switches on the tests that need an installed peer
// (PostgreSQL, ClickHouse, mosquitto, ffmpeg, Chromium).
//
// `go test ./...` needs nothing installed: such tests are skipped unless the
// peer is named in SHARPEYE_TEST_PEERS (comma-separated, or "all"). A peer
// that is named but missing fails its tests instead of skipping them, so CI,
// which names them all, cannot pass by accident.
package testpeer

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Env is the variable listing the peers switched on.
const Env = "SHARPEYE_TEST_PEERS"

// Peers known to the test suite.
const (
	Postgres   = "postgres"
	ClickHouse = "clickhouse"
	Mosquitto  = "mosquitto"
	FFmpeg     = "ffmpeg"
	Chromium   = "chromium"
)

// Enabled reports whether peer is switched on.
func Enabled(peer string) bool {
	list := strings.Split(os.Getenv(Env), ",")
	for i := range list {
		list[i] = strings.TrimSpace(list[i])
	}
	return slices.Contains(list, peer) || slices.Contains(list, "all")
}

// Require skips the test unless peer is switched on.
func Require(t testing.TB, peer string) {
	t.Helper()
	if !Enabled(peer) {
		t.Skipf("%s not switched on (set %s=%s)", peer, Env, peer)
	}
}

// Setting returns the environment variable name, or def when it is unset:
// the address of a peer started outside the test.
func Setting(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

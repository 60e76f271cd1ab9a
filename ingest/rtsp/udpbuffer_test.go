package rtsp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// The UDP receive buffer asked for is lowered to net.core.rmem_max (the
// kernel would lower it silently and gortsplib then refuse the session),
// with one warning; 0 and sizes within the limit pass unchanged.
func TestUDPReadBufferWithinRmemMax(t *testing.T) {
	old := rmemMax
	t.Cleanup(func() { rmemMax = old; rmemWarned.Store(false) })
	rmemMax = func() int { return 300000 }
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, c := range []struct{ want, got int }{{1 << 20, 300000}, {200000, 200000}, {0, 0}, {4 << 20, 300000}} {
		if got := udpReadBuffer(c.want, log); got != c.got {
			t.Errorf("%d asked for: %d, want %d", c.want, got, c.got)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
	rmemMax = func() int { return 0 } // unknown: as asked
	if got := udpReadBuffer(1<<20, log); got != 1<<20 {
		t.Errorf("with rmem_max unknown: %d", got)
	}
}

package kafka_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"sharpeye/ingest/bus"
	"sharpeye/ingest/bus/bustest"
	"sharpeye/ingest/bus/internal/leak"
	"sharpeye/ingest/bus/kafka"
	"sharpeye/ingest/bus/kafka/kafkatest"
)

// newCluster starts a kfake cluster, closed when the test ends.
func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testConfig talks to brokers with short retries and heartbeats.

func logger() *slog.Logger {
	if os.Getenv("BUS_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// running is a bus with its Run goroutine.
type running struct {
	*kafka.Bus
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// start runs a bus until stop or the end of the test.
func start(t testing.TB, cfg kafka.Config, dataDir string) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := kafka.New(cfg, dataDir, reg, logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Bus: b, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- b.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		r.done <- nil
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s of its context ending")
	}
}

func TestConformance(t *testing.T) {
	leak.Check(t)
	bustest.Run(t, bustest.Options{
		New: func(t testing.TB) bus.Bus {
			c := newCluster(t)
			return start(t, kafkatest.Config(c.ListenAddrs()), t.TempDir())
		},
	})
}

package kafka_test

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"sharpeye/console/api/apitest"
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

// TestStagedOverlaps checks what ConsumeStaged is for: while a batch's
// Write waits (on its store), the next batch is prepared; and the waiting
// batch is not committed until its Write returns.
func TestStagedOverlaps(t *testing.T) {
	leak.Check(t)
	r := start(t, kafkatest.Cluster(t, 1), t.TempDir())
	const topic = "sharpeye.staged"
	msgs := make([]bus.Message, 30)
	for i := range msgs {
		msgs[i] = bus.Message{Topic: topic, Key: "k", Value: []byte(strconv.Itoa(i))}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Publish(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	prepared := make(chan []bus.Message, len(msgs))
	release := make(chan struct{})
	var batches atomic.Int64
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- r.ConsumeStaged(cctx, "staged", []string{topic}, 10, 10*time.Millisecond, func(ms []bus.Message) bus.Write {
			first := batches.Add(1) == 1
			prepared <- ms
			return func(ctx context.Context) error {
				if first {
					select {
					case <-release:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			}
		}, bus.Rebalance{})
	}()
	next := func() []bus.Message {
		t.Helper()
		select {
		case ms := <-prepared:
			return ms
		case <-ctx.Done():
			t.Fatal("no batch prepared within a minute")
			return nil
		}
	}
	b1 := next()
	b2 := next() // prepared while the first batch's Write waits
	if len(b1) == 0 || len(b2) == 0 || b2[0].Offset != b1[len(b1)-1].Offset+1 {
		t.Fatalf("prepared batches do not follow each other: %d then %d messages", len(b1), len(b2))
	}
	consumed := func() float64 {
		return apitest.Metric(t, r.reg, "sharpeye_kafka_consumed_messages_total")
	}
	if n := consumed(); n != 0 {
		t.Fatalf("%v messages committed while the first Write waits, want 0", n)
	}
	close(release)
	total := len(b1) + len(b2)
	for total < len(msgs) {
		total += len(next())
	}
	for consumed() < float64(len(msgs)) {
		if err := bus.SleepCtx(ctx, 10*time.Millisecond); err != nil {
			t.Fatalf("%v of %d messages committed", consumed(), len(msgs))
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("ConsumeStaged: %v", err)
	}
}

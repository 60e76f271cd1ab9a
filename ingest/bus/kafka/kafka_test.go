package kafka_test

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"sync"
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

	consumed := func() int {
		return int(apitest.Metric(t, r.reg, "sharpeye_kafka_consumed_messages_total"))
	}
	// Each Write notes what was committed when it started: every batch
	// before it, and nothing of its own.
	var mu sync.Mutex
	var sizes, seen []int
	prepared := make(chan []bus.Message, len(msgs))
	release := make(chan struct{})
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- r.ConsumeStaged(cctx, "staged", []string{topic}, 10, 10*time.Millisecond, func(ms []bus.Message) bus.Write {
			mu.Lock()
			i := len(sizes)
			sizes = append(sizes, len(ms))
			mu.Unlock()
			prepared <- ms
			return func(ctx context.Context) error {
				mu.Lock()
				seen = append(seen, consumed())
				mu.Unlock()
				if i == 0 {
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
		case <-time.After(10 * time.Second):
			t.Fatal("no batch prepared within 10 s")
			return nil
		}
	}
	b1 := next()
	b2 := next() // prepared while the first batch's Write waits
	if len(b1) == 0 || len(b2) == 0 || b2[0].Offset != b1[len(b1)-1].Offset+1 {
		t.Fatalf("prepared batches do not follow each other: %d then %d messages", len(b1), len(b2))
	}
	close(release)
	total := len(b1) + len(b2)
	for total < len(msgs) {
		total += len(next())
	}
	for consumed() < len(msgs) {
		if err := bus.SleepCtx(ctx, 10*time.Millisecond); err != nil {
			t.Fatalf("%v of %d messages committed", consumed(), len(msgs))
		}
	}
	mu.Lock()
	before := 0
	for i, n := range seen {
		if n != before {
			t.Errorf("write %d started with %d messages committed, want the %d of the batches before it", i, n, before)
		}
		before += sizes[i]
	}
	mu.Unlock()
	stop()
	if err := <-done; err != nil {
		t.Fatalf("ConsumeStaged: %v", err)
	}
}

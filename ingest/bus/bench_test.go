package bus_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"sharpeye/ingest/bus"
)

// BenchmarkEmbeddedPublish publishes batches of ~500-byte messages, each
// batch one transaction: of 1,000 messages with each synchronous mode,
// and of 64 (about what the MQTT intake publishes at 50,000 messages a
// second) with synchronous: full.
func BenchmarkEmbeddedPublish(b *testing.B) {
	for _, c := range []struct {
		mode  string
		batch int
	}{{bus.SyncFull, 1000}, {bus.SyncNormal, 1000}, {bus.SyncFull, 64}} {
		b.Run("synchronous="+c.mode+"/batch="+strconv.Itoa(c.batch), func(b *testing.B) {
			cfg := testConfig()
			cfg.Synchronous = c.mode
			cfg.MaxBytes = 1 << 40 // measure the writes, not the deletions
			e := start(b, cfg, b.TempDir())
			msgs := make([]bus.Message, c.batch)
			for i := range msgs {
				msgs[i] = bus.Message{Topic: bus.TopicEvents, Key: "camera-" + strconv.Itoa(i%100), Value: make([]byte, 480),
					Headers: map[string]string{"id": strconv.Itoa(i)}}
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(msgs) * 500))
			start := time.Now()
			n := 0
			for b.Loop() {
				if err := e.Publish(context.Background(), msgs...); err != nil {
					b.Fatal(err)
				}
				n += len(msgs)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// BenchmarkEmbeddedRoundTrip publishes and consumes: messages per second
// through the bus, with one consumer group committing batches of 1,000.
func BenchmarkEmbeddedRoundTrip(b *testing.B) {
	e := start(b, testConfig(), b.TempDir())
	msgs := make([]bus.Message, 1000)
	for i := range msgs {
		msgs[i] = bus.Message{Topic: bus.TopicEvents, Key: "camera-" + strconv.Itoa(i%100), Value: make([]byte, 480)}
	}
	got := make(chan int, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- e.Consume(ctx, "bench", []string{bus.TopicEvents}, 1000, time.Millisecond, func(_ context.Context, ms []bus.Message) error {
			got <- len(ms)
			return nil
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	b.ReportAllocs()
	start := time.Now()
	sent, recv := 0, 0
	for b.Loop() {
		if err := e.Publish(context.Background(), msgs...); err != nil {
			b.Fatal(err)
		}
		sent += len(msgs)
	drain:
		for {
			select {
			case n := <-got:
				recv += n
			default:
				break drain
			}
		}
	}
	for recv < sent {
		recv += <-got
	}
	b.ReportMetric(float64(sent)/time.Since(start).Seconds(), "msgs/s")
}

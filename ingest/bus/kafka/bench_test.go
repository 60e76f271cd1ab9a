package kafka_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sharpeye/configs/conf"
	"sharpeye/console/api/apitest"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/bus/kafka/kafkatest"
)

// benchBatch is 1,000 messages of about 500 bytes over 100 keys.
func benchBatch(topic string) []bus.Message {
	ms := make([]bus.Message, 1000)
	for i := range ms {
		ms[i] = bus.Message{Topic: topic, Key: "camera-" + strconv.Itoa(i%100), Value: make([]byte, 480),
			Headers: map[string]string{"id": strconv.Itoa(i)}}
	}
	return ms
}

// BenchmarkProduce publishes batches of 1,000 messages of ~500 bytes to
// kfake over TCP, waiting for each acknowledgement (acks=all), from one
// goroutine and from four.
func BenchmarkProduce(b *testing.B) {
	for _, tc := range []struct {
		name      string
		parallel  int
		batchWait time.Duration
	}{
		{"serial", 1, 5 * time.Millisecond},
		{"serial/batch_timeout=1ms", 1, time.Millisecond},
		{"4_publishers", 4, 5 * time.Millisecond},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := newCluster(b)
			cfg := kafkatest.Config(c.ListenAddrs())
			cfg.Partitions = 12
			cfg.BatchTimeout = conf.Duration(tc.batchWait)
			bs := start(b, cfg, b.TempDir())
			msgs := benchBatch("bench")
			if err := bs.Publish(context.Background(), msgs...); err != nil { // creates the topic
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(msgs) * 500))
			start := time.Now()
			n := 0
			if tc.parallel == 1 {
				for b.Loop() {
					if err := bs.Publish(context.Background(), msgs...); err != nil {
						b.Fatal(err)
					}
					n += len(msgs)
				}
			} else {
				// Exactly tc.parallel publishers, whatever GOMAXPROCS is
				// (RunParallel would run a multiple of it).
				var next atomic.Int64
				var wg sync.WaitGroup
				for range tc.parallel {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							if err := bs.Publish(context.Background(), msgs...); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				n = b.N * len(msgs)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
			if v := apitest.Metric(b, bs.reg, "sharpeye_kafka_spooled_messages_total"); v != 0 {
				b.Logf("%v messages went through the spool", v)
			}
		})
	}
}

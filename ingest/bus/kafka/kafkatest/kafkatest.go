// Package kafkatest runs the Kafka bus in tests against an in-process
// Kafka-protocol cluster (franz-go's kfake): the real protocol over TCP,
// nothing installed.
package kafkatest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"sharpeye/configs/conf"
	"sharpeye/ingest/bus/kafka"
)

// Cluster starts a one-broker cluster whose topics have parts partitions,
// closed when the test ends, and returns Config for it.
func Cluster(t testing.TB, parts int) kafka.Config {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(parts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := Config(c.ListenAddrs())
	cfg.Partitions = parts
	return cfg
}

// Config is a bus configuration for brokers with short retries and
// heartbeats (a member silent for 6 s loses its partitions).
func Config(brokers []string) kafka.Config {
	cfg := kafka.Defaults()
	cfg.Brokers = brokers
	cfg.Replication = 1
	cfg.BatchTimeout = conf.Duration(time.Millisecond)
	cfg.RetryBackoffMin = conf.Duration(10 * time.Millisecond)
	cfg.RetryBackoffMax = conf.Duration(200 * time.Millisecond)
	cfg.SessionTimeout = conf.Duration(6 * time.Second)
	cfg.HeartbeatInterval = conf.Duration(200 * time.Millisecond)
	return cfg
}

// Start runs a bus (a client of its own) on cfg until the test ends.
func Start(t testing.TB, cfg kafka.Config) *kafka.Bus {
	t.Helper()
	b, err := kafka.New(cfg, t.TempDir(), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

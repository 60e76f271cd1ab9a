package kafka

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"sharpeye/configs/conf"
	"sharpeye/ingest/bus"
)

// TestRejectedSetAside: a spooled message Kafka can never take (here an
// invalid topic, as an older version might have spooled) is set aside in
// rejected.spool and counted; the rest is delivered.
func TestRejectedSetAside(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<20, func(string, int64, error) {})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []bus.Message{testMsg(1), {Topic: "bad topic!", Value: []byte("x"), Time: time.Now()}, testMsg(2)}
	if err := sp.append(encodeRecords(msgs), len(msgs)); err != nil {
		t.Fatal(err)
	}
	sp.close()

	cfg := Defaults()
	cfg.Brokers = c.ListenAddrs()
	cfg.Replication = 1
	cfg.SpoolDir = dir
	cfg.RetryBackoffMin = conf.Duration(10 * time.Millisecond)
	cfg.RetryBackoffMax = conf.Duration(100 * time.Millisecond)
	b, err := New(cfg, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	got := make(chan bus.Message, 10)
	cctx, ccancel := context.WithCancel(t.Context())
	cdone := make(chan error, 1)
	go func() {
		cdone <- b.Consume(cctx, "g", []string{"sharpeye.events"}, 10, time.Millisecond, func(_ context.Context, ms []bus.Message) error {
			for _, m := range ms {
				got <- m
			}
			return nil
		})
	}()
	for range 2 {
		select {
		case <-got:
		case <-time.After(60 * time.Second):
			t.Fatal("the valid messages were not delivered")
		}
	}
	ccancel()
	<-cdone
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "rejected.spool"))
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := readRecord(data[len(segMagic):])
	if err != nil || m.Topic != "bad topic!" {
		t.Errorf("rejected.spool holds %+v, %v", m, err)
	}
}

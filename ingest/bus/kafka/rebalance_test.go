package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"sharpeye/console/api/apitest"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/bus/internal/leak"
	"sharpeye/ingest/bus/kafka/kafkatest"
)

// TestCommitErrorsEndGenerations makes the coordinator refuse offset
// commits and heartbeats with REBALANCE_IN_PROGRESS while 5,000 messages
// are consumed, so that handled batches stay uncommitted and generations
// end under the consumer: nothing may be lost, each key keeps its order,
// and every generation's partitions are revoked before they are assigned
// again.
func TestCommitErrorsEndGenerations(t *testing.T) {
	leak.Check(t)
	const n, topic = 5000, "sharpeye.events"
	c := newCluster(t)
	b := start(t, kafkatest.Config(c.ListenAddrs()), t.TempDir())
	s := newSink()

	var mu sync.Mutex
	held := map[bus.TopicPartition]bool{}
	var assigned, revoked int
	var breaches []string
	r := bus.Rebalance{
		Assigned: func(_ context.Context, parts []bus.TopicPartition) error {
			mu.Lock()
			defer mu.Unlock()
			assigned++
			for _, p := range parts {
				if held[p] {
					breaches = append(breaches, fmt.Sprintf("%v assigned again before it was revoked", p))
				}
				held[p] = true
			}
			return nil
		},
		Revoked: func(_ context.Context, parts []bus.TopicPartition) {
			mu.Lock()
			defer mu.Unlock()
			revoked++
			for _, p := range parts {
				if !held[p] {
					breaches = append(breaches, fmt.Sprintf("%v revoked without being assigned", p))
				}
				delete(held, p)
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.ConsumeRebalance(ctx, "sink", []string{topic}, 100, 5*time.Millisecond, s.handle, r) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ConsumeRebalance: %v", err)
			}
		case <-time.After(hang):
			t.Error("ConsumeRebalance did not return")
		}
		mu.Lock()
		defer mu.Unlock()
		if len(held) > 0 {
			t.Errorf("ConsumeRebalance returned holding %d partitions: no Revoked for them", len(held))
		}
		for _, b := range breaches {
			t.Error(b)
		}
	}()

	progress := publisher(t, b, topic, n, 50, 20)
	at := waitProgress(t, progress, 1000)
	s.waitFor(t, 500)

	commits := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.RebalanceInProgress, Count: 5})
	wctx, wcancel := context.WithTimeout(t.Context(), hang)
	defer wcancel()
	if err := commits.Wait(wctx, 5); err != nil {
		t.Fatalf("the fault answered %d offset commits: %v", commits.Hits(), err)
	}
	heartbeats := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Err: kerr.RebalanceInProgress, TopLevel: true, Count: 2})
	if err := heartbeats.Wait(wctx, 2); err != nil {
		t.Fatalf("the fault answered %d heartbeats: %v", heartbeats.Hits(), err)
	}
	waitProgress(t, progress, at+1000)

	drainProgress(t, progress)
	s.waitFor(t, n)
	s.check(t, n)
	if v := apitest.Metric(t, b.reg, "sharpeye_kafka_commit_errors_total"); v < 5 {
		t.Errorf("sharpeye_kafka_commit_errors_total = %v, want at least the 5 refused", v)
	}
	mu.Lock()
	if assigned < 2 || revoked < 1 {
		t.Errorf("%d assignments and %d revocations: the heartbeats refused did not end a generation", assigned, revoked)
	}
	mu.Unlock()
}

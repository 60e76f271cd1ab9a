package analytics

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/ingest/bus"
)

// Sink carries sharpeye.events and sharpeye.cases into the store as a
// consumer group: batches by size and time, offsets committed only after
// the insert succeeded (the bus commits when the handler returns nil), and
// a batch that fails is retried after a backoff while nothing more is
// consumed (back-pressure). A batch that may have been written before (the
// first of each partition after a start or a hand-over, one retried after
// an error, and every batch after one that held stored rows, until one
// holds none) is inserted with check set, so the store skips the rows it
// already holds: replays never count twice.
type Sink struct {
	cfg   Config
	store Store
	bus   bus.Bus
	log   *slog.Logger
	m     *sinkMetrics
	now   func() time.Time

	mu sync.Mutex
	// next is the offset expected next from each topic partition; a batch
	// that does not continue it is checked.
	next map[topicPart]int64
	// consuming is closed when Run reads the bus.
	consuming chan struct{}
	once      sync.Once
	// newest is the newest bus time written; the lag is its age.
	newest time.Time
}

type topicPart struct {
	topic string
	part  int
}

// NewSink builds the sink; Run starts it.
func NewSink(cfg Config, store Store, b bus.Bus, reg prometheus.Registerer, log *slog.Logger) *Sink {
	s := &Sink{cfg: cfg, store: store, bus: b, log: log, now: time.Now,
		next: map[topicPart]int64{}, consuming: make(chan struct{})}
	s.m = newSinkMetrics(reg, s.Lag)
	return s
}

// Consuming is closed once the sink reads the bus.
func (s *Sink) Consuming() <-chan struct{} { return s.consuming }

// Run consumes until ctx ends, and expires old rows every
// cfg.Retention.Every.
func (s *Sink) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	expired := make(chan struct{})
	go func() { defer close(expired); s.expireLoop(ctx) }()
	defer func() { cancel(); <-expired }() // the store is closed after Run
	s.once.Do(func() { close(s.consuming) })
	topics := []string{bus.TopicEvents, bus.TopicCases}
	if sc, ok := s.bus.(bus.StagedConsumer); ok {
		return sc.ConsumeStaged(ctx, s.cfg.Sink.Group, topics, s.cfg.Sink.Batch, s.cfg.Sink.BatchWait.D(), s.Prepare, bus.Rebalance{})
	}
	return s.bus.Consume(ctx, s.cfg.Sink.Group, topics, s.cfg.Sink.Batch, s.cfg.Sink.BatchWait.D(), bus.Sequential(s.Prepare))
}

func (s *Sink) expireLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Retention.Every.D())
	defer t.Stop()
	repair := time.NewTicker(repairEvery)
	defer repair.Stop()
	s.expire(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.expire(ctx)
			s.compact(ctx)
		case <-repair.C:
			s.repairRollups(ctx)
		}
	}
}

func (s *Sink) expire(ctx context.Context) {
	if err := s.store.Expire(ctx, s.now()); err != nil && ctx.Err() == nil {
		s.log.Warn("expire analytics rows", "err", err)
	}
}

// compactor is a store whose settled partitions are worth merging into
// one part each (ClickHouse).
type compactor interface {
	Compact(ctx context.Context, now time.Time, budget time.Duration) (merged int, more bool, err error)
}

// compactBudget bounds the time one round of compaction takes, so that a
// backlog (a store filled before the sink ran, a long outage) is worked
// off over several rounds beside the inserts.
const compactBudget = time.Minute

// compact has the store merge the parts of settled days, every
// retention.every, after the expiry.
func (s *Sink) compact(ctx context.Context) {
	c, ok := s.store.(compactor)
	if !ok {
		return
	}
	start := time.Now()
	n, more, err := c.Compact(ctx, s.now(), compactBudget)
	s.m.compacted.Add(float64(n))
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Warn("compact analytics partitions", "merged", n, "err", err)
	case n > 0:
		s.log.Info("analytics partitions compacted", "merged", n, "more_left", more, "took", time.Since(start).Round(time.Millisecond))
	}
}

// repairEvery is how often the sink has the store check the rollups of
// hours a replay touched.
const repairEvery = time.Minute

// rollupRepairer is a store whose rollups an interrupted insert may leave
// short (ClickHouse's materialized views).
type rollupRepairer interface {
	RepairRollups(ctx context.Context, now time.Time) (hours, corrected int, err error)
}

// repairRollups has the store check the rollups of the hours a replayed
// batch touched, once they are over.
func (s *Sink) repairRollups(ctx context.Context) {
	r, ok := s.store.(rollupRepairer)
	if !ok {
		return
	}
	_, n, err := r.RepairRollups(ctx, s.now())
	s.m.repaired.Add(float64(n))
	if err != nil && ctx.Err() == nil {
		s.log.Warn("repair analytics rollups", "err", err)
	}
}

// Prepare decodes a consumed batch into rows, the step of the bus
// handler that may run while the batch before is inserted (exported for
// tests: bus.Sequential(s.Prepare) is the handler in one step). The Write
// it returns dead-letters what was refused, inserts the rows and keeps
// the sink's bookkeeping, so that whether a batch may be a replay is
// decided when it is written, after the batches before it. A Write that
// fails is run again on the same rows (the store leaves them as they
// were); its dead letters are published once.
func (s *Sink) Prepare(msgs []bus.Message) bus.Write {
	b, bad := FromMessages(msgs)
	return func(ctx context.Context) error {
		if err := s.deadLetter(ctx, bad); err != nil {
			return err
		}
		bad = nil
		return s.write(ctx, msgs, &b)
	}
}

// deadLetter publishes the messages refused, before their batch is
// committed.
func (s *Sink) deadLetter(ctx context.Context, bad []Rejected) error {
	if len(bad) == 0 {
		return nil
	}
	dead := make([]bus.Message, len(bad))
	for i, r := range bad {
		dead[i] = bus.Message{Topic: bus.TopicDeadLetter, Key: r.Msg.Key, Value: r.Msg.Value, Headers: map[string]string{
			bus.HeaderReason: r.Reason,
			bus.HeaderSource: r.Msg.Topic + "/" + strconv.Itoa(r.Msg.Partition) + "@" + strconv.FormatInt(r.Msg.Offset, 10),
		}}
	}
	if err := s.bus.Publish(ctx, dead...); err != nil {
		return fmt.Errorf("dead-letter %d messages: %w", len(dead), err)
	}
	for _, r := range bad {
		s.m.rejected.WithLabelValues(r.Msg.Topic).Inc()
	}
	s.log.Warn("analytics sink rejected messages to the dead-letter topic", "count", len(bad), "first_reason", bad[0].Reason)
	return nil
}

func (s *Sink) write(ctx context.Context, msgs []bus.Message, b *Batch) error {
	check := s.mayBeReplay(msgs)
	start := time.Now()
	n, err := s.store.Insert(ctx, b, check)
	if err != nil {
		s.m.failures.Inc()
		s.forget(msgs) // the insert may have landed: check the retry
		return fmt.Errorf("analytics insert (%d rows): %w", b.Len(), err)
	}
	s.m.insertSeconds.Observe(time.Since(start).Seconds())
	s.m.rows.WithLabelValues("events").Add(float64(n.Events))
	s.m.rows.WithLabelValues("case_events").Add(float64(n.Cases))
	s.m.rows.WithLabelValues("camera_health").Add(float64(n.Health))
	s.m.skipped.Add(float64(n.Skipped))
	s.m.batches.Inc()
	if check && n.Skipped > 0 {
		// Part of the batch was stored before: what follows it may have
		// been too (the earlier run's batches need not end where these
		// do), so the next batch is checked as well.
		s.forget(msgs)
	} else {
		s.advance(msgs)
	}
	var newest time.Time
	for _, m := range msgs {
		if m.Time.After(newest) {
			newest = m.Time
		}
	}
	if !newest.IsZero() {
		s.mu.Lock()
		if newest.After(s.newest) {
			s.newest = newest
		}
		s.mu.Unlock()
	}
	return nil
}

// Lag is how far behind the bus the store is: the age of the newest
// message written (0 before the first). It grows while the store is down.
func (s *Sink) Lag() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.newest.IsZero() {
		return 0
	}
	return max(s.now().Sub(s.newest), 0)
}

// mayBeReplay reports whether any partition in msgs does not continue
// where this sink's last insert from it ended.
func (s *Sink) mayBeReplay(msgs []bus.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := map[topicPart]int64{}
	for _, m := range msgs {
		k := topicPart{m.Topic, m.Partition}
		if _, ok := first[k]; !ok {
			first[k] = m.Offset
		}
	}
	for k, off := range first {
		if next, ok := s.next[k]; !ok || next != off {
			return true
		}
	}
	return false
}

func (s *Sink) advance(msgs []bus.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.next[topicPart{m.Topic, m.Partition}] = m.Offset + 1
	}
}

func (s *Sink) forget(msgs []bus.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		delete(s.next, topicPart{m.Topic, m.Partition})
	}
}

type sinkMetrics struct {
	rows          *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	skipped       prometheus.Counter
	batches       prometheus.Counter
	failures      prometheus.Counter
	insertSeconds prometheus.Histogram
	lag           prometheus.GaugeFunc
	repaired      prometheus.Counter
	compacted     prometheus.Counter
}

func newSinkMetrics(reg prometheus.Registerer, lag func() time.Duration) *sinkMetrics {
	m := &sinkMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_analytics_rows_total", Help: "Rows written to the analytics store, by table.",
		}, []string{"table"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_analytics_rejected_total", Help: "Bus messages the analytics sink could not read, sent to the dead-letter topic, by topic.",
		}, []string{"topic"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_analytics_replayed_rows_total", Help: "Rows of replayed batches skipped because the store already held them.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_analytics_batches_total", Help: "Batches written to the analytics store.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_analytics_insert_failures_total", Help: "Batch inserts that failed and will be retried.",
		}),
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sharpeye_analytics_insert_seconds", Help: "Time to write one batch.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		lag: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sharpeye_analytics_lag_seconds", Help: "Age of the newest bus message written to the store (how far it is behind the bus; grows while the store is down).",
		}, func() float64 { return lag().Seconds() }),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_analytics_rollup_rows_repaired_total", Help: "Rows inserted into hourly rollups that an interrupted insert had left short (ClickHouse).",
		}),
		compacted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_analytics_partitions_compacted_total", Help: "Settled day partitions merged into one part each (ClickHouse).",
		}),
	}
	reg.MustRegister(m.rows, m.rejected, m.skipped, m.batches, m.failures, m.insertSeconds, m.lag, m.repaired, m.compacted)
	return m
}

package kafka

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	kafka "github.com/segmentio/kafka-go"

	"sharpeye/ingest/bus"
)

// Consume reads topics as a member of the Kafka consumer group until ctx
// ends; it does not need Run. Missing topics are created first (so that
// the group is assigned their partitions). The group's members share the
// partitions; a group that never committed starts at the oldest message.
//
// h gets batches of at most maxBatch messages, those fetched within
// maxWait of the first. Returning nil commits the batch (synchronously,
// before the next is handled); an error delivers the same batch again
// after a backoff, until h accepts it, ctx ends or the partitions are
// handed over (the next owner then gets the batch).
func (b *Bus) Consume(ctx context.Context, group string, topics []string, maxBatch int, maxWait time.Duration, h bus.Handler) error {
	return b.ConsumeRebalance(ctx, group, topics, maxBatch, maxWait, h, bus.Rebalance{})
}

// ConsumeRebalance is Consume, telling r of the partitions the member is
// given and gives up. Each generation of the group (kafka-go's
// ConsumerGroup; every join or leave of a member starts one, and each
// member is given its partitions afresh) runs r.Assigned with the
// member's partitions, then reads them; when the generation ends, the
// batch in hand is abandoned (uncommitted) unless its handler already
// returned, r.Revoked is called with the same partitions, and only then
// does the member rejoin the group, so that no other member is given them
// before. When ConsumeRebalance returns, r.Revoked has been called for
// the partitions it held.
func (b *Bus) ConsumeRebalance(ctx context.Context, group string, topics []string, maxBatch int, maxWait time.Duration, h bus.Handler, r bus.Rebalance) error {
	if err := bus.CheckConsume(group, topics, maxBatch, h); err != nil {
		return err
	}
	return b.consume(ctx, &member{b: b, group: group, maxBatch: maxBatch, maxWait: maxWait, prepare: bus.Staged(h), r: r}, topics)
}

// ConsumeStaged is ConsumeRebalance with a handler in two steps: while a
// batch is written, the next one is collected and prepared (see
// bus.StagedConsumer). A batch is committed once its Write returned nil,
// before the next Write starts; when the generation ends, the prepared
// batch is dropped and the Write in flight is cancelled (uncommitted).
func (b *Bus) ConsumeStaged(ctx context.Context, group string, topics []string, maxBatch int, maxWait time.Duration, p bus.Prepare, r bus.Rebalance) error {
	if err := bus.CheckConsume(group, topics, maxBatch, bus.Sequential(p)); err != nil {
		return err
	}
	return b.consume(ctx, &member{b: b, group: group, maxBatch: maxBatch, maxWait: maxWait, prepare: p, r: r}, topics)
}

var _ bus.StagedConsumer = (*Bus)(nil)

// consume runs m until ctx ends.
func (b *Bus) consume(ctx context.Context, m *member, topics []string) error {
	group := m.group
	topics = slices.Clone(topics)
	slices.Sort(topics)
	topics = slices.Compact(topics)
	m.maxWait = max(m.maxWait, time.Millisecond)
	log := b.log.With("group", group)

	for attempt := 0; ; attempt++ {
		err := b.ensureTopics(ctx, topics)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if attempt == 0 {
			log.Warn("create topics before consuming; retrying", "topics", topics, "err", err)
		}
		if bus.SleepCtx(ctx, bus.Backoff(attempt, b.cfg.RetryBackoffMin.D(), b.cfg.RetryBackoffMax.D())) != nil {
			return nil
		}
		b.transport.CloseIdleConnections() // see deliver
	}

	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    group,
		Brokers:               b.cfg.Brokers,
		Dialer:                b.dialer,
		Topics:                topics,
		HeartbeatInterval:     b.cfg.HeartbeatInterval.D(),
		SessionTimeout:        b.cfg.SessionTimeout.D(),
		RebalanceTimeout:      b.cfg.SessionTimeout.D(),
		JoinGroupBackoff:      min(b.cfg.RetryBackoffMax.D(), time.Second),
		StartOffset:           kafka.FirstOffset,
		WatchPartitionChanges: true,
		ErrorLogger:           debugLogger(log),
	})
	if err != nil {
		return fmt.Errorf("join consumer group %q: %w", group, err)
	}
	defer func() {
		// Leaves the group, once the last generation's Revoked returned.
		if err := cg.Close(); err != nil {
			log.Debug("close kafka consumer group", "err", err)
		}
	}()

	m.log, m.fetchLog = log, &throttle{}
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// kafka-go backs off before it tries to join again.
			b.metrics.fetchErrors.WithLabelValues(group).Inc()
			if m.fetchLog.ok() {
				log.Warn("join consumer group; retrying", "err", err)
			}
			continue
		}
		// The group rejoins only once the functions given to gen.Start
		// returned: generation's r.Revoked comes before anyone is given
		// the partitions again.
		finished := make(chan struct{})
		gen.Start(func(gctx context.Context) {
			m.generation(ctx, gctx, gen) // returns when gen or ctx ends
			close(finished)
			if ctx.Err() != nil {
				// Hold the generation until cg.Close ends it, so that
				// kafka-go leaves the group instead of joining it again.
				<-gctx.Done()
			}
		})
		<-finished
		if ctx.Err() != nil {
			return nil
		}
	}
}

var _ bus.RebalanceConsumer = (*Bus)(nil)

// member is one ConsumeRebalance call.
type member struct {
	b        *Bus
	log      *slog.Logger
	group    string
	maxBatch int
	maxWait  time.Duration
	// prepare prepares each batch (a Handler's calls it: bus.Staged).
	prepare  bus.Prepare
	r        bus.Rebalance
	fetchLog *throttle
}

// assignment is a partition given to the member by a generation, with the
// offset to read it from (the group's committed offset, or FirstOffset).
type assignment struct {
	tp     bus.TopicPartition
	offset int64
}

func assignments(gen *kafka.Generation) []assignment {
	var as []assignment
	for topic, ps := range gen.Assignments {
		for _, p := range ps {
			as = append(as, assignment{bus.TopicPartition{Topic: topic, Partition: p.ID}, p.Offset})
		}
	}
	slices.SortFunc(as, func(a, b assignment) int {
		return cmp.Or(cmp.Compare(a.tp.Topic, b.tp.Topic), cmp.Compare(a.tp.Partition, b.tp.Partition))
	})
	return as
}

// generation consumes the partitions gen assigned to the member until gen
// ends (gctx) or ctx does, telling m.r of the partitions it holds.
func (m *member) generation(ctx, gctx context.Context, gen *kafka.Generation) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(gctx, cancel)
	defer stop()

	as := assignments(gen)
	m.log.Debug("consumer group generation", "generation", gen.ID, "member", gen.MemberID, "partitions", len(as))
	if len(as) == 0 {
		<-ctx.Done() // more members than partitions: wait for the next generation
		return
	}
	parts := make([]bus.TopicPartition, len(as))
	for i, a := range as {
		parts[i] = a.tp
	}
	if err := m.assign(ctx, parts); err != nil {
		return // ended before the member took the partitions
	}
	defer m.revoke(ctx, parts) // after the readers below stopped

	fetched := make(chan kafka.Message, max(m.maxBatch, 100))
	rctx, rcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		rcancel()
		wg.Wait()
	}()
	for _, a := range as {
		rd := kafka.NewReader(kafka.ReaderConfig{
			Brokers:        m.b.cfg.Brokers,
			Topic:          a.tp.Topic,
			Partition:      a.tp.Partition,
			Dialer:         m.b.dialer,
			QueueCapacity:  max(m.maxBatch, 100),
			MinBytes:       1,
			MaxBytes:       16 << 20,
			MaxWait:        min(max(m.maxWait, 100*time.Millisecond), time.Second),
			ReadBackoffMin: m.b.cfg.RetryBackoffMin.D(),
			ReadBackoffMax: min(m.b.cfg.RetryBackoffMax.D(), time.Second),
			ErrorLogger:    debugLogger(m.log),
		})
		if err := rd.SetOffset(a.offset); err != nil {
			// Only a closed reader refuses; this one is new.
			m.log.Error("set partition offset", "topic", a.tp.Topic, "partition", a.tp.Partition, "offset", a.offset, "err", err)
		}
		wg.Go(func() {
			defer func() {
				if err := rd.Close(); err != nil {
					m.log.Debug("close kafka partition reader", "err", err)
				}
			}()
			m.read(rctx, rd, fetched)
		})
	}

	m.staged(ctx, gen, fetched)
}

// staged is generation's loop: one goroutine writes the prepared batches
// in order and commits each, while this one collects and prepares the
// next. It returns once the writer has.
func (m *member) staged(ctx context.Context, gen *kafka.Generation, fetched <-chan kafka.Message) {
	type prepared struct {
		batch []kafka.Message
		write bus.Write
	}
	queue := make(chan prepared) // one batch prepared while one is written
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		for p := range queue {
			if ctx.Err() != nil {
				return // a batch sent as the generation ended: the next owner gets it
			}
			if err := m.b.retry(ctx, m.group, len(p.batch), p.write); err != nil {
				return // ended while the write failed: the next owner gets the batch
			}
			m.committed(gen, p.batch)
		}
	}()
	defer func() {
		close(queue)
		<-writer
	}()
	for {
		batch, err := collect(ctx, fetched, m.maxBatch, m.maxWait)
		if err != nil {
			return // the generation or Consume ended
		}
		p := prepared{batch, m.prepare(fromKafkaBatch(batch))}
		select {
		case queue <- p:
		case <-ctx.Done():
			return
		}
	}
}

// committed commits a handled batch's offsets and counts it.
func (m *member) committed(gen *kafka.Generation, batch []kafka.Message) {
	if err := gen.CommitOffsets(commitOffsets(batch)); err != nil {
		// Delivered again, to whoever holds the partitions next: at
		// least once.
		m.b.metrics.commitErrors.WithLabelValues(m.group).Inc()
		m.log.Warn("commit offsets", "messages", len(batch), "generation", gen.ID, "err", err)
	}
	m.b.metrics.consumed.WithLabelValues(m.group).Add(float64(len(batch)))
	m.b.recordLag(m.group, batch)
}

// read fetches one partition's messages into out until ctx ends.
func (m *member) read(ctx context.Context, rd *kafka.Reader, out chan<- kafka.Message) {
	for attempt := 0; ; {
		msg, err := rd.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.b.metrics.fetchErrors.WithLabelValues(m.group).Inc()
			if m.fetchLog.ok() {
				m.log.Warn("fetch messages; retrying", "topic", rd.Config().Topic, "partition", rd.Config().Partition, "err", err)
			}
			if bus.SleepCtx(ctx, bus.Backoff(attempt, m.b.cfg.RetryBackoffMin.D(), m.b.cfg.RetryBackoffMax.D())) != nil {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		select {
		case out <- msg:
		case <-ctx.Done():
			return
		}
	}
}

// assign calls r.Assigned until it accepts parts, waiting between
// attempts; it returns an error only when ctx ends.
func (m *member) assign(ctx context.Context, parts []bus.TopicPartition) error {
	if m.r.Assigned == nil {
		return nil
	}
	for attempt := 0; ; attempt++ {
		err := m.r.Assigned(ctx, slices.Clone(parts))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := bus.Backoff(attempt, m.b.cfg.RetryBackoffMin.D(), m.b.cfg.RetryBackoffMax.D())
		m.log.Warn("partition assignment refused; retrying", "partitions", len(parts), "attempt", attempt+1, "retry_in", d, "err", err)
		if err := bus.SleepCtx(ctx, d); err != nil {
			return err
		}
	}
}

// revoke calls r.Revoked with a context that outlives ctx (ended with the
// generation) by at most bus.RevokeTimeout.
func (m *member) revoke(ctx context.Context, parts []bus.TopicPartition) {
	if m.r.Revoked == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bus.RevokeTimeout)
	defer cancel()
	m.r.Revoked(rctx, slices.Clone(parts))
}

// collect waits for a message, then takes what else arrives within
// maxWait, up to maxBatch.
func collect(ctx context.Context, in <-chan kafka.Message, maxBatch int, maxWait time.Duration) ([]kafka.Message, error) {
	var batch []kafka.Message
	select {
	case msg := <-in:
		batch = append(batch, msg)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	t := time.NewTimer(maxWait)
	defer t.Stop()
	for len(batch) < maxBatch {
		select {
		case msg := <-in:
			batch = append(batch, msg)
		case <-t.C:
			return batch, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return batch, nil
}

// commitOffsets returns, for each partition of batch, the offset after
// its last message: where the group resumes.
func commitOffsets(batch []kafka.Message) map[string]map[int]int64 {
	offsets := map[string]map[int]int64{}
	for _, msg := range batch {
		ps := offsets[msg.Topic]
		if ps == nil {
			ps = map[int]int64{}
			offsets[msg.Topic] = ps
		}
		ps[msg.Partition] = max(ps[msg.Partition], msg.Offset+1)
	}
	return offsets
}

func fromKafkaBatch(batch []kafka.Message) []bus.Message {
	msgs := make([]bus.Message, len(batch))
	for i, km := range batch {
		msgs[i] = fromKafka(km)
	}
	return msgs
}

// retry runs w, the write of a batch of n messages, until it succeeds; it
// returns an error only when ctx ends.
func (b *Bus) retry(ctx context.Context, group string, n int, w bus.Write) error {
	return bus.RetryWrite(ctx, w, b.cfg.RetryBackoffMin.D(), b.cfg.RetryBackoffMax.D(), group, n, b.metrics.handlerErrors.WithLabelValues(group), b.log)
}

// recordLag sets each partition's lag after the batch.
func (b *Bus) recordLag(group string, batch []kafka.Message) {
	type tp struct {
		topic string
		part  int
	}
	last := map[tp]kafka.Message{}
	for _, m := range batch {
		last[tp{m.Topic, m.Partition}] = m
	}
	for k, m := range last {
		b.metrics.lag.WithLabelValues(group, k.topic, strconv.Itoa(k.part)).Set(float64(max(m.HighWaterMark-m.Offset-1, 0)))
	}
}

// throttle lets a repeated log through once per logEvery.
type throttle struct {
	mu   sync.Mutex
	last time.Time
}

func (t *throttle) ok() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := time.Now(); now.Sub(t.last) >= logEvery {
		t.last = now
		return true
	}
	return false
}

package kafka

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	kafka "github.com/segmentio/kafka-go"

	"sharpeye/ingest/bus"
)

// commitTimeout bounds the commit of a handled batch, which goes on even
// when Consume's context has just ended, so that it is not delivered again.
const commitTimeout = 10 * time.Second

// Consume reads topics as a member of the Kafka consumer group until ctx
// ends; it does not need Run. Missing topics are created first (so that
// the group is assigned their partitions). The group's members share the
// partitions (kafka-go's rebalancing); a group that never committed
// starts at the oldest message.
//
// h gets batches of at most maxBatch messages, those fetched within
// maxWait of the first. Returning nil commits the batch (synchronously,
// before the next is fetched); an error delivers the same batch again
// after a backoff, until h accepts it or ctx ends. A partition moved to
// another member during a rebalance may deliver a batch to both.
func (b *Bus) Consume(ctx context.Context, group string, topics []string, maxBatch int, maxWait time.Duration, h bus.Handler) error {
	if err := bus.CheckConsume(group, topics, maxBatch, h); err != nil {
		return err
	}
	topics = slices.Clone(topics)
	slices.Sort(topics)
	topics = slices.Compact(topics)
	maxWait = max(maxWait, time.Millisecond)
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

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:               b.cfg.Brokers,
		GroupID:               group,
		GroupTopics:           topics,
		Dialer:                b.dialer,
		QueueCapacity:         max(maxBatch, 100),
		MinBytes:              1,
		MaxBytes:              16 << 20,
		MaxWait:               min(max(maxWait, 100*time.Millisecond), time.Second),
		HeartbeatInterval:     b.cfg.HeartbeatInterval.D(),
		SessionTimeout:        b.cfg.SessionTimeout.D(),
		RebalanceTimeout:      b.cfg.SessionTimeout.D(),
		JoinGroupBackoff:      min(b.cfg.RetryBackoffMax.D(), time.Second),
		CommitInterval:        0, // synchronous commits
		StartOffset:           kafka.FirstOffset,
		ReadBackoffMin:        b.cfg.RetryBackoffMin.D(),
		ReadBackoffMax:        min(b.cfg.RetryBackoffMax.D(), time.Second),
		ErrorLogger:           debugLogger(log),
		WatchPartitionChanges: true,
	})
	defer func() {
		if err := r.Close(); err != nil {
			log.Debug("close kafka reader", "err", err)
		}
	}()

	var lastLog time.Time
	for attempt := 0; ; {
		batch, err := fetch(ctx, r, maxBatch, maxWait)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			b.metrics.fetchErrors.WithLabelValues(group).Inc()
			if time.Since(lastLog) >= logEvery {
				lastLog = time.Now()
				log.Warn("fetch messages; retrying", "err", err)
			}
			if bus.SleepCtx(ctx, bus.Backoff(attempt, b.cfg.RetryBackoffMin.D(), b.cfg.RetryBackoffMax.D())) != nil {
				return nil
			}
			attempt++
			continue
		}
		attempt = 0
		if err := b.handle(ctx, group, batch, h); err != nil {
			return nil // ctx ended
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		err = r.CommitMessages(cctx, batch...)
		cancel()
		if err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return nil
			}
			// Another member may get the batch again: at least once.
			b.metrics.commitErrors.WithLabelValues(group).Inc()
			log.Warn("commit offsets", "messages", len(batch), "err", err)
		}
		b.metrics.consumed.WithLabelValues(group).Add(float64(len(batch)))
		b.recordLag(group, batch)
	}
}

// fetch waits for a message, then takes what else arrives within maxWait,
// up to maxBatch.
func fetch(ctx context.Context, r *kafka.Reader, maxBatch int, maxWait time.Duration) ([]kafka.Message, error) {
	m, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := []kafka.Message{m}
	wctx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()
	for len(batch) < maxBatch {
		m, err := r.FetchMessage(wctx)
		if err != nil {
			break // time is up, or an error the next fetch will meet again
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// handle calls h until it accepts the batch, waiting between attempts; it
// returns an error only when ctx ends.
func (b *Bus) handle(ctx context.Context, group string, batch []kafka.Message, h bus.Handler) error {
	msgs := make([]bus.Message, len(batch))
	for i, km := range batch {
		msgs[i] = fromKafka(km)
	}
	for attempt := 0; ; attempt++ {
		err := h(ctx, slices.Clone(msgs))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.metrics.handlerErrors.WithLabelValues(group).Inc()
		d := bus.Backoff(attempt, b.cfg.RetryBackoffMin.D(), b.cfg.RetryBackoffMax.D())
		b.log.Warn("handler failed; batch will be delivered again", "group", group, "messages", len(msgs), "attempt", attempt+1, "retry_in", d, "err", err)
		if err := bus.SleepCtx(ctx, d); err != nil {
			return err
		}
	}
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

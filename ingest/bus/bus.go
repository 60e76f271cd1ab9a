package bus

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Topics.
const (
	TopicEvents     = "sharpeye.events"
	TopicCases      = "sharpeye.cases"
	TopicDeadLetter = "sharpeye.deadletter"
	TopicCameras    = "sharpeye.cameras"
)

// Message is one record on a topic.
type Message struct {
	Topic string
	// Key chooses the partition: messages with the same key keep their
	// order. An empty key spreads messages over the partitions.
	Key     string
	Value   []byte
	Headers map[string]string
	// Time is when the message was produced; Publish sets it to the
	// current time when it is zero.
	Time time.Time
	// Partition and Offset are set on consumed messages.
	Partition int
	Offset    int64
}

// Producer publishes messages durably.
type Producer interface {
	// Publish returns nil once every message is durable; it blocks while
	// the bus applies back-pressure and returns an error only when ctx
	// ends, the bus is closed, a message is invalid, or the durable store
	// fails. After an error, some of the messages may still be delivered.
	Publish(ctx context.Context, msgs ...Message) error
}

// Handler processes a batch of consumed messages; returning nil commits
// them, an error redelivers them (after a backoff) without committing.
type Handler func(ctx context.Context, msgs []Message) error

// Prepare is the first step of a handler in two steps: it turns a batch
// into the Write that stores it, and must have no effect beyond its result
// (decoding, validating), because a consumer may run it for a batch while
// the Write of the batch before is still running, and drops its result
// when the partitions change hands.
type Prepare func(msgs []Message) Write

// Write stores a prepared batch. A consumer runs the Writes of one member
// in order, one at a time; returning nil commits the batch, an error runs
// the same Write again after a backoff (the batch is prepared once).
type Write func(ctx context.Context) error

// Staged is the Prepare of a one-step handler: its Write calls h, with a
// copy of the batch at each attempt.
func Staged(h Handler) Prepare {
	return func(msgs []Message) Write {
		return func(ctx context.Context) error { return h(ctx, slices.Clone(msgs)) }
	}
}

// RetryWrite runs w, the write of a batch of n messages of group, until
// it succeeds or ctx ends (then it returns ctx's error), waiting
// Backoff(attempt, lo, hi) after each failure, which it counts in failures
// and logs.
func RetryWrite(ctx context.Context, w Write, lo, hi time.Duration, group string, n int, failures prometheus.Counter, log *slog.Logger) error {
	for attempt := 0; ; attempt++ {
		err := w(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := Backoff(attempt, lo, hi)
		failures.Inc()
		log.Warn("handler failed; batch will be delivered again", "group", group, "messages", n, "attempt", attempt+1, "retry_in", d, "err", err)
		if err := SleepCtx(ctx, d); err != nil {
			return err
		}
	}
}

// Sequential is the Handler that prepares a batch and writes it, for a
// consumer that does not overlap the two steps; nil for a nil p.
func Sequential(p Prepare) Handler {
	if p == nil {
		return nil
	}
	return func(ctx context.Context, msgs []Message) error { return p(msgs)(ctx) }
}

// StagedConsumer is a consumer that prepares the next batch while the one
// before is written: a store's insert waiting on its server and the
// decoding of what follows overlap. Both buses implement it.
type StagedConsumer interface {
	// ConsumeStaged is ConsumeRebalance with a handler in two steps.
	ConsumeStaged(ctx context.Context, group string, topics []string, maxBatch int, maxWait time.Duration, p Prepare, r Rebalance) error
}

// Consumer reads topics as a member of a consumer group.
type Consumer interface {
	// Consume runs until ctx ends, calling h with batches of at most
	// maxBatch messages (or fewer after maxWait). It returns nil when ctx
	// ends, ErrClosed when the bus is closed, or an error when it cannot
	// start (invalid arguments).
	Consume(ctx context.Context, group string, topics []string, maxBatch int, maxWait time.Duration, h Handler) error
}

// Bus is both.
type Bus interface {
	Producer
	Consumer
}

// Dead-letter headers: why a message was refused and where it came from.
const (
	HeaderReason = "reason"
	HeaderSource = "source"
)

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int
}

// Rebalance is told when partitions change hands between the members of a
// consumer group, so that a member can keep state per partition (load it
// when a partition arrives, save and drop it when the partition leaves).
// Either function may be nil.
type Rebalance struct {
	// Assigned is called with the partitions the member has been given,
	// before the handler sees any message of them. An error is retried
	// after a backoff; the member consumes nothing until it succeeds or
	// ctx ends (then Revoked is not called for them). Kafka revokes and
	// assigns all of a member's partitions at every rebalance; the
	// embedded bus only those that change hands.
	Assigned func(ctx context.Context, parts []TopicPartition) error
	// Revoked is called with the partitions the member gives up, after
	// the handler has returned for the last batch holding them and its
	// commit was attempted, and before any other member of the group is
	// given them. When Consume returns, it is called with every partition
	// the member still holds. Its ctx is not cancelled with Consume's, so
	// that state can still be saved; it ends after RevokeTimeout. On
	// Kafka, the group waits for it at most the session timeout before it
	// gives the partitions to others regardless.
	Revoked func(ctx context.Context, parts []TopicPartition)
}

// RebalanceConsumer is a Consumer whose members report the partitions
// they are given and give up. Both buses implement it.
type RebalanceConsumer interface {
	// ConsumeRebalance is Consume, telling r of each change of the
	// member's partitions.
	ConsumeRebalance(ctx context.Context, group string, topics []string, maxBatch int, maxWait time.Duration, h Handler, r Rebalance) error
}

// Partitioned is a bus that tells how many partitions a topic has (and
// creates the topic first when it is missing): what a member needs to map
// keys of its own onto the partitions it is assigned. Both buses
// implement it.
type Partitioned interface {
	Partitions(ctx context.Context, topic string) (int, error)
}

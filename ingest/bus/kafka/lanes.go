package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	kafka "github.com/segmentio/kafka-go"

	"sharpeye/ingest/bus"
)

// produceAttempts is how many times a lane sends a request before it
// fails it (and everything queued behind it) back to the Publish calls,
// which spool the messages.
const produceAttempts = 3

// topicPart names a partition.
type topicPart struct {
	topic string
	part  int
}

// entry is one Publish call's (or one spool delivery's) messages for one
// partition, in order.
type entry struct {
	msgs      []bus.Message
	bytes     int
	done      chan error // receives the outcome once
	abandoned atomic.Bool
}

// lane sends one partition's messages: it gathers the entries queued
// within batch_timeout into a produce request (acks=all) and sends one
// request at a time, in order. When a request fails for good, every entry
// queued behind it fails too: a later message of a key is never written
// ahead of an earlier one that failed (and is spooled to be sent again).
type lane struct {
	tp     topicPart
	mu     sync.Mutex
	queue  []*entry
	bytes  int       // of the queue
	since  time.Time // when the queue stopped being empty
	closed bool
	wake   chan struct{}
}

// lanes are the lanes of the partitions written to, started on first use
// by the goroutine of run, which reaps them.
type lanes struct {
	mu      sync.Mutex
	m       map[topicPart]*lane
	spawn   chan *lane
	stopped chan struct{} // closed when run no longer starts lanes
}

func newLanes() *lanes {
	return &lanes{m: make(map[topicPart]*lane), spawn: make(chan *lane), stopped: make(chan struct{})}
}

// run starts the lanes asked for, until ctx ends; then it waits for them
// to fail what they hold and return.
func (ls *lanes) run(ctx context.Context, b *Bus) {
	var wg sync.WaitGroup
	defer func() {
		close(ls.stopped)
		wg.Wait()
	}()
	for {
		select {
		case l := <-ls.spawn:
			wg.Go(func() { l.run(ctx, b) })
		case <-ctx.Done():
			return
		}
	}
}

// get returns the lane of tp, starting it if needed.
func (ls *lanes) get(tp topicPart) (*lane, error) {
	ls.mu.Lock()
	l := ls.m[tp]
	if l != nil {
		ls.mu.Unlock()
		return l, nil
	}
	l = &lane{tp: tp, wake: make(chan struct{}, 1)}
	ls.m[tp] = l
	ls.mu.Unlock()
	select {
	case ls.spawn <- l:
		return l, nil
	case <-ls.stopped:
		l.close(bus.ErrClosed)
		return nil, bus.ErrClosed
	}
}

// add queues e; it fails at once when the lane has stopped.
func (l *lane) add(e *entry) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		e.done <- bus.ErrClosed
		return
	}
	if len(l.queue) == 0 {
		l.since = time.Now()
	}
	l.queue = append(l.queue, e)
	l.bytes += e.bytes
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// close fails the queued entries and refuses new ones.
func (l *lane) close(err error) {
	l.mu.Lock()
	l.closed = true
	rest := l.queue
	l.queue, l.bytes = nil, 0
	l.mu.Unlock()
	for _, e := range rest {
		e.done <- err
	}
}

// take removes the entries of the next request from the queue: whole
// entries, up to maxMsgs messages and batchBytes (at least one entry).
// Abandoned entries are dropped: their Publish spooled them.
func (l *lane) take(maxMsgs int) []*entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*entry
	msgs, bytes := 0, 0
	for len(l.queue) > 0 {
		e := l.queue[0]
		if e.abandoned.Load() {
			l.queue = l.queue[1:]
			l.bytes -= e.bytes
			e.done <- context.Canceled
			continue
		}
		if len(out) > 0 && (msgs+len(e.msgs) > maxMsgs || bytes+e.bytes > batchBytes) {
			break
		}
		l.queue = l.queue[1:]
		l.bytes -= e.bytes
		out = append(out, e)
		msgs += len(e.msgs)
		bytes += e.bytes
	}
	if len(l.queue) > 0 {
		l.since = time.Time{} // the rest has waited: no lingering for it
	}
	return out
}

func (l *lane) run(ctx context.Context, b *Bus) {
	defer l.close(bus.ErrClosed)
	linger := b.cfg.BatchTimeout.D()
	for {
		l.mu.Lock()
		n, bytes, since := len(l.queue), l.bytes, l.since
		l.mu.Unlock()
		if n == 0 {
			select {
			case <-l.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		// Wait for more, from concurrent Publish calls, unless the
		// request is full already.
		if wait := linger - time.Since(since); wait > 0 && bytes < batchBytes && n < b.cfg.BatchSize {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-l.wake:
				t.Stop()
				continue
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		batch := l.take(b.cfg.BatchSize)
		if len(batch) == 0 {
			continue
		}
		acked, err := b.sendEntries(ctx, l.tp, batch)
		for i, e := range batch {
			if i < acked {
				e.done <- nil
			} else {
				e.done <- err
			}
		}
		if err != nil {
			// Nothing queued behind may overtake what failed.
			l.mu.Lock()
			rest := l.queue
			l.queue, l.bytes = nil, 0
			l.mu.Unlock()
			for _, e := range rest {
				e.done <- err
			}
		}
	}
}

// sendEntries writes the entries' messages to tp in requests of at most
// batch_size messages and batchBytes, one after the other, each tried up to
// produceAttempts times. It returns how many entries (a prefix) Kafka
// acknowledged entirely, and the error that stopped it.
func (b *Bus) sendEntries(ctx context.Context, tp topicPart, entries []*entry) (int, error) {
	var msgs []bus.Message
	ends := make([]int, len(entries)) // index after each entry's last message
	for i, e := range entries {
		msgs = append(msgs, e.msgs...)
		ends[i] = len(msgs)
	}
	sent := 0
	for sent < len(msgs) {
		n := chunkLen(msgs[sent:], b.cfg.BatchSize)
		if err := b.produceRequest(ctx, tp, msgs[sent:sent+n]); err != nil {
			acked := 0
			for acked < len(ends) && ends[acked] <= sent {
				acked++
			}
			return acked, err
		}
		sent += n
	}
	return len(entries), nil
}

// produceRequest sends one produce request, retrying what can pass.
func (b *Bus) produceRequest(ctx context.Context, tp topicPart, msgs []bus.Message) error {
	client := b.client()
	for attempt := 0; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		resp, err := client.Produce(rctx, &kafka.ProduceRequest{
			Topic:        tp.topic,
			Partition:    tp.part,
			RequiredAcks: kafka.RequireAll,
			Records:      &recordReader{msgs: msgs},
		})
		cancel()
		if err == nil && resp != nil && resp.Error != nil {
			err = resp.Error
		}
		if err == nil {
			return nil
		}
		b.metrics.deliveryErrors.Inc()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt+1 >= produceAttempts || !retriable(err) {
			return fmt.Errorf("produce to %s/%d: %w", tp.topic, tp.part, err)
		}
		if err := bus.SleepCtx(ctx, bus.Backoff(attempt, b.cfg.RetryBackoffMin.D(), min(b.cfg.RetryBackoffMax.D(), time.Second))); err != nil {
			return err
		}
	}
}

// retriable reports whether a failed request may pass if sent again.
func retriable(err error) bool {
	if permanent(err) {
		return false
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	return true // the network, a timeout
}

// recordReader gives msgs to a produce request.
type recordReader struct {
	msgs []bus.Message
	i    int
}

func (r *recordReader) ReadRecord() (*kafka.Record, error) {
	if r.i >= len(r.msgs) {
		return nil, io.EOF
	}
	m := r.msgs[r.i]
	r.i++
	rec := &kafka.Record{Time: m.Time, Value: kafka.NewBytes(m.Value)}
	if m.Key != "" {
		rec.Key = kafka.NewBytes([]byte(m.Key))
	}
	if len(m.Headers) > 0 {
		rec.Headers = make([]kafka.Header, 0, len(m.Headers))
		for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
			rec.Headers = append(rec.Headers, kafka.Header{Key: k, Value: []byte(m.Headers[k])})
		}
	}
	return rec, nil
}

// failure is a partition's messages Kafka did not take, and why.
type failure struct {
	msgs []bus.Message
	err  error
}

// send writes msgs to their partitions (murmur2 of the key, as Java
// clients; round robin without a key) through the lanes and waits for
// Kafka's acknowledgement, or for ctx to end. It returns what Kafka did not
// take, by partition, each in its original order.
func (b *Bus) send(ctx context.Context, msgs []bus.Message) ([]failure, error) {
	topics := map[string][]int{} // the partitions of each topic
	for _, m := range msgs {
		topics[m.Topic] = nil
	}
	if err := b.ensureTopics(ctx, slices.Collect(maps.Keys(topics))); err != nil {
		return []failure{{msgs, err}}, err
	}
	for t := range topics {
		n, err := b.partitions(ctx, t)
		if err != nil {
			return []failure{{msgs, err}}, err
		}
		topics[t] = partitionList(n)
	}

	byTP := map[topicPart]*entry{}
	var order []topicPart
	for _, m := range msgs {
		tp := topicPart{m.Topic, b.partition(m, topics[m.Topic])}
		e := byTP[tp]
		if e == nil {
			e = &entry{done: make(chan error, 1)}
			byTP[tp] = e
			order = append(order, tp)
		}
		e.msgs = append(e.msgs, m)
		e.bytes += messageBytes(m) + recordOverhead
	}
	var failed []failure
	var firstErr error
	fail := func(msgs []bus.Message, err error) {
		failed = append(failed, failure{msgs, err})
		if firstErr == nil {
			firstErr = err
		}
	}
	var queued []*entry
	for _, tp := range order {
		e := byTP[tp]
		l, err := b.lanes.get(tp)
		if err != nil {
			fail(e.msgs, err)
			continue
		}
		l.add(e)
		queued = append(queued, e)
	}
	for i, e := range queued {
		select {
		case err := <-e.done:
			if err != nil {
				fail(e.msgs, err)
			}
		case <-ctx.Done():
			// What is not acknowledged yet counts as failed; if it
			// lands later, it is a duplicate.
			for _, e := range queued[i:] {
				e.abandoned.Store(true)
				select {
				case err := <-e.done:
					if err == nil {
						continue
					}
				default:
				}
				fail(e.msgs, ctx.Err())
			}
			return failed, ctx.Err()
		}
	}
	return failed, firstErr
}

// partition returns the partition of m among parts (a partitionList):
// murmur2 of the key, as Kafka's Java client; round robin without a key.
func (b *Bus) partition(m bus.Message, parts []int) int {
	if m.Key == "" {
		return int(b.rr.Add(1) % uint32(len(parts)))
	}
	return murmur2Balancer.Balance(kafka.Message{Key: []byte(m.Key)}, parts...)
}

var murmur2Balancer = kafka.Murmur2Balancer{Consistent: true}

var (
	partitionListsMu sync.Mutex
	partitionLists   = map[int][]int{}
)

// partitionList returns 0..n-1, shared.
func partitionList(n int) []int {
	partitionListsMu.Lock()
	defer partitionListsMu.Unlock()
	l := partitionLists[n]
	if l == nil {
		l = make([]int, n)
		for i := range l {
			l[i] = i
		}
		partitionLists[n] = l
	}
	return l
}

// Partitions implements bus.Partitioned: the number of partitions of
// topic, created first when it is missing.
func (b *Bus) Partitions(ctx context.Context, topic string) (int, error) {
	if err := b.ensureTopics(ctx, []string{topic}); err != nil {
		return 0, err
	}
	return b.partitions(ctx, topic)
}

// partitions returns the number of partitions of topic, from the
// transport's cached metadata.
func (b *Bus) partitions(ctx context.Context, topic string) (int, error) {
	resp, err := b.client().Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return 0, fmt.Errorf("metadata of %s: %w", topic, t.Error)
		}
		if len(t.Partitions) == 0 {
			return 0, fmt.Errorf("metadata of %s: no partitions", topic)
		}
		return len(t.Partitions), nil
	}
	return 0, fmt.Errorf("metadata of %s: %w", topic, kafka.UnknownTopicOrPartition)
}

package bustest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sharpeye/ingest/bus"
)

// Options describe the implementation under test.
type Options struct {
	// New returns a running bus with empty storage, stopped when the test
	// ends.
	New func(t testing.TB) bus.Bus
	// Bounded, when set, returns a running bus whose log holds about
	// maxBytes before Publish blocks for a lagging consumer group; the
	// back-pressure test is skipped without it.
	Bounded func(t testing.TB, maxBytes int64) bus.Bus
	// Timeout bounds every wait, to turn a hang into a failure; 60s when
	// zero.
	Timeout time.Duration
	// MaxWait is the maxWait given to Consume; 10ms when zero.
	MaxWait time.Duration
}

// Run runs the suite as subtests of t.
func Run(t *testing.T, o Options) {
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	if o.MaxWait == 0 {
		o.MaxWait = 10 * time.Millisecond
	}
	s := &suite{o: o}
	t.Run("RoundTrip", s.roundTrip)
	t.Run("PerKeyOrder", s.perKeyOrder)
	t.Run("RedeliverOnError", s.redeliverOnError)
	t.Run("ResumeFromCommitted", s.resumeFromCommitted)
	t.Run("Staged", s.staged)
	t.Run("SeveralGroups", s.severalGroups)
	t.Run("GroupMembersShare", s.groupMembersShare)
	t.Run("RebalanceHooks", s.rebalanceHooks)
	t.Run("AssignedRetried", s.assignedRetried)
	t.Run("BackPressure", s.backPressure)
	t.Run("Cancellation", s.cancellation)
	t.Run("InvalidArguments", s.invalidArguments)
}

type suite struct {
	o Options
	n atomic.Int64
}

// name returns a topic or group name unique to the test.
func (s *suite) name(t testing.TB, kind string) string {
	base := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	return fmt.Sprintf("bustest.%s.%s.%d", base, kind, s.n.Add(1))
}

// msg builds the seq-th message of key, identified by its "id" header.
func msg(topic, key string, seq int, size int) bus.Message {
	id := key + "/" + strconv.Itoa(seq)
	v := []byte(id)
	if pad := size - len(v); pad > 0 {
		v = append(v, []byte(strings.Repeat("x", pad))...)
	}
	return bus.Message{Topic: topic, Key: key, Value: v, Headers: map[string]string{"id": id, "seq": strconv.Itoa(seq)}}
}

// keyed builds n messages of 32 bytes, spread over keys keys in turn.
func keyed(topic string, n, keys int) []bus.Message {
	msgs := make([]bus.Message, n)
	for i := range msgs {
		msgs[i] = msg(topic, "k"+strconv.Itoa(i%keys), i, 32)
	}
	return msgs
}

func idOf(m bus.Message) string { return m.Headers["id"] }

// recorder collects what handlers accepted and lets a test wait for a
// condition on it without polling.
type recorder struct {
	mu      sync.Mutex
	msgs    []bus.Message
	ids     map[string]int // id -> deliveries accepted
	changed chan struct{}
}

func newRecorder() *recorder {
	return &recorder{ids: map[string]int{}, changed: make(chan struct{})}
}

func (r *recorder) add(ms []bus.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range ms {
		r.msgs = append(r.msgs, m)
		r.ids[idOf(m)]++
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

func (r *recorder) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[id] > 0
}

func (r *recorder) snapshot() []bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// wait blocks until cond holds (checked after every change) or the
// suite's timeout, which fails the test.
func (r *recorder) wait(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s (hang?)", timeout, what)
		}
	}
}

// consumer is a Consume call running in a goroutine of the test.
type consumer struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (s *suite) consume(t testing.TB, b bus.Bus, group string, topics []string, maxBatch int, h bus.Handler) *consumer {
	t.Helper()
	return s.start(t, func(ctx context.Context) error { return b.Consume(ctx, group, topics, maxBatch, s.o.MaxWait, h) })
}

// start runs consume (a Consume call) until the consumer is stopped or
// the test ends.
func (s *suite) start(t testing.TB, consume func(context.Context) error) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = consume(ctx)
	}()
	t.Cleanup(func() { c.stop(t, s.o.Timeout) })
	return c
}

// stop cancels the consumer and waits for Consume to return.
func (c *consumer) stop(t testing.TB, timeout time.Duration) error {
	t.Helper()
	c.cancel()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("Consume did not return within %s of its context ending", timeout)
	}
	return c.err
}

func (s *suite) publish(t testing.TB, b bus.Bus, msgs ...bus.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	if err := b.Publish(ctx, msgs...); err != nil {
		t.Fatalf("publish %d messages: %v", len(msgs), err)
	}
}

func (s *suite) roundTrip(t *testing.T) {
	b := s.o.New(t)
	topic := s.name(t, "topic")
	at := time.Date(2025, 3, 14, 15, 9, 26, 535_000_000, time.UTC) // Kafka keeps milliseconds
	sent := []bus.Message{
		{Topic: topic, Key: "camera-7", Value: []byte(`{"kind":"motion"}`), Time: at,
			Headers: map[string]string{"id": "a", "source": "camera-7", "schema": "1"}},
		{Topic: topic, Key: "sensor-ä", Value: []byte{0, 1, 2, 255}, Time: at.Add(time.Millisecond),
			Headers: map[string]string{"id": "b", "unicode": "烟雾报警"}},
		{Topic: topic, Key: "", Value: nil, Headers: map[string]string{"id": "c"}},
	}
	if err := b.Publish(t.Context()); err != nil {
		t.Fatalf("publish nothing: %v", err)
	}
	s.publish(t, b, sent...)

	rec := newRecorder()
	s.consume(t, b, s.name(t, "group"), []string{topic}, 10, func(_ context.Context, ms []bus.Message) error {
		rec.add(ms)
		return nil
	})
	rec.wait(t, s.o.Timeout, "3 messages", func() bool { return rec.distinct() == 3 })

	got := map[string]bus.Message{}
	for _, m := range rec.snapshot() {
		got[idOf(m)] = m
	}
	for _, want := range sent {
		m := got[want.Headers["id"]]
		if m.Topic != topic || m.Key != want.Key || string(m.Value) != string(want.Value) {
			t.Errorf("message %s: got topic %q key %q value %q, want %q %q %q",
				want.Headers["id"], m.Topic, m.Key, m.Value, topic, want.Key, want.Value)
		}
		if len(m.Headers) != len(want.Headers) {
			t.Errorf("message %s: headers %v, want %v", want.Headers["id"], m.Headers, want.Headers)
		}
		for k, v := range want.Headers {
			if m.Headers[k] != v {
				t.Errorf("message %s: header %q = %q, want %q", want.Headers["id"], k, m.Headers[k], v)
			}
		}
		if !want.Time.IsZero() && !m.Time.Equal(want.Time) {
			t.Errorf("message %s: time %v, want %v", want.Headers["id"], m.Time, want.Time)
		}
		if m.Time.IsZero() {
			t.Errorf("message %s: no time; Publish sets it", want.Headers["id"])
		}
		if m.Partition < 0 || m.Offset < 0 {
			t.Errorf("message %s: partition %d offset %d", want.Headers["id"], m.Partition, m.Offset)
		}
	}
}

// perKeyOrder publishes interleaved keys from several publishers and
// consumes them with two members of one group: each key's messages must
// arrive in the order published (counting each message's first delivery,
// as redeliveries are allowed) and none may be missing.
func (s *suite) perKeyOrder(t *testing.T) {
	b := s.o.New(t)
	topic := s.name(t, "topic")
	group := s.name(t, "group")
	const publishers, keysPer, perKey, batch = 4, 5, 100, 50

	rec := newRecorder()
	h := func(_ context.Context, ms []bus.Message) error {
		rec.add(ms)
		return nil
	}
	s.consume(t, b, group, []string{topic}, 64, h)
	s.consume(t, b, group, []string{topic}, 64, h)

	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pending []bus.Message
			for seq := range perKey {
				for k := range keysPer {
					pending = append(pending, msg(topic, fmt.Sprintf("p%d-k%d", p, k), seq, 64))
					if len(pending) == batch {
						ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
						err := b.Publish(ctx, pending...)
						cancel()
						if err != nil {
							errs <- err
							return
						}
						pending = pending[:0]
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	total := publishers * keysPer * perKey
	rec.wait(t, s.o.Timeout, fmt.Sprintf("%d messages", total), func() bool { return rec.distinct() == total })

	if err := CheckKeyOrder(rec.snapshot()); err != nil {
		t.Fatal(err)
	}
}

// CheckKeyOrder checks that, counting only each message's first delivery
// (by its "id" header), the "seq" header of each key's messages
// increases. Messages published with msg-style headers by other tests can
// use it too.
func CheckKeyOrder(ms []bus.Message) error {
	seen := map[string]bool{}
	last := map[string]int{}
	for _, m := range ms {
		id := m.Headers["id"]
		if seen[id] {
			continue
		}
		seen[id] = true
		seq, err := strconv.Atoi(m.Headers["seq"])
		if err != nil {
			return fmt.Errorf("message %q: bad seq header %q", id, m.Headers["seq"])
		}
		if prev, ok := last[m.Key]; ok && seq <= prev {
			return fmt.Errorf("key %q: message %d arrived after %d", m.Key, seq, prev)
		}
		last[m.Key] = seq
	}
	return nil
}

// redeliverOnError fails the first two batches: their messages must come
// again, and every message must end up accepted.
func (s *suite) redeliverOnError(t *testing.T) {
	b := s.o.New(t)
	topic := s.name(t, "topic")
	const n = 100
	msgs := keyed(topic, n, 7)
	s.publish(t, b, msgs...)

	rec := newRecorder()
	var calls atomic.Int64
	var refusedMu sync.Mutex
	var refused []string
	s.consume(t, b, s.name(t, "group"), []string{topic}, 16, func(_ context.Context, ms []bus.Message) error {
		if calls.Add(1) <= 2 {
			refusedMu.Lock()
			for _, m := range ms {
				refused = append(refused, idOf(m))
			}
			refusedMu.Unlock()
			return errors.New("sink unavailable")
		}
		rec.add(ms)
		return nil
	})
	rec.wait(t, s.o.Timeout, fmt.Sprintf("%d messages", n), func() bool { return rec.distinct() == n })
	refusedMu.Lock()
	defer refusedMu.Unlock()
	if len(refused) == 0 {
		t.Fatal("the handler refused no batch")
	}
	for _, id := range refused {
		if !rec.has(id) {
			t.Errorf("message %s was refused and never delivered again", id)
		}
	}
	if err := CheckKeyOrder(rec.snapshot()); err != nil {
		t.Error(err)
	}
}

// resumeFromCommitted stops a consumer after it accepted some batches and
// refused one; a new consumer in the group must get exactly the rest:
// nothing accepted (committed) again, nothing missing.
func (s *suite) resumeFromCommitted(t *testing.T) {
	b := s.o.New(t)
	s.resume(t, b, func(group, topic string, h bus.Handler) *consumer {
		return s.consume(t, b, group, []string{topic}, 10, h)
	}, false)
}

// consumeStaged is consume for a handler in two steps.
func (s *suite) consumeStaged(t testing.TB, sc bus.StagedConsumer, group string, topics []string, maxBatch int, p bus.Prepare) *consumer {
	t.Helper()
	return s.start(t, func(ctx context.Context) error {
		return sc.ConsumeStaged(ctx, group, topics, maxBatch, s.o.MaxWait, p, bus.Rebalance{})
	})
}

// staged is resumeFromCommitted with a handler in two steps whose every
// third write fails as well: the writes keep each key's order, a refused
// write is retried, and a batch prepared but not written, or written but
// refused, is not committed. A refused write is retried as it is, not
// prepared again (preparing may have side effects, such as the sink's
// dead letters).
func (s *suite) staged(t *testing.T) {
	b := s.o.New(t)
	sc, ok := b.(bus.StagedConsumer)
	if !ok {
		t.Skip("the bus is not a bus.StagedConsumer")
	}
	var retried atomic.Int64
	s.resume(t, b, func(group, topic string, h bus.Handler) *consumer {
		return s.consumeStaged(t, sc, group, []string{topic}, 10, func(ms []bus.Message) bus.Write {
			ms = slices.Clone(ms)
			attempts := 0
			return func(ctx context.Context) error {
				if attempts++; attempts > 1 {
					retried.Add(1)
				}
				return h(ctx, ms)
			}
		})
	}, true)
	if retried.Load() == 0 {
		t.Fatal("no write was retried as it was prepared: refused batches were prepared again")
	}
}

// resume runs the test of resumeFromCommitted with consumers that start
// runs; with flaky, the first consumer's handler also fails every third
// call.
func (s *suite) resume(t *testing.T, b bus.Bus, start func(group, topic string, h bus.Handler) *consumer, flaky bool) {
	topic := s.name(t, "topic")
	group := s.name(t, "group")
	const n, stopAfter = 200, 60
	s.publish(t, b, keyed(topic, n, 5)...)

	first := newRecorder()
	refused := make(chan struct{})
	var once sync.Once
	var calls, failed atomic.Int64
	c1 := start(group, topic, func(_ context.Context, ms []bus.Message) error {
		if first.distinct() >= stopAfter {
			once.Do(func() { close(refused) })
			return errors.New("stopping")
		}
		if flaky && calls.Add(1)%3 == 2 {
			failed.Add(1)
			return errors.New("store unavailable")
		}
		first.add(ms)
		return nil
	})
	select {
	case <-refused:
	case <-time.After(s.o.Timeout):
		t.Fatal("the first consumer never reached its stopping point")
	}
	if err := c1.stop(t, s.o.Timeout); err != nil {
		t.Fatalf("the first consumer returned %v after its context ended, want nil", err)
	}
	if flaky && failed.Load() == 0 {
		t.Fatal("no call of the handler failed")
	}
	accepted := first.snapshot()
	if err := CheckKeyOrder(accepted); err != nil {
		t.Errorf("first consumer: %v", err)
	}

	second := newRecorder()
	start(group, topic, func(_ context.Context, ms []bus.Message) error {
		second.add(ms)
		return nil
	})
	want := n - first.distinct()
	second.wait(t, s.o.Timeout, fmt.Sprintf("the %d messages not committed", want), func() bool { return second.distinct() >= want })
	for _, m := range accepted {
		if second.has(idOf(m)) {
			t.Errorf("message %s was committed by the first consumer and delivered again", idOf(m))
		}
	}
	if got := second.distinct(); got != want {
		t.Errorf("second consumer got %d messages, want %d", got, want)
	}
	if err := CheckKeyOrder(second.snapshot()); err != nil {
		t.Errorf("second consumer: %v", err)
	}
}

func (s *suite) severalGroups(t *testing.T) {
	b := s.o.New(t)
	topic := s.name(t, "topic")
	const n = 300
	msgs := keyed(topic, n, 11)
	var recs []*recorder
	for range 3 {
		rec := newRecorder()
		recs = append(recs, rec)
		s.consume(t, b, s.name(t, "group"), []string{topic}, 50, func(_ context.Context, ms []bus.Message) error {
			rec.add(ms)
			return nil
		})
	}
	s.publish(t, b, msgs[:n/2]...)
	s.publish(t, b, msgs[n/2:]...)
	for i, rec := range recs {
		rec.wait(t, s.o.Timeout, fmt.Sprintf("group %d to see %d messages", i, n), func() bool { return rec.distinct() == n })
		if err := CheckKeyOrder(rec.snapshot()); err != nil {
			t.Errorf("group %d: %v", i, err)
		}
	}
}

// groupMembersShare runs two members of one group and publishes in rounds
// until both have handled messages: together they must have seen all.
// Then one member leaves: the other takes its partitions over and gets
// everything published since.
func (s *suite) groupMembersShare(t *testing.T) {
	b := s.o.New(t)
	topic := s.name(t, "topic")
	group := s.name(t, "group")
	all := newRecorder()
	var got [2]atomic.Int64
	var members [2]*consumer
	for i := range 2 {
		members[i] = s.consume(t, b, group, []string{topic}, 20, func(_ context.Context, ms []bus.Message) error {
			got[i].Add(int64(len(ms)))
			all.add(ms)
			return nil
		})
	}
	deadline := time.Now().Add(s.o.Timeout)
	sent := 0
	round := 0
	publishRound := func() {
		var msgs []bus.Message
		for k := range 32 {
			msgs = append(msgs, msg(topic, fmt.Sprintf("r%d-k%d", round, k), 0, 32))
		}
		round++
		s.publish(t, b, msgs...)
		sent += len(msgs)
		all.wait(t, s.o.Timeout, fmt.Sprintf("%d messages", sent), func() bool { return all.distinct() == sent })
	}
	for got[0].Load() == 0 || got[1].Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after %d rounds, the members handled %d and %d messages: the group does not share", round, got[0].Load(), got[1].Load())
		}
		publishRound()
	}

	if err := members[0].stop(t, s.o.Timeout); err != nil {
		t.Fatalf("Consume returned %v after its context ended, want nil", err)
	}
	before := got[0].Load()
	publishRound() // waits until every message was handled, by the member left
	publishRound()
	if got[0].Load() != before {
		t.Errorf("the member that left handled %d more messages", got[0].Load()-before)
	}
}

// backPressure makes a group lag behind a small log: Publish must block
// (rather than drop) until the group catches up, and the group must then
// receive every message whose Publish succeeded.
func (s *suite) backPressure(t *testing.T) {
	if s.o.Bounded == nil {
		t.Skip("the implementation has no consumer-bound log (Options.Bounded is nil)")
	}
	const bound = 64 << 10
	b := s.o.Bounded(t, bound)
	topic := s.name(t, "topic")

	// The group joins and handles a first message, then lags: its
	// handler holds the next batch until released.
	release := make(chan struct{})
	rec := newRecorder()
	s.consume(t, b, s.name(t, "group"), []string{topic}, 100, func(ctx context.Context, ms []bus.Message) error {
		if rec.distinct() > 0 {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		rec.add(ms)
		return nil
	})
	joined := msg(topic, "k0", -1, 8)
	s.publish(t, b, joined)
	rec.wait(t, s.o.Timeout, "the group to join", func() bool { return rec.has(idOf(joined)) })

	// Publish 1 KiB messages until one does not return within a second:
	// the log is full. Without back-pressure all 4×bound would go in.
	var published []string
	blocked := false
	for i := 0; i < 4*bound/1024; i++ {
		m := msg(topic, "k"+strconv.Itoa(i%3), i, 1024)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := b.Publish(ctx, m)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			blocked = true
			break
		}
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		published = append(published, idOf(m))
	}
	if !blocked {
		t.Fatalf("Publish accepted %d KiB into a log bounded at %d KiB whose only group lags", len(published), bound>>10)
	}

	// The group catches up: a blocked Publish goes through.
	done := make(chan error, 1)
	last := msg(topic, "k0", 1<<20, 1024)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
		defer cancel()
		done <- b.Publish(ctx, last)
	}()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("publish after the group caught up: %v", err)
	}
	published = append(published, idOf(last))
	rec.wait(t, s.o.Timeout, "every published message", func() bool {
		for _, id := range published {
			if !rec.has(id) {
				return false
			}
		}
		return true
	})
}

func (s *suite) cancellation(t *testing.T) {
	b := s.o.New(t)
	topic := s.name(t, "topic")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Publish(ctx, msg(topic, "k", 0, 8)); err == nil {
		t.Error("Publish with a cancelled context returned nil")
	}

	c := s.consume(t, b, s.name(t, "group"), []string{topic}, 10, func(context.Context, []bus.Message) error { return nil })
	if err := c.stop(t, s.o.Timeout); err != nil {
		t.Errorf("Consume returned %v after its context ended, want nil", err)
	}

	// A handler that blocks until its context ends does not hold up the
	// return either.
	s.publish(t, b, msg(topic, "k", 1, 8))
	entered := make(chan struct{})
	var once sync.Once
	c = s.consume(t, b, s.name(t, "group"), []string{topic}, 10, func(ctx context.Context, _ []bus.Message) error {
		once.Do(func() { close(entered) })
		<-ctx.Done()
		return ctx.Err()
	})
	select {
	case <-entered:
	case <-time.After(s.o.Timeout):
		t.Fatal("the handler was never called")
	}
	if err := c.stop(t, s.o.Timeout); err != nil {
		t.Errorf("Consume returned %v after its context ended in the handler, want nil", err)
	}
}

func (s *suite) invalidArguments(t *testing.T) {
	b := s.o.New(t)
	topic := s.name(t, "topic")
	if err := b.Publish(t.Context(), bus.Message{Key: "k", Value: []byte("v")}); !errors.Is(err, bus.ErrInvalid) {
		t.Errorf("Publish without a topic: %v, want ErrInvalid", err)
	}
	if err := b.Publish(t.Context(), bus.Message{Topic: "no spaces allowed"}); !errors.Is(err, bus.ErrInvalid) {
		t.Errorf("Publish to a bad topic name: %v, want ErrInvalid", err)
	}
	h := func(context.Context, []bus.Message) error { return nil }
	for name, call := range map[string]func() error{
		"no group":   func() error { return b.Consume(t.Context(), "", []string{topic}, 1, 0, h) },
		"no topics":  func() error { return b.Consume(t.Context(), "g", nil, 1, 0, h) },
		"batch 0":    func() error { return b.Consume(t.Context(), "g", []string{topic}, 0, 0, h) },
		"no handler": func() error { return b.Consume(t.Context(), "g", []string{topic}, 1, 0, nil) },
	} {
		if err := call(); !errors.Is(err, bus.ErrInvalid) {
			t.Errorf("Consume with %s: %v, want ErrInvalid", name, err)
		}
	}
}

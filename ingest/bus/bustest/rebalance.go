package bustest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sharpeye/ingest/bus"
)

// hookEvent is one call of a Rebalance hook, in the order of the calls.
type hookEvent struct {
	seq     int
	member  int
	revoked bool
	parts   []bus.TopicPartition
}

func (e hookEvent) String() string {
	kind := "assigned"
	if e.revoked {
		kind = "revoked"
	}
	return fmt.Sprintf("#%d member %d %s %v", e.seq, e.member, kind, e.parts)
}

// owners follows which member holds each partition, as the Rebalance
// hooks of the members of one group tell it, and records every breach of
// the contract: a partition assigned while another member holds it, one
// revoked from a member that does not hold it, a message handled by a
// member that does not hold its partition.
type owners struct {
	mu       sync.Mutex
	seq      int
	holder   map[bus.TopicPartition]int // member, absent when nobody holds it
	events   []hookEvent
	breaches []string
	changed  chan struct{}
}

func newOwners() *owners {
	return &owners{holder: map[bus.TopicPartition]int{}, changed: make(chan struct{})}
}

// rebalance returns the hooks of member.
func (o *owners) rebalance(member int) bus.Rebalance {
	return bus.Rebalance{
		Assigned: func(_ context.Context, parts []bus.TopicPartition) error {
			o.mu.Lock()
			defer o.mu.Unlock()
			for _, p := range parts {
				if h, ok := o.holder[p]; ok {
					o.breaches = append(o.breaches, fmt.Sprintf("member %d was assigned %v while member %d held it", member, p, h))
				}
				o.holder[p] = member
			}
			o.recordLocked(member, false, parts)
			return nil
		},
		Revoked: func(_ context.Context, parts []bus.TopicPartition) {
			o.mu.Lock()
			defer o.mu.Unlock()
			for _, p := range parts {
				if h, ok := o.holder[p]; !ok || h != member {
					o.breaches = append(o.breaches, fmt.Sprintf("member %d gave up %v, which it did not hold", member, p))
					continue
				}
				delete(o.holder, p)
			}
			o.recordLocked(member, true, parts)
		},
	}
}

func (o *owners) recordLocked(member int, revoked bool, parts []bus.TopicPartition) {
	o.seq++
	o.events = append(o.events, hookEvent{o.seq, member, revoked, slices.Clone(parts)})
	close(o.changed)
	o.changed = make(chan struct{})
}

// handled checks that member holds the partition of every message it was
// given.
func (o *owners) handled(member int, ms []bus.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range ms {
		p := bus.TopicPartition{Topic: m.Topic, Partition: m.Partition}
		if h, ok := o.holder[p]; !ok || h != member {
			o.breaches = append(o.breaches, fmt.Sprintf("member %d handled message %s of %v, which it does not hold (holder %d)", member, idOf(m), p, h))
		}
	}
}

// held returns the partitions member holds, in order.
func (o *owners) held(member int) []bus.TopicPartition {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ps []bus.TopicPartition
	for p, h := range o.holder {
		if h == member {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b bus.TopicPartition) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return a.Partition - b.Partition
	})
	return ps
}

func (o *owners) snapshot() []hookEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.events)
}

// wait blocks until cond holds (checked after every hook call) or the
// timeout, which fails the test.
func (o *owners) wait(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		ch := o.changed
		o.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s (hang?); hooks called:\n%s", timeout, what, o.dump())
		}
	}
}

func (o *owners) dump() string {
	var b strings.Builder
	for _, e := range o.snapshot() {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// revokedAfter returns the seq of member's first Revoked call after
// seq from that gave up p, or 0.
func revokedAfter(events []hookEvent, member int, p bus.TopicPartition, from int) int {
	for _, e := range events {
		if e.seq > from && e.member == member && e.revoked && slices.Contains(e.parts, p) {
			return e.seq
		}
	}
	return 0
}

// assignedAfter returns the seq of member's first Assigned call after seq
// from that gave it p, or 0.
func assignedAfter(events []hookEvent, member int, p bus.TopicPartition, from int) int {
	for _, e := range events {
		if e.seq > from && e.member == member && !e.revoked && slices.Contains(e.parts, p) {
			return e.seq
		}
	}
	return 0
}

// rebalanceHooks runs two members of one group with Rebalance hooks on a
// topic of several partitions while messages keep coming: member 1 alone,
// then both, then member 2 alone. From the hooks it checks that no
// partition ever has two holders, that handlers only get messages of the
// partitions their member holds, that the partitions member 2 is given
// when it joins were first given up by member 1, that a member's Consume
// gives up everything it holds before returning and the other member then
// takes it, and that every message is handled.
func (s *suite) rebalanceHooks(t *testing.T) {
	b := s.o.New(t)
	rb, ok := b.(bus.RebalanceConsumer)
	if !ok {
		t.Fatalf("%T does not implement bus.RebalanceConsumer", b)
	}
	topic := s.name(t, "topic")
	group := s.name(t, "group")
	own := newOwners()
	rec := newRecorder()
	var members [3]*consumer // 1 and 2
	var got [3]int
	var gotMu sync.Mutex
	run := func(member int) {
		h := func(_ context.Context, ms []bus.Message) error {
			own.handled(member, ms)
			gotMu.Lock()
			got[member] += len(ms)
			gotMu.Unlock()
			rec.add(ms)
			return nil
		}
		members[member] = s.start(t, func(ctx context.Context) error {
			return rb.ConsumeRebalance(ctx, group, []string{topic}, 16, s.o.MaxWait, h, own.rebalance(member))
		})
	}
	handledBy := func(member int) int {
		gotMu.Lock()
		defer gotMu.Unlock()
		return got[member]
	}
	sent := 0
	round := 0
	publishRound := func() {
		var msgs []bus.Message
		for k := range 64 {
			msgs = append(msgs, msg(topic, fmt.Sprintf("r%d-k%d", round, k), 0, 32))
		}
		round++
		s.publish(t, b, msgs...)
		sent += len(msgs)
		rec.wait(t, s.o.Timeout, fmt.Sprintf("%d messages", sent), func() bool { return rec.distinct() == sent })
	}

	// Member 1 alone holds every partition.
	run(1)
	publishRound()
	held1 := own.held(1)
	if len(held1) < 2 {
		t.Fatalf("member 1, alone in its group, holds %v; the test needs a topic of several partitions", held1)
	}

	// Member 2 joins: member 1 gives partitions up before member 2 gets
	// them.
	joined := len(own.snapshot())
	run(2)
	deadline := time.Now().Add(s.o.Timeout)
	for handledBy(2) == 0 || len(own.held(1)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after member 2 joined, the members handled %d and %d messages and hold %v and %v: the group does not share; hooks called:\n%s",
				handledBy(1), handledBy(2), own.held(1), own.held(2), own.dump())
		}
		publishRound()
	}
	events := own.snapshot()
	var first *hookEvent
	for i, e := range events[joined:] {
		if e.member == 2 && !e.revoked {
			first = &events[joined+i]
			break
		}
	}
	if first == nil {
		t.Fatalf("member 2 handled messages but was never assigned a partition; hooks called:\n%s", own.dump())
	}
	for _, p := range first.parts {
		if !slices.Contains(held1, p) {
			t.Errorf("member 2 was assigned %v, which member 1 did not hold", p)
			continue
		}
		if r := revokedAfter(events, 1, p, events[joined-1].seq); r == 0 || r > first.seq {
			t.Errorf("member 2 was assigned %v (%s) before member 1 gave it up", p, first)
		}
	}

	// Member 1 leaves: it gives up what it holds before Consume returns,
	// and member 2 takes it over.
	left := own.held(1)
	before := len(own.snapshot())
	if err := members[1].stop(t, s.o.Timeout); err != nil {
		t.Fatalf("member 1's Consume returned %v after its context ended, want nil", err)
	}
	if still := own.held(1); len(still) > 0 {
		t.Errorf("member 1's Consume returned holding %v: no Revoked for them", still)
	}
	own.wait(t, s.o.Timeout, "member 2 to take over member 1's partitions", func() bool {
		h := own.held(2)
		for _, p := range left {
			if !slices.Contains(h, p) {
				return false
			}
		}
		return true
	})
	events = own.snapshot()
	for _, p := range left {
		r := revokedAfter(events, 1, p, events[before-1].seq)
		if a := assignedAfter(events, 2, p, events[before-1].seq); r == 0 || a < r {
			t.Errorf("member 2 took %v over (at #%d) before member 1 gave it up (at #%d)", p, a, r)
		}
	}
	publishRound() // waits until every message was handled, by member 2
	publishRound()

	if err := members[2].stop(t, s.o.Timeout); err != nil {
		t.Fatalf("member 2's Consume returned %v after its context ended, want nil", err)
	}
	if still := own.held(2); len(still) > 0 {
		t.Errorf("member 2's Consume returned holding %v: no Revoked for them", still)
	}
	if got := rec.distinct(); got != sent {
		t.Errorf("%d of %d messages handled", got, sent)
	}
	own.mu.Lock()
	breaches := slices.Clone(own.breaches)
	own.mu.Unlock()
	for _, b := range breaches {
		t.Error(b)
	}
	if t.Failed() {
		t.Logf("hooks called:\n%s", own.dump())
	}
}

// assignedRetried refuses a member's first two Assigned calls: the
// partitions must be offered again, no message may reach the handler
// before Assigned accepted its partition, and every message arrives.
func (s *suite) assignedRetried(t *testing.T) {
	b := s.o.New(t)
	rb, ok := b.(bus.RebalanceConsumer)
	if !ok {
		t.Fatalf("%T does not implement bus.RebalanceConsumer", b)
	}
	topic := s.name(t, "topic")
	const n = 100
	s.publish(t, b, keyed(topic, n, 13)...)

	own := newOwners()
	hooks := own.rebalance(1)
	var refused int
	var refusedMu sync.Mutex
	assigned := hooks.Assigned
	hooks.Assigned = func(ctx context.Context, parts []bus.TopicPartition) error {
		refusedMu.Lock()
		defer refusedMu.Unlock()
		if refused < 2 {
			refused++
			return fmt.Errorf("state store unavailable (%d)", refused)
		}
		return assigned(ctx, parts)
	}
	rec := newRecorder()
	c := s.start(t, func(ctx context.Context) error {
		return rb.ConsumeRebalance(ctx, s.name(t, "group"), []string{topic}, 16, s.o.MaxWait, func(_ context.Context, ms []bus.Message) error {
			own.handled(1, ms)
			rec.add(ms)
			return nil
		}, hooks)
	})
	rec.wait(t, s.o.Timeout, fmt.Sprintf("%d messages", n), func() bool { return rec.distinct() == n })
	if err := c.stop(t, s.o.Timeout); err != nil {
		t.Fatalf("Consume returned %v after its context ended, want nil", err)
	}
	refusedMu.Lock()
	if refused != 2 {
		t.Errorf("Assigned was refused %d times, want 2", refused)
	}
	refusedMu.Unlock()
	if still := own.held(1); len(still) > 0 {
		t.Errorf("Consume returned holding %v: no Revoked for them", still)
	}
	own.mu.Lock()
	defer own.mu.Unlock()
	for _, b := range own.breaches {
		t.Error(b)
	}
}

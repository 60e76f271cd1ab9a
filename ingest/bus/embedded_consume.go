package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RevokeTimeout bounds the context given to Rebalance.Revoked, which is
// not cancelled with Consume's (the member saves its state on the way
// out).
const RevokeTimeout = 10 * time.Second

// errHandover is returned by next when m's partitions must change hands
// before it reads again.
var errHandover = errors.New("partitions change hands")

// Consume reads topics as a member of group until ctx ends. Each topic's
// partitions are divided among the group's members (Consume calls) in
// this process; a partition changes hands only between batches, after the
// last one was committed, so each key keeps its order even with several
// members. A group that has never committed starts at the oldest message
// kept.
//
// h gets batches of at most maxBatch messages: as many as are waiting, or,
// when fewer, those that arrived within maxWait of the first. Returning nil
// commits the batch; an error delivers the same batch again after a
// backoff, until h accepts it or ctx ends.
func (e *Embedded) Consume(ctx context.Context, group string, topics []string, maxBatch int, maxWait time.Duration, h Handler) error {
	return e.ConsumeRebalance(ctx, group, topics, maxBatch, maxWait, h, Rebalance{})
}

// ConsumeRebalance is Consume, telling r of the partitions the member is
// given and gives up. A member gives a partition up between batches: it
// calls r.Revoked once its last batch was handled and committed, and only
// then lets the member it now belongs to claim it, which calls r.Assigned
// before reading it. When ConsumeRebalance returns, r.Revoked is called
// with the partitions still held before the other members may claim them.
func (e *Embedded) ConsumeRebalance(ctx context.Context, group string, topics []string, maxBatch int, maxWait time.Duration, h Handler, r Rebalance) error {
	if err := CheckConsume(group, topics, maxBatch, h); err != nil {
		return err
	}
	return e.consume(ctx, group, topics, maxBatch, maxWait, Staged(h), r)
}

// consume is ConsumeRebalance and ConsumeStaged: p prepares each batch
// once, and its Write is retried until it succeeds.
func (e *Embedded) consume(ctx context.Context, group string, topics []string, maxBatch int, maxWait time.Duration, p Prepare, r Rebalance) error {
	topics = slices.Clone(topics)
	slices.Sort(topics)
	topics = slices.Compact(topics)

	parent := ctx
	ctx, leave, err := e.enter(ctx)
	if err != nil {
		if parent.Err() != nil {
			return nil
		}
		return err
	}
	defer leave()
	end := func(err error) error {
		if errors.Is(e.ctxErr(ctx), ErrClosed) {
			return ErrClosed
		}
		if parent.Err() != nil {
			return nil
		}
		return err
	}

	m, err := e.join(ctx, group, topics)
	if err != nil {
		return end(err)
	}
	defer e.leaveGroup(m)
	defer e.revokeAll(ctx, m, r) // before leaveGroup lets the others claim

	for {
		if err := e.handover(ctx, m, r); err != nil {
			return end(err)
		}
		b, err := e.next(ctx, m, maxBatch, maxWait)
		if errors.Is(err, errHandover) {
			continue
		}
		if err != nil {
			return end(err)
		}
		if len(b.msgs) > 0 {
			if err := e.handle(ctx, m, len(b.msgs), p(b.msgs)); err != nil {
				return end(err)
			}
		}
		if err := e.commit(m, b.next); err != nil {
			// The batch will be delivered again: at least once.
			e.log.Error("commit consumer offsets", "group", group, "err", err)
			e.metrics.commitErrors.WithLabelValues(group).Inc()
			if err := SleepCtx(ctx, e.cfg.RetryBackoffMin.D()); err != nil {
				return end(err)
			}
		}
	}
}

// ConsumeStaged implements StagedConsumer without overlapping the steps:
// the embedded bus's consumers read from its own log, where the next
// batch costs little, and its store (SQLite) writes on the same cores.
func (e *Embedded) ConsumeStaged(ctx context.Context, group string, topics []string, maxBatch int, maxWait time.Duration, p Prepare, r Rebalance) error {
	if err := CheckConsume(group, topics, maxBatch, Sequential(p)); err != nil {
		return err
	}
	return e.consume(ctx, group, topics, maxBatch, maxWait, p, r)
}

var _ StagedConsumer = (*Embedded)(nil)

// handle runs w, the write of a batch of n messages, until it succeeds,
// waiting between attempts (the batch is prepared once: a retry does not
// redo what preparing did, such as dead-lettering).
func (e *Embedded) handle(ctx context.Context, m *member, n int, w Write) error {
	err := RetryWrite(ctx, w, e.cfg.RetryBackoffMin.D(), e.cfg.RetryBackoffMax.D(), m.g.name, n, e.metrics.handlerErrors.WithLabelValues(m.g.name), e.log)
	if err == nil {
		e.metrics.consumed.WithLabelValues(m.g.name).Add(float64(n))
	}
	return err
}

// join adds a member to group, first recording the group's starting
// offsets for the topics it did not read yet, so that deleting consumed
// messages waits for it from now on.
func (e *Embedded) join(ctx context.Context, name string, topics []string) (*member, error) {
	e.wmu.Lock()
	defer e.wmu.Unlock()

	type start struct {
		tp  topicPart
		off int64
	}
	var missing []start
	e.mu.Lock()
	g := e.groupLocked(name)
	for _, t := range topics {
		for p := range e.parts {
			tp := topicPart{t, p}
			if _, ok := g.committed[tp]; !ok {
				off := int64(0)
				if pl := e.logs[tp]; pl != nil {
					off = pl.start
				}
				missing = append(missing, start{tp, off})
			}
		}
	}
	e.mu.Unlock()

	if len(missing) > 0 {
		tx, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("join consumer group %q: %w", name, err)
		}
		defer tx.Rollback()
		for _, s := range missing {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO offsets(grp, topic, part, off) VALUES (?, ?, ?, ?)`,
				name, s.tp.topic, s.tp.part, s.off); err != nil {
				return nil, fmt.Errorf("join consumer group %q: %w", name, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("join consumer group %q: %w", name, err)
		}
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	g = e.groupLocked(name) // DeleteGroup may have run meanwhile
	for _, s := range missing {
		if _, ok := g.committed[s.tp]; !ok {
			g.committed[s.tp] = s.off
		}
	}
	g.nextID++
	m := &member{g: g, id: g.nextID, topics: topics, owned: make(map[topicPart]struct{})}
	g.members = append(g.members, m)
	e.broadcastLocked() // the others give up the partitions now m's
	return m, nil
}

// leaveGroup removes m from its group, releasing its claims.
func (e *Embedded) leaveGroup(m *member) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := m.g
	for tp, o := range g.claims {
		if o == m {
			delete(g.claims, tp)
		}
	}
	m.owned = nil
	g.members = slices.DeleteFunc(g.members, func(o *member) bool { return o == m })
	e.broadcastLocked()
}

// revokeAll tells r that m gives up every partition it still holds, on
// the way out of Consume.
func (e *Embedded) revokeAll(ctx context.Context, m *member, r Rebalance) {
	e.mu.Lock()
	held := sortedTPs(m.owned)
	e.mu.Unlock()
	e.revoke(ctx, m, held, r)
}

// revoke calls r.Revoked with a context that outlives ctx by at most
// RevokeTimeout.
func (e *Embedded) revoke(ctx context.Context, m *member, tps []topicPart, r Rebalance) {
	if len(tps) == 0 {
		return
	}
	e.log.Debug("partitions revoked", "group", m.g.name, "member", m.id, "partitions", tpStrings(tps))
	if r.Revoked == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RevokeTimeout)
	defer cancel()
	r.Revoked(rctx, topicPartitions(tps))
}

// assignmentLocked returns the partitions assigned to m: those of each
// topic it subscribes to, dealt round robin to the members subscribing to
// the topic in the order they joined.
func (e *Embedded) assignmentLocked(m *member) map[topicPart]struct{} {
	g := m.g
	want := make(map[topicPart]struct{})
	for _, t := range m.topics {
		var subs []*member
		idx := -1
		for _, o := range g.members {
			if slices.Contains(o.topics, t) {
				if o == m {
					idx = len(subs)
				}
				subs = append(subs, o)
			}
		}
		for p := idx; idx >= 0 && p < e.parts; p += len(subs) {
			want[topicPart{t, p}] = struct{}{}
		}
	}
	return want
}

// handoverDueLocked reports whether m holds a partition no longer assigned
// to it, or may claim one assigned to it that nobody holds.
func (e *Embedded) handoverDueLocked(m *member) bool {
	want := e.assignmentLocked(m)
	for tp := range m.owned {
		if _, ok := want[tp]; !ok {
			return true
		}
	}
	for tp := range want {
		if _, ok := m.owned[tp]; !ok && m.g.claims[tp] == nil {
			return true
		}
	}
	return false
}

// handover gives up the partitions no longer assigned to m (calling
// r.Revoked before releasing them to the others), then claims those
// assigned to it that no other member holds (calling r.Assigned, retried
// with backoff, before m reads them). It returns an error only when ctx
// ends while r.Assigned fails.
func (e *Embedded) handover(ctx context.Context, m *member, r Rebalance) error {
	g := m.g
	e.mu.Lock()
	want := e.assignmentLocked(m)
	var revoked []topicPart
	for tp := range m.owned {
		if _, ok := want[tp]; !ok {
			revoked = append(revoked, tp)
		}
	}
	e.mu.Unlock()
	if len(revoked) > 0 {
		slices.SortFunc(revoked, compareTP)
		// Still claimed by m while r.Revoked runs: nobody reads them.
		e.revoke(ctx, m, revoked, r)
		e.mu.Lock()
		for _, tp := range revoked {
			delete(m.owned, tp)
			if g.claims[tp] == m {
				delete(g.claims, tp)
			}
		}
		e.broadcastLocked()
		e.mu.Unlock()
	}

	e.mu.Lock()
	want = e.assignmentLocked(m) // members may have come or gone meanwhile
	var claimed []topicPart
	for tp := range want {
		if _, ok := m.owned[tp]; !ok && g.claims[tp] == nil {
			g.claims[tp] = m
			claimed = append(claimed, tp)
		}
	}
	e.mu.Unlock()
	if len(claimed) == 0 {
		return nil
	}
	slices.SortFunc(claimed, compareTP)
	if err := e.assign(ctx, m, claimed, r); err != nil {
		e.mu.Lock()
		for _, tp := range claimed {
			if g.claims[tp] == m {
				delete(g.claims, tp)
			}
		}
		e.broadcastLocked()
		e.mu.Unlock()
		return err
	}
	e.mu.Lock()
	for _, tp := range claimed {
		m.owned[tp] = struct{}{}
	}
	e.mu.Unlock()
	return nil
}

// assign calls r.Assigned until it accepts tps, waiting between attempts;
// it returns an error only when ctx ends.
func (e *Embedded) assign(ctx context.Context, m *member, tps []topicPart, r Rebalance) error {
	e.log.Debug("partitions assigned", "group", m.g.name, "member", m.id, "partitions", tpStrings(tps))
	if r.Assigned == nil {
		return nil
	}
	parts := topicPartitions(tps)
	for attempt := 0; ; attempt++ {
		err := r.Assigned(ctx, slices.Clone(parts))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := Backoff(attempt, e.cfg.RetryBackoffMin.D(), e.cfg.RetryBackoffMax.D())
		e.log.Warn("partition assignment refused; retrying", "group", m.g.name, "partitions", len(tps), "attempt", attempt+1, "retry_in", d, "err", err)
		if err := SleepCtx(ctx, d); err != nil {
			return err
		}
	}
}

func topicPartitions(tps []topicPart) []TopicPartition {
	out := make([]TopicPartition, len(tps))
	for i, tp := range tps {
		out[i] = TopicPartition{Topic: tp.topic, Partition: tp.part}
	}
	return out
}

func tpStrings(tps []topicPart) []string {
	out := make([]string, len(tps))
	for i, tp := range tps {
		out[i] = tp.String()
	}
	return out
}

// pending is a run of messages waiting in one partition.
type pending struct {
	tp       topicPart
	from, to int64 // [from, to)
}

// batch is what next read: the messages and, for each partition read, the
// offset to commit once they are handled (which also covers the rows that
// could not be read).
type batch struct {
	msgs []Message
	next map[topicPart]int64
}

// next waits for messages in m's partitions and reads a batch of them; it
// returns errHandover, reading nothing, as soon as m's partitions must
// change hands (see handover).
func (e *Embedded) next(ctx context.Context, m *member, maxBatch int, maxWait time.Duration) (batch, error) {
	var (
		timer    *time.Timer
		timeout  <-chan time.Time
		deadline time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		e.mu.Lock()
		if e.closing {
			e.mu.Unlock()
			return batch{}, ErrClosed
		}
		if e.handoverDueLocked(m) {
			e.mu.Unlock()
			return batch{}, errHandover
		}
		var work []pending
		var total int64
		for _, tp := range sortedTPs(m.owned) {
			pl := e.logs[tp]
			if pl == nil {
				continue
			}
			from := max(m.g.committed[tp], pl.start)
			if pl.next > from {
				work = append(work, pending{tp, from, pl.next})
				total += pl.next - from
			}
		}
		ch := e.changed
		e.mu.Unlock()

		now := time.Now()
		if total > 0 && (total >= int64(maxBatch) || maxWait <= 0 || (!deadline.IsZero() && !now.Before(deadline))) {
			return e.read(ctx, m, work, maxBatch)
		}
		if total > 0 && deadline.IsZero() {
			deadline = now.Add(maxWait)
			timer = time.NewTimer(maxWait)
			timeout = timer.C
		}
		select {
		case <-ch:
		case <-timeout:
		case <-ctx.Done():
			return batch{}, ctx.Err()
		}
	}
}

// read reads up to maxBatch messages from the runs in work, starting with
// a different partition each time so that none starves.
func (e *Embedded) read(ctx context.Context, m *member, work []pending, maxBatch int) (batch, error) {
	b := batch{next: make(map[topicPart]int64)}
	m.rot++
	for i := range work {
		w := work[(i+m.rot)%len(work)]
		room := maxBatch - len(b.msgs)
		if room <= 0 {
			break
		}
		n := int(min(int64(room), w.to-w.from))
		next, err := e.readPart(ctx, w, n, &b)
		if err != nil {
			return batch{}, err
		}
		b.next[w.tp] = next
	}
	return b, nil
}

// readPart appends to b up to n messages of the run w and returns the
// offset to commit once they are handled: past the last one read when n
// were, past the run (or as far as it looked) otherwise. A batch row that
// cannot be decoded is skipped from where it is damaged, and counted.
func (e *Embedded) readPart(ctx context.Context, w pending, n int, b *batch) (int64, error) {
	// Every row holds at least one message of the run, so n rows hold n
	// messages, save gaps left by an upgrade.
	e.mu.Lock()
	pl := e.partLocked(w.tp)
	var ids []any
	complete := true // the rows listed reach the end of the run
	for _, r := range pl.rows[pl.firstRow(w.from):] {
		if r.off >= w.to {
			break
		}
		if len(ids) == n {
			complete = false
			break
		}
		ids = append(ids, r.id)
	}
	e.mu.Unlock()
	if len(ids) == 0 {
		return w.to, nil // expired meanwhile
	}
	rows, err := e.db.QueryContext(ctx, `SELECT off, last, data FROM batches WHERE id IN (?`+strings.Repeat(", ?", len(ids)-1)+`) ORDER BY id`, ids...)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", w.tp, err)
	}
	defer rows.Close()
	pos, got := w.from, 0
	for got < n && rows.Next() {
		var off, last int64
		var data []byte
		if err := rows.Scan(&off, &last, &data); err != nil {
			return 0, fmt.Errorf("read %s: %w", w.tp, err)
		}
		br, err := newBatchReader(w.tp, off, last, data)
		for err == nil && got < n {
			var m Message
			var ok bool
			if m, ok, err = br.next(); !ok || err != nil || m.Offset >= w.to {
				break
			}
			if m.Offset < w.from {
				continue
			}
			b.msgs = append(b.msgs, m)
			got++
			pos = m.Offset + 1
		}
		if err != nil {
			// Skipped and committed past: retrying cannot mend it.
			e.metrics.corrupt.Inc()
			e.log.Error("corrupt batch in the bus log skipped", "partition", w.tp.String(), "offsets", fmt.Sprintf("%d-%d", off, last), "err", err)
		}
		if got < n {
			pos = max(pos, min(last+1, w.to))
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", w.tp, err)
	}
	if got < n && complete {
		// The run was read to its end; what is missing expired meanwhile.
		pos = w.to
	}
	return pos, nil
}

// commit records the offsets of a handled batch.
func (e *Embedded) commit(m *member, next map[topicPart]int64) error {
	if len(next) == 0 {
		return nil
	}
	e.wmu.Lock()
	defer e.wmu.Unlock()
	// Not cancelled with the caller: the batch was handled, record it.
	ctx := context.Background()
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for tp, off := range next {
		if _, err := tx.ExecContext(ctx, `INSERT INTO offsets(grp, topic, part, off) VALUES (?, ?, ?, ?)
			ON CONFLICT(grp, topic, part) DO UPDATE SET off = max(off, excluded.off)`, m.g.name, tp.topic, tp.part, off); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for tp, off := range next {
		if off > m.g.committed[tp] {
			m.g.committed[tp] = off
		}
	}
	e.broadcastLocked()
	return nil
}

// decodeHeaders reads the headers of a schema 1 or 2 message (JSON).
func decodeHeaders(b []byte) (map[string]string, error) {
	var h map[string]string
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("decode headers: %w", err)
	}
	return h, nil
}

// Backoff returns the wait before retry attempt+1: lo doubled attempt
// times, at most hi.
func Backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for range attempt {
		d *= 2
		if d >= hi || d <= 0 {
			return hi
		}
	}
	return min(d, hi)
}

// SleepCtx waits for d or until ctx ends.
func SleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

package outbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
	"sharpeye/ingest/bus"
)

// SinkBus is the name of the bus sink's cursor; webhook subscribers' are
// "webhook:<name>".
const SinkBus = "bus"

// Backoff bounds of the bus sink and of database errors; webhooks use
// their own max_backoff.
const (
	minBackoff    = time.Second
	maxBusBackoff = 30 * time.Second
	// pruneEvery is how often the leader deletes what every sink has
	// delivered and retention has passed, in batches of pruneBatch.
	pruneEvery = time.Minute
	pruneBatch = 500
	// retryBatch is the most dead letters a webhook sink reads at once to
	// send again.
	retryBatch = 100
)

// Dispatcher delivers the outbox: a goroutine per sink (the bus, each
// webhook subscriber), each reading the records after its own cursor in id
// order and advancing the cursor once they are delivered. Only the holder
// of the lease delivers; see the package documentation.
type Dispatcher struct {
	cfg      Config
	store    store
	producer bus.Producer
	log      *slog.Logger
	m        *metrics
	holder   string
	sinks    []*sink
	started  atomic.Bool

	// now and sleep are the clock and the backoff wait, replaced in tests.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// webhookSink is the sink name of the webhook subscriber name.
func webhookSink(name string) string { return "webhook:" + name }

// sink is one destination with its own cursor and wake-up signal.
type sink struct {
	name string
	wake chan struct{}
	hook *webhook // nil for the bus sink
	log  *slog.Logger
}

// NewDispatcher checks cfg and returns a dispatcher delivering from db to
// producer (on the topic of each record) and to cfg's webhooks. It starts
// nothing: see Run. reg and log may be nil.
func NewDispatcher(cfg Config, db *casedb.DB, producer bus.Producer, reg prometheus.Registerer, log *slog.Logger) (*Dispatcher, error) {
	if db == nil || producer == nil {
		return nil, errors.New("outbox dispatcher: needs a database and a bus producer")
	}
	cfg.Webhooks = append([]Webhook(nil), cfg.Webhooks...)
	if err := conf.Load(&cfg, nil, "", nil); err != nil {
		return nil, fmt.Errorf("outbox configuration: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "outbox")
	st := store{db: db}
	hooks := make([]string, len(cfg.Webhooks))
	for i, w := range cfg.Webhooks {
		hooks[i] = webhookSink(w.Name)
	}
	m, err := newMetrics(reg, &deadLetters{store: st, sinks: hooks})
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	d := &Dispatcher{
		cfg:      cfg,
		store:    st,
		producer: producer,
		log:      log,
		m:        m,
		holder:   host + "/" + rand.Text()[:10],
		now:      time.Now,
		sleep:    bus.SleepCtx,
	}
	d.sinks = append(d.sinks, &sink{name: SinkBus, wake: make(chan struct{}, 1), log: log.With("sink", SinkBus)})
	for i := range cfg.Webhooks {
		w := &cfg.Webhooks[i]
		name := webhookSink(w.Name)
		d.sinks = append(d.sinks, &sink{name: name, wake: make(chan struct{}, 1), hook: newWebhook(w), log: log.With("sink", name)})
	}
	return d, nil
}

// Notify wakes the sinks up to deliver now; call it after committing a
// transaction that enqueued records. It never blocks.
func (d *Dispatcher) Notify() {
	for _, s := range d.sinks {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// wake wakes the sink named name up, if this dispatcher has it.
func (d *Dispatcher) wake(name string) {
	for _, s := range d.sinks {
		if s.name == name {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Run delivers until ctx ends, while this dispatcher holds the lease; it
// waits for the lease otherwise. It owns and waits for every goroutine it
// starts, gives the lease up when it returns, and returns nil once ctx
// ends. Run may be called once.
func (d *Dispatcher) Run(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("outbox dispatcher: Run called twice")
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := d.store.release(rctx, d.holder); err != nil {
			d.log.Warn("outbox lease not released: another node takes over when it expires", "err", err)
		}
	}()
	retry := d.cfg.Lease.D() / 3
	t := time.NewTimer(0)
	defer t.Stop()
	var st streak
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ok, err := d.store.claim(ctx, d.holder, d.now(), d.cfg.Lease.D())
		switch {
		case err != nil && ctx.Err() == nil:
			st.fail(d.log, d.now(), "outbox lease unavailable", "err", err)
		case ok:
			st.ok(d.log, d.now, "outbox lease available again")
			d.lead(ctx)
		}
		t.Reset(retry)
	}
}

// lead runs the sinks and the pruning while it renews the lease; it
// returns when ctx ends or the lease is lost.
func (d *Dispatcher) lead(ctx context.Context) {
	d.log.Info("outbox dispatcher delivering", "holder", d.holder, "sinks", len(d.sinks))
	d.m.leader.Set(1)
	defer d.m.leader.Set(0)
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, s := range d.sinks {
		wg.Go(func() { d.runSink(lctx, s) })
	}
	wg.Go(func() { d.pruneLoop(lctx) })

	ttl := d.cfg.Lease.D()
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	renewed := d.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := d.now()
		ok, err := d.store.claim(ctx, d.holder, now, ttl)
		switch {
		case ok:
			renewed = now
		case err == nil:
			d.log.Warn("outbox lease taken by another node: delivery stops here", "holder", d.holder)
			return
		case ctx.Err() != nil:
			return
		case now.Sub(renewed) >= ttl*2/3:
			// Stop before the lease could expire and another node take
			// over, so that two do not deliver at once.
			d.log.Warn("outbox lease not renewed: delivery stops until it is", "err", err)
			return
		}
	}
}

// runSink delivers to one sink until ctx ends.
func (d *Dispatcher) runSink(ctx context.Context, s *sink) {
	var dbErr streak
	var cursor int64
	for attempt := 0; ; attempt++ {
		c, err := d.store.cursor(ctx, s.name, d.now())
		if err == nil {
			cursor = c
			break
		}
		if ctx.Err() != nil {
			return
		}
		dbErr.fail(s.log, d.now(), "outbox sink cannot start", "err", err)
		if d.sleep(ctx, jitter(bus.Backoff(attempt, minBackoff, maxBusBackoff))) != nil {
			return
		}
	}
	poll := time.NewTimer(d.cfg.Poll.D())
	defer poll.Stop()
	for attempt := 0; ctx.Err() == nil; {
		recs, err := d.store.load(ctx, cursor, d.cfg.Batch)
		var (
			head    int64
			retries []stored
		)
		if err == nil {
			head, err = d.store.head(ctx)
		}
		if err == nil && s.hook != nil {
			retries, err = d.store.retries(ctx, s.name, retryBatch)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			dbErr.fail(s.log, d.now(), "outbox unreadable", "err", err)
			if d.sleep(ctx, jitter(bus.Backoff(attempt, minBackoff, maxBusBackoff))) != nil {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		dbErr.ok(s.log, d.now, "outbox readable again")
		d.setPending(s, head-cursor)
		if len(retries) > 0 {
			// Before the records, then look again: an admin waits for them.
			if !d.redeliver(ctx, s, retries) {
				return
			}
			continue
		}
		if len(recs) == 0 {
			d.m.lagSeconds.WithLabelValues(s.name).Set(0)
			poll.Reset(d.cfg.Poll.D())
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			case <-poll.C:
			}
			continue
		}
		if s.hook == nil {
			cursor = d.deliverBus(ctx, s, recs, cursor)
		} else {
			cursor = d.deliverWebhook(ctx, s, recs, cursor)
		}
	}
}

func (d *Dispatcher) setPending(s *sink, n int64) {
	d.m.pending.WithLabelValues(s.name).Set(float64(n))
}

func (d *Dispatcher) setLag(s *sink, r stored) {
	d.m.lagSeconds.WithLabelValues(s.name).Set(max(0, d.now().Sub(r.created).Seconds()))
}

// deliverBus publishes recs in one batch, retrying until it succeeds or ctx
// ends, and returns the new cursor.
func (d *Dispatcher) deliverBus(ctx context.Context, s *sink, recs []stored, cursor int64) int64 {
	msgs := make([]bus.Message, len(recs))
	for i, r := range recs {
		h := make(map[string]string, len(r.headers)+2)
		for k, v := range r.headers {
			h[k] = v
		}
		h[HeaderID] = r.uid
		h[HeaderType] = r.typ
		msgs[i] = bus.Message{Topic: r.topic, Key: r.key, Value: r.value, Headers: h, Time: r.created}
	}
	d.setLag(s, recs[0])
	var st streak
	for attempt := 0; ; attempt++ {
		err := d.producer.Publish(ctx, msgs...)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return cursor
		}
		d.m.failures.WithLabelValues(s.name).Inc()
		st.fail(s.log, d.now(), "outbox records not published to the bus: retrying", "from_id", recs[0].id, "err", err)
		if d.sleep(ctx, jitter(bus.Backoff(attempt, minBackoff, maxBusBackoff))) != nil {
			return cursor
		}
		d.setLag(s, recs[0])
	}
	st.ok(s.log, d.now, "outbox records published to the bus again")
	d.m.delivered.WithLabelValues(s.name).Add(float64(len(msgs)))
	last := recs[len(recs)-1].id
	d.commit(ctx, s, last)
	return last
}

// commit records the cursor. A failure is logged and otherwise ignored: the
// sink goes on from its cursor in memory and the next commit catches up;
// a crash before that delivers again (at least once).
// It is made even when ctx has just ended, so that what was delivered before
// a stop is not delivered again.
func (d *Dispatcher) commit(ctx context.Context, s *sink, id int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := d.store.advance(ctx, s.name, id, d.now()); err != nil {
		s.log.Warn("outbox cursor not saved: records may be delivered again after a restart", "err", err)
	}
}

// jitter spreads a backoff over [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + mrand.N(d/2+1)
}

// streak logs a run of failures once, when it starts, and once more when it
// ends.
type streak struct {
	failing  bool
	attempts int
	since    time.Time
}

func (s *streak) fail(log *slog.Logger, now time.Time, msg string, args ...any) {
	s.attempts++
	if !s.failing {
		s.failing, s.since = true, now
		log.Warn(msg, args...)
	}
}

func (s *streak) ok(log *slog.Logger, now func() time.Time, msg string) {
	if s.failing {
		log.Info(msg, "failed_attempts", s.attempts, "after", now().Sub(s.since).Round(time.Millisecond))
		*s = streak{}
	}
}

// pruneLoop prunes at once, then every pruneEvery.
func (d *Dispatcher) pruneLoop(ctx context.Context) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		if _, err := d.prune(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("outbox not pruned", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// prune deletes the records every configured sink has delivered that are
// older than the retention, in batches; it returns how many it deleted.
func (d *Dispatcher) prune(ctx context.Context) (int64, error) {
	names := make([]string, len(d.sinks))
	for i, s := range d.sinks {
		names[i] = s.name
	}
	upTo, err := d.store.prunable(ctx, names)
	if err != nil || upTo == 0 {
		return 0, err
	}
	before := d.now().Add(-d.cfg.Retention.D())
	var total int64
	for ctx.Err() == nil {
		n, err := d.store.prune(ctx, upTo, before, pruneBatch)
		total += n
		d.m.pruned.Add(float64(n))
		if err != nil {
			return total, err
		}
		if n < pruneBatch {
			break
		}
	}
	if total > 0 {
		d.log.Debug("outbox pruned", "records", total, "up_to_id", upTo)
	}
	return total, nil
}

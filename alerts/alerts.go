// Package alerts is the alerts role: it consumes events from the bus, runs
// them through the alert rules, turns firings into governance cases, runs
// the case workflow's deadlines, and carries every case change out through
// the transactional outbox (bus topic sharpeye.cases and webhooks).
//
// One alerts node evaluates every event (partition_by ""). Several divide
// the events by locality (partition_by grid or region:N) in two stages: a
// route stage republishes each event of sharpeye.events, keyed by source,
// to TopicEvents keyed by its locality; an evaluate stage consumes that
// topic, each node holding the rule state of the partitions it is given
// (loaded when a partition arrives, stored and dropped when it leaves), so
// every group of a rule has one owner.
package alerts

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/cases"
	"sharpeye/alerts/outbox"
	"sharpeye/alerts/rules"
	"sharpeye/configs/conf"
	"sharpeye/console/api"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/event"
)

// Config is the alerts section of the configuration.
type Config struct {
	// Rules are the alert rules of the configuration file; admins add and
	// change rules through the API (stored in the case database).
	Rules rules.Rules `yaml:"rules"`
	// Cases configures the workflow: departments, playbooks, colours.
	Cases cases.Config `yaml:"cases"`
	// Outbox carries case changes to the bus and to webhooks.
	Outbox outbox.Config `yaml:"outbox"`
	// Group is the consumer group on sharpeye.events.
	Group string `yaml:"group"`
	// Batch and BatchWait bound one batch of events evaluated together.
	Batch     int           `yaml:"batch"`
	BatchWait conf.Duration `yaml:"batch_wait"`
	// Poll is how often rule changes and other nodes' case changes are
	// looked for, and quiet rules (for durations) advanced.
	Poll conf.Duration `yaml:"poll"`
	// PartitionBy divides the events among several alerts nodes by
	// locality: "" (one node evaluates everything), "grid" or "region:N"
	// (the first N levels of the region path). See rules.Locality.
	PartitionBy string `yaml:"partition_by"`
}

// TopicEvents carries the events of sharpeye.events keyed by locality, in
// the partitioned mode: its partitions divide the rule state among the
// alerts nodes.
const TopicEvents = "sharpeye.alerts.events"

// routeSuffix names the route stage's consumer group: <group>-route.
const routeSuffix = "-route"

// Defaults returns the compiled defaults.
func Defaults() Config {
	ob := outbox.Defaults()
	ob.Webhooks = []outbox.Webhook{}
	return Config{
		Rules:     rules.Rules{},
		Cases:     cases.Defaults(),
		Outbox:    ob,
		Group:     "sharpeye-alerts",
		Batch:     500,
		BatchWait: conf.Duration(200 * time.Millisecond),
		Poll:      conf.Duration(time.Second),
	}
}

// Validate implements conf.Validator: rules must name categories that have
// playbooks.
func (c *Config) Validate(v *conf.V) {
	if c.Group == "" {
		v.Errorf("group", "must not be empty")
	}
	if c.Batch < 1 || c.Batch > 10000 {
		v.Errorf("batch", "must be 1 to 10000")
	}
	if c.BatchWait.D() <= 0 {
		v.Errorf("batch_wait", "must be positive")
	}
	if c.Poll.D() < 10*time.Millisecond {
		v.Errorf("poll", "must be at least 10ms")
	}
	cats := map[string]bool{}
	for _, pb := range c.Cases.Playbooks {
		cats[pb.Category] = true
	}
	for i, r := range c.Rules {
		if r.Case.Category != "" && !cats[r.Case.Category] {
			v.Errorf("rules["+strconv.Itoa(i)+"].case.category", "no playbook for category %q (see alerts.cases.playbooks)", r.Case.Category)
		}
	}
	loc, err := rules.ParseLocality(c.PartitionBy)
	if err != nil {
		v.Errorf("partition_by", "%v", err)
		return
	}
	for _, p := range loc.Check(c.Rules) {
		v.Errorf("rules"+p.Path(), "rule %q: %s", p.Rule, p.Msg)
	}
}

// Alerts is the running role.
type Alerts struct {
	cfg      Config
	db       *casedb.DB
	bus      bus.Bus
	log      *slog.Logger
	reg      prometheus.Registerer
	cases    *cases.Service
	hub      *cases.Hub
	store    *rules.Store
	engine   *rules.Engine
	state    *deferredState
	outbox   *outbox.Dispatcher
	m        *metrics
	consumed chan struct{}
	loc      rules.Locality
	rebal    bus.RebalanceConsumer // partitioned mode
	// evalMu makes a batch, a pass of advance and a change of partitions
	// one at a time: each leaves the engine and the stored state agreeing.
	evalMu sync.Mutex
}

// New builds the role; Start loads what it needs.
func New(cfg Config, db *casedb.DB, b bus.Bus, reg prometheus.Registerer, log *slog.Logger) (*Alerts, error) {
	a := &Alerts{cfg: cfg, db: db, bus: b, log: log, reg: reg, m: newMetrics(reg), consumed: make(chan struct{})}
	loc, err := rules.ParseLocality(cfg.PartitionBy)
	if err != nil {
		return nil, fmt.Errorf("alerts.partition_by: %w", err)
	}
	a.loc = loc
	if loc.Partitioned() {
		rc, ok := b.(bus.RebalanceConsumer)
		if !ok {
			return nil, fmt.Errorf("alerts.partition_by: %s needs a bus that reports partition assignments, which %T does not", loc, b)
		}
		a.rebal = rc
	}
	a.cases = cases.New(cfg.Cases, db, reg, log.With("component", "cases"))
	a.hub = cases.NewHub(a.cases, cfg.Poll.D(), reg, log.With("component", "case-stream"))
	d, err := outbox.NewDispatcher(cfg.Outbox, db, b, reg, log.With("component", "outbox"))
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	a.outbox = d
	a.cases.SetPublisher(func(ctx context.Context, tx *sql.Tx, chs []cases.Change) error {
		recs := make([]outbox.Record, len(chs))
		for i, ch := range chs {
			v, err := json.Marshal(ch)
			if err != nil {
				return err
			}
			recs[i] = outbox.Record{Topic: bus.TopicCases, Key: ch.Case.ID, Type: ch.Type, Value: v}
		}
		return outbox.Enqueue(ctx, tx, db.Driver(), recs...)
	})
	a.cases.OnCommit(func(cases.Change) { d.Notify() })
	if a.store, err = rules.NewStore(cfg.Rules, db, log.With("component", "rules")); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if err := a.store.SetLocality(loc); err != nil {
		return nil, fmt.Errorf("rules: alerts.partition_by %s: %w", loc, err)
	}
	return a, nil
}

// Start loads the rules (the configuration's and those stored) and the
// rule state; in the partitioned mode, the state of each partition is
// loaded when the partition is given to the node.
func (a *Alerts) Start(ctx context.Context) error {
	set, err := a.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("load rules: %w", err)
	}
	a.state = &deferredState{inner: rules.NewSQLState(a.db)}
	if a.engine, err = rules.NewEngine(set, a.state, a.reg, a.log.With("component", "rules")); err != nil {
		return err
	}
	if a.loc.Partitioned() {
		return a.engine.Partition()
	}
	if err := a.engine.Load(ctx); err != nil {
		return fmt.Errorf("load rule state: %w", err)
	}
	return nil
}

// Cases is the case workflow.
func (a *Alerts) Cases() *cases.Service { return a.cases }

// Engine is the rules engine (after Start).
func (a *Alerts) Engine() *rules.Engine { return a.engine }

// Consuming is closed once the role reads the bus.
func (a *Alerts) Consuming() <-chan struct{} { return a.consumed }

// Routes registers the case, rule and outbox dead-letter APIs.
func (a *Alerts) Routes(rt *api.Router) {
	cases.NewAPI(a.cases, a.hub).Routes(rt)
	rules.NewAPI(a.store, a.engine).Routes(rt)
	outbox.NewAPI(a.outbox).Routes(rt)
}

// Run consumes events, fires timers, delivers the outbox and follows rule
// changes until ctx ends.
func (a *Alerts) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.outbox.Run(ctx) })
	g.Go(func() error { return a.cases.RunTimers(ctx) })
	g.Go(func() error { return a.hub.Run(ctx) })
	g.Go(func() error { return a.store.Run(ctx, a.cfg.Poll.D(), a.engine.Replace) })
	g.Go(func() error { return a.advance(ctx) })
	if a.loc.Partitioned() {
		close(a.consumed)
		g.Go(func() error {
			return a.bus.Consume(ctx, a.cfg.Group+routeSuffix, []string{bus.TopicEvents}, a.cfg.Batch, a.cfg.BatchWait.D(), a.route)
		})
		g.Go(func() error {
			return a.rebal.ConsumeRebalance(ctx, a.cfg.Group, []string{TopicEvents}, a.cfg.Batch, a.cfg.BatchWait.D(), a.evaluate,
				bus.Rebalance{Assigned: a.assigned, Revoked: a.revoked})
		})
		return g.Wait()
	}
	g.Go(func() error {
		close(a.consumed)
		return a.bus.Consume(ctx, a.cfg.Group, []string{bus.TopicEvents}, a.cfg.Batch, a.cfg.BatchWait.D(), a.handle)
	})
	return g.Wait()
}

// decode decodes msgs; those that do not decode go to the dead-letter
// topic and are nil in the result.
func (a *Alerts) decode(ctx context.Context, msgs []bus.Message) ([]*event.Event, error) {
	evs := make([]*event.Event, len(msgs))
	var dead []bus.Message
	for i, m := range msgs {
		e, err := event.Decode(m.Value)
		if err != nil {
			a.m.rejected.Inc()
			dead = append(dead, bus.Message{Topic: bus.TopicDeadLetter, Key: m.Key, Value: m.Value,
				Headers: map[string]string{bus.HeaderReason: "alerts: " + err.Error(), bus.HeaderSource: m.Topic + "/" + strconv.Itoa(m.Partition) + "@" + strconv.FormatInt(m.Offset, 10)}})
			continue
		}
		evs[i] = e
	}
	if len(dead) > 0 {
		if err := a.bus.Publish(ctx, dead...); err != nil {
			return nil, fmt.Errorf("dead-letter: %w", err)
		}
	}
	return evs, nil
}

// route is the route stage of the partitioned mode: it republishes a batch
// of sharpeye.events, value and headers unchanged, to TopicEvents keyed by
// locality. The batch is committed once they are durable; a batch
// published again after a crash is harmless, the rules skipping the events
// a group has seen.
func (a *Alerts) route(ctx context.Context, msgs []bus.Message) error {
	evs, err := a.decode(ctx, msgs)
	if err != nil {
		return err
	}
	out := make([]bus.Message, 0, len(msgs))
	for i, e := range evs {
		if e != nil {
			out = append(out, bus.Message{Topic: TopicEvents, Key: a.loc.Key(e), Value: msgs[i].Value, Headers: msgs[i].Headers})
		}
	}
	if err := a.bus.Publish(ctx, out...); err != nil {
		return fmt.Errorf("route events to %s: %w", TopicEvents, err)
	}
	a.m.routed.Add(float64(len(out)))
	return nil
}

// evaluate is the evaluate stage of the partitioned mode: handle, each
// partition's events evaluated with its state.
func (a *Alerts) evaluate(ctx context.Context, msgs []bus.Message) error {
	evs, err := a.decode(ctx, msgs)
	if err != nil {
		return err
	}
	var order []int
	byPart := map[int][]*event.Event{}
	n := 0
	for i, e := range evs {
		if e == nil {
			continue
		}
		p := msgs[i].Partition
		if _, ok := byPart[p]; !ok {
			order = append(order, p)
		}
		byPart[p] = append(byPart[p], e)
		n++
	}
	a.evalMu.Lock()
	defer a.evalMu.Unlock()
	a.m.events.Add(float64(n))
	var (
		firings []rules.Firing
		perr    error
	)
	for _, p := range order {
		fs, err := a.engine.ProcessPartition(ctx, p, byPart[p])
		firings = append(firings, fs...)
		if err != nil {
			// The partitions evaluated are kept (their events are seen
			// when the batch comes again); the others are evaluated then.
			perr = fmt.Errorf("rules: %w", err)
			break
		}
	}
	if err := a.take(ctx, firings); err != nil {
		return err
	}
	if err := a.state.flush(ctx); err != nil {
		return err
	}
	return perr
}

// assigned loads the rule state of the partitions given to the node.
func (a *Alerts) assigned(ctx context.Context, tps []bus.TopicPartition) error {
	a.evalMu.Lock()
	defer a.evalMu.Unlock()
	// What this node saved of them before is stored before it is loaded.
	if err := a.state.flush(ctx); err != nil {
		return err
	}
	parts := partitions(tps)
	if err := a.engine.Assign(ctx, parts); err != nil {
		return fmt.Errorf("load the rule state of partitions %v: %w", parts, err)
	}
	a.m.partitions.Set(float64(len(a.engine.Owned())))
	a.log.Info("partitions assigned", "topic", TopicEvents, "partitions", parts)
	return nil
}

// revoked stores the rule state of the partitions the node gives up and
// drops it, retrying for a while: the next owner loads it once this
// returns.
func (a *Alerts) revoked(ctx context.Context, tps []bus.TopicPartition) {
	a.evalMu.Lock()
	defer a.evalMu.Unlock()
	// ctx outlives Consume's by bus.RevokeTimeout: the retries below end
	// with it, before the next owner may be given the partitions.
	parts := partitions(tps)
	err := a.engine.Revoke(ctx, parts) // into a.state
	for attempt := 0; err == nil; attempt++ {
		if err = a.state.flush(ctx); err == nil {
			break
		}
		a.log.Warn("store the rule state of revoked partitions; retrying", "partitions", parts, "err", err)
		if bus.SleepCtx(ctx, bus.Backoff(attempt, 100*time.Millisecond, 2*time.Second)) != nil {
			break
		}
		err = nil
	}
	if err != nil {
		a.log.Error("rule state of revoked partitions not stored; the next owner evaluates their uncommitted events again",
			"partitions", parts, "err", err)
	}
	a.m.partitions.Set(float64(len(a.engine.Owned())))
	a.log.Info("partitions revoked", "topic", TopicEvents, "partitions", parts)
}

// partitions returns the partitions of TopicEvents among tps.
func partitions(tps []bus.TopicPartition) []int {
	out := make([]int, 0, len(tps))
	for _, tp := range tps {
		if tp.Topic == TopicEvents {
			out = append(out, tp.Partition)
		}
	}
	return out
}

// handle evaluates one batch of events. An event that does not decode goes
// to the dead-letter topic; the firings become cases before the batch is
// committed.
func (a *Alerts) handle(ctx context.Context, msgs []bus.Message) error {
	decoded, err := a.decode(ctx, msgs)
	if err != nil {
		return err
	}
	evs := slices.DeleteFunc(decoded, func(e *event.Event) bool { return e == nil })
	a.evalMu.Lock()
	defer a.evalMu.Unlock()
	a.m.events.Add(float64(len(evs)))
	firings, err := a.engine.Process(ctx, evs)
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	if err := a.take(ctx, firings); err != nil {
		return err
	}
	return a.state.flush(ctx)
}

// deferredState holds the rule state the engine saves until the firings
// it produced are cases: a crash in between loses neither, since the batch
// is then evaluated again from the state before it (and the case workflow
// attaches nothing twice).
type deferredState struct {
	inner   rules.PartitionedStateStore
	mu      sync.Mutex
	pending map[rules.StateKey]*rules.StateRecord // nil: deleted
}

func (d *deferredState) LoadState(ctx context.Context) ([]rules.StateRecord, error) {
	return d.inner.LoadState(ctx)
}

func (d *deferredState) LoadPartitions(ctx context.Context, parts []int) ([]rules.StateRecord, error) {
	return d.inner.LoadPartitions(ctx, parts)
}

// SaveState keeps the changes, the last one of each key winning.
func (d *deferredState) SaveState(_ context.Context, ups []rules.StateRecord, dels []rules.StateKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending == nil {
		d.pending = map[rules.StateKey]*rules.StateRecord{}
	}
	for _, k := range dels {
		d.pending[k] = nil
	}
	for i := range ups {
		d.pending[ups[i].StateKey] = &ups[i]
	}
	return nil
}

// txStateSaver is a state store that can write within a transaction of
// the case database (rules.SQLState).
type txStateSaver interface {
	SaveStateTx(ctx context.Context, tx *sql.Tx, upserts []rules.StateRecord, deletes []rules.StateKey) error
}

// snapshot returns what is pending, to be written in a transaction that
// is not flush's; written forgets it once that commits.
func (d *deferredState) snapshot() map[rules.StateKey]*rules.StateRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.pending)
}

// writeIn writes snap within tx.
func (d *deferredState) writeIn(ctx context.Context, ts txStateSaver, tx *sql.Tx, snap map[rules.StateKey]*rules.StateRecord) error {
	if len(snap) == 0 {
		return nil
	}
	ups, dels := split(snap)
	return ts.SaveStateTx(ctx, tx, ups, dels)
}

// split divides pending state into records to write and keys to delete
// (nil records).
func split(m map[rules.StateKey]*rules.StateRecord) (ups []rules.StateRecord, dels []rules.StateKey) {
	for k, r := range m {
		if r == nil {
			dels = append(dels, k)
		} else {
			ups = append(ups, *r)
		}
	}
	return ups, dels
}

// written forgets the records of snap that are still pending as they were
// (a record saved again since is written by the next flush).
func (d *deferredState) written(snap map[rules.StateKey]*rules.StateRecord) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, r := range snap {
		if cur, ok := d.pending[k]; ok && cur == r {
			delete(d.pending, k)
		}
	}
}

// flush writes what was saved since the last flush.
func (d *deferredState) flush(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pending) == 0 {
		return nil
	}
	ups, dels := split(d.pending)
	if err := d.inner.SaveState(ctx, ups, dels); err != nil {
		return fmt.Errorf("save rule state: %w", err)
	}
	clear(d.pending)
	return nil
}

// take turns firings into cases, all in one transaction with the rule
// state that produced them. The engine has moved on past the batch, so a
// firing must not be lost to a passing database failure: the transaction
// is retried until it is taken or the role stops.
func (a *Alerts) take(ctx context.Context, firings []rules.Firing) error {
	if len(firings) == 0 {
		return nil
	}
	as := make([]cases.Alert, len(firings))
	for i, f := range firings {
		as[i] = cases.Alert{
			Rule: f.Rule, GroupKey: f.GroupKey, Category: f.Category, Title: f.Title, Description: f.Description,
			Risk: f.Risk, RiskPerRepeat: f.RiskPerRepeat, Repeat: f.Repeat, SuppressedBy: f.SuppressedBy, Events: f.Events,
			Elements: f.Elements,
		}
	}
	// The rule state the batch left is written in the same transaction as
	// its cases, when the state store can: both or neither.
	var (
		snap map[rules.StateKey]*rules.StateRecord
		also func(context.Context, *sql.Tx) error
	)
	if ts, ok := a.state.inner.(txStateSaver); ok {
		also = func(ctx context.Context, tx *sql.Tx) error {
			snap = a.state.snapshot()
			return a.state.writeIn(ctx, ts, tx, snap)
		}
	}
	for attempt := 0; ; attempt++ {
		rs, err := a.cases.AlertsWith(ctx, as, also) // counted by outcome in sharpeye_cases_alerts_total
		if err == nil {
			a.state.written(snap)
			for i, r := range rs {
				if r.Err != nil {
					a.log.Error("rule firing refused", "rule", firings[i].Rule, "group", firings[i].GroupKey, "err", r.Err)
				}
			}
			return nil
		}
		if attempt == 0 {
			a.log.Warn("rule firings not yet taken; retrying", "firings", len(firings), "err", err)
		}
		if err := bus.SleepCtx(ctx, bus.Backoff(attempt, 100*time.Millisecond, 10*time.Second)); err != nil {
			a.log.Error("rule firings lost at shutdown", "firings", len(firings))
			return err
		}
	}
}

// advance lets time pass for rules waiting on a duration when their
// sources fall quiet.
func (a *Alerts) advance(ctx context.Context) error {
	t := time.NewTicker(a.cfg.Poll.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if !a.advanceOnce(ctx, now) {
				return nil
			}
		}
	}
}

// advanceOnce is one pass of advance; false when the role stops.
func (a *Alerts) advanceOnce(ctx context.Context, now time.Time) bool {
	a.evalMu.Lock()
	defer a.evalMu.Unlock()
	firings, err := a.engine.Advance(ctx, now)
	if err != nil {
		a.log.Warn("advance rules", "err", err)
		return true
	}
	if err := a.take(ctx, firings); err != nil {
		return false
	}
	if err := a.state.flush(ctx); err != nil {
		a.log.Warn("advance rules", "err", err)
	}
	return true
}

type metrics struct {
	events     prometheus.Counter
	rejected   prometheus.Counter
	routed     prometheus.Counter
	partitions prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_alerts_events_total", Help: "Events the alerts role evaluated."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_alerts_events_rejected_total", Help: "Events that did not decode (sent to the dead-letter topic)."}),
		routed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_alerts_events_routed_total", Help: "Events republished to " + TopicEvents + " keyed by locality (partitioned mode)."}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sharpeye_alerts_partitions", Help: "Partitions of " + TopicEvents + " whose rule state this node holds (partitioned mode)."}),
	}
	reg.MustRegister(m.events, m.rejected, m.routed, m.partitions)
	return m
}

// Package alerts is the alerts role: it consumes events from the bus, runs
// them through the alert rules, turns firings into governance cases, runs
// the case workflow's deadlines, and carries every case change out through
// the transactional outbox (bus topic sharpeye.cases and webhooks).
package alerts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
}

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
}

// New builds the role; Start loads what it needs.
func New(cfg Config, db *casedb.DB, b bus.Bus, reg prometheus.Registerer, log *slog.Logger) (*Alerts, error) {
	a := &Alerts{cfg: cfg, db: db, bus: b, log: log, reg: reg, m: newMetrics(reg), consumed: make(chan struct{})}
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
	return a, nil
}

// Start loads the rules (the configuration's and those stored) and the
// rule state.
func (a *Alerts) Start(ctx context.Context) error {
	set, err := a.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("load rules: %w", err)
	}
	a.state = &deferredState{inner: rules.NewSQLState(a.db)}
	if a.engine, err = rules.NewEngine(set, a.state, a.reg, a.log.With("component", "rules")); err != nil {
		return err
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
	g.Go(func() error {
		close(a.consumed)
		return a.bus.Consume(ctx, a.cfg.Group, []string{bus.TopicEvents}, a.cfg.Batch, a.cfg.BatchWait.D(), a.handle)
	})
	return g.Wait()
}

// handle evaluates one batch of events. An event that does not decode goes
// to the dead-letter topic; the firings become cases before the batch is
// committed.
func (a *Alerts) handle(ctx context.Context, msgs []bus.Message) error {
	evs := make([]*event.Event, 0, len(msgs))
	var dead []bus.Message
	for _, m := range msgs {
		e, err := event.Decode(m.Value)
		if err != nil {
			a.m.rejected.Inc()
			dead = append(dead, bus.Message{Topic: bus.TopicDeadLetter, Key: m.Key, Value: m.Value,
				Headers: map[string]string{bus.HeaderReason: "alerts: " + err.Error(), bus.HeaderSource: m.Topic + "/" + strconv.Itoa(m.Partition) + "@" + strconv.FormatInt(m.Offset, 10)}})
			continue
		}
		evs = append(evs, e)
	}
	if len(dead) > 0 {
		if err := a.bus.Publish(ctx, dead...); err != nil {
			return fmt.Errorf("dead-letter: %w", err)
		}
	}
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
	inner   rules.StateStore
	mu      sync.Mutex
	pending map[rules.StateKey]*rules.StateRecord // nil: deleted
}

func (d *deferredState) LoadState(ctx context.Context) ([]rules.StateRecord, error) {
	return d.inner.LoadState(ctx)
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

// flush writes what was saved since the last flush.
func (d *deferredState) flush(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pending) == 0 {
		return nil
	}
	var (
		ups  []rules.StateRecord
		dels []rules.StateKey
	)
	for k, r := range d.pending {
		if r == nil {
			dels = append(dels, k)
		} else {
			ups = append(ups, *r)
		}
	}
	if err := d.inner.SaveState(ctx, ups, dels); err != nil {
		return fmt.Errorf("save rule state: %w", err)
	}
	clear(d.pending)
	return nil
}

// take turns firings into cases. The rule state is already saved, so a
// firing must not be lost to a passing database failure: each is retried
// until it is taken or the role stops.
func (a *Alerts) take(ctx context.Context, firings []rules.Firing) error {
	for _, f := range firings {
		for attempt := 0; ; attempt++ {
			_, _, err := a.cases.Alert(ctx, cases.Alert{
				Rule: f.Rule, GroupKey: f.GroupKey, Category: f.Category, Title: f.Title, Description: f.Description,
				Risk: f.Risk, RiskPerRepeat: f.RiskPerRepeat, Repeat: f.Repeat, SuppressedBy: f.SuppressedBy, Events: f.Events,
			})
			if err == nil {
				break // counted by outcome in sharpeye_cases_alerts_total
			}
			if errors.Is(err, cases.ErrUnknownCategory) {
				a.log.Error("rule firing refused", "rule", f.Rule, "group", f.GroupKey, "err", err)
				break
			}
			if attempt == 0 {
				a.log.Warn("rule firing not yet taken; retrying", "rule", f.Rule, "group", f.GroupKey, "err", err)
			}
			if err := bus.SleepCtx(ctx, bus.Backoff(attempt, 100*time.Millisecond, 10*time.Second)); err != nil {
				a.log.Error("rule firing lost at shutdown", "rule", f.Rule, "group", f.GroupKey)
				return err
			}
		}
	}
	return nil
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
			firings, err := a.engine.Advance(ctx, now)
			if err != nil {
				a.log.Warn("advance rules", "err", err)
				continue
			}
			if err := a.take(ctx, firings); err != nil {
				return nil
			}
			if err := a.state.flush(ctx); err != nil {
				a.log.Warn("advance rules", "err", err)
			}
		}
	}
}

type metrics struct {
	events   prometheus.Counter
	rejected prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_alerts_events_total", Help: "Events the alerts role evaluated."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_alerts_events_rejected_total", Help: "Events that did not decode (sent to the dead-letter topic)."}),
	}
	reg.MustRegister(m.events, m.rejected)
	return m
}

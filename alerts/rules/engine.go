package rules

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/ingest/event"
)

// Firing is a rule firing: the caller turns it into a governance case (or
// attaches it to one when Repeat, or records it as suppressed).
type Firing struct {
	// Rule is the rule's id.
	Rule string `json:"rule"`
	// RuleVersion is the version of the rule set that fired (Set.Version).
	RuleVersion int64 `json:"rule_version"`
	// GroupKey says what the firing is about: "<rule id>|grid=g-07".
	GroupKey string `json:"group_key"`
	// Events are the triggering events, oldest first: a count window's
	// events, a correlated pair, or the latest event of a for duration.
	Events []*event.Event `json:"events"`
	// Time is the event time of the last triggering event (for Advance,
	// the moment the for duration completed).
	Time          time.Time `json:"time"`
	Risk          int       `json:"risk"`
	RiskPerRepeat int       `json:"risk_per_repeat,omitempty"`
	Category      string    `json:"category"`
	Title         string    `json:"title"`
	Description   string    `json:"description,omitempty"`
	// Elements are the seven elements the rule fills (case.elements),
	// rendered, by name.
	Elements map[string]string `json:"elements,omitempty"`
	// Repeat is set within the cooldown of the group's previous firing.
	Repeat bool `json:"repeat,omitempty"`
	// SuppressedBy is the group key of the inhibiting firing, if any.
	SuppressedBy string `json:"suppressed_by,omitempty"`
}

// Kind returns "suppressed", "repeat" or "new".
func (f *Firing) Kind() string {
	switch {
	case f.SuppressedBy != "":
		return "suppressed"
	case f.Repeat:
		return "repeat"
	}
	return "new"
}

// minRetention is how long a group's state (and so the ids of the events it
// saw) is kept after its newest event, at least.
const minRetention = 10 * time.Minute

// maxAhead bounds how far ahead of the wall clock an event may move the
// engine's notion of "now" used to prune state.
const maxAhead = time.Hour

// Engine evaluates events against a rule set. It is safe for concurrent
// use; batches are evaluated one at a time.
type Engine struct {
	mu     sync.Mutex
	set    *Set
	state  StateStore                   // nil: in memory only
	groups map[string]map[string]*group // rule id → group key → state
	dirty  map[StateKey]bool
	gone   map[StateKey]bool
	// needLoad is set when the stored state must be reloaded (at start,
	// and after a failed save left memory ahead of the store).
	needLoad  bool
	watermark int64 // newest event time seen (Unix ms), for pruning
	pruned    int64 // watermark at the last prune
	// owned are the partitions whose state the engine holds, in the
	// partitioned mode (nil: not partitioned, all the state); cur is the
	// partition of the events being processed.
	owned map[int]bool
	cur   int
	vm    vm.VM
	m     *metrics
	log   *slog.Logger
	clock func() time.Time

	countMu sync.Mutex
	counts  map[string]*FireCounts
}

// FireCounts counts a rule's firings since the process started.
type FireCounts struct {
	New        uint64 `json:"new"`
	Repeat     uint64 `json:"repeat"`
	Suppressed uint64 `json:"suppressed"`
}

// NewEngine returns an engine for set that keeps its state in state (nil
// for memory only, as in a dry run) and registers its metrics on reg (may be
// nil). Call Load before the first Process to restore the stored state
// (Process does it otherwise).
func NewEngine(set *Set, state StateStore, reg prometheus.Registerer, log *slog.Logger) (*Engine, error) {
	if set == nil {
		return nil, errors.New("rules engine: no rule set")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := newMetrics()
	if reg != nil {
		if err := m.register(reg); err != nil {
			return nil, err
		}
	}
	m.version.Set(float64(set.version))
	return &Engine{
		set:      set,
		state:    state,
		groups:   make(map[string]map[string]*group),
		dirty:    make(map[StateKey]bool),
		gone:     make(map[StateKey]bool),
		needLoad: state != nil,
		cur:      Unpartitioned,
		m:        m,
		log:      log,
		clock:    time.Now,
		counts:   make(map[string]*FireCounts),
		vm:       vm.VM{MemoryBudget: exprMemory},
	}, nil
}

// Set returns the rule set in use.
func (e *Engine) Set() *Set {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.set
}

// Counts returns the firing counts of rule since start.
func (e *Engine) Counts(rule string) FireCounts {
	if e == nil {
		return FireCounts{} // an API registered before the engine started
	}
	e.countMu.Lock()
	defer e.countMu.Unlock()
	if c := e.counts[rule]; c != nil {
		return *c
	}
	return FireCounts{}
}

// Load restores the stored state, dropping what belongs to rules no longer
// in the set or changed since it was stored.
func (e *Engine) Load(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.load(ctx)
}

func (e *Engine) load(ctx context.Context) error {
	e.groups = make(map[string]map[string]*group)
	e.dirty = make(map[StateKey]bool)
	e.gone = make(map[StateKey]bool)
	if e.state == nil {
		e.needLoad = false
		return nil
	}
	var (
		recs []StateRecord
		err  error
	)
	if e.owned != nil {
		recs, err = e.state.(PartitionedStateStore).LoadPartitions(ctx, e.ownedList())
	} else {
		recs, err = e.state.LoadState(ctx)
	}
	if err != nil {
		return err
	}
	if err := e.restore(ctx, recs); err != nil {
		return err
	}
	e.needLoad = false
	e.m.entries.Set(float64(e.countGroups()))
	return nil
}

// restore adds the groups of recs to memory, dropping from the store
// those of rules removed or changed.
func (e *Engine) restore(ctx context.Context, recs []StateRecord) error {
	var drop []StateKey
	for _, r := range recs {
		c := e.set.byID[r.Rule]
		var g group
		if c == nil || json.Unmarshal(r.State, &g) != nil || g.Fingerprint != c.fingerprint {
			drop = append(drop, r.StateKey)
			continue
		}
		g.part = r.Part
		e.groupsOf(r.Rule)[r.Key] = &g
		e.watermark = max(e.watermark, g.Last)
	}
	if len(drop) > 0 {
		if err := e.state.SaveState(ctx, nil, drop); err != nil {
			return err
		}
		e.log.Info("dropped the state of removed or changed rules", "groups", len(drop))
	}
	return nil
}

// Partition switches the engine to the partitioned mode, before its first
// use: it then holds only the state of the partitions Assign gives it, and
// evaluates events with ProcessPartition. Its StateStore, if any, must be
// a PartitionedStateStore.
func (e *Engine) Partition() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != nil {
		if _, ok := e.state.(PartitionedStateStore); !ok {
			return errors.New("rules engine: the state store cannot load partitions")
		}
	}
	if e.owned == nil {
		e.owned = make(map[int]bool)
		e.groups = make(map[string]map[string]*group)
		e.needLoad = false
	}
	return nil
}

// Owned returns the partitions the engine holds, in order (nil when it is
// not partitioned).
func (e *Engine) Owned() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ownedList()
}

func (e *Engine) ownedList() []int {
	if e.owned == nil {
		return nil
	}
	out := make([]int, 0, len(e.owned))
	for p := range e.owned {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Assign gives the engine parts (partitioned mode): their stored state is
// loaded. On error the engine holds none of them.
func (e *Engine) Assign(ctx context.Context, parts []int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.owned == nil {
		return errors.New("rules engine: Assign needs the partitioned mode (Partition)")
	}
	var add []int
	for _, p := range parts {
		if !e.owned[p] {
			add = append(add, p)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if e.needLoad {
		for _, p := range add {
			e.owned[p] = true
		}
		if err := e.load(ctx); err != nil {
			for _, p := range add {
				delete(e.owned, p)
			}
			return err
		}
		return nil
	}
	e.dropParts(add) // nothing, unless a previous owner's leftovers
	if e.state != nil {
		recs, err := e.state.(PartitionedStateStore).LoadPartitions(ctx, add)
		if err == nil {
			err = e.restore(ctx, recs)
		}
		if err != nil {
			e.dropParts(add)
			return err
		}
	}
	for _, p := range add {
		e.owned[p] = true
	}
	e.m.entries.Set(float64(e.countGroups()))
	return nil
}

// Revoke takes parts from the engine (partitioned mode): their changed
// state is stored, then dropped from memory. The parts are given up even
// when storing fails (the error is returned): the events whose state was
// not stored were not committed either, and go to the next owner.
func (e *Engine) Revoke(ctx context.Context, parts []int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var err error
	if !e.needLoad {
		err = e.flush(ctx)
	}
	e.dropParts(parts)
	for _, p := range parts {
		delete(e.owned, p)
	}
	e.m.entries.Set(float64(e.countGroups()))
	return err
}

// dropParts forgets, in memory only, the groups of parts.
func (e *Engine) dropParts(parts []int) {
	for id, gs := range e.groups {
		for k, g := range gs {
			if slices.Contains(parts, g.part) {
				delete(gs, k)
				delete(e.dirty, StateKey{id, k})
				delete(e.gone, StateKey{id, k})
			}
		}
		if len(gs) == 0 {
			delete(e.groups, id)
		}
	}
}

func (e *Engine) countGroups() int {
	n := 0
	for _, gs := range e.groups {
		n += len(gs)
	}
	return n
}

func (e *Engine) groupsOf(rule string) map[string]*group {
	gs := e.groups[rule]
	if gs == nil {
		gs = make(map[string]*group)
		e.groups[rule] = gs
	}
	return gs
}

// Replace swaps in a new rule set. The state of rules whose matching,
// counting and grouping are unchanged is kept (so are their cooldowns);
// that of removed or changed rules is dropped, from the store at the next
// Process or Advance.
func (e *Engine) Replace(set *Set) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, gs := range e.groups {
		if c := set.byID[id]; c != nil && c.fingerprint == e.set.byID[id].fingerprint {
			continue
		}
		for k := range gs {
			e.forget(id, k)
		}
		delete(e.groups, id)
	}
	e.set = set
	e.m.version.Set(float64(set.version))
}

func (e *Engine) forget(rule, key string) {
	k := StateKey{rule, key}
	delete(e.dirty, k)
	if e.state != nil {
		e.gone[k] = true
	}
}

// Process evaluates a batch of events in order and returns the firings.
// The changed state is stored before Process returns, so the caller may
// commit the batch once it has acted on the firings. Events already seen
// (a redelivered batch) are skipped. On error nothing of the batch counts:
// the state is reloaded from the store on the next call.
func (e *Engine) Process(ctx context.Context, evs []*event.Event) ([]Firing, error) {
	return e.ProcessPartition(ctx, Unpartitioned, evs)
}

// ErrNotAssigned is returned by ProcessPartition for a partition the
// engine was not given.
var ErrNotAssigned = errors.New("partition not assigned to this node")

// ProcessPartition is Process for events of partition part, in the
// partitioned mode (which needs part assigned); the groups they change
// are stored with part.
func (e *Engine) ProcessPartition(ctx context.Context, part int, evs []*event.Event) ([]Firing, error) {
	start := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.owned != nil && !e.owned[part] {
		return nil, fmt.Errorf("rules engine: %w: %d", ErrNotAssigned, part)
	}
	if e.needLoad {
		if err := e.load(ctx); err != nil {
			return nil, err
		}
	}
	e.cur = part
	var out []Firing
	ahead := e.clock().Add(maxAhead).UnixMilli()
	for _, ev := range evs {
		if ev == nil || ev.Time.IsZero() {
			continue
		}
		e.m.evaluated.Inc()
		x := evalCtx{e: ev, vm: &e.vm}
		for _, c := range e.set.forType(ev.Type) {
			if c.enabled {
				e.evaluate(c, &x, &out)
			}
		}
		e.watermark = max(e.watermark, min(ev.Time.UnixMilli(), ahead))
	}
	e.prune(false)
	if err := e.flush(ctx); err != nil {
		return nil, err
	}
	e.m.seconds.Observe(time.Since(start).Seconds())
	e.count(out)
	return out, nil
}

// Advance lets time pass without events: a for duration whose condition
// held at the group's last event completes once now reaches its end. The
// firing's Time is that end. Advance uses now only for this; windows and
// cooldowns stay on event time.
func (e *Engine) Advance(ctx context.Context, now time.Time) ([]Firing, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.needLoad {
		if err := e.load(ctx); err != nil {
			return nil, err
		}
	}
	var out []Firing
	nowMs := now.UnixMilli()
	for _, c := range e.set.rules {
		if c.mode != modeFor || !c.enabled {
			continue
		}
		gs := e.groups[c.spec.ID]
		var due []string
		for k, g := range gs {
			if g.Holding && !g.Fired && g.Held != nil && nowMs >= g.Since+c.forDur.Milliseconds() {
				due = append(due, k)
			}
		}
		slices.Sort(due)
		for _, k := range due {
			g := gs[k]
			end := g.Since + c.forDur.Milliseconds()
			ev := g.Held.event()
			if ev == nil {
				continue
			}
			g.Fired = true
			e.dirty[StateKey{c.spec.ID, k}] = true
			out = append(out, e.fire(c, g, k, []*event.Event{ev}, end))
		}
	}
	if err := e.flush(ctx); err != nil {
		return nil, err
	}
	e.count(out)
	return out, nil
}

func (e *Engine) count(fs []Firing) {
	if len(fs) == 0 {
		return
	}
	e.countMu.Lock()
	defer e.countMu.Unlock()
	for i := range fs {
		c := e.counts[fs[i].Rule]
		if c == nil {
			c = new(FireCounts)
			e.counts[fs[i].Rule] = c
		}
		switch fs[i].Kind() {
		case "new":
			c.New++
		case "repeat":
			c.Repeat++
		default:
			c.Suppressed++
		}
	}
}

// flush stores the changed state; on failure memory is marked stale.
func (e *Engine) flush(ctx context.Context) error {
	defer e.m.entries.Set(float64(e.countGroups()))
	if e.state == nil || (len(e.dirty) == 0 && len(e.gone) == 0) {
		clear(e.dirty)
		return nil
	}
	ups := make([]StateRecord, 0, len(e.dirty))
	for k := range e.dirty {
		g := e.groups[k.Rule][k.Key]
		if g == nil {
			continue
		}
		b, err := g.marshal()
		if err != nil {
			e.needLoad = true
			return err
		}
		ups = append(ups, StateRecord{StateKey: k, State: b, Updated: time.UnixMilli(g.Last), Part: g.part})
	}
	slices.SortFunc(ups, func(a, b StateRecord) int {
		return cmp.Or(strings.Compare(a.Rule, b.Rule), strings.Compare(a.Key, b.Key))
	})
	dels := make([]StateKey, 0, len(e.gone))
	for k := range e.gone {
		dels = append(dels, k)
	}
	if err := e.state.SaveState(ctx, ups, dels); err != nil {
		e.needLoad = true
		return err
	}
	clear(e.dirty)
	clear(e.gone)
	return nil
}

// retention is how long after its newest event a group of c is kept.
func (c *compiled) retention() time.Duration {
	return max(minRetention, c.window, c.forDur, c.within, c.cooldown, c.hold)
}

// prune drops groups whose newest event is older than their retention,
// at most once per minute of event time unless forced.
func (e *Engine) prune(force bool) {
	if !force && e.watermark-e.pruned < time.Minute.Milliseconds() {
		return
	}
	e.pruned = e.watermark
	for id, gs := range e.groups {
		c := e.set.byID[id]
		for k, g := range gs {
			if c == nil || g.Last+c.retention().Milliseconds() < e.watermark {
				delete(gs, k)
				e.forget(id, k)
			}
		}
		if len(gs) == 0 {
			delete(e.groups, id)
		}
	}
}

// evaluate applies one event to one rule.
func (e *Engine) evaluate(c *compiled, x *evalCtx, out *[]Firing) {
	ev := x.e
	primary := c.primary.matches(ev)
	second := c.mode == modeCorrelate && !primary && c.second.matches(ev)
	if !primary && !second {
		return
	}
	if !c.active(ev.Time.Time) {
		return
	}
	m := &c.primary
	if second {
		m = &c.second
	}
	holds := true
	if m.when != nil {
		var ok bool
		if holds, ok = x.eval(m.when, c.loc); !ok {
			e.m.condErrors.WithLabelValues(c.spec.ID).Inc()
			return
		}
	}
	if !holds && c.mode != modeFor {
		return
	}
	key := c.groupKey(ev)
	gs := e.groupsOf(c.spec.ID)
	g := gs[key]
	if g == nil {
		if !holds {
			return // nothing to reset
		}
		g = &group{Fingerprint: c.fingerprint}
		gs[key] = g
	}
	id := x.eventID()
	if g.isSeen(id) {
		e.m.duplicates.Inc()
		return
	}
	g.markSeen(id)
	g.part = e.cur
	sk := StateKey{c.spec.ID, key}
	e.dirty[sk] = true
	delete(e.gone, sk)
	t := ev.Time.UnixMilli()
	defer func() { g.Last = max(g.Last, t) }()

	switch c.mode {
	case modeSimple:
		*out = append(*out, e.fire(c, g, key, []*event.Event{ev}, t))

	case modeCount:
		w := c.window.Milliseconds()
		if t < g.Last-w {
			e.m.late.WithLabelValues(c.spec.ID).Inc()
			return
		}
		i, _ := slices.BinarySearchFunc(g.Window, t, func(en *entry, t int64) int {
			if en.T <= t {
				return -1
			}
			return 1
		})
		g.Window = slices.Insert(g.Window, i, x.entry())
		newest := g.Window[len(g.Window)-1].T
		n := 0
		for n < len(g.Window) && g.Window[n].T < newest-w {
			n++
		}
		g.Window = slices.Delete(g.Window, 0, n)
		if len(g.Window) > c.count {
			g.Window = slices.Delete(g.Window, 0, len(g.Window)-c.count)
		}
		if len(g.Window) >= c.count {
			evs := entryEvents(g.Window[max(0, len(g.Window)-maxWindowEvents):])
			g.Window = nil
			*out = append(*out, e.fire(c, g, key, evs, newest))
		}

	case modeFor:
		if t < g.Last {
			// For needs order: an older event says nothing about now.
			e.m.late.WithLabelValues(c.spec.ID).Inc()
			return
		}
		if !holds {
			g.Holding, g.Since, g.Held, g.Fired = false, 0, nil, false
			return
		}
		if !g.Holding {
			g.Holding, g.Since, g.Fired = true, t, false
		}
		g.Held = x.entry()
		if !g.Fired && t-g.Since >= c.forDur.Milliseconds() {
			g.Fired = true
			*out = append(*out, e.fire(c, g, key, []*event.Event{ev}, t))
		}

	case modeCorrelate:
		within := c.within.Milliseconds()
		keep := func(s []*entry) []*entry {
			return slices.DeleteFunc(s, func(en *entry) bool { return en.T < t-within && en.T < g.Last-within })
		}
		g.A, g.B = keep(g.A), keep(g.B)
		mine, other := &g.A, &g.B
		if second {
			mine, other = &g.B, &g.A
		}
		best := -1
		for i, en := range *other {
			if abs(en.T-t) <= within && (best < 0 || abs(en.T-t) < abs((*other)[best].T-t)) {
				best = i
			}
		}
		if best < 0 {
			*mine = append(*mine, x.entry())
			if len(*mine) > maxPending {
				*mine = slices.Delete(*mine, 0, len(*mine)-maxPending)
			}
			return
		}
		pair := (*other)[best]
		*other = slices.Delete(*other, best, best+1)
		pe := pair.event()
		if pe == nil {
			return
		}
		evs := []*event.Event{pe, ev}
		if pair.T > t {
			evs[0], evs[1] = ev, pe
		}
		*out = append(*out, e.fire(c, g, key, evs, max(t, pair.T)))
	}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func entryEvents(s []*entry) []*event.Event {
	out := make([]*event.Event, 0, len(s))
	for _, en := range s {
		if ev := en.event(); ev != nil {
			out = append(out, ev)
		}
	}
	return out
}

// fire builds a firing of c for group key g at t (Unix ms), applying the
// cooldown and inhibitions, and records it.
func (e *Engine) fire(c *compiled, g *group, key string, evs []*event.Event, t int64) Firing {
	last := evs[len(evs)-1]
	f := Firing{
		Rule:          c.spec.ID,
		RuleVersion:   e.set.version,
		GroupKey:      key,
		Events:        evs,
		Time:          time.UnixMilli(t).UTC(),
		Risk:          c.spec.Case.Risk,
		RiskPerRepeat: c.spec.Case.RiskPerRepeat,
		Category:      c.spec.Case.Category,
		Title:         c.spec.Name,
	}
	if g.HasFired && abs(t-g.LastFire) < c.cooldown.Milliseconds() {
		f.Repeat = true
	}
	if !g.HasFired || t > g.LastFire {
		g.LastFire = t
	}
	g.HasFired = true

	// Is this firing inhibited by an active firing of another rule?
	for _, src := range e.set.inhibitors[c.spec.ID] {
		if !src.enabled {
			continue
		}
		hold := src.hold.Milliseconds()
		for skey, sg := range e.groups[src.spec.ID] {
			if !sg.HasFired || t < sg.LastFire || t-sg.LastFire > hold || sg.Labels == nil {
				continue
			}
			if labelsAgree(src.equal, sg.Labels, last) && (f.SuppressedBy == "" || skey < f.SuppressedBy) {
				f.SuppressedBy = skey
			}
		}
	}
	if len(c.targets) > 0 {
		g.Labels = make(map[string]string, len(c.equal))
		for _, l := range c.equal {
			g.Labels[l] = label(last, l)
		}
	}

	if c.title != nil {
		if s, ok := render(c.title, c, evs); ok {
			f.Title = s
		} else {
			e.m.tmplErrors.WithLabelValues(c.spec.ID).Inc()
		}
	}
	if c.desc != nil {
		if s, ok := render(c.desc, c, evs); ok {
			f.Description = s
		} else {
			e.m.tmplErrors.WithLabelValues(c.spec.ID).Inc()
		}
	}
	for name, t := range c.elements {
		if s, ok := render(t, c, evs); ok {
			if f.Elements == nil {
				f.Elements = map[string]string{}
			}
			f.Elements[name] = s
		} else {
			e.m.tmplErrors.WithLabelValues(c.spec.ID).Inc()
		}
	}
	e.m.firings.WithLabelValues(c.spec.ID, f.Kind()).Inc()
	return f
}

// labelsAgree reports whether target lies within the source firing's
// values of equal: region within the source's region subtree, the others
// equal. An empty source value agrees with nothing.
func labelsAgree(equal []string, src map[string]string, target *event.Event) bool {
	for _, l := range equal {
		sv := src[l]
		if sv == "" {
			return false
		}
		tv := label(target, l)
		if l == "region" {
			if !inRegion(tv, sv) {
				return false
			}
		} else if tv != sv {
			return false
		}
	}
	return true
}

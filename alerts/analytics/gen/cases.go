package gen

import (
	"container/heap"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"sharpeye/alerts/cases"
	"sharpeye/ingest/event"
)

// caseRun is one case's changes, made when the case opens and handed out
// as the history reaches them.
type caseRun struct {
	order int
	id    string
	chs   []cases.Change
	ats   []int64
	next  int
	// number is given when the case's first change is handed out, so
	// that numbers follow the order cases were opened in.
	number string
	links  []link
}

// link fills in, when change idx is handed out, what depends on another
// case's number.
type link struct {
	idx   int
	to    *caseRun
	patch func(ch *cases.Change, to *caseRun)
}

func numberOf(year, n int) string { return fmt.Sprintf("%d-%06d", year, n) }

// caseSpec is a case about to open.
type caseSpec struct {
	mix      *categoryMix
	pb       *cases.Playbook
	source   cases.Source
	rule     *ruleDef
	at       int64
	title    string
	region   string
	grid     string
	gridIdx  int // -1: a township or county case
	township int
	lat, lon *float64
	camera   string
	device   string
	risk     int
	// falseAlert: the matter turns out not substantiated.
	falseAlert bool
	reporter   *cases.Reporter
	elements   cases.Elements
	group      string
	firstEvent string
	alerts     int
}

// step is one change of a case in the making.
type step struct {
	at     int64
	action string
	actor  string
	role   string
	// human steps are actions taken through the case API: they record
	// the state left and entered, the deadline they were due by, and
	// restart the stage's deadline when the stage changes.
	human bool
	note  string
	apply func(c *cases.Case, h *cases.HistoryEntry, at time.Time)
	link  *caseRun
	patch func(ch *cases.Change, to *caseRun)
}

// window is a stage's deadline: from start, due at deadline, left at end.
type window struct {
	stage                string
	start, deadline, end int64
}

// plan is a case's history in the making.
type plan struct {
	g       *engine
	sp      *caseSpec
	run     *caseRun
	steps   []step
	windows []window
	closeAt int64
	urgent  bool
	colour  cases.Colour
}

func (g *engine) newPlan(sp *caseSpec) *plan {
	g.order++
	p := &plan{g: g, sp: sp, run: &caseRun{order: g.order, id: g.id(sp.at).String()}}
	p.urgent = sp.pb.Deadlines.Accept.D() <= 30*time.Minute
	p.colour = g.colours.Colour(sp.risk)
	return p
}

func (p *plan) add(s step) { p.steps = append(p.steps, s) }

// stageDur is how long a stage of deadline d takes: a lognormal time with
// a median of a quarter of d times the category's pace (pace 1: about 4 %
// late; 1.6: about 12 %).
func (p *plan) stageDur(d time.Duration) int64 {
	return max(p.g.lognormal(time.Duration(float64(d)*0.25*p.sp.mix.pace), 0.8), 30_000)
}

// office moves t into working hours for departments that keep them (not
// the urgent playbooks' police, fire and emergency services).
func (p *plan) office(t int64) int64 {
	if p.urgent {
		return t
	}
	h := p.g.localHour(t)
	switch {
	case h >= 22:
		return t + int64((24-h+8)*float64(hour)) + p.g.rng.Int64N(90*minute)
	case h < 7.5:
		return t + int64((8-h)*float64(hour)) + p.g.rng.Int64N(90*minute)
	}
	return t
}

// Actors.
func (p *plan) commander(t int64) (string, string) {
	shift := (t - p.g.begin) / (8 * hour)
	return fmt.Sprintf("zhihui%02d", shift%8+1), "commander"
}

func (p *plan) clerk() (string, string) {
	return fmt.Sprintf("shouli%02d", p.g.rng.IntN(6)+1), "clerk"
}

func (p *plan) handler(dept string) (string, string) {
	return fmt.Sprintf("%s-%02d-%d", dept, p.sp.township+1, p.g.rng.IntN(3)+1), "handler"
}

func (p *plan) supervisor() (string, string) {
	return fmt.Sprintf("duban%02d", p.g.rng.IntN(3)+1), "supervisor"
}

func (p *plan) registrar() (string, string) {
	switch p.sp.source {
	case cases.FromAlert:
		return "sharpeye", "system"
	case cases.FromGrid:
		return "wgy-" + p.sp.grid, "grid_worker"
	case cases.FromPolice:
		return "jingqing-feed", "service"
	}
	return p.clerk()
}

// jitter is when a timer due at t fires: within the timer loop's poll.
func (p *plan) jitter(t int64) int64 { return t + p.g.rng.Int64N(1000) }

// path plans the case's own history, from registration to closing.
func (p *plan) path() {
	g, sp, pb := p.g, p.sp, p.sp.pb
	dl := pb.Deadlines
	alert := sp.source == cases.FromAlert
	t := sp.at
	actor, role := p.registrar()
	p.add(step{at: t, action: "registered", actor: actor, role: role, apply: p.registered})
	aStart, aDeadline := t, t+dl.Assess.D().Milliseconds()
	if alert {
		t++
		p.add(step{at: t, action: "assess", actor: "sharpeye", role: "system", apply: p.assess(false),
			note: "assessed automatically from rule " + sp.rule.id})
	} else {
		t += max(p.stageDur(dl.Assess.D())/3, 20_000)
		a, r := p.commander(t)
		p.add(step{at: t, action: "assess", actor: a, role: r, human: true, apply: p.assess(true)})
	}
	if p.colour == cases.Red {
		// A red risk warns the leaders at once (the warn timer).
		p.add(step{at: t + 300 + g.rng.Int64N(1000), action: "risk_warning", actor: "sharpeye", role: "system",
			note: "red-level risk: leaders informed; verify the same day", apply: func(c *cases.Case, _ *cases.HistoryEntry, _ time.Time) {
				c.Warned = true
			}})
	}
	dismissed := sp.falseAlert && g.rng.Float64() < 0.7
	if !dismissed && p.colour == cases.Red && levelOf(sp.region) != cases.County && (sp.mix.category == "public_order" || sp.mix.category == "public_safety") && g.rng.Float64() < 0.1 {
		at := t + g.lognormal(10*time.Minute, 0.6)
		a, r := p.commander(at)
		p.add(step{at: at, action: "escalate", actor: a, role: r, human: true, note: "红色风险，提级处置", apply: escalate})
	}
	if dismissed {
		// Verified on video or by a call and dismissed.
		td := max(t+10_000, aStart+p.stageDur(dl.Assess.D()))
		a, r := p.commander(td)
		note := "核查为误报"
		if !alert {
			note = "经核实不属实"
		}
		p.add(step{at: td, action: "dismiss", actor: a, role: r, human: true, note: note, apply: dismiss})
		p.windows = append(p.windows, window{cases.StageAssess, aStart, aDeadline, td})
		p.closeAt = td
		return
	}
	if !alert && sp.source != cases.FromGrid && g.rng.Float64() < 0.2 {
		at := t + g.lognormal(10*time.Minute, 0.5)
		a, r := p.clerk()
		p.add(step{at: at, action: "edit", actor: a, role: r, human: true, apply: editElements})
		t = at
	}
	if sp.source == cases.FromGrid && g.rng.Float64() < 0.4 {
		at := t + g.lognormal(5*time.Minute, 0.5)
		p.add(step{at: at, action: "attach", actor: "wgy-" + sp.grid, role: "grid_worker", human: true, apply: attachPhoto})
		t = at
	}
	tD := max(t+30_000, aStart+p.stageDur(dl.Assess.D()))
	dept := pb.Lead
	a, r := p.commander(tD)
	p.add(step{at: tD, action: "dispatch", actor: a, role: r, human: true, apply: func(c *cases.Case, h *cases.HistoryEntry, at time.Time) {
		c.Department, c.CoDepartments = pb.Lead, slices.Clone(pb.Co)
		c.State, c.Dispatched = cases.Dispatched, at
		h.Data = map[string]any{"department": pb.Lead, "co_departments": pb.Co}
	}})
	p.windows = append(p.windows, window{cases.StageAssess, aStart, aDeadline, tD})

	outcome := "unsubstantiated"
	if !sp.falseAlert {
		outcome = pickWeighted(g, sp.mix.outcomes)
	}
	start := tD
	for round := 0; ; round++ {
		// Accept (with, rarely, a reassignment first).
		if round == 0 && g.rng.Float64() < 0.04 {
			tR := start + g.lognormal(20*time.Minute, 0.6)
			to := otherDepartment(g, dept)
			a, r := p.commander(tR)
			prev := dept
			p.add(step{at: tR, action: "reassign", actor: a, role: r, human: true, note: "职责不符，改派",
				apply: func(c *cases.Case, h *cases.HistoryEntry, at time.Time) {
					c.Department, c.CoDepartments = to, nil
					c.State, c.AcceptedAt, c.Dispatched, c.Deadline = cases.Dispatched, time.Time{}, at, time.Time{}
					h.Data = map[string]any{"department": to, "previous_department": prev}
				}})
			p.windows = append(p.windows, window{cases.StageAccept, start, start + dl.Accept.D().Milliseconds(), tR})
			start, dept = tR, to
		}
		tA := p.office(start + p.stageDur(dl.Accept.D()))
		a, r := p.handler(dept)
		d := dept
		p.add(step{at: tA, action: "accept", actor: a, role: r, human: true, apply: func(c *cases.Case, h *cases.HistoryEntry, at time.Time) {
			c.State, c.AcceptedAt = cases.Accepted, at
			h.Data = map[string]any{"department": d}
		}})
		p.windows = append(p.windows, window{cases.StageAccept, start, start + dl.Accept.D().Milliseconds(), tA})

		// Resolve.
		tRes := p.office(tA + p.stageDur(dl.Resolve.D()))
		rDeadline := tA + dl.Resolve.D().Milliseconds()
		if round == 0 && g.rng.Float64() < sp.mix.split {
			p.split(tA, tRes, dept)
		}
		if g.rng.Float64() < 0.1 {
			at := tA + g.rng.Int64N(max(tRes-tA, 1))
			a, r := p.handler(dept)
			p.add(step{at: at, action: "comment", actor: a, role: r, human: true, note: "已联系当事人，正在处理"})
		}
		if tRes > rDeadline+6*hour && g.rng.Float64() < 0.5 {
			at := rDeadline + hour + g.rng.Int64N(min(tRes-rDeadline-hour, 48*hour))
			a, r := p.supervisor()
			p.add(step{at: at, action: "urge", actor: a, role: r, human: true, note: "请加快办理", apply: func(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
				c.UrgeCount++
				h.Data = map[string]any{"urge_count": c.UrgeCount, "department": c.Department}
			}})
		}
		a, r = p.handler(dept)
		oc := outcome
		p.add(step{at: tRes, action: "resolve", actor: a, role: r, human: true, apply: func(c *cases.Case, h *cases.HistoryEntry, at time.Time) {
			c.State, c.ResolvedAt, c.Outcome, c.Result = cases.Resolved, at, oc, resultOf(oc)
			h.Data = map[string]any{"outcome": oc}
		}})
		p.windows = append(p.windows, window{cases.StageResolve, tA, rDeadline, tRes})

		// Follow up, or close.
		fDeadline := tRes + dl.FollowUp.D().Milliseconds()
		follow := sp.reporter != nil && (outcome != "unsubstantiated" || g.rng.Float64() < 0.5) ||
			alert && outcome != "unsubstantiated" && g.rng.Float64() < 0.25
		if !follow {
			tC := p.office(tRes + g.lognormal(2*time.Hour, 0.8))
			a, r := p.commander(tC)
			p.add(step{at: tC, action: "close", actor: a, role: r, human: true, apply: closeCase})
			p.windows = append(p.windows, window{cases.StageFollowUp, tRes, fDeadline, tC})
			p.closeAt = tC
			return
		}
		tF := p.office(tRes + p.stageDur(dl.FollowUp.D()))
		sat := pickWeighted(g, satisfactions)
		if round > 0 && sat == "dissatisfied" {
			sat = "basically"
		}
		a, r = p.clerk()
		p.add(step{at: tF, action: "follow_up", actor: a, role: r, human: true, apply: func(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
			c.Satisfaction = sat
			h.Data = map[string]any{"satisfaction": sat}
			if sat == "dissatisfied" {
				c.State, c.AcceptedAt, c.ResolvedAt, c.Deadline = cases.Dispatched, time.Time{}, time.Time{}, time.Time{}
				h.Data["reopened"] = true
				return
			}
			c.State = cases.FollowedUp
		}})
		p.windows = append(p.windows, window{cases.StageFollowUp, tRes, fDeadline, tF})
		if sat == "dissatisfied" {
			start = tF
			continue
		}
		tC := p.office(tF + g.lognormal(3*time.Hour, 0.8))
		a, r = p.commander(tC)
		p.add(step{at: tC, action: "close", actor: a, role: r, human: true, apply: closeCase})
		p.closeAt = tC
		return
	}
}

// split cuts the case into two departments' tasks between accepting and
// resolving it.
func (p *plan) split(tA, tRes int64, dept string) {
	g := p.g
	span := max(tRes-tA, 10*minute)
	at := tA + span/10
	depts := []string{dept, "township"}
	if len(p.sp.pb.Co) > 0 && p.sp.pb.Co[0] != dept {
		depts[1] = p.sp.pb.Co[0]
	}
	ids := []string{g.id(at).String(), g.id(at).String()}
	a, r := p.commander(at)
	p.add(step{at: at, action: "split", actor: a, role: r, human: true, note: "一把钥匙开一把锁：分部门办理",
		apply: func(_ *cases.Case, h *cases.HistoryEntry, _ time.Time) {
			h.Data = map[string]any{"tasks": ids}
		}})
	for i, d := range depts {
		id, d := ids[i], d
		acc := at + span/10 + g.rng.Int64N(span/5)
		done := at + span/2 + g.rng.Int64N(span*4/10)
		a, r := p.handler(d)
		p.add(step{at: acc, action: "task_accept", actor: a, role: r, human: true, apply: func(_ *cases.Case, h *cases.HistoryEntry, _ time.Time) {
			h.Data = map[string]any{"task": id, "department": d}
		}})
		left := len(depts) - 1 - i
		p.add(step{at: done, action: "task_done", actor: a, role: r, human: true, note: "本部门事项已办结",
			apply: func(_ *cases.Case, h *cases.HistoryEntry, _ time.Time) {
				h.Data = map[string]any{"task": id, "department": d, "tasks_open": left}
			}})
	}
}

// timers adds what the deadlines' timers did: a reminder before each
// stage's deadline and the ladder after it, for every stage left after
// them.
func (p *plan) timers() {
	pb := p.sp.pb
	remind := pb.RemindBefore.D().Milliseconds()
	for _, w := range p.windows {
		data := func(step int, due int64) map[string]any {
			return map[string]any{"stage": w.stage, "step": step, "due": time.UnixMilli(due).UTC().Format(time.RFC3339),
				"deadline": time.UnixMilli(w.deadline).UTC().Format(time.RFC3339)}
		}
		if r := w.deadline - remind; remind > 0 && r > w.start && r < w.end {
			d := data(0, r)
			p.add(step{at: p.jitter(r), action: "reminded", actor: "sharpeye", role: "system", apply: func(_ *cases.Case, h *cases.HistoryEntry, _ time.Time) {
				h.Data = d
			}})
		}
		for i, st := range pb.Ladder {
			due := w.deadline + st.After.D().Milliseconds()
			if due >= w.end {
				break
			}
			d := data(i+1, due)
			s := step{at: p.jitter(due), actor: "sharpeye", role: "system"}
			switch st.Action {
			case cases.TimerUrge:
				s.action = "urged"
				s.apply = func(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
					c.UrgeCount++
					d["urge_count"] = c.UrgeCount
					h.Data = d
				}
			case cases.TimerSupervise:
				s.action = "supervised"
				s.apply = func(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
					if c.Supervised {
						h.Note = "still overdue under supervision"
					}
					c.Supervised = true
					h.Data = d
				}
			case cases.TimerEscalate:
				s.action = "escalated"
				s.apply = func(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
					h.Data = d
					next, ok := nextLevel(c.Level)
					if !ok {
						h.Note = "already at county level: reported to the county leaders"
						return
					}
					d["previous_level"], d["level"] = string(c.Level), string(next)
					c.Level = next
					c.Escalations++
				}
			default:
				continue
			}
			p.add(s)
		}
	}
}

func nextLevel(l cases.Level) (cases.Level, bool) {
	i := slices.Index(cases.Levels, l)
	if i < 0 || i+1 >= len(cases.Levels) {
		return l, false
	}
	return cases.Levels[i+1], true
}

// execute orders the steps and replays them on the case, as the case
// workflow would record them, into the run's changes.
func (p *plan) execute() *caseRun {
	p.timers()
	sp, pb := p.sp, p.sp.pb
	slices.SortStableFunc(p.steps, func(a, b step) int { return cmpInt(a.at, b.at) })
	for i := 1; i < len(p.steps); i++ {
		p.steps[i].at = max(p.steps[i].at, p.steps[i-1].at+1)
	}
	created := time.UnixMilli(sp.at).UTC()
	c := &cases.Case{
		ID: p.run.id, State: cases.Registered, Title: sp.title, Category: sp.mix.category, Source: sp.source,
		GroupKey: sp.group, Region: sp.region, Grid: sp.grid, Level: levelOf(sp.region),
		Details: cases.Details{Elements: sp.elements, Lat: sp.lat, Lon: sp.lon, Camera: sp.camera, Device: sp.device, Reporter: sp.reporter},
		Created: created, AlertCount: sp.alerts,
	}
	if sp.rule != nil {
		c.Rule = sp.rule.id
	}
	r := p.run
	r.chs = make([]cases.Change, 0, len(p.steps))
	r.ats = make([]int64, 0, len(p.steps))
	for i, s := range p.steps {
		at := time.UnixMilli(s.at).UTC()
		from, due := c.State, c.Deadline
		h := cases.HistoryEntry{Seq: i + 1, At: at, Actor: s.actor, Role: s.role, Action: s.action, Note: s.note}
		if s.apply != nil {
			s.apply(c, &h, at)
		}
		if s.human {
			h.From = from
			if c.State != from {
				h.To = c.State
			}
			if stageOf(from) != stageOf(c.State) || s.action == "reassign" {
				c.Deadline = time.Time{}
				if st := stageOf(c.State); st != "" {
					c.Deadline = at.Add(pb.Deadlines.For(st))
				}
			}
		}
		c.Updated, c.Version = at, int64(i+1)
		cp := *c
		ch := cases.Change{Case: &cp, Entry: h, Type: "case." + s.action}
		if s.human {
			ch.Due = due
		}
		if s.action == "registered" {
			// The stage's deadline is planned after the registration is
			// recorded.
			c.Deadline = at.Add(pb.Deadlines.Assess.D())
		}
		if s.link != nil {
			r.links = append(r.links, link{idx: i, to: s.link, patch: s.patch})
		}
		r.chs = append(r.chs, ch)
		r.ats = append(r.ats, s.at)
	}
	return r
}

// stageOf mirrors the case workflow's stages.
func stageOf(s cases.State) string {
	switch s {
	case cases.Registered, cases.Assessed:
		return cases.StageAssess
	case cases.Dispatched:
		return cases.StageAccept
	case cases.Accepted:
		return cases.StageResolve
	case cases.Resolved:
		return cases.StageFollowUp
	}
	return ""
}

// levelOf mirrors the case workflow: the region's depth.
func levelOf(region string) cases.Level {
	switch n := strings.Count(region, "/") + 1; {
	case region == "" || n <= 1:
		return cases.County
	case n == 2:
		return cases.Township
	}
	return cases.Village
}

func (p *plan) registered(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
	h.To = cases.Registered
	h.Data = map[string]any{"source": string(p.sp.source)}
	if p.sp.rule != nil {
		h.Data["rule"], h.Data["group"] = p.sp.rule.id, p.sp.group
		if p.sp.firstEvent != "" {
			h.Data["first_event"] = p.sp.firstEvent
		}
	}
}

// assess sets the risk; a person now and then colours it differently
// from the score, with a reason.
func (p *plan) assess(human bool) func(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
	colour, reason := p.colour, ""
	if human && p.g.rng.Float64() < 0.04 && colour != cases.Red {
		colour, reason = cases.Orange, "涉及重点人员，提高关注"
		if p.colour == cases.Orange {
			colour = cases.Red
		}
		p.colour = colour
	}
	risk := p.sp.risk
	return func(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
		from := c.State
		c.Risk, c.Colour, c.ColourReason = risk, colour, reason
		c.State = cases.Assessed
		h.From, h.To = from, c.State
		if reason != "" {
			h.Note = reason
		}
		h.Data = map[string]any{"risk": risk, "colour": string(colour)}
	}
}

func escalate(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
	next, ok := nextLevel(c.Level)
	if !ok {
		return
	}
	h.Data = map[string]any{"level": string(next), "previous_level": string(c.Level)}
	c.Level = next
	c.Escalations++
}

func dismiss(c *cases.Case, h *cases.HistoryEntry, at time.Time) {
	c.State, c.ClosedAt, c.Outcome, c.Deadline = cases.Closed, at, "unsubstantiated", time.Time{}
	h.Data = map[string]any{"outcome": "unsubstantiated"}
}

func closeCase(c *cases.Case, _ *cases.HistoryEntry, at time.Time) {
	c.State, c.ClosedAt, c.Deadline = cases.Closed, at, time.Time{}
}

func editElements(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
	c.Elements.Who, c.Elements.Cause = "当事双方", "长期积怨"
	h.Data = map[string]any{"changed": []string{"elements.who", "elements.cause"}}
}

func attachPhoto(_ *cases.Case, h *cases.HistoryEntry, _ time.Time) {
	h.Data = map[string]any{"evidence": 1, "kind": "photo"}
}

func resultOf(outcome string) string {
	switch outcome {
	case "mediated":
		return "经调解双方达成一致"
	case "unsubstantiated":
		return "现场核实无此情况"
	case "handled":
		return "已现场处置完毕"
	case "court":
		return "引导当事人诉讼解决"
	case "arbitration":
		return "已转劳动仲裁"
	case "administrative":
		return "已依法作出行政处理"
	}
	return "已转有关部门办理"
}

var departments = []string{"township", "police", "justice", "court", "labour", "housing", "land", "health", "fire", "emergency", "water", "market"}

func otherDepartment(g *engine, not string) string {
	for {
		d := departments[g.rng.IntN(len(departments))]
		if d != not {
			return d
		}
	}
}

func pickWeighted(g *engine, ws []weighted) string {
	sum := 0.0
	for _, w := range ws {
		sum += w.w
	}
	x := g.rng.Float64() * sum
	for _, w := range ws {
		if x < w.w {
			return w.name
		}
		x -= w.w
	}
	return ws[len(ws)-1].name
}

// open plans a case (and the second report of it that some matters get)
// and queues its changes.
func (g *engine) open(sp *caseSpec, extra func(p *plan)) *plan {
	p := g.newPlan(sp)
	p.path()
	if extra != nil {
		extra(p)
	}
	var dup *plan
	if sp.rule == nil || !sp.rule.structural {
		if g.rng.Float64() < sp.mix.dup {
			dup = g.duplicate(p)
		}
	}
	heap.Push(&g.runs, p.execute())
	if dup != nil {
		heap.Push(&g.runs, dup.execute())
	}
	return p
}

// duplicate plans a second report of prim's matter, by a person, merged
// into it (or dismissed when prim has closed meanwhile).
func (g *engine) duplicate(prim *plan) *plan {
	sp := *prim.sp
	var people []sourceShare
	for _, s := range sp.mix.sources {
		if s.source != cases.FromAlert && s.source != cases.FromPolice {
			people = append(people, s)
		}
	}
	sp.source = cases.FromHotline
	if len(people) > 0 {
		sp.source = people[g.rng.IntN(len(people))].source
	}
	if sp.source == cases.FromGrid && sp.grid == "" {
		sp.source = cases.FromHotline
	}
	sp.rule, sp.group, sp.firstEvent, sp.alerts, sp.falseAlert = nil, "", "", 0, false
	sp.camera, sp.device = "", ""
	sp.at = prim.sp.at + max(g.lognormal(25*time.Minute, 0.8), 2*minute)
	sp.reporter = g.reporter()
	sp.elements = g.personElements(&sp, sp.at)
	d := g.newPlan(&sp)
	a, r := d.registrar()
	d.add(step{at: sp.at, action: "registered", actor: a, role: r, apply: d.registered})
	tm := sp.at + max(g.lognormal(15*time.Minute, 0.8), 30_000)
	dl := sp.pb.Deadlines.Assess.D().Milliseconds()
	d.windows = append(d.windows, window{cases.StageAssess, sp.at, sp.at + dl, tm})
	d.closeAt = tm
	a, r = d.commander(tm)
	if tm >= prim.closeAt {
		d.add(step{at: tm, action: "dismiss", actor: a, role: r, human: true, note: "重复报告，原案已办结", apply: dismiss})
		return d
	}
	primID, dupID := prim.run.id, d.run.id
	d.add(step{at: tm, action: "merge", actor: a, role: r, human: true, note: "同案合并", link: prim.run,
		apply: func(c *cases.Case, h *cases.HistoryEntry, at time.Time) {
			c.Before, c.MergedInto = c.State, primID
			c.State, c.ClosedAt, c.Deadline = cases.Closed, at, time.Time{}
			h.Data = map[string]any{"into": primID}
		},
		patch: func(ch *cases.Change, to *caseRun) { ch.Entry.Data["number"] = to.number }})
	prim.add(step{at: tm, action: "merged_in", actor: a, role: r, note: "同案合并", link: d.run,
		apply: func(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
			c.Merged = append(slices.Clone(c.Merged), dupID)
			h.Data = map[string]any{"case": dupID, "evidence_copied": 0}
		},
		patch: func(ch *cases.Change, to *caseRun) { ch.Entry.Data["number"] = to.number }})
	return d
}

var surnames = []string{"张", "王", "李", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙", "胡", "朱", "高", "林"}

func (g *engine) reporter() *cases.Reporter {
	title := "先生"
	if g.rng.IntN(2) == 0 {
		title = "女士"
	}
	return &cases.Reporter{Name: surnames[g.rng.IntN(len(surnames))] + title,
		Phone: fmt.Sprintf("1%d%d****%04d", 3+g.rng.IntN(6), g.rng.IntN(10), g.rng.IntN(10000))}
}

func (g *engine) localTime(t int64) string {
	return time.UnixMilli(t).In(g.loc).Format("2006-01-02 15:04:05")
}

// personElements are the seven elements a person fills in.
func (g *engine) personElements(sp *caseSpec, at int64) cases.Elements {
	issue := sp.mix.issues[g.rng.IntN(len(sp.mix.issues))]
	return cases.Elements{When: g.localTime(at)[:16], Where: sp.region, Who: "报告人及相关群众", What: issue,
		Circumstances: "群众反映" + issue + "，需协调处理", Cause: "待核实", Object: issue}
}

// randomCases opens the minute's cases that are not tied to a
// condition.
func (g *engine) randomCases(t0 int64, hw int) {
	if len(g.streams) == 0 || g.csRate[hw] <= 0 {
		return
	}
	n := g.poisson(g.csRate[hw])
	offs := slices.Clone(g.sortedOffsets(n))
	for _, off := range offs {
		s := &g.streams[pick(g.rng, g.csCDF[hw])]
		if s.rule != nil && g.alertCase(s, t0) {
			continue
		}
		g.personCase(s.mix, s.source, t0+off)
	}
}

// personCase opens a case a person reports: at the window, by the hotline,
// by a grid worker or from the police feed.
func (g *engine) personCase(mix *categoryMix, src cases.Source, at int64) {
	a := g.a
	gi := g.pools.grids.pick(g.rng)
	if gi < 0 {
		return
	}
	gr := a.Grids[gi]
	v := a.Villages[gr.Village]
	sp := &caseSpec{mix: mix, pb: g.playbooks[mix.category], source: src, at: at, gridIdx: gi, township: v.Township,
		region: v.Region, grid: gr.ID}
	if src == cases.FromAlert {
		sp.source = cases.FromHotline
	}
	switch x := g.rng.Float64(); {
	case sp.source == cases.FromGrid:
	case x < 0.02:
		sp.region, sp.grid, sp.gridIdx = a.Name, "", -1
	case x < 0.12:
		sp.region, sp.grid, sp.gridIdx = a.Townships[v.Township].Region, "", -1
	}
	if g.rng.Float64() < 0.5 {
		lat, lon := round6(v.Lat+(g.rng.Float64()-0.5)*0.01), round6(v.Lon+(g.rng.Float64()-0.5)*0.01)
		sp.lat, sp.lon = &lat, &lon
	}
	sp.risk = mix.riskLo + g.rng.IntN(mix.riskHi-mix.riskLo+1)
	sp.falseAlert = g.rng.Float64() < notSubstantiated
	if sp.source != cases.FromPolice || g.rng.IntN(2) == 0 {
		sp.reporter = g.reporter()
	}
	sp.elements = g.personElements(sp, at)
	sp.title = v.Name + "：" + sp.elements.What
	g.open(sp, nil)
}

// alertSpec fills a case from the alert's events (the last one places
// it), as the case workflow does.
func (g *engine) alertSpec(rd *ruleDef, at int64, group string, evs ...*event.Event) *caseSpec {
	mix := mixOf(rd.category)
	last := evs[len(evs)-1]
	sp := &caseSpec{mix: mix, pb: g.playbooks[rd.category], source: cases.FromAlert, rule: rd, at: at, gridIdx: -1,
		region: last.Location.Region, grid: last.Location.Grid, lat: last.Location.Lat, lon: last.Location.Lon,
		risk: rd.risk, falseAlert: g.rng.Float64() < rd.falseRate, group: rd.id + "/" + group, firstEvent: evs[0].ID.String(), alerts: 1}
	if i, ok := g.gridByID[sp.grid]; ok {
		sp.gridIdx, sp.township = i, g.a.Villages[g.a.Grids[i].Village].Township
	}
	var objects, types []string
	for _, e := range evs {
		switch e.Source.Kind {
		case event.SourceCamera:
			sp.camera = e.Source.ID
		case event.SourceDevice, event.SourceAnalyser:
			sp.device = e.Source.ID
			if cam, ok := e.String("camera"); ok && sp.camera == "" {
				sp.camera = cam
			}
		}
		if !slices.Contains(types, e.Type) {
			types = append(types, e.Type)
		}
		for _, k := range []string{"class", "device_kind", "camera"} {
			if v, ok := e.String(k); ok && !slices.Contains(objects, v) {
				objects = append(objects, v)
			}
		}
	}
	slices.Sort(types)
	when := g.localTime(evs[0].Time.UnixMilli())
	if len(evs) > 1 {
		when += " – " + g.localTime(last.Time.UnixMilli())[11:]
	}
	what := strings.Join(types, ", ")
	if len(evs) > 1 {
		what += " (" + strconv.Itoa(len(evs)) + " events)"
	}
	where := last.Source.Name + ", " + last.Location.Region
	if last.Location.Grid != "" {
		where += ", grid " + last.Location.Grid
	}
	if len(objects) == 0 {
		objects = []string{string(last.Source.Kind) + " " + last.Source.ID}
	}
	sp.elements = cases.Elements{When: when, Where: where, What: what, Object: strings.Join(objects, ", ")}
	sp.title = last.Source.Name + "：" + rd.title
	return sp
}

func mixOf(category string) *categoryMix {
	for i := range categoryMixes {
		if categoryMixes[i].category == category {
			return &categoryMixes[i]
		}
	}
	return nil
}

// alertCase makes an alert rule's events in the minute starting at t0
// and opens its case; false when the county has nothing to fire it.
func (g *engine) alertCase(s *stream, t0 int64) bool {
	at := t0 + 50_000 + g.rng.Int64N(10_000)
	rd := s.rule
	var evs []*event.Event
	var group string
	p := &g.pools
	switch rd.id {
	case "smoke-high", "water-high":
		pl := &p.smoke
		if rd.id == "water-high" {
			pl = &p.water
		}
		di := g.upDevice(pl, at)
		if di < 0 {
			return false
		}
		evs = []*event.Event{g.telemetry(di, at-10_000-g.rng.Int64N(30_000), true), g.telemetry(di, at-200, true)}
		group = "device=" + g.a.Devices[di].ID
	case "alarm-button":
		di := g.upDevice(&p.alarms, at)
		if di < 0 {
			return false
		}
		evs = []*event.Event{g.alarm(di, at-150)}
		group = "device=" + g.a.Devices[di].ID
	case "alarm-with-people":
		di := g.upDevice(&p.alarmsWithCams, at)
		if di < 0 {
			return false
		}
		cams := p.aiOfGrid[g.a.Devices[di].GridIndex]
		ci := cams[g.rng.IntN(len(cams))]
		evs = []*event.Event{g.alarm(di, at-45_000), g.detection("detection.person", ci, at-200, 0)}
		group = "grid=" + g.a.Devices[di].Grid
	case "gate-forced":
		di := g.upDevice(&p.doors, at)
		if di < 0 {
			return false
		}
		evs = []*event.Event{g.doorForced(di, at-40_000), g.doorForced(di, at-150)}
		group = "device=" + g.a.Devices[di].ID
	case "fall", "crowd", "night-intrusion":
		pl, typ := &p.ai, "detection."+rd.id
		switch rd.id {
		case "night-intrusion":
			pl, typ = &p.school, "detection.person"
		}
		ci := g.upCamera(pl, at)
		if ci < 0 {
			return false
		}
		if rd.id == "crowd" {
			evs = []*event.Event{g.detection(typ, ci, at-40_000, 0), g.detection(typ, ci, at-20_000, 0)}
		}
		evs = append(evs, g.detection(typ, ci, at-200, 0.6+0.39*g.rng.Float64()))
		group = "camera=" + g.a.Cameras[ci].ID
	default:
		return false
	}
	for _, e := range evs {
		g.add(e)
	}
	sp := g.alertSpec(rd, at, group, evs...)
	if rd.id == "smoke-high" {
		v, _ := evs[len(evs)-1].Number("smoke")
		sp.title = evs[0].Source.Name + "：烟感浓度 " + strconv.FormatFloat(v, 'f', 2, 64)
	}
	g.open(sp, nil)
	return true
}

// cameraCase opens a structural rule's case on camera ci: camera-offline
// (at outage out, whose later outages join the case while it is open) or
// camera-quality (a fault of kind).
func (g *engine) cameraCase(rd *ruleDef, ci int, at int64, out int, kind string) {
	trigger := g.evs[len(g.evs)-1]
	c := &g.a.Cameras[ci]
	group := "camera=" + c.ID
	if kind != "" {
		group += ",type=" + kind
	}
	sp := g.alertSpec(rd, at+1000+g.rng.Int64N(2000), group, trigger)
	if kind != "" {
		sp.title = "摄像机 " + c.ID + " 画面异常：" + kind
	} else {
		sp.title = "摄像机 " + c.ID + " 离线"
	}
	p := g.open(sp, func(p *plan) {
		if out < 0 {
			return
		}
		// Later outages of the camera join the open case.
		outs, n := g.cams[ci].outs, 0
		for k := out + 1; k < len(outs) && outs[k].from < p.closeAt && n < 12; k++ {
			if outs[k].village {
				continue
			}
			n++
			p.add(step{at: outs[k].from + 1000 + g.rng.Int64N(2000), action: "alert_repeated", actor: "sharpeye", role: "system",
				apply: func(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
					c.AlertCount++
					h.Data = map[string]any{"rule": rd.id, "events": 1, "alert_count": c.AlertCount}
				}})
		}
	})
	if kind != "" {
		g.camQualityUntil[ci] = p.closeAt
	} else {
		g.camOfflineUntil[ci] = p.closeAt
	}
}

// villageCase opens village-network-down for village outage vo: the
// village's cameras going down after it are suppressed into it.
func (g *engine) villageCase(vo int, at int64) {
	o := g.villages[vo]
	v := &g.a.Villages[o.village]
	rd := ruleByID("village-network-down")
	// The alert's events are the cameras' camera.offline events; the
	// case is placed at the village.
	lat, lon := v.Lat, v.Lon
	fake := &event.Event{ID: g.id(at), Time: event.Time{Time: time.UnixMilli(at).UTC()}, Type: "camera.offline",
		Source:   event.Source{Kind: event.SourceSystem, ID: "rules", Name: v.Name},
		Location: event.Location{Region: v.Region, Lat: &lat, Lon: &lon}}
	sp := g.alertSpec(rd, at+500, "region="+v.Region, fake)
	sp.firstEvent, sp.township = "", v.Township
	sp.title = v.Region + " 片区多路摄像机同时离线，疑似网络中断"
	sp.elements.Object = "cameras of " + v.Name
	p := g.open(sp, func(p *plan) {
		n := 0
		for _, ci := range v.Cameras {
			for _, s := range g.cams[ci].outs {
				if s.village && s.from > sp.at && s.from <= sp.at+30*minute && n < 20 {
					n++
					cam := g.a.Cameras[ci].ID
					p.add(step{at: s.from + 1000, action: "alert_suppressed", actor: "sharpeye", role: "system",
						apply: func(c *cases.Case, h *cases.HistoryEntry, _ time.Time) {
							c.Suppressed++
							h.Data = map[string]any{"rule": "camera-offline", "events": 1, "group": "camera-offline/camera=" + cam}
						}})
				}
			}
		}
	})
	g.villageUntil[o.village] = p.closeAt
}

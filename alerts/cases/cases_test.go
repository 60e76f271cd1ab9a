package cases

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/console/auth"
	"sharpeye/ingest/event"
)

// clock is a test clock moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t       testing.TB
	db      *casedb.DB
	s       *Service
	clock   *clock
	changes []Change
}

func newFixture(t *testing.T, driver string) *fixture {
	t.Helper()
	db := casedbtest.Open(t, driver)
	return newFixtureOn(t, db, &clock{t: time.Date(2026, 11, 21, 9, 0, 0, 0, shanghai)})
}

func newFixtureOn(t testing.TB, db *casedb.DB, clk *clock) *fixture {
	f := &fixture{t: t, db: db, clock: clk}
	f.s = New(Defaults(), db, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.s.SetClock(clk.now)
	var mu sync.Mutex
	f.s.SetPublisher(func(ctx context.Context, tx *sql.Tx, chs []Change) error {
		mu.Lock()
		f.changes = append(f.changes, chs...)
		mu.Unlock()
		return nil
	})
	return f
}

var (
	clerk     = &auth.Principal{Username: "clerk1", Role: auth.Clerk, Region: "lanxi"}
	commander = &auth.Principal{Username: "cmd1", Role: auth.Commander, Region: "lanxi"}
	justice   = &auth.Principal{Username: "justice1", Role: auth.Handler, Region: "lanxi/xinzhuang", Department: "justice"}
	police    = &auth.Principal{Username: "police1", Role: auth.Handler, Region: "lanxi", Department: "police"}
	outsider  = &auth.Principal{Username: "other1", Role: auth.Commander, Region: "dongyang"}
	super     = &auth.Principal{Username: "sup1", Role: auth.Supervisor, Region: "lanxi"}
	analyst   = &auth.Principal{Username: "an1", Role: auth.Analyst, Region: "lanxi"}
)

func (f *fixture) act(p *auth.Principal, c *Case, action string, r ActionRequest) *Case {
	f.t.Helper()
	r.Version = c.Version
	out, err := f.s.Act(context.Background(), p, c.ID, action, r)
	if err != nil {
		f.t.Fatalf("%s by %s: %v", action, p.Username, err)
	}
	return out
}

func (f *fixture) actErr(p *auth.Principal, c *Case, action string, r ActionRequest) error {
	f.t.Helper()
	if r.Version == 0 {
		r.Version = c.Version
	}
	_, err := f.s.Act(context.Background(), p, c.ID, action, r)
	if err == nil {
		f.t.Fatalf("%s by %s succeeded; want an error", action, p.Username)
	}
	return err
}

func (f *fixture) detail(id string) *Detail {
	f.t.Helper()
	d, err := f.s.Get(context.Background(), commander, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func dispute() NewCase {
	return NewCase{
		Title: "新庄村宅基地边界纠纷", Category: "neighbour_dispute", Source: FromWindow, Region: "lanxi/xinzhuang", Grid: "g-03",
		Elements: Elements{Where: "新庄村3组", What: "两户因宅基地边界争执"},
		Reporter: &Reporter{Name: "张某", Phone: "13800000000"},
	}
}

func historyActions(d *Detail) []string {
	var out []string
	for _, h := range d.History {
		out = append(out, h.Action)
	}
	return out
}

func forDrivers(t *testing.T, f func(t *testing.T, driver string)) {
	for _, d := range casedbtest.Drivers() {
		t.Run(d, func(t *testing.T) { f(t, d) })
	}
}

func TestClosedLoop(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		c, err := f.s.Create(ctx, clerk, dispute())
		if err != nil {
			t.Fatal(err)
		}
		if c.State != Registered || !strings.HasPrefix(c.Number, "2026-") || c.Level != Township {
			t.Fatalf("new case: state %s number %s level %s", c.State, c.Number, c.Level)
		}
		c = f.act(commander, c, "assess", ActionRequest{Risk: ptr(40)})
		if c.State != Assessed || c.Colour != Yellow {
			t.Fatalf("after assess: %s %s", c.State, c.Colour)
		}
		// Dispatch is refused until the seven elements are complete, naming the missing.
		err = f.actErr(commander, c, "dispatch", ActionRequest{})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "elements" || !strings.Contains(fe.Msg, "who, circumstances, cause, object") {
			t.Fatalf("dispatch with missing elements: %v", err)
		}
		el := c.Elements
		el.Who, el.Circumstances, el.Cause, el.Object = "张某与李某", "多次口角", "宅基地界址不清", "宅基地"
		c = f.act(clerk, c, "edit", ActionRequest{Elements: &el})
		c = f.act(commander, c, "dispatch", ActionRequest{})
		if c.State != Dispatched || c.Department != "justice" || !slices.Equal(c.CoDepartments, []string{"township"}) {
			t.Fatalf("dispatched to %q %v in %s", c.Department, c.CoDepartments, c.State)
		}
		if want := f.clock.now().Add(2 * time.Hour); !c.Deadline.Equal(want.UTC()) {
			t.Fatalf("accept deadline %v, want %v (the playbook's 2h)", c.Deadline, want)
		}
		// Another department's handler may not accept it; the case's may.
		var fb *ForbiddenError
		if err := f.actErr(police, c, "accept", ActionRequest{}); !errors.As(err, &fb) {
			t.Fatalf("police accepting a justice case: %v", err)
		}
		c = f.act(justice, c, "accept", ActionRequest{})
		err = f.actErr(justice, c, "resolve", ActionRequest{Outcome: "made-up"})
		if !errors.As(err, &fe) || fe.Field != "outcome" {
			t.Fatalf("bad outcome: %v", err)
		}
		c = f.act(justice, c, "resolve", ActionRequest{Outcome: "mediated", Result: "双方签订调解协议"})
		// A case with a reporter is followed up before closing.
		var se *StateError
		if err := f.actErr(commander, c, "close", ActionRequest{}); !errors.As(err, &se) {
			t.Fatalf("close before follow-up: %v", err)
		}
		// Dissatisfied re-opens with the same department.
		c = f.act(clerk, c, "follow_up", ActionRequest{Satisfaction: "dissatisfied", Note: "当事人认为界址未划清"})
		if c.State != Dispatched || c.Department != "justice" {
			t.Fatalf("dissatisfied: %s with %s", c.State, c.Department)
		}
		c = f.act(justice, c, "accept", ActionRequest{})
		c = f.act(justice, c, "resolve", ActionRequest{Outcome: "mediated", Result: "重新测量界址"})
		c = f.act(clerk, c, "follow_up", ActionRequest{Satisfaction: "satisfied"})
		c = f.act(commander, c, "close", ActionRequest{})
		if c.State != Closed || c.ClosedAt.IsZero() || !c.Deadline.IsZero() {
			t.Fatalf("closed: %s at %v deadline %v", c.State, c.ClosedAt, c.Deadline)
		}
		d := f.detail(c.ID)
		want := []string{"registered", "assess", "edit", "dispatch", "accept", "resolve", "follow_up", "accept", "resolve", "follow_up", "close"}
		if got := historyActions(d); !slices.Equal(got, want) {
			t.Fatalf("history %v\nwant    %v", got, want)
		}
		if d.History[3].Actor != "cmd1" || d.History[3].From != Assessed || d.History[3].To != Dispatched {
			t.Fatalf("dispatch entry: %+v", d.History[3])
		}
		for _, tm := range d.Timers {
			if tm.Fired.IsZero() && !tm.Cancelled {
				t.Fatalf("closed case has a live timer: %+v", tm)
			}
		}
		// Every change was published, in order.
		if len(f.changes) != len(want) || f.changes[len(f.changes)-1].Type != "case.close" {
			t.Fatalf("published %d changes, last %q", len(f.changes), f.changes[len(f.changes)-1].Type)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func TestStaleUpdateRefused(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		c, err := f.s.Create(context.Background(), clerk, dispute())
		if err != nil {
			t.Fatal(err)
		}
		stale := *c
		f.act(commander, c, "comment", ActionRequest{Note: "已电话联系当事人"})
		err = f.actErr(commander, &stale, "assess", ActionRequest{Risk: ptr(60)})
		if !errors.Is(err, ErrStale) {
			t.Fatalf("stale assess: %v", err)
		}
		if d := f.detail(c.ID); d.Colour != "" || d.Version != c.Version+1 {
			t.Fatalf("stale update changed the case: colour %q version %d", d.Colour, d.Version)
		}
	})
}

func TestScopeAndRoles(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		c, err := f.s.Create(ctx, clerk, dispute())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.Get(ctx, outsider, c.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("outsider sees the case: %v", err)
		}
		if err := f.actErr(outsider, c, "assess", ActionRequest{Risk: ptr(10)}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("outsider assesses: %v", err)
		}
		var fb *ForbiddenError
		if err := f.actErr(analyst, c, "dispatch", ActionRequest{}); !errors.As(err, &fb) || !strings.Contains(err.Error(), "dispatch is for commander, admin") {
			t.Fatalf("analyst dispatching: %v", err)
		}
		if _, err := f.s.Create(ctx, analyst, dispute()); !errors.As(err, &fb) {
			t.Fatalf("analyst registering: %v", err)
		}
		in := dispute()
		in.Region = "dongyang/x"
		var fe *FieldError
		if _, err := f.s.Create(ctx, clerk, in); !errors.As(err, &fe) || fe.Field != "region" {
			t.Fatalf("clerk registering outside the region: %v", err)
		}
		// A department's handler outside the region sees cases dispatched to it.
		remote := &auth.Principal{Username: "police-county", Role: auth.Handler, Region: "county-hq", Department: "police"}
		page, _ := f.s.List(ctx, remote, Filter{})
		if len(page.Cases) != 0 {
			t.Fatalf("remote police sees %d cases before dispatch", len(page.Cases))
		}
		c = f.act(commander, c, "assess", ActionRequest{Risk: ptr(30)})
		el := c.Elements
		el.Who, el.Circumstances, el.Cause, el.Object = "a", "b", "c", "d"
		c = f.act(commander, c, "edit", ActionRequest{Elements: &el})
		c = f.act(commander, c, "dispatch", ActionRequest{Department: "police"})
		page, _ = f.s.List(ctx, remote, Filter{})
		if len(page.Cases) != 1 {
			t.Fatalf("remote police sees %d cases after dispatch, want 1", len(page.Cases))
		}
		f.act(remote, c, "accept", ActionRequest{})
	})
}

func TestTimersLadderExactlyOnce(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		in := dispute()
		in.Elements = Elements{Where: "x", Who: "x", What: "x", Circumstances: "x", Cause: "x", Object: "x"}
		c, err := f.s.Create(ctx, clerk, in)
		if err != nil {
			t.Fatal(err)
		}
		c = f.act(commander, c, "assess", ActionRequest{Risk: ptr(55)})
		c = f.act(commander, c, "dispatch", ActionRequest{})
		// A second node on the same database, started later: timers are data.
		other := newFixtureOn(t, f.db, f.clock)
		fire := func() int {
			var wg sync.WaitGroup
			counts := make([]int, 2)
			for i, s := range []*Service{f.s, other.s} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, err := s.FireDue(ctx)
					if err != nil {
						t.Error(err)
					}
					counts[i] = n
				}()
			}
			wg.Wait()
			return counts[0] + counts[1]
		}
		if n := fire(); n != 0 {
			t.Fatalf("%d timers fired at dispatch", n)
		}
		f.clock.add(90*time.Minute + time.Second) // 30 min before the 2 h accept deadline
		if n := fire(); n != 1 {
			t.Fatalf("%d timers fired at the reminder, want 1", n)
		}
		f.clock.add(30 * time.Minute) // the deadline: the first urge
		if n := fire(); n != 1 {
			t.Fatalf("%d fired at the deadline, want 1", n)
		}
		if d := f.detail(c.ID); d.UrgeCount != 1 || !d.Overdue {
			t.Fatalf("urge count %d overdue %v", d.UrgeCount, d.Overdue)
		}
		f.clock.add(24 * time.Hour) // urge, supervise, escalate
		if n := fire(); n != 3 {
			t.Fatalf("%d fired a day later, want 3", n)
		}
		if n := fire(); n != 0 {
			t.Fatalf("%d fired again", n)
		}
		d := f.detail(c.ID)
		if d.UrgeCount != 2 || !d.Supervised || d.Level != County || d.Escalations != 1 {
			t.Fatalf("after the ladder: urges %d supervised %v level %s escalations %d", d.UrgeCount, d.Supervised, d.Level, d.Escalations)
		}
		got := historyActions(d)
		want := []string{"registered", "assess", "dispatch", "reminded", "urged", "urged", "supervised", "escalated"}
		if !slices.Equal(got, want) {
			t.Fatalf("history %v\nwant    %v", got, want)
		}
		// Accepting starts the next stage: the old ladder is cancelled.
		c = f.act(justice, d.Case, "accept", ActionRequest{})
		f.clock.add(time.Hour)
		if n := fire(); n != 0 {
			t.Fatalf("%d timers of the finished stage fired", n)
		}
		if want := f.clock.now().Add(-time.Hour).Add(72 * time.Hour).UTC(); !c.Deadline.Equal(want) {
			t.Fatalf("resolve deadline %v, want %v", c.Deadline, want)
		}
	})
}

func smokeEvent(at time.Time, grid string, smoke float64) *event.Event {
	e := event.New(event.SourceDevice, "lx-smoke-1", "telemetry")
	e.Time = event.NewTime(at)
	e.Source.Name = "新庄村卫生室烟感"
	e.Location = event.Location{Region: "lanxi/xinzhuang", Grid: grid, Lat: ptr(29.2), Lon: ptr(119.47)}
	e.SetNumber("smoke", smoke)
	e.SetString("device_kind", "smoke")
	e.Evidence = []event.Evidence{{Kind: event.EvidenceSnapshot, Ref: "blob/ab/abcdef.jpg", ContentType: "image/jpeg"}}
	return e
}

func TestAlertOpensAttachesSuppresses(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		e1 := smokeEvent(f.clock.now(), "g-03", 0.42)
		a := Alert{Rule: "smoke-high", GroupKey: "smoke-high|grid=g-03", Category: "public_safety", Title: "卫生室烟感超标",
			Risk: 75, RiskPerRepeat: 10, Events: []*event.Event{e1}}
		c, out, err := f.s.Alert(ctx, a)
		if err != nil || out != Opened {
			t.Fatalf("first alert: %v %v", out, err)
		}
		if c.State != Assessed || c.Colour != Orange || c.Risk != 75 || c.Source != FromAlert || c.Device != "lx-smoke-1" {
			t.Fatalf("opened case: %+v", c)
		}
		if c.Elements.When == "" || !strings.Contains(c.Elements.Where, "新庄村卫生室烟感") || c.Elements.What != "telemetry" || c.Elements.Object != "smoke" {
			t.Fatalf("elements from the event: %+v", c.Elements)
		}
		// Redelivered: nothing attached twice, no second case.
		if _, out, err := f.s.Alert(ctx, a); err != nil || out != Duplicate {
			t.Fatalf("replayed alert: %v %v", out, err)
		}
		// A repeat joins the case and raises its risk to red.
		a2 := a
		a2.Repeat, a2.Events = true, []*event.Event{smokeEvent(f.clock.now().Add(time.Minute), "g-03", 0.6)}
		c2, out, err := f.s.Alert(ctx, a2)
		if err != nil || out != Attached || c2.ID != c.ID || c2.AlertCount != 2 || c2.Colour != Red || c2.Risk != 85 {
			t.Fatalf("repeat: %v %v %+v", out, err, c2)
		}
		// Red warns the leaders, once.
		if n, err := f.s.FireDue(ctx); err != nil || n != 1 {
			t.Fatalf("risk warning: %d %v", n, err)
		}
		// A suppressed alert joins the inhibiting group's case.
		a3 := Alert{Rule: "camera-offline", GroupKey: "camera-offline|camera=c1", Category: "equipment_fault", Risk: 30,
			SuppressedBy: a.GroupKey, Events: []*event.Event{smokeEvent(f.clock.now().Add(2*time.Minute), "g-03", 0.1)}}
		if c3, out, err := f.s.Alert(ctx, a3); err != nil || out != Suppressed || c3.ID != c.ID || c3.Suppressed != 1 {
			t.Fatalf("suppressed: %v %v", out, err)
		}
		// A repeat with no open case to join is dropped (counted).
		a4 := a2
		a4.GroupKey = "smoke-high|grid=g-99"
		if _, out, err := f.s.Alert(ctx, a4); err != nil || out != Dropped {
			t.Fatalf("orphan repeat: %v %v", out, err)
		}
		d := f.detail(c.ID)
		kinds := map[string]int{}
		for _, e := range d.Evidence {
			kinds[e.Kind]++
		}
		if kinds["event"] != 3 || kinds["snapshot"] != 3 || kinds["reading"] != 3 {
			t.Fatalf("evidence kinds %v (want 3 of each: event, snapshot, reading)", kinds)
		}
		want := []string{"registered", "assess", "alert_repeated", "risk_warning", "alert_suppressed"}
		if got := historyActions(d); !slices.Equal(got, want) {
			t.Fatalf("history %v\nwant    %v", got, want)
		}
	})
}

func TestMergeSuggestApplyUndo(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		mk := func(grid, key string, lat float64) *Case {
			e := smokeEvent(f.clock.now(), grid, 0.5)
			e.Location.Lat = ptr(lat)
			c, _, err := f.s.Alert(ctx, Alert{Rule: "smoke-high", GroupKey: key, Category: "public_safety", Title: key, Risk: 60, Events: []*event.Event{e}})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		a := mk("g-03", "k1", 29.2)
		f.clock.add(10 * time.Minute)
		b := mk("g-03", "k2", 29.2)
		f.clock.add(10 * time.Minute)
		far := mk("g-09", "k3", 29.3) // another grid, 11 km away
		near := mk("g-04", "k4", 29.2001)
		db := f.detail(b.ID)
		if got := historyActions(db); !slices.Contains(got, "merge_suggested") {
			t.Fatalf("no merge suggestion recorded: %v", got)
		}
		var ids []string
		for _, k := range f.detail(a.ID).Candidates {
			ids = append(ids, k.ID)
		}
		if !slices.Contains(ids, b.ID) || !slices.Contains(ids, near.ID) || slices.Contains(ids, far.ID) {
			t.Fatalf("candidates of a: %v (want b and near, not far)", ids)
		}
		b = f.act(commander, db.Case, "merge", ActionRequest{Into: a.ID, Note: "同一起火情"})
		if b.State != Closed || b.MergedInto != a.ID {
			t.Fatalf("merged case: %s into %q", b.State, b.MergedInto)
		}
		da := f.detail(a.ID)
		if da.AlertCount != 2 || !slices.Contains(da.Merged, b.ID) {
			t.Fatalf("target: alerts %d merged %v", da.AlertCount, da.Merged)
		}
		fromB := 0
		for _, e := range da.Evidence {
			if e.Data["from_case"] == b.ID {
				fromB++
			}
		}
		if fromB == 0 {
			t.Fatal("the target did not keep the merged case's evidence")
		}
		var se *StateError
		if err := f.actErr(commander, b, "reopen", ActionRequest{Note: "x"}); !errors.As(err, &se) {
			t.Fatalf("reopen a merged case: %v", err)
		}
		b = f.act(commander, b, "unmerge", ActionRequest{Note: "不是同一起"})
		if b.State != Assessed || b.MergedInto != "" {
			t.Fatalf("unmerged: %s %q", b.State, b.MergedInto)
		}
		if da := f.detail(a.ID); slices.Contains(da.Merged, b.ID) || len(da.Evidence) < fromB {
			t.Fatalf("after unmerge: merged %v, evidence %d", da.Merged, len(da.Evidence))
		}
		// Both cases' changes were published, the target's with its own
		// sequence (merged_in, merged_out) so that its stream has no gap.
		var targetSeq []int
		var actions []string
		for _, ch := range f.changes {
			if ch.Case.ID == a.ID {
				targetSeq = append(targetSeq, ch.Entry.Seq)
				actions = append(actions, ch.Entry.Action)
			}
		}
		if !slices.Contains(actions, "merged_in") || !slices.Contains(actions, "merged_out") {
			t.Fatalf("the target's published changes %v lack merged_in/merged_out", actions)
		}
		for i, seq := range targetSeq {
			if seq != i+1 {
				t.Fatalf("the target's published sequence %v has a gap", targetSeq)
			}
		}
	})
}

func TestSplitIntoTasks(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		in := dispute()
		in.Category = "land_dispute"
		in.Elements = Elements{Where: "x", Who: "x", What: "x", Circumstances: "x", Cause: "x", Object: "x"}
		c, _ := f.s.Create(ctx, clerk, in)
		c = f.act(commander, c, "assess", ActionRequest{Risk: ptr(60)})
		c = f.act(commander, c, "dispatch", ActionRequest{})
		c = f.act(commander, c, "split", ActionRequest{Tasks: []TaskSpec{{Department: "land", Title: "重新测绘界址"}, {Department: "justice", Title: "组织调解"}}})
		d := f.detail(c.ID)
		if len(d.Tasks) != 2 {
			t.Fatalf("%d tasks", len(d.Tasks))
		}
		c = f.act(commander, d.Case, "accept", ActionRequest{})
		var se *StateError
		if err := f.actErr(commander, c, "resolve", ActionRequest{Outcome: "mediated", Result: "x"}); !errors.As(err, &se) || !strings.Contains(se.Msg, "land, justice") {
			t.Fatalf("resolve with open tasks: %v", err)
		}
		// The justice handler holds a task: may complete it, not the land one.
		var fb *ForbiddenError
		landTask, justiceTask := d.Tasks[0].ID, d.Tasks[1].ID
		if err := f.actErr(justice, c, "task_done", ActionRequest{Task: landTask, Result: "x"}); !errors.As(err, &fb) {
			t.Fatalf("justice completing the land task: %v", err)
		}
		c = f.act(justice, c, "task_done", ActionRequest{Task: justiceTask, Result: "调解成功"})
		c = f.act(commander, c, "task_done", ActionRequest{Task: landTask, Result: "测绘完成"})
		c = f.act(commander, c, "resolve", ActionRequest{Outcome: "mediated", Result: "界址已定，双方和解"})
		if c.State != Resolved {
			t.Fatalf("state %s", c.State)
		}
	})
}

func TestPublishFailureRollsBack(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		c, _ := f.s.Create(ctx, clerk, dispute())
		before := f.detail(c.ID)
		f.s.SetPublisher(func(context.Context, *sql.Tx, []Change) error { return errors.New("outbox full") })
		if err := f.actErr(commander, c, "assess", ActionRequest{Risk: ptr(90)}); !strings.Contains(err.Error(), "outbox full") {
			t.Fatalf("assess with a failing outbox: %v", err)
		}
		d := f.detail(c.ID)
		if d.Colour != "" || d.Version != c.Version || len(d.History) != 1 || len(d.Timers) != len(before.Timers) {
			t.Fatalf("a change that could not be published was kept: colour %q version %d history %d", d.Colour, d.Version, len(d.History))
		}
		for _, tm := range d.Timers {
			if tm.Kind == TimerWarn {
				t.Fatal("the risk warning timer of the rolled-back assessment exists")
			}
		}
	})
}

func TestListFiltersAndCursor(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		for i := range 7 {
			in := dispute()
			if i%2 == 1 {
				in.Category, in.Region = "labour_dispute", "lanxi/dongcun"
			}
			if _, err := f.s.Create(ctx, clerk, in); err != nil {
				t.Fatal(err)
			}
			f.clock.add(time.Minute)
		}
		var all []string
		cursor := ""
		for {
			page, err := f.s.List(ctx, commander, Filter{Limit: 3, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range page.Cases {
				all = append(all, c.Number)
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		if len(all) != 7 || all[0] != "2026-000007" || all[6] != "2026-000001" {
			t.Fatalf("paged list %v", all)
		}
		page, _ := f.s.List(ctx, commander, Filter{Categories: []string{"labour_dispute"}})
		if len(page.Cases) != 3 {
			t.Fatalf("category filter: %d", len(page.Cases))
		}
		page, _ = f.s.List(ctx, commander, Filter{Region: "lanxi/xinzhuang"})
		if len(page.Cases) != 4 {
			t.Fatalf("region filter: %d", len(page.Cases))
		}
		page, _ = f.s.List(ctx, justice, Filter{})
		if len(page.Cases) != 4 {
			t.Fatalf("a handler of lanxi/xinzhuang sees %d", len(page.Cases))
		}
		f.clock.add(3 * time.Hour) // past every assess deadline (2h)
		page, _ = f.s.List(ctx, commander, Filter{Overdue: true, States: []State{Registered}})
		if len(page.Cases) != 7 {
			t.Fatalf("overdue: %d", len(page.Cases))
		}
		if _, err := f.s.List(ctx, commander, Filter{Cursor: "garbage"}); err == nil {
			t.Fatal("a forged cursor was accepted")
		}
	})
}

func TestConfigDefaultsValid(t *testing.T) {
	cfg := Defaults()
	for _, pb := range cfg.Playbooks {
		if !cfg.department(pb.Lead) {
			t.Errorf("playbook %s leads with unknown %s", pb.Category, pb.Lead)
		}
	}
}

// TestHubTellsOtherNodesChanges: a console connected to one node hears of a
// change made on another node sharing the database, and only if the case
// is within the console user's scope.
func TestHubTellsOtherNodesChanges(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		a := newFixture(t, driver)
		b := newFixtureOn(t, a.db, a.clock)
		hub := NewHub(b.s, time.Second, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		inScope, outside := hub.subscribe(commander), hub.subscribe(outsider)
		since := a.clock.now()
		c, err := a.s.Create(context.Background(), clerk, dispute())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hub.catchUp(context.Background(), since); err != nil {
			t.Fatal(err)
		}
		select {
		case u := <-inScope.ch:
			if u.ID != c.ID || u.Action != "registered" || u.Number != c.Number {
				t.Fatalf("update %+v", u)
			}
		default:
			t.Fatal("the other node's change was not pushed")
		}
		select {
		case u := <-outside.ch:
			t.Fatalf("a user of another region was told: %+v", u)
		default:
		}
		// Polled again: nothing is told twice.
		hub.catchUp(context.Background(), since)
		if len(inScope.ch) != 0 {
			t.Fatal("the same change was pushed twice")
		}
	})
}

// TestAllowedActions: the case page offers what the caller may do now, the
// loop's next step first, and every action has its place in that order.
func TestAllowedActions(t *testing.T) {
	for _, name := range Actions() {
		if !slices.Contains(pageOrder, name) {
			t.Errorf("action %s has no place in pageOrder", name)
		}
	}
	f := newFixture(t, casedb.SQLite)
	c, err := f.s.Create(context.Background(), clerk, dispute())
	if err != nil {
		t.Fatal(err)
	}
	c = f.act(commander, c, "assess", ActionRequest{Risk: ptr(40)})
	allowed := func(p *auth.Principal) []string {
		d, err := f.s.Get(context.Background(), p, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}
	if got := allowed(commander); len(got) == 0 || got[0] != "dispatch" || slices.Contains(got, "accept") || slices.Contains(got, "unmerge") {
		t.Fatalf("commander on an assessed case: %v", got)
	}
	if got := allowed(analyst); !slices.Equal(got, []string{"comment", "attach"}) {
		t.Fatalf("analyst: %v", got)
	}
	if got := allowed(super); slices.Contains(got, "urge") || !slices.Contains(got, "escalate") {
		t.Fatalf("supervisor before dispatch: %v", got)
	}
}

// Alerts takes a batch of firings in one transaction, in order: a later
// firing of the same group joins the case an earlier one opened, and an
// alert refused on its own (no playbook) does not stop the others.
func TestAlertsBatch(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		mk := func(grid string, repeat bool, smoke float64) Alert {
			return Alert{Rule: "smoke-high", GroupKey: "smoke-high|grid=" + grid, Category: "public_safety", Title: "烟感",
				Risk: 60, Repeat: repeat, Events: []*event.Event{smokeEvent(f.clock.now(), grid, smoke)}}
		}
		bad := mk("g-07", false, 0.5)
		bad.Category = "no-such-category"
		batch := []Alert{mk("g-01", false, 0.4), mk("g-01", true, 0.5), bad, mk("g-02", false, 0.4), {Rule: "empty", Category: "public_safety"}}
		rs, err := f.s.Alerts(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		want := []Outcome{Opened, Attached, "", Opened, ""}
		for i, r := range rs {
			if r.Outcome != want[i] {
				t.Errorf("alert %d: %q (%v), want %q", i, r.Outcome, r.Err, want[i])
			}
		}
		if rs[0].Case.ID != rs[1].Case.ID || rs[0].Case.ID == rs[3].Case.ID {
			t.Errorf("cases %s %s %s: the repeat must join the first, g-02 have its own", rs[0].Case.ID, rs[1].Case.ID, rs[3].Case.ID)
		}
		if !errors.Is(rs[2].Err, ErrUnknownCategory) || rs[4].Err == nil {
			t.Errorf("refused alerts: %v, %v", rs[2].Err, rs[4].Err)
		}
		if d := f.detail(rs[0].Case.ID); d.AlertCount != 2 {
			t.Errorf("alert count %d, want 2", d.AlertCount)
		}
		// The same batch again (a redelivery): nothing attached twice.
		rs, err = f.s.Alerts(ctx, batch)
		if err != nil || rs[0].Outcome != Duplicate || rs[1].Outcome != Duplicate || rs[3].Outcome != Duplicate {
			t.Fatalf("replayed batch: %+v %v", rs, err)
		}
	})
}

// A rule's elements replace those taken from the events; the others stay.
func TestAlertElementsFromRule(t *testing.T) {
	f := newFixture(t, "sqlite")
	e := smokeEvent(f.clock.now(), "g-03", 0.42)
	c, out, err := f.s.Alert(context.Background(), Alert{Rule: "smoke-high", GroupKey: "smoke-high|grid=g-03", Category: "public_safety",
		Title: "烟感", Risk: 60, Events: []*event.Event{e},
		Elements: map[string]string{"circumstances": "烟感浓度 0.42", "cause": " 疑似火情 ", "object": "卫生室"}})
	if err != nil || out != Opened {
		t.Fatalf("%v %v", out, err)
	}
	el := c.Elements
	if el.Circumstances != "烟感浓度 0.42" || el.Cause != "疑似火情" || el.Object != "卫生室" || el.What != "telemetry" || el.When == "" {
		t.Fatalf("elements %+v", el)
	}
}

package cases_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/analyticstest"
	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/cases"
	"sharpeye/console/auth"
	"sharpeye/ingest/event"
)

var shanghai, _ = time.LoadLocation("Asia/Shanghai")

// node is one case service with its readings taken from a real analytics
// store; several share a database as nodes of one deployment do.
type node struct {
	s       *cases.Service
	mu      sync.Mutex
	changes []cases.Change
}

type readingsFixture struct {
	db    *casedb.DB
	store analytics.Store
	cfg   cases.Config
	mu    sync.Mutex
	now   time.Time
}

func (f *readingsFixture) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *readingsFixture) set(t time.Time)  { f.mu.Lock(); f.now = t; f.mu.Unlock() }

func (f *readingsFixture) node() *node {
	n := &node{s: cases.New(f.cfg, f.db, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	n.s.SetClock(f.clock)
	n.s.SetPublisher(func(_ context.Context, _ *sql.Tx, chs []cases.Change) error {
		n.mu.Lock()
		n.changes = append(n.changes, chs...)
		n.mu.Unlock()
		return nil
	})
	n.s.SetReadings(analytics.NewReadings(f.store))
	return n
}

// telemetry is one reading of a device.
func telemetry(id, grid string, at time.Time, smoke float64) *event.Event {
	e := event.New(event.SourceDevice, id, "telemetry")
	e.Time = event.NewTime(at)
	e.Source.Name = id
	e.Location = event.Location{Region: "lanxi/xinzhuang", Grid: grid}
	e.SetString("device_kind", "smoke")
	e.SetNumber("smoke", smoke)
	return e
}

// keep stores events in the analytics store, as the sink does.
func (f *readingsFixture) keep(t *testing.T, evs ...*event.Event) {
	t.Helper()
	var b analytics.Batch
	for _, e := range evs {
		b.Events = append(b.Events, analytics.EventFromEvent(e))
	}
	if _, err := f.store.Insert(context.Background(), &b, false); err != nil {
		t.Fatal(err)
	}
}

var commander = &auth.Principal{Username: "cmd1", Role: auth.Commander, Region: "lanxi"}

func (n *node) detail(t *testing.T, id string) *cases.Detail {
	t.Helper()
	d, err := n.s.Get(context.Background(), commander, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (n *node) fire(t *testing.T) int {
	t.Helper()
	k, err := n.s.FireDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newReadingsFixture(t *testing.T, driver string) *readingsFixture {
	f := &readingsFixture{db: casedbtest.Open(t, driver), store: analyticstest.Open(t, analytics.SQLite), cfg: cases.Defaults()}
	f.cfg.Readings.MaxPoints = 3
	f.cfg.Readings.Attempts = 2
	return f
}

func (f *readingsFixture) alert(t *testing.T, n *node, at time.Time) *cases.Case {
	t.Helper()
	e := telemetry("smoke-1", "g-03", at, 0.9)
	c, out, err := n.s.Alert(context.Background(), cases.Alert{Rule: "smoke-high", GroupKey: "smoke-high|g-03", Category: "public_safety",
		Title: "卫生室烟感超标", Risk: 60, Events: []*event.Event{e}})
	if err != nil || out != cases.Opened {
		t.Fatalf("alert: %v %v", out, err)
	}
	return c
}

func readingsEvidence(d *cases.Detail) []cases.Evidence {
	var out []cases.Evidence
	for _, e := range d.Evidence {
		if e.Kind == "readings" {
			out = append(out, e)
		}
	}
	return out
}

// TestReadingsEvidence: a case opened from a device alert gets, once the
// readings after the alert have come in, one piece of evidence holding
// the readings of its device and of the other devices in its grid from
// 10 minutes before to 5 minutes after the alert (the defaults), thinned
// to max_points, and nothing outside; firing again attaches nothing twice.
func TestReadingsEvidence(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			f := newReadingsFixture(t, driver)
			at := time.Date(2026, 11, 21, 14, 40, 0, 0, shanghai)
			f.keep(t,
				telemetry("smoke-1", "g-03", at.Add(-12*time.Minute), 0.01), // before the range
				telemetry("smoke-1", "g-03", at.Add(-8*time.Minute), 0.02),
				telemetry("smoke-1", "g-03", at.Add(-6*time.Minute), 0.03),
				telemetry("smoke-1", "g-03", at.Add(-4*time.Minute), 0.2),
				telemetry("smoke-1", "g-03", at.Add(-2*time.Minute), 0.5),
				telemetry("smoke-2", "g-03", at.Add(3*time.Minute), 0.3), // a neighbour in the grid
				telemetry("smoke-2", "g-03", at.Add(6*time.Minute), 0.3), // after the range
				telemetry("smoke-9", "g-09", at, 0.7),                    // another grid
			)
			a := f.node()
			f.set(at.Add(10 * time.Second)) // the alert arrives a little late
			c := f.alert(t, a, at)
			f.keep(t, telemetry("smoke-1", "g-03", at, 0.9)) // the alert's own reading, through the sink
			var due time.Time
			for _, tm := range a.detail(t, c.ID).Timers {
				if tm.Kind == cases.TimerReadings {
					due = tm.Due
				}
			}
			if want := at.Add(10*time.Second + 5*time.Minute); !due.Equal(want) {
				t.Fatalf("readings timer due %v, want %v (opened + after)", due, want)
			}
			f.set(due.Add(-time.Second))
			a.fire(t)
			if ev := readingsEvidence(a.detail(t, c.ID)); len(ev) != 0 {
				t.Fatal("readings attached before the readings after the alert were in")
			}
			f.set(due)
			a.fire(t)
			d := a.detail(t, c.ID)
			ev := readingsEvidence(d)
			if len(ev) != 1 {
				t.Fatalf("%d readings evidence items, want 1", len(ev))
			}
			e := ev[0]
			if e.AttachedBy != "sharpeye" || !e.Captured.Equal(at) || e.Data["readings"] != 4.0 || e.Data["readings_found"] != 6.0 {
				t.Fatalf("evidence %+v", e)
			}
			devs, _ := e.Data["devices"].([]any)
			if len(devs) != 2 {
				t.Fatalf("devices %v, want smoke-1 and smoke-2", devs)
			}
			type point struct {
				t     string
				smoke float64
			}
			pointsOf := func(dev any) (string, []point) {
				m := dev.(map[string]any)
				var out []point
				for _, p := range m["points"].([]any) {
					pm := p.(map[string]any)
					v := pm["v"].(map[string]any)
					if _, ok := v["device_kind"]; ok {
						t.Errorf("device_kind among the values: %v", v)
					}
					out = append(out, point{pm["t"].(string), v["smoke"].(float64)})
				}
				return m["source"].(string), out
			}
			ts := func(d time.Duration) string { return at.Add(d).UTC().Format(time.RFC3339Nano) }
			// The alert's device first, its five readings thinned to three
			// (the first and the last kept); the neighbour's one reading.
			src, pts := pointsOf(devs[0])
			if want := []point{{ts(-8 * time.Minute), 0.02}, {ts(-4 * time.Minute), 0.2}, {ts(0), 0.9}}; src != "device:smoke-1" || !slices.Equal(pts, want) {
				t.Fatalf("%s: %v\nwant %v", src, pts, want)
			}
			if devs[0].(map[string]any)["found"] != 5.0 || devs[0].(map[string]any)["alerting"] != true {
				t.Fatalf("alerting device %v", devs[0])
			}
			src, pts = pointsOf(devs[1])
			if want := []point{{ts(3 * time.Minute), 0.3}}; src != "device:smoke-2" || !slices.Equal(pts, want) {
				t.Fatalf("%s: %v\nwant %v", src, pts, want)
			}
			// Recorded in the history and published as an attachment.
			last := d.History[len(d.History)-1]
			if last.Action != "attach" || last.Data["kind"] != "readings" || !strings.Contains(last.Note, "2 devices, 4 readings") {
				t.Fatalf("history entry %+v", last)
			}
			if !slices.ContainsFunc(a.changes, func(ch cases.Change) bool { return ch.Type == "case.attach" && ch.Entry.Data["kind"] == "readings" }) {
				t.Fatal("the readings attachment was not published")
			}
			// A restarted node fires nothing; even a timer fired again
			// (as if its firing were lost) attaches nothing twice.
			b := f.node()
			if n := b.fire(t); n != 0 {
				t.Fatalf("%d timers fired after the restart", n)
			}
			if _, err := f.db.Exec(context.Background(), "UPDATE case_timers SET fired_at = 0 WHERE kind = 'readings'"); err != nil {
				t.Fatal(err)
			}
			b.fire(t)
			d = b.detail(t, c.ID)
			if ev := readingsEvidence(d); len(ev) != 1 {
				t.Fatalf("%d readings evidence items after a second firing", len(ev))
			}
			if h := d.History[len(d.History)-1]; h.Seq != last.Seq {
				t.Fatalf("a second firing recorded %+v", h)
			}
		})
	}
}

// TestReadingsNoneAndFailure: no readings are recorded as such, with no
// empty evidence; a store that cannot answer is asked again after
// readings.retry, and given up after readings.attempts with a note.
func TestReadingsNoneAndFailure(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			f := newReadingsFixture(t, driver)
			at := time.Date(2026, 11, 21, 14, 40, 0, 0, shanghai)
			n := f.node()
			f.set(at)
			c := f.alert(t, n, at)
			f.set(at.Add(5 * time.Minute))
			n.fire(t)
			d := n.detail(t, c.ID)
			if last := d.History[len(d.History)-1]; last.Action != "readings_none" || !strings.Contains(last.Note, "no sensor readings") {
				t.Fatalf("history entry %+v", last)
			}
			if len(readingsEvidence(d)) != 0 {
				t.Fatal("an empty readings item was attached")
			}

			f.set(at.Add(time.Hour))
			c2, _, err := n.s.Alert(context.Background(), cases.Alert{Rule: "smoke-high", GroupKey: "other", Category: "public_safety",
				Risk: 60, Events: []*event.Event{telemetry("smoke-1", "g-03", at.Add(time.Hour), 0.9)}})
			if err != nil {
				t.Fatal(err)
			}
			f.store.Close() // the store is away
			f.set(at.Add(time.Hour + 5*time.Minute))
			n.fire(t)
			var retry []cases.Timer
			for _, tm := range n.detail(t, c2.ID).Timers {
				if tm.Kind == cases.TimerReadings && tm.Fired.IsZero() {
					retry = append(retry, tm)
				}
			}
			if want := f.clock().Add(f.cfg.Readings.Retry.D()); len(retry) != 1 || retry[0].Step != 2 || !retry[0].Due.Equal(want) {
				t.Fatalf("retry timers %+v, want attempt 2 due %v", retry, want)
			}
			if got := n.detail(t, c2.ID).History; got[len(got)-1].Action == "readings_failed" {
				t.Fatal("gave up at the first failure")
			}
			f.set(retry[0].Due)
			n.fire(t)
			d = n.detail(t, c2.ID)
			if last := d.History[len(d.History)-1]; last.Action != "readings_failed" || !strings.Contains(last.Note, "2 attempts") {
				t.Fatalf("history entry %+v", last)
			}
			for _, tm := range d.Timers {
				if tm.Kind == cases.TimerReadings && tm.Fired.IsZero() {
					t.Fatalf("a readings timer still waits after giving up: %+v", tm)
				}
			}
		})
	}
}

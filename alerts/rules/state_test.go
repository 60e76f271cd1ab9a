package rules_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/rules"
	"sharpeye/ingest/event"
)

const durableRules = motionCount + `
- id: offline
  name: 摄像机离线
  match: {types: [camera.offline]}
  cooldown: 10m
  case: {category: equipment_fault, risk: 30}
`

// stored returns a new engine over the state in db, as after a restart.
func stored(t testing.TB, db *casedb.DB, reg *prometheus.Registry) *rules.Engine {
	t.Helper()
	var r prometheus.Registerer
	if reg != nil {
		r = reg
	}
	e, err := rules.NewEngine(compile(t, durableRules), rules.NewSQLState(db), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(t.Context()); err != nil {
		t.Fatalf("load: %v", err)
	}
	return e
}

func TestStateSurvivesRestart(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			first := motion(t, "cam-1", named("村口"), tags("school"))
			off := ev(t, event.SourceCamera, "cam-2", "camera.offline")
			if fs := process(t, stored(t, db, nil), first, motion(t, "cam-1", after(10*time.Second)), off); len(fs) != 1 {
				t.Fatalf("first run: %v, want only the offline firing", keys(fs))
			}

			// Restart: the third event completes the window; the camera is still
			// in its cooldown.
			e := stored(t, db, nil)
			fs := process(t, e, motion(t, "cam-1", after(20*time.Second)), ev(t, event.SourceCamera, "cam-2", "camera.offline", after(5*time.Minute)))
			want := []string{"motion-3|source=camera:cam-1 new", "offline|source=camera:cam-2 repeat"}
			if got := keys(fs); !slices.Equal(got, want) {
				t.Fatalf("after restart: %q, want %q", got, want)
			}
			// The events stored before the restart come back complete.
			got := fs[0].Events[0]
			if len(fs[0].Events) != 3 || got.ID != first.ID || got.Source.Name != "村口" || !slices.Equal(got.Tags, []string{"school"}) || !got.Time.Equal(first.Time.Time) {
				t.Errorf("first event after restart: %+v, want %+v", got, first)
			}
		})
	}
}

func TestDuplicateBatchSkipped(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			reg := prometheus.NewRegistry()
			batch := []*event.Event{
				motion(t, "cam-1"), motion(t, "cam-1", after(time.Second)), motion(t, "cam-1", after(2*time.Second)),
				ev(t, event.SourceCamera, "cam-2", "camera.offline"),
			}
			if fs := process(t, stored(t, db, reg), batch...); len(fs) != 2 {
				t.Fatalf("first delivery: %v, want 2 firings", keys(fs))
			}
			// A crash before the offsets were committed: the batch comes again,
			// to a restarted engine and to the same one.
			e := stored(t, db, nil)
			if fs := process(t, e, batch...); len(fs) != 0 {
				t.Errorf("redelivery after restart fired again: %v", keys(fs))
			}
			if fs := process(t, e, batch...); len(fs) != 0 {
				t.Errorf("second redelivery fired again: %v", keys(fs))
			}
			// New events still count.
			if fs := process(t, e, ev(t, event.SourceCamera, "cam-3", "camera.offline")); len(fs) != 1 {
				t.Errorf("a new event after the duplicates: %v, want 1 firing", keys(fs))
			}
		})
	}
}

func TestStateOfChangedRuleDropped(t *testing.T) {
	db := casedbtest.Open(t, casedb.SQLite)
	process(t, stored(t, db, nil), motion(t, "cam-1"), motion(t, "cam-1", after(time.Second)))

	// The rule now counts 2: its stored window (from count 3) is not reused.
	e, err := rules.NewEngine(compile(t, `
- id: motion-3
  name: 频繁移动
  match: {types: [camera.motion]}
  count: 2
  window: 60s
  case: {category: public_order, risk: 40}
`), rules.NewSQLState(db), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fs := process(t, e, motion(t, "cam-1", after(2*time.Second))); len(fs) != 0 {
		t.Errorf("old window counted under the changed rule: %v", keys(fs))
	}
	recs, err := rules.NewSQLState(db).LoadState(t.Context())
	if err != nil || len(recs) != 1 {
		t.Errorf("stored state: %d records (%v), want only the new group", len(recs), err)
	}
}

func TestStatePruned(t *testing.T) {
	db := casedbtest.Open(t, casedb.SQLite)
	e := stored(t, db, nil)
	process(t, e, motion(t, "cam-1"), ev(t, event.SourceCamera, "cam-2", "camera.offline"))
	// An hour of event time later only the new group is kept.
	process(t, e, motion(t, "cam-9", after(time.Hour)))
	recs, err := rules.NewSQLState(db).LoadState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Key != "motion-3|source=camera:cam-9" {
		t.Errorf("state after pruning: %+v, want only cam-9", recs)
	}
}

// A count window larger than the events a firing carries stores only the
// newest of them whole: after a restart the window still counts every
// event, and the firing carries the newest ten, complete.
func TestLargeWindowStoresNewestWhole(t *testing.T) {
	db := casedbtest.Open(t, casedb.SQLite)
	const src = `
- id: motion-30
  name: 频繁移动
  match: {types: [camera.motion]}
  count: 30
  window: 10m
  case: {category: public_order, risk: 30}
`
	open := func() *rules.Engine {
		e, err := rules.NewEngine(compile(t, src), rules.NewSQLState(db), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		return e
	}
	var evs []*event.Event
	for i := range 30 {
		evs = append(evs, motion(t, "cam-1", after(time.Duration(i)*time.Second), named("村口")))
	}
	if fs := process(t, open(), evs[:29]...); len(fs) != 0 {
		t.Fatalf("29 events fired %v", keys(fs))
	}
	recs, err := rules.NewSQLState(db).LoadState(t.Context())
	if err != nil || len(recs) != 1 {
		t.Fatalf("state: %d records, %v", len(recs), err)
	}
	if n := strings.Count(string(recs[0].State), `"ev":`); n != 10 {
		t.Errorf("%d of 29 window events stored whole, want the newest 10", n)
	}
	// Restart: the thirtieth event completes the window.
	fs := process(t, open(), evs[29])
	if len(fs) != 1 || len(fs[0].Events) != 10 {
		t.Fatalf("after restart: %v with %d events, want one firing carrying 10", keys(fs), len(fs[0].Events))
	}
	for i, e := range fs[0].Events {
		if want := evs[20+i]; e.ID != want.ID || e.Source.Name != "村口" {
			t.Fatalf("event %d of the firing: %s %q, want %s complete", i, e.ID, e.Source.Name, want.ID)
		}
	}
}

// Saving more groups than one statement writes: every one is stored, and
// saved again, replaced.
func TestSaveManyGroups(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			st := rules.NewSQLState(casedbtest.Open(t, driver))
			recs := make([]rules.StateRecord, 450)
			for i := range recs {
				recs[i] = rules.StateRecord{StateKey: rules.StateKey{Rule: "r", Key: fmt.Sprintf("g-%03d", i)},
					State: []byte(fmt.Sprintf(`{"n":%d}`, i)), Updated: t0, Part: -1}
			}
			for round := range 2 {
				if round == 1 {
					for i := range recs {
						recs[i].State = []byte(fmt.Sprintf(`{"n":%d}`, 1000+i))
					}
				}
				if err := st.SaveState(t.Context(), recs, nil); err != nil {
					t.Fatal(err)
				}
				got, err := st.LoadState(t.Context())
				if err != nil || len(got) != len(recs) {
					t.Fatalf("round %d: loaded %d of %d: %v", round, len(got), len(recs), err)
				}
				for _, r := range got {
					var i int
					fmt.Sscanf(r.Key, "g-%d", &i)
					if want := fmt.Sprintf(`{"n":%d}`, 1000*round+i); string(r.State) != want {
						t.Fatalf("round %d: %s holds %s, want %s", round, r.Key, r.State, want)
					}
				}
			}
		})
	}
}

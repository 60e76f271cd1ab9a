package rules_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/rules"
	"sharpeye/ingest/event"
)

func TestParseLocality(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "", want: ""},
		{in: "grid", want: "grid"},
		{in: "region:2", want: "region:2"},
		{in: "region:0", err: "from 1 to 16"},
		{in: "region:02", err: "from 1 to 16"},
		{in: "region:x", err: "from 1 to 16"},
		{in: "village", err: "use grid or region:N"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			l, err := rules.ParseLocality(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseLocality(%q) = %v, want an error with %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || l.String() != tc.want || l.Partitioned() != (tc.want != "") {
				t.Fatalf("ParseLocality(%q) = %q, %v", tc.in, l, err)
			}
		})
	}
}

func TestLocalityKey(t *testing.T) {
	byGrid, _ := rules.ParseLocality("grid")
	byTown, _ := rules.ParseLocality("region:2")
	inGrid := motion(t, "cam-1", region("lanxi/xinzhuang/v3"), grid("g-07"))
	noGrid := motion(t, "cam-2", region("lanxi/xinzhuang/v4"))
	shallow := motion(t, "cam-3", region("lanxi"))
	nowhere := motion(t, "cam-4")
	for _, tc := range []struct {
		l    rules.Locality
		e    *event.Event
		want string
	}{
		{byGrid, inGrid, "grid=g-07"},
		{byGrid, noGrid, "region=lanxi/xinzhuang/v4"},
		{byGrid, nowhere, "source=camera:cam-4"},
		{byTown, inGrid, "region=lanxi/xinzhuang"},
		{byTown, noGrid, "region=lanxi/xinzhuang"},
		{byTown, shallow, "region=lanxi"},
		{byTown, nowhere, "source=camera:cam-4"},
	} {
		if got := tc.l.Key(tc.e); got != tc.want {
			t.Errorf("%s key of %s in %q/%q = %q, want %q", tc.l, tc.e.Source.ID, tc.e.Location.Region, tc.e.Location.Grid, got, tc.want)
		}
	}
}

func TestLocalityCheck(t *testing.T) {
	const base = "\n  match: {types: [camera.motion]}\n  case: {category: public_order, risk: 50}\n"
	for _, tc := range []struct {
		name, loc, rule string
		field, msg      string // "" field: accepted
	}{
		{name: "default source", loc: "grid", rule: "- id: r\n  name: r" + base},
		{name: "grid by grid", loc: "grid", rule: "- id: r\n  name: r\n  group_by: [grid]" + base},
		{name: "region and camera by grid", loc: "grid", rule: "- id: r\n  name: r\n  group_by: [region, camera]" + base},
		{name: "region by grid", loc: "grid", rule: "- id: r\n  name: r\n  group_by: [region]" + base,
			field: "group_by", msg: "grouping by region can gather events of several grid localities"},
		{name: "attr by region", loc: "region:2", rule: "- id: r\n  name: r\n  group_by: [attr.plate]" + base,
			field: "group_by", msg: "grouping by attr.plate can gather events of several region:2 localities"},
		{name: "type by grid", loc: "grid", rule: "- id: r\n  name: r\n  group_by: [type]" + base,
			field: "group_by", msg: "grouping by type"},
		{name: "region by region", loc: "region:2", rule: "- id: r\n  name: r\n  group_by: [region]" + base},
		{name: "unpartitioned", loc: "", rule: "- id: r\n  name: r\n  group_by: [attr.plate]" + base},
		{name: "inhibit by grid", loc: "grid", rule: "- id: r\n  name: r\n  group_by: [grid]\n  inhibits: {rules: [t], equal: [grid]}" + base + target},
		{name: "inhibit by region, partitioned by grid", loc: "grid", rule: "- id: r\n  name: r\n  group_by: [grid]\n  inhibits: {rules: [t], equal: [region]}" + base + target,
			field: "inhibits.equal", msg: "suppressing by region can reach events of other grid localities"},
		{name: "inhibit everywhere", loc: "region:1", rule: "- id: r\n  name: r\n  inhibits: {rules: [t]}" + base + target,
			field: "inhibits.equal", msg: "without equal reaches every locality"},
		{name: "inhibit by region, shallow", loc: "region:3", rule: "- id: r\n  name: r\n  match: {regions: [lanxi/xinzhuang]}\n  inhibits: {rules: [t], equal: [region]}\n  case: {category: public_order, risk: 50}\n" + target,
			field: "inhibits.equal", msg: "at least 3 region levels deep"},
		{name: "inhibit by region, deep", loc: "region:2", rule: "- id: r\n  name: r\n  match: {regions: [lanxi/xinzhuang/v3]}\n  inhibits: {rules: [t], equal: [region]}\n  case: {category: public_order, risk: 50}\n" + target},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := rules.ParseLocality(tc.loc)
			if err != nil {
				t.Fatal(err)
			}
			rs := parse(t, tc.rule)
			_, err = rules.CompileIn(rs, l)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ve *rules.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 {
				t.Fatalf("got %v, want one problem at %s", err, tc.field)
			}
			p := ve.Problems[0]
			if p.Rule != "r" || p.Field != tc.field || !strings.Contains(p.Msg, tc.msg) {
				t.Fatalf("problem %+v, want rule r, field %s, message with %q", p, tc.field, tc.msg)
			}
		})
	}
}

// target is a rule to inhibit, grouped by source (any locality keeps it).
const target = `- id: t
  name: t
  match: {types: [camera.offline]}
  case: {category: equipment_fault, risk: 30}
`

const partitionRules = `
- id: crowd
  name: 聚集
  match: {types: [camera.motion]}
  count: 3
  window: 60s
  group_by: [grid]
  case: {category: public_order, risk: 60}
- id: smoke
  name: 烟感
  match: {types: [telemetry]}
  when: 'attr.smoke > 0.3'
  for: 30s
  group_by: [grid]
  case: {category: public_safety, risk: 70}
`

// partitioned returns an engine over the state in db that holds parts.
func partitioned(t testing.TB, db *casedb.DB, parts ...int) *rules.Engine {
	t.Helper()
	e, err := rules.NewEngine(compile(t, partitionRules), rules.NewSQLState(db), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Partition(); err != nil {
		t.Fatal(err)
	}
	if err := e.Assign(t.Context(), parts); err != nil {
		t.Fatalf("assign %v: %v", parts, err)
	}
	return e
}

func processIn(t testing.TB, e *rules.Engine, part int, evs ...*event.Event) []rules.Firing {
	t.Helper()
	fs, err := e.ProcessPartition(t.Context(), part, evs)
	if err != nil {
		t.Fatalf("process partition %d: %v", part, err)
	}
	return fs
}

// TestEnginePartitionsMove: an engine holds the state of the partitions it
// is given; given up, a partition's state is stored and dropped, and the
// engine it goes to carries on from it (a half-filled window completes, a
// duration running fires there and not on the old owner).
func TestEnginePartitionsMove(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			a := partitioned(t, db, 0, 1)
			if got := a.Owned(); !slices.Equal(got, []int{0, 1}) {
				t.Fatalf("owned %v", got)
			}
			// Partition 0: grid g-1 (two of three, and smoke holding);
			// partition 1: grid g-2.
			if fs := processIn(t, a, 0,
				motion(t, "cam-1", grid("g-1")), motion(t, "cam-2", grid("g-1"), after(10*time.Second)),
				smoke(t, "sm-1", 0.5, grid("g-1"))); len(fs) != 0 {
				t.Fatalf("partition 0 fired %v", keys(fs))
			}
			if fs := processIn(t, a, 1, motion(t, "cam-9", grid("g-2"))); len(fs) != 0 {
				t.Fatalf("partition 1 fired %v", keys(fs))
			}
			recs, err := rules.NewSQLState(db).LoadPartitions(t.Context(), []int{0})
			if err != nil || len(recs) != 2 || recs[0].Part != 0 {
				t.Fatalf("stored state of partition 0: %+v, %v", recs, err)
			}

			if err := a.Revoke(t.Context(), []int{0}); err != nil {
				t.Fatal(err)
			}
			if got := a.Owned(); !slices.Equal(got, []int{1}) {
				t.Fatalf("owned after revoke %v", got)
			}
			if _, err := a.ProcessPartition(t.Context(), 0, []*event.Event{motion(t, "cam-3", grid("g-1"))}); !errors.Is(err, rules.ErrNotAssigned) {
				t.Fatalf("processing a revoked partition: %v", err)
			}
			// The old owner no longer advances what it gave up.
			if fs, err := a.Advance(t.Context(), t0.Add(time.Hour)); err != nil || len(fs) != 0 {
				t.Fatalf("advance on the old owner: %v, %v", keys(fs), err)
			}

			b := partitioned(t, db, 0)
			fs := processIn(t, b, 0, motion(t, "cam-3", grid("g-1"), after(20*time.Second)))
			if got := keys(fs); !slices.Equal(got, []string{"crowd|grid=g-1 new"}) || len(fs[0].Events) != 3 {
				t.Fatalf("new owner: %q, want the window completed", got)
			}
			if fs, err := b.Advance(t.Context(), t0.Add(time.Hour)); err != nil || !slices.Equal(keys(fs), []string{"smoke|grid=g-1 new"}) {
				t.Fatalf("advance on the new owner: %v, %v", keys(fs), err)
			}

			// Partition 1 stayed: the old owner completes its window.
			fs = processIn(t, a, 1, motion(t, "cam-9", grid("g-2"), after(time.Second)), motion(t, "cam-8", grid("g-2"), after(2*time.Second)))
			if got := keys(fs); !slices.Equal(got, []string{"crowd|grid=g-2 new"}) {
				t.Fatalf("old owner's partition 1: %q", got)
			}

			// A single node loads every partition's state: g-2's window
			// started on partition 1 completes there.
			processIn(t, a, 1, motion(t, "cam-7", grid("g-2"), after(3*time.Second)))
			all, err := rules.NewEngine(compile(t, partitionRules), rules.NewSQLState(db), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := all.Load(t.Context()); err != nil {
				t.Fatal(err)
			}
			fs = process(t, all, motion(t, "cam-6", grid("g-2"), after(4*time.Second)), motion(t, "cam-5", grid("g-2"), after(5*time.Second)))
			if got := keys(fs); !slices.Equal(got, []string{"crowd|grid=g-2 new"}) || len(fs[0].Events) != 3 {
				t.Fatalf("unpartitioned: %q", got)
			}
		})
	}
}

// TestStoreRefusesSpanningRules: with a locality set, the store refuses a
// rule (through the API) whose groups would span localities.
func TestStoreRefusesSpanningRules(t *testing.T) {
	db := casedbtest.Open(t, casedb.SQLite)
	store, err := rules.NewStore(parse(t, configRules), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := rules.ParseLocality("grid")
	if err := store.SetLocality(loc); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := parse(t, "- id: plates\n  name: 车牌\n  match: {types: [detection.plate]}\n  count: 2\n  window: 10m\n  group_by: [attr.plate]\n  case: {category: public_order, risk: 40}\n")[0]
	_, err = store.Create(t.Context(), r, "admin")
	var ve *rules.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Rule != "plates" || !strings.Contains(ve.Problems[0].Msg, "attr.plate can gather events of several grid localities") {
		t.Fatalf("create: %v", err)
	}
	r.GroupBy = []string{"attr.plate", "grid"}
	if _, err := store.Create(t.Context(), r, "admin"); err != nil {
		t.Fatalf("create grouped by grid too: %v", err)
	}
	// A configuration rule that spans localities is refused at once.
	bad := parse(t, "- id: by-type\n  name: t\n  group_by: [type]\n  case: {category: public_order, risk: 40}\n")
	s2, err := rules.NewStore(bad, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.SetLocality(loc); err == nil || !strings.Contains(err.Error(), "rules[0].group_by: grouping by type") {
		t.Fatalf("configuration rule: %v", err)
	}
}

package analytics_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sharpeye/ingest/event"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/analyticstest"
	"sharpeye/console/auth"
)

// answer is one question's table under a name.
type answer struct {
	name  string
	table analytics.Table
}

// question asks one thing of a store and checks what it can against the
// fixture computed in Go.
type question struct {
	name  string
	ask   func(ctx context.Context, q *analytics.Questions) ([]answer, error)
	check func(t *testing.T, got []answer)
}

var (
	all      = analytics.Range{From: start, To: end}
	week2    = analytics.Range{From: start.AddDate(0, 0, 7), To: end}
	tuesday  = analytics.Range{From: start.AddDate(0, 0, 8), To: start.AddDate(0, 0, 9)}
	healthRg = analytics.Range{From: start.AddDate(0, 0, 7), To: start.AddDate(0, 0, 10)}
	// reportDate is the Monday of the second week.
	reportDate = start.AddDate(0, 0, 7)
)

func one(name string, t analytics.Table, err error) ([]answer, error) {
	return []answer{{name, t}}, err
}

// seriesQuestion asks p and checks the whole answer against refSeries.
func seriesQuestion(f fixture, name string, p analytics.SeriesParams, scope string) question {
	return question{
		name: name,
		ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
			t, err := q.Series(ctx, p, scope)
			return one(name, t, err)
		},
		check: func(t *testing.T, got []answer) {
			want := refSeries(f, p, scope)
			if !equalTables(got[0].table, want) {
				t.Errorf("series differs from the fixture's counts:\n got %v\nwant %v", brief(got[0].table), brief(want))
			}
			if len(want.Rows) == 0 {
				t.Errorf("the fixture has nothing for this series: a weak test")
			}
		},
	}
}

func questions(f fixture) []question {
	ev := func(b analytics.Bucket, rng analytics.Range, by string) analytics.SeriesParams {
		return analytics.SeriesParams{Subject: analytics.Events, Bucket: b, Range: rng, By: by}
	}
	cs := func(b analytics.Bucket, rng analytics.Range, by string) analytics.SeriesParams {
		return analytics.SeriesParams{Subject: analytics.Cases, Bucket: b, Range: rng, By: by}
	}
	var qs []question
	// Every bucket, every split.
	for _, b := range analytics.Buckets {
		rng := all
		switch b {
		case analytics.Minute:
			rng = tuesday
		case analytics.Hour:
			rng = week2
		}
		qs = append(qs, seriesQuestion(f, "events/"+string(b), ev(b, rng, ""), ""))
		qs = append(qs, seriesQuestion(f, "cases/"+string(b), cs(b, rng, ""), ""))
	}
	for _, d := range analytics.Dims(analytics.Events) {
		qs = append(qs, seriesQuestion(f, "events/day/by-"+d, ev(analytics.Day, all, d), ""))
		qs = append(qs, seriesQuestion(f, "events/hour/by-"+d, ev(analytics.Hour, tuesday, d), ""))
	}
	for _, d := range analytics.Dims(analytics.Cases) {
		qs = append(qs, seriesQuestion(f, "cases/week/by-"+d, cs(analytics.Week, all, d), ""))
	}
	// Filters, depth, limit, scope.
	p := ev(analytics.Day, all, "type")
	p.Filters = map[string][]string{"severity": {"major", "critical"}, "region": {xinzhuang, jiangan}}
	qs = append(qs, seriesQuestion(f, "events/day/by-type/filtered", p, ""))
	p = ev(analytics.Week, all, "camera")
	p.Filters = map[string][]string{"type": {"detection.person"}}
	qs = append(qs, seriesQuestion(f, "events/week/by-camera/person", p, ""))
	p = ev(analytics.Minute, tuesday, "source_id")
	p.Filters = map[string][]string{"source": {"device"}}
	qs = append(qs, seriesQuestion(f, "events/minute/by-source_id/devices", p, ""))
	p = ev(analytics.Day, all, "region")
	p.RegionDepth = 2
	qs = append(qs, seriesQuestion(f, "events/day/by-region/depth2", p, ""))
	qs = append(qs, seriesQuestion(f, "events/day/by-region/scoped", ev(analytics.Day, all, "region"), township))
	p = ev(analytics.Week, all, "grid")
	p.Limit = 2
	qs = append(qs, seriesQuestion(f, "events/week/by-grid/top2", p, ""))
	p = ev(analytics.Month, all, "severity")
	p.Filters = map[string][]string{"region": {hongqi}}
	qs = append(qs, seriesQuestion(f, "events/month/by-severity/scoped+region", p, township))
	p = cs(analytics.Day, all, "department")
	p.Filters = map[string][]string{"state": {"closed", "resolved"}, "colour": {"red", "yellow"}}
	qs = append(qs, seriesQuestion(f, "cases/day/by-department/filtered", p, ""))
	p = cs(analytics.Month, all, "region")
	p.RegionDepth = 3
	qs = append(qs, seriesQuestion(f, "cases/month/by-region/depth3/scoped", p, township))
	p = cs(analytics.Week, all, "state")
	p.Limit = 3
	qs = append(qs, seriesQuestion(f, "cases/week/by-state/top3", p, ""))

	// Performance.
	for _, by := range []string{"department", "region", "category", ""} {
		qs = append(qs, question{name: "performance/" + by, ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
			t, err := q.Performance(ctx, analytics.PerformanceParams{Range: all, By: by}, "")
			return one("performance", t, err)
		}, check: func(t *testing.T, got []answer) { checkPerformance(t, f, got[0].table, by, "") }})
	}
	qs = append(qs, question{name: "performance/region/depth3/scoped", ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
		t, err := q.Performance(ctx, analytics.PerformanceParams{Range: all, By: "region", RegionDepth: 3}, township)
		return one("performance", t, err)
	}, check: func(t *testing.T, got []answer) { checkPerformance(t, f, got[0].table, "region", township) }})

	// Rules.
	qs = append(qs, question{name: "rules", ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
		t, err := q.Rules(ctx, analytics.RulesParams{Range: all}, "")
		return one("rules", t, err)
	}, check: func(t *testing.T, got []answer) { checkRules(t, f, got[0].table) }})
	qs = append(qs, question{name: "rules/scoped", ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
		t, err := q.Rules(ctx, analytics.RulesParams{Range: week2, Region: xinzhuang}, township)
		return one("rules", t, err)
	}})

	// Cameras.
	for _, by := range []string{"region", "vendor", "grid", "day"} {
		qs = append(qs, question{name: "cameras/" + by, ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
			t, err := q.Cameras(ctx, analytics.CamerasParams{Range: healthRg, By: by}, "")
			return one("cameras", t, err)
		}, check: func(t *testing.T, got []answer) { checkCameras(t, f, got[0].table, by) }})
	}
	qs = append(qs, question{name: "cameras/region/depth2/scoped", ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
		t, err := q.Cameras(ctx, analytics.CamerasParams{Range: healthRg, By: "region", RegionDepth: 2}, "黄陂区")
		return one("cameras", t, err)
	}, check: func(t *testing.T, got []answer) {
		keys := column(got[0].table, 0)
		if !slices.Equal(keys, []any{"黄陂区/王家河街道", "黄陂区/王家河街道东"}) {
			t.Errorf("regions %v, want 黄陂区/王家河街道 and 黄陂区/王家河街道东", keys)
		}
	}})
	qs = append(qs, question{name: "cameras/worst", ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
		t, err := q.WorstCameras(ctx, analytics.WorstParams{Range: healthRg, Limit: 4}, "")
		return one("worst", t, err)
	}, check: func(t *testing.T, got []answer) {
		want := [][]any{
			{"cam-3", hongqi, "hikvision", int64(1440), 1320.0 / 1440, 1320.0 / 1440, nil, int64(0)},
			{"cam-5", jiangan, "dahua", int64(1440), (1440*60 - 60*30) / (1440 * 60.0), 1.0, nil, int64(0)},
			{"cam-2", xinzhuang, "hikvision", int64(1440), 1.0, (1440 - 60) / 1440.0, "video.frozen", int64(60)},
			{"cam-4", trap, "dahua", int64(1440), 1.0, (1440 - 40) / 1440.0, "camera.degraded", int64(40)},
		}
		if !equalTables(got[0].table, analytics.Table{Columns: got[0].table.Columns, Rows: want}) {
			t.Errorf("worst cameras\n got %v\nwant %v", got[0].table.Rows, want)
		}
	}})
	qs = append(qs, question{name: "cameras/worst/scoped", ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
		t, err := q.WorstCameras(ctx, analytics.WorstParams{Range: healthRg}, township)
		return one("worst", t, err)
	}, check: func(t *testing.T, got []answer) {
		if ids := column(got[0].table, 0); !slices.Equal(ids, []any{"cam-3", "cam-2", "cam-1"}) {
			t.Errorf("worst cameras in %s: %v, want cam-3, cam-2, cam-1 (not cam-4 of 王家河街道东)", township, ids)
		}
	}})

	// Devices.
	for _, flap := range []int{0, 2} {
		qs = append(qs, question{name: fmt.Sprintf("devices/flapping%d", flap), ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
			t, err := q.Devices(ctx, analytics.DevicesParams{Range: all, Flapping: flap}, "")
			return one("devices", t, err)
		}, check: func(t *testing.T, got []answer) {
			want := [][]any{
				{"dev-1", xinzhuang, int64(4), int64(4), event.TypeDeviceOnline, start.AddDate(0, 0, 11).Add(3*time.Hour + 40*time.Minute), false, true},
			}
			if flap == 2 {
				want = append(want, []any{"dev-4", jiangan, int64(2), int64(2), event.TypeDeviceOnline, start.AddDate(0, 0, 12).Add(7*time.Hour + 30*time.Minute), false, true})
			}
			want = append(want, []any{"dev-2", hongqi, int64(1), int64(1), event.TypeDeviceOffline, start.AddDate(0, 0, 12).Add(22*time.Hour + 30*time.Minute), true, false})
			if !equalTables(got[0].table, analytics.Table{Columns: got[0].table.Columns, Rows: want}) {
				t.Errorf("devices\n got %v\nwant %v", got[0].table.Rows, want)
			}
		}})
	}

	// Hot spots.
	for _, subject := range []string{analytics.Events, analytics.Cases} {
		for _, scope := range []string{"", township} {
			qs = append(qs, question{name: "hotspots/" + subject + "/" + scope, ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
				t, err := q.Hotspots(ctx, analytics.HotspotsParams{Subject: subject, To: end}, scope)
				return one("hotspots", t, err)
			}, check: func(t *testing.T, got []answer) { checkHotspots(t, f, got[0].table, subject, scope) }})
		}
	}

	// Reports.
	for _, kind := range []string{analytics.Daily, analytics.Weekly, analytics.Monthly} {
		for _, scope := range []string{"", township} {
			qs = append(qs, question{name: "report/" + kind + "/" + scope, ask: func(ctx context.Context, q *analytics.Questions) ([]answer, error) {
				r, err := q.Report(ctx, kind, reportDate, scope)
				if err != nil {
					return nil, err
				}
				var out []answer
				for _, s := range r.Sections {
					out = append(out, answer{s.Name, s.Table})
				}
				return out, nil
			}, check: func(t *testing.T, got []answer) { checkReport(t, f, kind, scope, got) }})
		}
	}
	return qs
}

// TestQuestionsConformance asks every question of every store holding the
// same fixture: each answer is checked against the fixture's numbers
// computed in Go, and the stores' answers must be equal (floats to 1e-9).
func TestQuestionsConformance(t *testing.T) {
	f := buildFixture()
	ctx := context.Background()
	qs := questions(f)
	answers := map[string]map[string][]answer{} // driver → question → answers
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			store := load(t, driver, f)
			answers[driver] = map[string][]answer{}
			for _, qu := range qs {
				t.Run(qu.name, func(t *testing.T) {
					got, err := qu.ask(ctx, store)
					if err != nil {
						t.Fatal(err)
					}
					answers[driver][qu.name] = got
					if qu.check != nil {
						qu.check(t, got)
					}
				})
			}
		})
	}
	if len(answers) < 2 {
		t.Logf("only %v: set SHARPEYE_TEST_PEERS=clickhouse to compare the stores", analyticstest.Drivers())
		return
	}
	for _, qu := range qs {
		a, b := answers[analytics.SQLite][qu.name], answers[analytics.ClickHouse][qu.name]
		if len(a) != len(b) {
			t.Errorf("%s: SQLite answers %d tables, ClickHouse %d", qu.name, len(a), len(b))
			continue
		}
		for i := range a {
			if a[i].name != b[i].name || !equalTables(a[i].table, b[i].table) {
				t.Errorf("%s %s: the stores differ\nSQLite     %v\nClickHouse %v", qu.name, a[i].name, brief(a[i].table), brief(b[i].table))
			}
		}
	}
}

// TestSeriesRollupsAgreeWithRaw forces the same series through the hourly
// rollups and through the raw tables on every store.
func TestSeriesRollupsAgreeWithRaw(t *testing.T) {
	f := buildFixture()
	ctx := context.Background()
	var cases []analytics.SeriesParams
	for _, b := range []analytics.Bucket{analytics.Hour, analytics.Day, analytics.Week, analytics.Month} {
		rng := all
		if b == analytics.Hour {
			rng = week2
		}
		for _, by := range []string{"", "type", "region", "source", "severity", "camera"} {
			cases = append(cases, analytics.SeriesParams{Subject: analytics.Events, Bucket: b, Range: rng, By: by})
		}
		for _, by := range []string{"", "category", "region", "source"} {
			cases = append(cases, analytics.SeriesParams{Subject: analytics.Cases, Bucket: b, Range: rng, By: by})
		}
	}
	withFilters := func(p analytics.SeriesParams, fl map[string][]string, depth int) analytics.SeriesParams {
		p.Filters, p.RegionDepth = fl, depth
		return p
	}
	cases = append(cases,
		withFilters(analytics.SeriesParams{Subject: analytics.Events, Bucket: analytics.Day, Range: all, By: "region"}, map[string][]string{"type": {"sensor.smoke", "camera.offline"}}, 2),
		withFilters(analytics.SeriesParams{Subject: analytics.Events, Bucket: analytics.Week, Range: all, By: "camera"}, map[string][]string{"region": {township}}, 0),
		withFilters(analytics.SeriesParams{Subject: analytics.Events, Bucket: analytics.Day, Range: all, By: "type"}, map[string][]string{"camera": {"cam-1", "cam-3"}}, 0),
		withFilters(analytics.SeriesParams{Subject: analytics.Cases, Bucket: analytics.Day, Range: all, By: "source"}, map[string][]string{"category": {"public_safety"}, "region": {xinzhuang}}, 0),
	)
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			q := load(t, driver, f)
			for _, scope := range []string{"", township} {
				for _, p := range cases {
					name := fmt.Sprintf("%s/%s/by-%s/%v/%q", p.Subject, p.Bucket, p.By, p.Filters, scope)
					p.Path = analytics.PathRollup
					rolled, err := q.Series(ctx, p, scope)
					if err != nil {
						t.Fatalf("%s through the rollup: %v", name, err)
					}
					p.Path = analytics.PathRaw
					raw, err := q.Series(ctx, p, scope)
					if err != nil {
						t.Fatalf("%s raw: %v", name, err)
					}
					p.Path = analytics.PathAuto
					auto, err := q.Series(ctx, p, scope)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if len(raw.Rows) == 0 || !equalTables(rolled, raw) || !equalTables(auto, raw) {
						t.Errorf("%s: rollup and raw differ\nrollup %v\nraw    %v\nauto   %v", name, brief(rolled), brief(raw), brief(auto))
					}
				}
			}
			// The rollups cannot answer minutes, unaligned bounds or other
			// dimensions: forcing them is refused.
			for _, p := range []analytics.SeriesParams{
				{Subject: analytics.Events, Bucket: analytics.Minute, Range: tuesday},
				{Subject: analytics.Events, Bucket: analytics.Hour, Range: analytics.Range{From: tuesday.From.Add(time.Minute), To: tuesday.To}},
				{Subject: analytics.Events, Bucket: analytics.Day, Range: all, By: "grid"},
				{Subject: analytics.Cases, Bucket: analytics.Day, Range: all, By: "state"},
			} {
				p.Path = analytics.PathRollup
				var pe *analytics.ParamError
				if _, err := q.Series(ctx, p, ""); !errors.As(err, &pe) || pe.Param != "path" {
					t.Errorf("%s %s by %q forced through a rollup: %v, want a path error", p.Subject, p.Bucket, p.By, err)
				}
			}
		})
	}
}

// TestCamerasRollupAgreesWithRaw asks the fleet questions through the
// hourly camera rollup and through the raw minutes on every store.
func TestCamerasRollupAgreesWithRaw(t *testing.T) {
	f := buildFixture()
	ctx := context.Background()
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			cfg := analyticstest.Config(t, driver)
			s := analyticstest.OpenConfig(t, cfg)
			b := analytics.Batch{Health: slices.Clone(f.batch.Health)}
			if _, err := s.Insert(ctx, &b, false); err != nil {
				t.Fatal(err)
			}
			q := analytics.NewQuestions(cfg, s, prometheus.NewRegistry())
			compareCameras(t, ctx, q)
			// The migration that sums the stored minutes, again (as after
			// one cut short): the same answers, nothing counted twice.
			switch st := s.(type) {
			case *analytics.CHStore:
				if err := st.Remigrate(ctx, 3); err != nil {
					t.Fatal(err)
				}
			case *analytics.LiteStore:
				if err := st.Remigrate(ctx, 2); err != nil {
					t.Fatal(err)
				}
			}
			compareCameras(t, ctx, q)
		})
	}
}

// compareCameras asks the fleet questions through the rollup and raw.
func compareCameras(t *testing.T, ctx context.Context, q *analytics.Questions) {
	t.Helper()
	// Whole days, and hours that cut through the faults.
	ranges := []analytics.Range{healthRg, {From: healthRg.From.Add(2 * time.Hour), To: healthRg.From.Add(11 * time.Hour)}}
	for _, rng := range ranges {
		for _, scope := range []string{"", township} {
			for _, by := range []string{"region", "vendor", "grid", "day"} {
				ask := func(path string) analytics.Table {
					tb, err := q.Cameras(ctx, analytics.CamerasParams{Range: rng, By: by, Path: path}, scope)
					if err != nil {
						t.Fatalf("cameras by %s (%q): %v", by, path, err)
					}
					return tb
				}
				rolled, raw, auto := ask(analytics.PathRollup), ask(analytics.PathRaw), ask(analytics.PathAuto)
				if len(raw.Rows) == 0 || !equalTables(rolled, raw) || !equalTables(auto, raw) {
					t.Errorf("cameras by %s in %q over %v: rollup and raw differ\nrollup %v\nraw    %v", by, scope, rng, brief(rolled), brief(raw))
				}
			}
			ask := func(path string) analytics.Table {
				tb, err := q.WorstCameras(ctx, analytics.WorstParams{Range: rng, Limit: 5, Path: path}, scope)
				if err != nil {
					t.Fatalf("worst cameras (%q): %v", path, err)
				}
				return tb
			}
			rolled, raw := ask(analytics.PathRollup), ask(analytics.PathRaw)
			if len(raw.Rows) == 0 || !equalTables(rolled, raw) {
				t.Errorf("worst cameras in %q over %v: rollup and raw differ\nrollup %v\nraw    %v", scope, rng, brief(rolled), brief(raw))
			}
		}
	}
	// A range off the hour cannot be forced through the rollup.
	off := analytics.Range{From: healthRg.From.Add(time.Minute), To: healthRg.To}
	var pe *analytics.ParamError
	if _, err := q.Cameras(ctx, analytics.CamerasParams{Range: off, By: "vendor", Path: analytics.PathRollup}, ""); !errors.As(err, &pe) || pe.Param != "path" {
		t.Errorf("cameras off the hour forced through the rollup: %v, want a path error", err)
	}
}

// TestQuestionParams: bad parameters are refused naming the parameter, a
// region outside the scope is forbidden.
func TestQuestionParams(t *testing.T) {
	q := load(t, analytics.SQLite, fixture{})
	ctx := context.Background()
	ev := analytics.SeriesParams{Subject: analytics.Events, Bucket: analytics.Day, Range: all}
	with := func(change func(p *analytics.SeriesParams)) analytics.SeriesParams {
		p := ev
		change(&p)
		return p
	}
	for _, c := range []struct {
		p     analytics.SeriesParams
		param string
	}{
		{with(func(p *analytics.SeriesParams) { p.Subject = "alarms" }), "subject"},
		{with(func(p *analytics.SeriesParams) { p.Bucket = "fortnight" }), "bucket"},
		{with(func(p *analytics.SeriesParams) { p.Bucket = analytics.Minute }), "from"},
		{with(func(p *analytics.SeriesParams) { p.Bucket = analytics.Hour; p.Range.From = end.AddDate(0, 0, -91) }), "from"},
		{with(func(p *analytics.SeriesParams) { p.Range.To = p.Range.From }), "to"},
		{with(func(p *analytics.SeriesParams) { p.By = "colour" }), "by"},
		{with(func(p *analytics.SeriesParams) { p.By = "type"; p.RegionDepth = 2 }), "region_depth"},
		{with(func(p *analytics.SeriesParams) { p.By = "region"; p.RegionDepth = 9 }), "region_depth"},
		{with(func(p *analytics.SeriesParams) { p.Limit = 3 }), "limit"},
		{with(func(p *analytics.SeriesParams) { p.Filters = map[string][]string{"department": {"police"}} }), "department"},
		{with(func(p *analytics.SeriesParams) { p.Filters = map[string][]string{"type": {""}} }), "type"},
		{with(func(p *analytics.SeriesParams) { p.Filters = map[string][]string{"region": {"a//b"}} }), "region"},
	} {
		var pe *analytics.ParamError
		if _, err := q.Series(ctx, c.p, ""); !errors.As(err, &pe) || pe.Param != c.param {
			t.Errorf("%+v: %v, want an error naming %s", c.p, err, c.param)
		}
	}
	// Outside the scope, including the region that only shares its bytes.
	if _, err := q.Series(ctx, with(func(p *analytics.SeriesParams) { p.Filters = map[string][]string{"region": {trap}} }), township); !errors.Is(err, analytics.ErrForbidden) {
		t.Errorf("a region filter outside the scope: %v, want ErrForbidden", err)
	}
	if _, err := q.Performance(ctx, analytics.PerformanceParams{Range: all, By: "department", Region: jiangan}, township); !errors.Is(err, analytics.ErrForbidden) {
		t.Errorf("performance of a region outside the scope: %v, want ErrForbidden", err)
	}
	if _, err := q.Performance(ctx, analytics.PerformanceParams{Range: all, By: "colour"}, ""); err == nil {
		t.Error("performance by colour: no error")
	}
	if _, err := q.Cameras(ctx, analytics.CamerasParams{Range: all, By: "camera"}, ""); err == nil {
		t.Error("cameras by camera: no error")
	}
	if _, _, err := q.Period("yearly", start); err == nil {
		t.Error("a yearly report: no error")
	}
}

// TestPeriods: days, weeks from Monday and months begin in the zone.
func TestPeriods(t *testing.T) {
	q := load(t, analytics.SQLite, fixture{})
	for _, c := range []struct {
		kind       string
		date       time.Time
		from, prev string
	}{
		{analytics.Daily, time.Date(2026, 11, 17, 23, 59, 0, 0, shanghai), "2026-11-17", "2026-11-16"},
		{analytics.Daily, time.Date(2026, 11, 17, 16, 30, 0, 0, time.UTC), "2026-11-18", "2026-11-17"},
		{analytics.Weekly, time.Date(2026, 11, 22, 12, 0, 0, 0, shanghai), "2026-11-16", "2026-11-09"},
		{analytics.Weekly, time.Date(2026, 11, 16, 0, 0, 0, 0, shanghai), "2026-11-16", "2026-11-09"},
		{analytics.Monthly, time.Date(2026, 3, 31, 12, 0, 0, 0, shanghai), "2026-03-01", "2026-02-01"},
	} {
		cur, prev, err := q.Period(c.kind, c.date)
		if err != nil {
			t.Fatal(err)
		}
		if got := cur.From.Format("2006-01-02"); got != c.from || prev.From.Format("2006-01-02") != c.prev || !prev.To.Equal(cur.From) {
			t.Errorf("%s of %v: %v after %v, want from %s after %s", c.kind, c.date, cur, prev, c.from, c.prev)
		}
	}
}

// --- the fixture's numbers, computed in Go ---

func eventDim(e analytics.EventRow, name string) string {
	switch name {
	case "type":
		return e.Type
	case "severity":
		return e.Severity
	case "source":
		return e.SourceKind
	case "source_id":
		return e.SourceID
	case "camera":
		return e.Camera
	case "region":
		return e.Region
	case "grid":
		return e.Grid
	}
	panic(name)
}

// refCase is one case: its first row, its latest, its resolve actions.
type refCase struct {
	first, last  analytics.CaseRow
	onTime, late int64
	// satisfaction counts the case's follow-ups by their answer.
	satisfaction map[string]int64
}

func refCases(f fixture) []refCase {
	byID := map[string]*refCase{}
	var ids []string
	for _, r := range f.batch.Cases {
		c, ok := byID[r.CaseID]
		if !ok {
			c = &refCase{first: r, satisfaction: map[string]int64{}}
			byID[r.CaseID] = c
			ids = append(ids, r.CaseID)
		}
		c.last = r
		if r.Action == "follow_up" {
			c.satisfaction[r.Satisfaction]++
		}
		if r.Action == "resolve" {
			if r.Late {
				c.late++
			} else {
				c.onTime++
			}
		}
	}
	out := make([]refCase, len(ids))
	for i, id := range ids {
		out[i] = *byID[id]
	}
	return out
}

func caseDim(c refCase, name string) string {
	switch name {
	case "category":
		return c.first.Category
	case "colour":
		return c.last.Colour
	case "region":
		return c.first.Region
	case "source":
		return c.first.Source
	case "department":
		return c.last.Department
	case "rule":
		return c.first.Rule
	case "grid":
		return c.first.Grid
	case "state":
		return c.last.State
	}
	panic(name)
}

func refBucket(b analytics.Bucket, t time.Time) time.Time {
	switch b {
	case analytics.Minute:
		return t.Truncate(time.Minute).In(shanghai)
	case analytics.Hour:
		return t.Truncate(time.Hour).In(shanghai)
	}
	y, m, d := t.In(shanghai).Date()
	switch b {
	case analytics.Week:
		d -= (int(time.Date(y, m, d, 12, 0, 0, 0, shanghai).Weekday()) + 6) % 7
	case analytics.Month:
		d = 1
	}
	return time.Date(y, m, d, 0, 0, 0, 0, shanghai)
}

func inAny(region string, filters []string) bool {
	return slices.ContainsFunc(filters, func(f string) bool { return auth.InRegion(region, f) })
}

// refSeries is Series computed in Go over the fixture.
func refSeries(f fixture, p analytics.SeriesParams, scope string) analytics.Table {
	type key struct {
		b time.Time
		k string
	}
	counts := map[key]int64{}
	add := func(at time.Time, region string, dim func(string) string) {
		if at.Before(p.From) || !at.Before(p.To) || !auth.InRegion(region, scope) {
			return
		}
		for name, vals := range p.Filters {
			if name == "region" && !inAny(dim(name), vals) || name != "region" && !slices.Contains(vals, dim(name)) {
				return
			}
		}
		k := ""
		if p.By != "" {
			k = dim(p.By)
			if p.By == "region" && p.RegionDepth > 0 {
				segs := strings.Split(k, "/")
				k = strings.Join(segs[:min(len(segs), p.RegionDepth)], "/")
			}
		}
		counts[key{refBucket(p.Bucket, at), k}]++
	}
	if p.Subject == analytics.Events {
		for _, e := range f.batch.Events {
			if e.Camera == "" && (p.By == "camera" || len(p.Filters["camera"]) > 0) {
				continue
			}
			add(e.Time.Truncate(time.Second), e.Region, func(name string) string { return eventDim(e, name) })
		}
	} else {
		for _, c := range refCases(f) {
			add(c.first.Time.Truncate(time.Second), c.first.Region, func(name string) string { return caseDim(c, name) })
		}
	}
	if p.Limit > 0 {
		totals := map[string]int64{}
		for k, n := range counts {
			totals[k.k] += n
		}
		keys := make([]string, 0, len(totals))
		for k := range totals {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(totals[b], totals[a]), strings.Compare(a, b)) })
		if len(keys) > p.Limit {
			merged := map[key]int64{}
			for k, n := range counts {
				if !slices.Contains(keys[:p.Limit], k.k) {
					k.k = analytics.OtherKey
				}
				merged[k] += n
			}
			counts = merged
		}
	}
	keys := make([]key, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := a.b.Compare(b.b); c != 0 {
			return c
		}
		if (a.k == analytics.OtherKey) != (b.k == analytics.OtherKey) && p.Limit > 0 {
			if a.k == analytics.OtherKey {
				return 1
			}
			return -1
		}
		return strings.Compare(a.k, b.k)
	})
	t := analytics.Table{Columns: []string{"bucket"}}
	if p.By != "" {
		t.Columns = append(t.Columns, p.By)
	}
	t.Columns = append(t.Columns, "count")
	for _, k := range keys {
		row := []any{k.b}
		if p.By != "" {
			row = append(row, k.k)
		}
		t.Rows = append(t.Rows, append(row, counts[k]))
	}
	return t
}

// nearestRank is the pct-th percentile, nearest rank.
func nearestRank(vals []int64, pct int) any {
	if len(vals) == 0 {
		return nil
	}
	s := slices.Sorted(slices.Values(vals))
	return s[(len(s)*pct+99)/100-1]
}

// checkPerformance recomputes every row of a performance table.
func checkPerformance(t *testing.T, f fixture, got analytics.Table, by, scope string) {
	t.Helper()
	groups := map[string][]refCase{}
	var all []refCase
	for _, c := range refCases(f) {
		if !auth.InRegion(c.first.Region, scope) || c.first.Time.Before(start) || !c.first.Time.Before(end) {
			continue
		}
		all = append(all, c)
		if by != "" {
			k := map[string]string{"department": c.last.Department, "region": c.first.Region, "category": c.first.Category}[by]
			if by == "region" && scope != "" {
				k = strings.Join(strings.Split(k, "/")[:3], "/")
			}
			groups[k] = append(groups[k], c)
		}
	}
	row := func(key string, cs []refCase) []any {
		var opened, closed, onTime, late, urges, esc, sat, basic, dis int64
		var disp, acc, res []int64
		for _, c := range cs {
			l := c.last
			opened++
			if l.State == "closed" {
				closed++
			}
			onTime += c.onTime
			late += c.late
			urges += int64(l.UrgeCount)
			esc += int64(l.Escalations)
			sat += c.satisfaction["satisfied"]
			basic += c.satisfaction["basically"]
			dis += c.satisfaction["dissatisfied"]
			for _, d := range []struct {
				at  time.Time
				dst *[]int64
			}{{l.Dispatched, &disp}, {l.Accepted, &acc}, {l.Resolved, &res}} {
				if !d.at.IsZero() {
					*d.dst = append(*d.dst, d.at.Unix()-l.Created.Unix())
				}
			}
		}
		rate := func(a, b int64) any {
			if b == 0 {
				return nil
			}
			return float64(a) / float64(b)
		}
		return []any{key, opened, opened - closed, closed, onTime, late, rate(onTime, onTime+late),
			nearestRank(disp, 50), nearestRank(disp, 90), nearestRank(acc, 50), nearestRank(acc, 90), nearestRank(res, 50), nearestRank(res, 90),
			urges, esc, sat, basic, dis, rate(sat+basic, sat+basic+dis)}
	}
	var want [][]any
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		want = append(want, row(k, groups[k]))
	}
	want = append(want, row(analytics.TotalKey, all))
	if !equalTables(got, analytics.Table{Columns: got.Columns, Rows: want}) {
		t.Errorf("performance by %q in %q\n got %v\nwant %v", by, scope, got.Rows, want)
	}
	if total := got.Rows[len(got.Rows)-1]; scope == "" && total[1] != int64(caseCount) {
		t.Errorf("%v cases opened in total, want %d", total[1], caseCount)
	}
}

func checkRules(t *testing.T, f fixture, got analytics.Table) {
	t.Helper()
	type agg struct{ cases, alerts, unsub int64 }
	per := map[string]*agg{}
	for _, c := range refCases(f) {
		if c.first.Rule == "" {
			continue
		}
		a := per[c.first.Rule]
		if a == nil {
			a = &agg{}
			per[c.first.Rule] = a
		}
		a.cases++
		a.alerts += int64(c.last.AlertCount)
		if c.last.Outcome == "unsubstantiated" {
			a.unsub++
		}
	}
	var want [][]any
	for _, r := range ruleIDs {
		a := per[r]
		want = append(want, []any{r, a.cases, a.alerts, float64(a.alerts) / float64(a.cases), a.unsub, float64(a.unsub) / float64(a.cases)})
	}
	slices.SortFunc(want, func(a, b []any) int {
		return cmp.Or(cmp.Compare(b[1].(int64), a[1].(int64)), strings.Compare(a[0].(string), b[0].(string)))
	})
	if !equalTables(got, analytics.Table{Columns: got.Columns, Rows: want}) {
		t.Errorf("rules\n got %v\nwant %v", got.Rows, want)
	}
	var unsub int64
	for _, a := range per {
		unsub += a.unsub
	}
	if unsub == 0 {
		t.Error("no rule has a false alert: a weak test")
	}
}

func checkCameras(t *testing.T, f fixture, got analytics.Table, by string) {
	t.Helper()
	type agg struct {
		cams            map[string]bool
		minutes, intact int64
		online, window  float64
	}
	per := map[any]*agg{}
	for _, h := range f.batch.Health {
		if h.Minute.Before(healthRg.From) || !h.Minute.Before(healthRg.To) {
			continue
		}
		var k any = map[string]string{"region": h.Region, "vendor": h.Vendor, "grid": h.Grid}[by]
		if by == "day" {
			k = refBucket(analytics.Day, h.Minute)
		}
		a := per[k]
		if a == nil {
			a = &agg{cams: map[string]bool{}}
			per[k] = a
		}
		a.cams[h.Camera] = true
		a.minutes++
		a.online += h.OnlineSeconds
		a.window += h.WindowSeconds
		if h.OnlineSeconds > 0 && len(h.Faults) == 0 {
			a.intact++
		}
	}
	var want [][]any
	for k, a := range per {
		on, in := a.online/a.window, float64(a.intact)/float64(a.minutes)
		want = append(want, []any{k, int64(len(a.cams)), a.minutes, on, in, on >= 0.98, in >= 0.95})
	}
	slices.SortFunc(want, func(a, b []any) int { return strings.Compare(cell(a[0]), cell(b[0])) })
	if !equalTables(got, analytics.Table{Columns: got.Columns, Rows: want}) {
		t.Errorf("cameras by %s\n got %v\nwant %v", by, got.Rows, want)
	}
}

func checkHotspots(t *testing.T, f fixture, got analytics.Table, subject, scope string) {
	t.Helper()
	mid := end.AddDate(0, 0, -7)
	type agg struct {
		region    string
		cur, prev int64
	}
	per := map[string]*agg{}
	add := func(at time.Time, region, grid string) {
		if grid == "" || !auth.InRegion(region, scope) || at.Before(start) || !at.Before(end) {
			return
		}
		a := per[grid]
		if a == nil {
			a = &agg{region: region}
			per[grid] = a
		}
		if at.Before(mid) {
			a.prev++
		} else {
			a.cur++
		}
	}
	if subject == analytics.Events {
		for _, e := range f.batch.Events {
			add(e.Time, e.Region, e.Grid)
		}
	} else {
		for _, c := range refCases(f) {
			add(c.first.Time, c.first.Region, c.first.Grid)
		}
	}
	var want [][]any
	for g, a := range per {
		if a.cur <= a.prev {
			continue
		}
		var pct any
		if a.prev > 0 {
			pct = 100 * float64(a.cur-a.prev) / float64(a.prev)
		}
		want = append(want, []any{g, a.region, a.cur, a.prev, a.cur - a.prev, pct})
	}
	slices.SortFunc(want, func(a, b []any) int {
		return cmp.Or(cmp.Compare(b[4].(int64), a[4].(int64)), cmp.Compare(b[2].(int64), a[2].(int64)), strings.Compare(a[0].(string), b[0].(string)))
	})
	want = want[:min(10, len(want))]
	if !equalTables(got, analytics.Table{Columns: got.Columns, Rows: want}) {
		t.Errorf("hot spots of %s in %q\n got %v\nwant %v", subject, scope, got.Rows, want)
	}
	if subject == analytics.Events && (len(got.Rows) == 0 || got.Rows[0][0] != "xz-01") {
		t.Errorf("the hottest grid is not xz-01 (three more events a day in the second week): %v", got.Rows)
	}
}

func checkReport(t *testing.T, f fixture, kind, scope string, got []answer) {
	t.Helper()
	names := make([]string, len(got))
	for i, a := range got {
		names[i] = a.name
	}
	want := []string{"cases_by_category_colour", "cases_by_source", "performance_total", "performance_by_department", "hot_grids", "cameras_by_region", "worst_cameras", "rules"}
	if kind != analytics.Daily {
		want = append(want, "compare_by_category")
	}
	if !slices.Equal(names, want) {
		t.Fatalf("sections %v, want %v", names, want)
	}
	// Cases by category and colour, against the fixture.
	var from, to time.Time
	switch kind {
	case analytics.Daily:
		from, to = reportDate, reportDate.AddDate(0, 0, 1)
	case analytics.Weekly:
		from, to = week2.From, week2.To
	default:
		from, to = time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai), time.Date(2026, 12, 1, 0, 0, 0, 0, shanghai)
	}
	counts := map[[2]string]int64{}
	prev := map[string]int64{}
	pfrom := map[string]time.Time{analytics.Daily: from.AddDate(0, 0, -1), analytics.Weekly: from.AddDate(0, 0, -7), analytics.Monthly: from.AddDate(0, -1, 0)}[kind]
	var total int64
	for _, c := range refCases(f) {
		if !auth.InRegion(c.first.Region, scope) {
			continue
		}
		if !c.first.Time.Before(from) && c.first.Time.Before(to) {
			counts[[2]string{c.first.Category, c.last.Colour}]++
			total++
		}
		if !c.first.Time.Before(pfrom) && c.first.Time.Before(from) {
			prev[c.first.Category]++
		}
	}
	var sum int64
	for _, r := range got[0].table.Rows {
		k := [2]string{r[0].(string), r[1].(string)}
		if r[2] != counts[k] {
			t.Errorf("%s report: %v cases of %v, want %d", kind, r[2], k, counts[k])
		}
		sum += r[2].(int64)
	}
	if sum != total || total == 0 {
		t.Errorf("%s report counts %d cases, the fixture %d", kind, sum, total)
	}
	if got[2].table.Rows[0][1] != total {
		t.Errorf("%s report: performance_total opened %v, want %d", kind, got[2].table.Rows[0][1], total)
	}
	if kind != analytics.Daily {
		for _, r := range got[8].table.Rows {
			cat := r[0].(string)
			var this int64
			for k, n := range counts {
				if k[0] == cat {
					this += n
				}
			}
			if r[1] != this || r[2] != prev[cat] || r[3] != this-prev[cat] {
				t.Errorf("%s report compares %v, want %s %d against %d", kind, r, cat, this, prev[cat])
			}
		}
	}
	// Cameras one level below the scope.
	for _, r := range got[5].table.Rows {
		if want := strings.Count(scope, "/") + 2; scope != "" && strings.Count(r[0].(string), "/")+1 != want {
			t.Errorf("%s report in %q: camera region %v is not %d levels deep", kind, scope, r[0], want)
		}
	}
}

// --- comparing tables ---

// cell is a value as compared: floats to 1e-9, times as RFC 3339 in the
// zone.
func cell(v any) string {
	switch x := v.(type) {
	case float64:
		return fmt.Sprintf("%.9f", math.Round(x*1e9)/1e9)
	case time.Time:
		return x.In(shanghai).Format(time.RFC3339Nano)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T:%v", v, v)
}

func equalTables(a, b analytics.Table) bool {
	if !reflect.DeepEqual(a.Columns, b.Columns) || len(a.Rows) != len(b.Rows) || a.Truncated != b.Truncated {
		return false
	}
	for i := range a.Rows {
		if len(a.Rows[i]) != len(b.Rows[i]) {
			return false
		}
		for j := range a.Rows[i] {
			if cell(a.Rows[i][j]) != cell(b.Rows[i][j]) {
				return false
			}
		}
	}
	return true
}

func column(t analytics.Table, i int) []any {
	var out []any
	for _, r := range t.Rows {
		out = append(out, r[i])
	}
	return out
}

// brief prints a table's first rows.
func brief(t analytics.Table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %d rows:", t.Columns, len(t.Rows))
	for i, r := range t.Rows {
		if i == 12 {
			b.WriteString(" …")
			break
		}
		b.WriteString(" [")
		for j, v := range r {
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(cell(v))
		}
		b.WriteString("]")
	}
	return b.String()
}

// The worst cameras are ranked and cut by the store: with fewer rows
// allowed than there are cameras, the worst is still the one answered.
func TestWorstCamerasBeyondMaxRows(t *testing.T) {
	f := buildFixture()
	ctx := context.Background()
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			cfg := analyticstest.Config(t, driver)
			cfg.Query.MaxRows = 2 // of 5 cameras
			s := analyticstest.OpenConfig(t, cfg)
			b := analytics.Batch{Health: slices.Clone(f.batch.Health)}
			if _, err := s.Insert(ctx, &b, false); err != nil {
				t.Fatal(err)
			}
			q := analytics.NewQuestions(cfg, s, prometheus.NewRegistry())
			tb, err := q.WorstCameras(ctx, analytics.WorstParams{Range: healthRg, Limit: 1}, "")
			if err != nil {
				t.Fatal(err)
			}
			if ids := column(tb, 0); !slices.Equal(ids, []any{"cam-3"}) {
				t.Errorf("worst camera %v, want cam-3", ids)
			}
		})
	}
}

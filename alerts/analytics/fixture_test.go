package analytics_test

import (
	"context"
	"fmt"
	"sharpeye/ingest/event"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/analyticstest"
)

// The fixture: two weeks of events, cases and camera health in five grids
// of four regions, from Monday 2026-11-09 (Asia/Shanghai) to Monday
// 2026-11-23. Region 王家河街道东 is a trap for prefix tests: it starts with
// the bytes of 王家河街道 but is not inside it.
var (
	shanghai, _ = time.LoadLocation("Asia/Shanghai")
	start       = time.Date(2026, 11, 9, 0, 0, 0, 0, shanghai)
	end         = start.AddDate(0, 0, 14)
)

const (
	township  = "黄陂区/王家河街道"
	xinzhuang = township + "/新庄村"
	hongqi    = township + "/红旗村"
	trap      = "黄陂区/王家河街道东/李村"
	jiangan   = "江岸区/球场街道/一社区"
)

type place struct{ region, grid string }

var places = []place{{xinzhuang, "xz-01"}, {xinzhuang, "xz-02"}, {hongqi, "hq-01"}, {trap, "lc-01"}, {jiangan, "ys-01"}}

// cameraPlaces: cam-1..cam-5 and their vendors.
var cameraPlaces = []struct {
	id, vendor string
	place
}{
	{"cam-1", "hikvision", places[0]}, {"cam-2", "hikvision", places[1]}, {"cam-3", "hikvision", places[2]},
	{"cam-4", "dahua", places[3]}, {"cam-5", "dahua", places[4]},
}

type fixture struct {
	batch analytics.Batch
}

func buildFixture() fixture {
	var f fixture
	f.events()
	f.cases()
	f.health()
	return f
}

func (f *fixture) event(at time.Time, typ, severity, kind, source, camera string, p place) {
	n := len(f.batch.Events)
	f.batch.Events = append(f.batch.Events, analytics.EventRow{
		ID: fmt.Sprintf("ev-%05d", n), Time: at.UTC(), Received: at.UTC(), Schema: 1, Type: typ, Severity: severity,
		SourceKind: kind, SourceID: source, Region: p.region, Grid: p.grid, Camera: camera,
		Partition: 0, Offset: int64(n),
	})
}

func (f *fixture) events() {
	types := []string{"detection.person", "detection.vehicle", "sensor.smoke", "camera.offline"}
	sevs := []string{"info", "minor", "major", "critical"}
	for i := range 14 * 24 {
		hour := start.Add(time.Duration(i) * time.Hour)
		for k := range i%4 + 1 {
			typ := types[(i+k)%4]
			cp := cameraPlaces[(i+k)%5]
			at := hour.Add(time.Duration(k*7+i%13)*time.Minute + time.Duration(i%59)*time.Second + time.Duration(k*111)*time.Millisecond)
			switch typ {
			case "sensor.smoke":
				f.event(at, typ, sevs[(i*3+k)%4], "device", "smoke-"+strconv.Itoa((i+k)%3), "", cp.place)
			case "camera.offline":
				f.event(at, typ, sevs[(i*3+k)%4], "camera", cp.id, cp.id, cp.place)
			default:
				f.event(at, typ, sevs[(i*3+k)%4], "analyser", "aibox-"+strconv.Itoa((i+k)%2), cp.id, cp.place)
			}
		}
	}
	// Grid xz-01 rises in the second week: three more a day.
	for d := 7; d < 14; d++ {
		for k := range 3 {
			f.event(start.AddDate(0, 0, d).Add(time.Duration(9+k)*time.Hour+5*time.Minute), "detection.person", "major", "analyser", "aibox-0", "cam-1", places[0])
		}
	}
	// Devices: dev-1 flaps in the second week, dev-2 goes silent, dev-3
	// comes back, dev-4 (Jiang'an) flaps twice.
	day := func(d, h, m int) time.Time {
		return start.AddDate(0, 0, d).Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
	}
	for k := range 4 {
		f.event(day(8+k, 3, 10), event.TypeDeviceOffline, "major", "device", "dev-1", "", places[0])
		f.event(day(8+k, 3, 40), event.TypeDeviceOnline, "info", "device", "dev-1", "", places[0])
	}
	f.event(day(9, 1, 0), event.TypeDeviceOnline, "info", "device", "dev-2", "", places[2])
	f.event(day(12, 22, 30), event.TypeDeviceOffline, "major", "device", "dev-2", "", places[2])
	f.event(day(10, 5, 0), event.TypeDeviceOffline, "major", "device", "dev-3", "", places[1])
	f.event(day(10, 6, 0), event.TypeDeviceOnline, "info", "device", "dev-3", "", places[1])
	for k := range 2 {
		f.event(day(11+k, 7, 0), event.TypeDeviceOffline, "major", "device", "dev-4", "", places[4])
		f.event(day(11+k, 7, 30), event.TypeDeviceOnline, "info", "device", "dev-4", "", places[4])
	}
}

// caseSim writes one case's history: each step is a row with the case as
// it stands after it.
type caseSim struct {
	f   *fixture
	row analytics.CaseRow
}

func (c *caseSim) step(at time.Time, action, state string, change func(r *analytics.CaseRow)) {
	c.row.Seq++
	c.row.ID = c.row.CaseID + "/" + strconv.Itoa(c.row.Seq)
	c.row.Time = at.UTC()
	c.row.Action, c.row.FromState, c.row.ToState, c.row.State = action, c.row.State, state, state
	c.row.Due, c.row.Late = time.Time{}, false
	if change != nil {
		change(&c.row)
	}
	c.row.Version = int64(c.row.Seq)
	c.row.Offset = int64(len(c.f.batch.Cases))
	c.f.batch.Cases = append(c.f.batch.Cases, c.row)
}

var (
	categories  = []string{"neighbour_dispute", "public_safety", "labour_wage"}
	colours     = []string{"yellow", "orange", "red"}
	sources     = []string{"alert", "window", "hotline", "grid", "police"}
	departments = []string{"justice", "police", "labour"}
	ruleIDs     = []string{"smoke-high", "crowd"}
)

const caseCount = 30

func (f *fixture) cases() {
	for j := range caseCount {
		t0 := start.Add(time.Duration(j*11)*time.Hour + 17*time.Minute + time.Duration(j)*time.Second)
		p := places[j%5]
		c := &caseSim{f: f, row: analytics.CaseRow{
			CaseID: fmt.Sprintf("case-%02d", j), Number: fmt.Sprintf("2026-%04d", j), Category: categories[j%3], Colour: colours[j%3],
			Risk: 40 + j, Source: sources[j%5], Region: p.region, Grid: p.grid, Level: "village", Created: t0.UTC(), Actor: "clerk",
		}}
		if c.row.Source == "alert" {
			c.row.Rule, c.row.AlertCount = ruleIDs[j%2], 1+j%4
		}
		c.step(t0, "register", "registered", nil)
		c.step(t0.Add(10*time.Minute), "assess", "assessed", func(r *analytics.CaseRow) {
			if j%4 == 0 {
				r.Colour = "red" // raised after registration: counted as opened
			}
		})
		if j%6 == 5 {
			continue
		}
		dispatched := t0.Add(time.Duration(20+j*7) * time.Minute)
		c.step(dispatched, "dispatch", "dispatched", func(r *analytics.CaseRow) {
			r.Department, r.Dispatched, r.Deadline = departments[j%3], dispatched.UTC(), dispatched.Add(48*time.Hour).UTC()
		})
		if j%3 == 0 {
			c.step(dispatched.Add(5*time.Minute), "urge", "dispatched", func(r *analytics.CaseRow) { r.UrgeCount++ })
		}
		if j%7 == 0 {
			c.step(dispatched.Add(6*time.Minute), "reassign", "dispatched", func(r *analytics.CaseRow) { r.Department = departments[(j+1)%3] })
		}
		if j%6 == 4 {
			continue
		}
		accepted := dispatched.Add(time.Duration(30+j*3) * time.Minute)
		c.step(accepted, "accept", "accepted", func(r *analytics.CaseRow) { r.Accepted = accepted.UTC() })
		if j%6 == 3 {
			continue
		}
		resolved := accepted.Add(2*time.Hour + time.Duration(j*5)*time.Minute)
		c.step(resolved, "resolve", "resolved", func(r *analytics.CaseRow) {
			r.Resolved = resolved.UTC()
			r.Outcome = "mediated"
			if j%5 == 3 || j%10 == 0 {
				r.Outcome = "unsubstantiated"
			}
			r.Due = accepted.Add(2 * time.Hour).UTC()
			r.Late = resolved.After(accepted.Add(2 * time.Hour))
			if j%5 == 2 {
				r.Escalations = 1
			}
			if r.Source == "alert" {
				r.AlertCount++ // merged a repeat
			}
		})
		if j == 2 {
			// Dissatisfied: re-opened and resolved again, late.
			c.step(resolved.Add(time.Hour), "follow_up", "accepted", func(r *analytics.CaseRow) { r.Satisfaction = "dissatisfied" })
			again := resolved.Add(30 * time.Hour)
			c.step(again, "resolve", "resolved", func(r *analytics.CaseRow) {
				r.Resolved, r.Due, r.Late = again.UTC(), resolved.Add(24*time.Hour).UTC(), true
			})
		}
		if j%6 > 1 {
			continue
		}
		c.step(resolved.Add(3*time.Hour), "follow_up", "followed_up", func(r *analytics.CaseRow) {
			r.Satisfaction = []string{"satisfied", "basically", "dissatisfied", "satisfied"}[j%4]
		})
		c.step(resolved.Add(4*time.Hour), "close", "closed", func(r *analytics.CaseRow) { r.Closed = resolved.Add(4 * time.Hour).UTC() })
	}
}

// health: every minute of Monday of the second week for the five
// cameras (a sample's minute is the end of its window). cam-3 is down
// 02:00-03:59 local, cam-5 half online 01:40-02:39, cam-2 frozen
// 05:00-05:59, cam-4 degraded and blurry 10:00-10:29 and degraded
// 11:00-11:09.
func (f *fixture) health() {
	from := start.AddDate(0, 0, 7)
	for m := range 24 * 60 {
		at := from.Add(time.Duration(m+1) * time.Minute)
		mod := m % (24 * 60)
		for _, c := range cameraPlaces {
			online, faults := 60.0, []string(nil)
			switch {
			case c.id == "cam-3" && mod >= 120 && mod < 240:
				online = 0
			case c.id == "cam-5" && mod >= 100 && mod < 160:
				online = 30
			case c.id == "cam-2" && mod >= 300 && mod < 360:
				faults = []string{"video.frozen"}
			case c.id == "cam-4" && mod >= 600 && mod < 630:
				faults = []string{"camera.degraded", "video.blurry"}
			case c.id == "cam-4" && mod >= 660 && mod < 670:
				faults = []string{"camera.degraded"}
			}
			f.batch.Health = append(f.batch.Health, analytics.HealthRow{
				ID: c.id + "@" + strconv.FormatInt(at.Unix(), 10), Camera: c.id, Minute: at.UTC(), Region: c.region, Grid: c.grid,
				Vendor: c.vendor, WindowSeconds: 60, OnlineSeconds: online, FPS: 25, Faults: faults, State: "online",
				EventID: "h-" + strconv.Itoa(len(f.batch.Health)),
			})
		}
	}
}

// load opens a store of driver holding the fixture and the questions on it.
func load(t testing.TB, driver string, f fixture) *analytics.Questions {
	t.Helper()
	cfg := analyticstest.Config(t, driver)
	s := analyticstest.OpenConfig(t, cfg)
	f.insert(t, s)
	return analytics.NewQuestions(cfg, s, prometheus.NewRegistry())
}

// insert writes all the fixture's rows into s in one batch (a copy of the
// fixture's, which it returns).
func (f fixture) insert(t testing.TB, s analytics.Store) analytics.Batch {
	t.Helper()
	b := analytics.Batch{Events: slices.Clone(f.batch.Events), Cases: slices.Clone(f.batch.Cases), Health: slices.Clone(f.batch.Health)}
	if _, err := s.Insert(context.Background(), &b, false); err != nil {
		t.Fatalf("load the fixture into %s: %v", s.Driver(), err)
	}
	return b
}

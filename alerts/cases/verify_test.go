package cases

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sharpeye/configs/conf"
	"sharpeye/ingest/event"
)

// alertCase opens an alert case of risk at the fixture's clock.
func (f *fixture) alertCase(key string, risk int) *Case {
	f.t.Helper()
	c, out, err := f.s.Alert(context.Background(), Alert{Rule: "smoke-high", GroupKey: key, Category: "public_safety", Title: "卫生室烟感超标",
		Risk: risk, RiskPerRepeat: 45, Events: []*event.Event{smokeEvent(f.clock.now(), "g-03", 0.8)}})
	if err != nil || out != Opened {
		f.t.Fatalf("alert: %v %v", out, err)
	}
	return c
}

// verifyTimers returns the case's same-day verification timers.
func (f *fixture) verifyTimers(id string) []Timer {
	f.t.Helper()
	var out []Timer
	for _, tm := range f.detail(id).Timers {
		if tm.Kind == TimerVerify {
			out = append(out, tm)
		}
	}
	return out
}

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}

func TestVerifySameDayDeadline(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		for _, tc := range []struct {
			name     string
			opened   time.Time
			deadline time.Time
		}{
			{"morning: the end of the day", time.Date(2026, 11, 21, 10, 0, 0, 0, shanghai), time.Date(2026, 11, 22, 0, 0, 0, 0, shanghai)},
			{"late: at least min", time.Date(2026, 11, 21, 23, 30, 0, 0, shanghai), time.Date(2026, 11, 22, 1, 30, 0, 0, shanghai)},
			{"22:00: the end of the day is exactly min", time.Date(2026, 11, 21, 22, 0, 0, 0, shanghai), time.Date(2026, 11, 22, 0, 0, 0, 0, shanghai)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f := newFixture(t, driver)
				f.clock.t = tc.opened
				c := f.alertCase("k", 90)
				if c.Colour != Red {
					t.Fatalf("colour %s", c.Colour)
				}
				tms := f.verifyTimers(c.ID)
				if len(tms) != 1 || !tms[0].Due.Equal(tc.deadline) || tms[0].Stage != StageAssess {
					t.Fatalf("verify timers %+v, want one due %v", tms, tc.deadline)
				}
				// Not red: no same-day verification.
				if o := f.alertCase("orange", 60); len(f.verifyTimers(o.ID)) != 0 {
					t.Fatal("an orange case got a same-day verification deadline")
				}
			})
		}
	})
}

// TestVerifiedInTimeNeverFires: a commander assessing the red case
// verifies it; the deadline is cancelled and never fires.
func TestVerifiedInTimeNeverFires(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		f.clock.t = time.Date(2026, 11, 21, 10, 0, 0, 0, shanghai)
		c := f.alertCase("k", 90)
		f.clock.add(time.Hour)
		c = f.act(commander, f.detail(c.ID).Case, "assess", ActionRequest{Note: "已电话核实，确有烟雾"})
		if c.Verified.IsZero() || c.VerifiedBy != commander.Username {
			t.Fatalf("verified %v by %q", c.Verified, c.VerifiedBy)
		}
		tms := f.verifyTimers(c.ID)
		if len(tms) != 1 || !tms[0].Cancelled {
			t.Fatalf("verify timers after verification: %+v", tms)
		}
		f.clock.add(48 * time.Hour)
		if _, err := f.s.FireDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		d := f.detail(c.ID)
		if got := historyActions(d); slices.Contains(got, "verify_overdue") {
			t.Fatalf("a verified case was urged for verification: %v", got)
		}
		if h := d.History[len(d.History)-1]; h.Action == "assess" && h.Data["verified"] != true {
			t.Fatalf("the assessment does not say it verified: %+v", h)
		}
		if tm := f.verifyTimers(c.ID)[0]; !tm.Fired.IsZero() {
			t.Fatalf("the cancelled deadline fired: %+v", tm)
		}
	})
}

// TestUnverifiedFiresOnce: past the deadline the verification fires once
// with two nodes firing timers, counts as an urge and says why.
func TestUnverifiedFiresOnce(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		f.clock.t = time.Date(2026, 11, 21, 10, 0, 0, 0, shanghai)
		c := f.alertCase("k", 90)
		other := newFixtureOn(t, f.db, f.clock)
		ctx := context.Background()
		fireBoth := func() {
			var wg sync.WaitGroup
			for _, s := range []*Service{f.s, other.s} {
				wg.Go(func() {
					if _, err := s.FireDue(ctx); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
		}
		f.clock.t = time.Date(2026, 11, 21, 23, 59, 0, 0, shanghai)
		fireBoth()
		if got := historyActions(f.detail(c.ID)); slices.Contains(got, "verify_overdue") {
			t.Fatalf("fired before the end of the day: %v", got)
		}
		f.clock.t = time.Date(2026, 11, 22, 0, 0, 1, 0, shanghai)
		fireBoth()
		fireBoth()
		d := f.detail(c.ID)
		got := historyActions(d)
		if count(got, "verify_overdue") != 1 {
			t.Fatalf("history %v: want verify_overdue once", got)
		}
		// Counted as an urge, with the playbook ladder's own urges.
		if d.UrgeCount != count(got, "urged")+1 {
			t.Fatalf("urge count %d with %d ladder urges", d.UrgeCount, count(got, "urged"))
		}
		for _, h := range d.History {
			if h.Action == "verify_overdue" && (!strings.Contains(h.Note, "不过夜核查") || h.Actor != "sharpeye") {
				t.Fatalf("verify entry %+v", h)
			}
		}
		if tm := f.verifyTimers(c.ID)[0]; tm.Fired.IsZero() || tm.Cancelled {
			t.Fatalf("the deadline's timer: %+v", tm)
		}
		// A late verification is still recorded, and plans nothing new.
		c = f.act(commander, d.Case, "assess", ActionRequest{})
		if c.Verified.IsZero() || len(f.verifyTimers(c.ID)) != 1 {
			t.Fatalf("late verification: %v, %d timers", c.Verified, len(f.verifyTimers(c.ID)))
		}
	})
}

// TestRaisedToRedPlansVerify: a yellow alert case raised to red by its
// repeats gets the deadline of the day it became red.
func TestRaisedToRedPlansVerify(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		f.clock.t = time.Date(2026, 11, 21, 10, 0, 0, 0, shanghai)
		c := f.alertCase("k", 40)
		if c.Colour != Yellow || len(f.verifyTimers(c.ID)) != 0 {
			t.Fatalf("yellow case: %s with %d verify timers", c.Colour, len(f.verifyTimers(c.ID)))
		}
		f.clock.t = time.Date(2026, 11, 21, 15, 0, 0, 0, shanghai)
		c2, out, err := f.s.Alert(context.Background(), Alert{Rule: "smoke-high", GroupKey: "k", Category: "public_safety", Risk: 40,
			RiskPerRepeat: 45, Repeat: true, Events: []*event.Event{smokeEvent(f.clock.now(), "g-03", 0.9)}})
		if err != nil || out != Attached || c2.Colour != Red {
			t.Fatalf("repeat: %v %v %s", out, err, c2.Colour)
		}
		tms := f.verifyTimers(c.ID)
		if want := time.Date(2026, 11, 22, 0, 0, 0, 0, shanghai); len(tms) != 1 || !tms[0].Due.Equal(want) {
			t.Fatalf("verify timers %+v, want one due %v", tms, want)
		}
	})
}

// TestVerifyAfterRestart: a new service on the same database (a restart)
// fires the deadline once.
func TestVerifyAfterRestart(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		f.clock.t = time.Date(2026, 11, 21, 23, 30, 0, 0, shanghai)
		c := f.alertCase("k", 95)
		restarted := newFixtureOn(t, f.db, f.clock)
		f.clock.t = time.Date(2026, 11, 22, 1, 31, 0, 0, shanghai)
		ctx := context.Background()
		for range 2 {
			if _, err := restarted.s.FireDue(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got := historyActions(restarted.detail(c.ID)); count(got, "verify_overdue") != 1 {
			t.Fatalf("after restart: %v", got)
		}
		if slices.ContainsFunc(restarted.changes, func(ch Change) bool { return ch.Type == "case.verify_overdue" }) == false {
			t.Fatal("the overdue verification was not published")
		}
	})
}

// TestRegisteredRedVerifiedByDismissal: a red case registered at the
// window needs verifying too; dismissing it as a false report verifies it.
func TestRegisteredRedVerifiedByDismissal(t *testing.T) {
	forDrivers(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		in := dispute()
		in.Colour, in.Reason = Red, "当事人扬言报复"
		c, err := f.s.Create(context.Background(), clerk, in)
		if err != nil {
			t.Fatal(err)
		}
		if tms := f.verifyTimers(c.ID); len(tms) != 1 || tms[0].Cancelled {
			t.Fatalf("registered red case: verify timers %+v", tms)
		}
		c = f.act(commander, f.detail(c.ID).Case, "dismiss", ActionRequest{Note: "经核查系误报"})
		if tms := f.verifyTimers(c.ID); !tms[0].Cancelled || c.Verified.IsZero() {
			t.Fatalf("after dismissal: %+v verified %v", tms, c.Verified)
		}
	})
}

// TestConfigVerifyAndReadingsRefused: bad values of the new keys are
// refused naming the key.
func TestConfigVerifyAndReadingsRefused(t *testing.T) {
	for _, tc := range []struct{ yaml, key string }{
		{"verify_same_day: {timezone: Mars/Olympus}", "verify_same_day.timezone"},
		{"verify_same_day: {timezone: ''}", "verify_same_day.timezone"},
		{"verify_same_day: {min: 25h}", "verify_same_day.min"},
		{"readings: {before: -1m}", "readings.before"},
		{"readings: {max_devices: 0}", "readings.max_devices"},
		{"readings: {max_points: 1}", "readings.max_points"},
		{"readings: {retry: 10ms}", "readings.retry"},
		{"readings: {attempts: 0}", "readings.attempts"},
		{"readings: {timeout: 0s}", "readings.timeout"},
	} {
		cfg := Defaults()
		err := conf.Load(&cfg, []byte(tc.yaml), "cases.yml", nil)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: %v, want an error naming %s", tc.yaml, err, tc.key)
		}
	}
	cfg := Defaults()
	if err := conf.Load(&cfg, []byte("verify_same_day: {timezone: Asia/Urumqi, min: 0s}"), "cases.yml", nil); err != nil {
		t.Fatalf("a good section refused: %v", err)
	}
}

package analytics_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/analyticstest"
	"sharpeye/alerts/cases"
	"sharpeye/ingest/event"
)

// telemetry is a reading of device id (kind smoke) in grid at at.
func telemetry(kind event.SourceKind, id, typ, grid string, at time.Time, smoke float64) *event.Event {
	e := event.New(kind, id, typ)
	e.Time = event.NewTime(at)
	e.Source.Name = id + " 烟感"
	e.Location = event.Location{Region: xinzhuang, Grid: grid}
	e.SetString("device_kind", "smoke")
	e.SetNumber("smoke", smoke)
	e.SetBool("tamper", smoke > 0.5)
	e.SetString("status", "ok")
	return e
}

// TestReadingsAroundAnAlert: the readings of the named devices and of the
// grid's devices within the range come back, to the millisecond, earliest
// first, with their values by type; other grids, other event types,
// cameras and readings outside the range do not; a replayed batch is not
// read twice.
func TestReadingsAroundAnAlert(t *testing.T) {
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			store := analyticstest.Open(t, driver)
			at := time.Date(2026, 11, 21, 14, 40, 0, 500e6, shanghai)
			from, to := at.Add(-10*time.Minute), at.Add(5*time.Minute)
			ms := time.Millisecond
			in := []*event.Event{
				telemetry(event.SourceDevice, "smoke-1", "telemetry", "xz-01", from.Add(-ms), 0.01),          // just before
				telemetry(event.SourceDevice, "smoke-1", "telemetry", "xz-01", from, 0.02),                   // the first instant
				telemetry(event.SourceDevice, "smoke-1", "telemetry", "xz-01", at, 0.9),                      // the alert
				telemetry(event.SourceDevice, "smoke-1", "sensor.smoke", "xz-01", at, 0.9),                   // not telemetry
				telemetry(event.SourceDevice, "smoke-2", "telemetry", "xz-01", at.Add(time.Minute), 0.3),     // same grid
				telemetry(event.SourceAnalyser, "box-1", "telemetry", "hq-01", at.Add(2*time.Minute), 0.1),   // named, elsewhere
				telemetry(event.SourceDevice, "smoke-3", "telemetry", "hq-01", at, 0.2),                      // another grid
				telemetry(event.SourceCamera, "cam-1", "telemetry", "xz-01", at, 0.2),                        // a camera
				telemetry(event.SourceDevice, "smoke-1", "telemetry", "xz-01", to, 0.05),                     // the last instant
				telemetry(event.SourceDevice, "smoke-1", "telemetry", "xz-01", to.Add(ms), 0.04),             // just after
				telemetry(event.SourceDevice, "smoke-2", "telemetry", "xz-01", to.Add(time.Second), 0.04),    // after
				telemetry(event.SourceDevice, "smoke-2", "telemetry", "xz-01", from.Add(-time.Second), 0.04), // before
			}
			var b analytics.Batch
			for _, e := range in {
				b.Events = append(b.Events, analytics.EventFromEvent(e))
			}
			if _, err := store.Insert(ctx, &b, false); err != nil {
				t.Fatal(err)
			}
			if n, err := store.Insert(ctx, &b, true); err != nil || n.Events != 0 {
				t.Fatalf("replayed batch: %d new events, %v", n.Events, err)
			}
			r := analytics.NewReadings(store)
			q := cases.ReadingsQuery{Grid: "xz-01", Sources: []string{"smoke-1", "box-1"}, From: from, To: to, Limit: 100}
			got, err := r.Readings(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			want := []*event.Event{in[1], in[2], in[4], in[5], in[8]}
			var gotIDs, wantIDs []string
			for _, x := range got {
				gotIDs = append(gotIDs, x.EventID)
			}
			for _, e := range want {
				wantIDs = append(wantIDs, e.ID.String())
			}
			if !slices.Equal(gotIDs, wantIDs) {
				t.Fatalf("readings %v\nwant     %v", gotIDs, wantIDs)
			}
			alert := got[1]
			if !alert.Time.Equal(at) || alert.Source != "smoke-1" || alert.SourceKind != "device" || alert.Grid != "xz-01" ||
				alert.DeviceKind != "smoke" || alert.Name != "smoke-1 烟感" {
				t.Fatalf("the alert's reading: %+v", alert)
			}
			if len(alert.Values) != 3 || alert.Values["smoke"] != 0.9 || alert.Values["tamper"] != true || alert.Values["status"] != "ok" {
				t.Fatalf("values %v, want smoke 0.9, tamper true, status ok", alert.Values)
			}
			if got[3].SourceKind != "analyser" || got[3].Grid != "hq-01" {
				t.Fatalf("the named analyser in another grid: %+v", got[3])
			}
			// The limit keeps the earliest.
			q.Limit = 2
			if got, err := r.Readings(ctx, q); err != nil || len(got) != 2 || got[0].EventID != wantIDs[0] || got[1].EventID != wantIDs[1] {
				t.Fatalf("limited to 2: %d readings, %v", len(got), err)
			}
			// Only the named devices when there is no grid, nothing when neither.
			q.Grid, q.Limit = "", 100
			if got, err := r.Readings(ctx, q); err != nil || len(got) != 4 {
				t.Fatalf("without the grid: %d readings, %v (want 4 of smoke-1 and box-1)", len(got), err)
			}
			q.Sources = nil
			if got, err := r.Readings(ctx, q); err != nil || len(got) != 0 {
				t.Fatalf("neither grid nor devices: %d readings, %v", len(got), err)
			}
		})
	}
}

// BenchmarkReadings: one alert's lookup in a day of telemetry from 200
// devices in 20 grids, one reading each 90 s (192,000 events); the window
// holds 10 readings of each of the grid's 10 devices.
func BenchmarkReadings(b *testing.B) {
	ctx := context.Background()
	store := analyticstest.Open(b, analytics.SQLite)
	day := time.Date(2026, 11, 21, 0, 0, 0, 0, shanghai)
	var batch analytics.Batch
	for i := range 960 {
		at := day.Add(time.Duration(i) * 90 * time.Second)
		for d := range 200 {
			e := telemetry(event.SourceDevice, fmt.Sprintf("smoke-%03d", d), "telemetry", fmt.Sprintf("g-%02d", d%20), at, 0.1)
			batch.Events = append(batch.Events, analytics.EventFromEvent(e))
		}
		if len(batch.Events) >= 20000 {
			if _, err := store.Insert(ctx, &batch, false); err != nil {
				b.Fatal(err)
			}
			batch.Events = batch.Events[:0]
		}
	}
	if _, err := store.Insert(ctx, &batch, false); err != nil {
		b.Fatal(err)
	}
	r := analytics.NewReadings(store)
	at := day.Add(14 * time.Hour)
	q := cases.ReadingsQuery{Grid: "g-07", Sources: []string{"smoke-007"}, From: at.Add(-10 * time.Minute), To: at.Add(5 * time.Minute), Limit: 24000}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		got, err := r.Readings(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		n = len(got)
	}
	b.ReportMetric(float64(n), "readings/op")
}

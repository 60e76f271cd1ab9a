package analytics_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/analyticstest"
	"sharpeye/alerts/cases"
	"sharpeye/ingest/event"
)

// fullEvent sets every field of the schema.
func fullEvent(i int, at time.Time) *event.Event {
	e := event.New(event.SourceAnalyser, fmt.Sprintf("aibox-%d", i), "detection.person")
	e.ID = event.NewIDAt(at)
	e.Time = event.NewTime(at.Add(123 * time.Millisecond))
	e.Source.Name = "新庄村口东 AI 盒"
	e.Severity = event.SeverityMajor
	lat, lon := 30.88+float64(i)/1000, 114.38
	e.Location = event.Location{Region: "黄陂区/王家河街道/新庄村", Grid: "xz-03", Lat: &lat, Lon: &lon}
	e.SetString("camera", "cam-0042")
	e.SetString("class", "person")
	e.SetNumber("confidence", 0.87)
	e.SetNumber("count", float64(i))
	e.SetBool("night", true)
	e.Tags = []string{"river", "school"}
	snap := event.NewTime(at)
	e.Evidence = []event.Evidence{
		{Kind: event.EvidenceSnapshot, Ref: "blob:ab12", ContentType: "image/jpeg", SHA256: strings.Repeat("ab", 32), Time: &snap},
		{Kind: event.EvidenceURL, Ref: "https://sharpeye.example/play/cam-0042"},
	}
	e.Key = "grid:xz-03"
	return e
}

func change(id string, seq int, at time.Time, action string, to cases.State) *cases.Change {
	c := &cases.Case{ID: id, Number: "2026-" + id, State: to, Title: "t", Category: "public_safety", Colour: cases.Red,
		Risk: 80, Source: cases.FromAlert, Rule: "smoke", Region: "黄陂区/王家河街道", Grid: "xz-03", Level: cases.Village,
		Department: "fire", CoDepartments: []string{"town"}, AlertCount: 3, UrgeCount: 1, Created: at.Add(-time.Hour),
		Updated: at, Version: int64(seq)}
	return &cases.Change{Case: c, Entry: cases.HistoryEntry{Seq: seq, At: at, Actor: "li", Role: "commander", Action: action, To: to},
		Type: "case." + action, Due: at.Add(-time.Minute)}
}

// readEvent reads one event row back from either store.
func readEvent(t *testing.T, s analytics.Store, id string) analytics.EventRow {
	t.Helper()
	ctx := context.Background()
	var r analytics.EventRow
	var ms, schema, hasLoc int
	switch s.Driver() {
	case analytics.ClickHouse:
		var ts, received time.Time
		var bools []uint8
		err := s.DB().QueryRowContext(ctx, `SELECT id, time, ms, received, schema, type, severity, source_kind, source_id, source_name,
			region, grid, has_location, lat, lon, camera, device_kind, str_keys, str_values, num_keys, num_values, bool_keys, bool_values,
			tags, evidence_kinds, evidence_refs, evidence_types, evidence_sha256, evidence_times, key FROM events WHERE id = ?`, id).Scan(
			&r.ID, &ts, &ms, &received, &schema, &r.Type, &r.Severity, &r.SourceKind, &r.SourceID, &r.SourceName,
			&r.Region, &r.Grid, &hasLoc, &r.Lat, &r.Lon, &r.Camera, &r.DeviceKind, &r.StrKeys, &r.StrValues, &r.NumKeys, &r.NumValues,
			&r.BoolKeys, &bools, &r.Tags, &r.EvKinds, &r.EvRefs, &r.EvTypes, &r.EvSHA256, &r.EvTimes, &r.Key)
		if err != nil {
			t.Fatalf("read event %s: %v", id, err)
		}
		r.Time = ts.Add(time.Duration(ms) * time.Millisecond).UTC()
		for _, b := range bools {
			r.BoolValues = append(r.BoolValues, b == 1)
		}
	case analytics.SQLite:
		var ts int64
		var attrs, tags, evidence string
		err := s.DB().QueryRowContext(ctx, `SELECT id, time, ms, schema, type, severity, source_kind, source_id, source_name,
			region, grid, has_location, lat, lon, camera, device_kind, attributes, tags, evidence, key FROM events WHERE id = ?`, id).Scan(
			&r.ID, &ts, &ms, &schema, &r.Type, &r.Severity, &r.SourceKind, &r.SourceID, &r.SourceName,
			&r.Region, &r.Grid, &hasLoc, &r.Lat, &r.Lon, &r.Camera, &r.DeviceKind, &attrs, &tags, &evidence, &r.Key)
		if err != nil {
			t.Fatalf("read event %s: %v", id, err)
		}
		r.Time = time.Unix(ts, int64(ms)*1e6).UTC()
		// Rebuild through the event: attributes are one JSON object here.
		e := &event.Event{Attributes: map[string]any{}}
		if err := json.Unmarshal([]byte(attrs), &e.Attributes); err != nil {
			t.Fatal(err)
		}
		flat := analytics.EventFromEvent(e)
		r.StrKeys, r.StrValues, r.NumKeys, r.NumValues, r.BoolKeys, r.BoolValues = flat.StrKeys, flat.StrValues, flat.NumKeys, flat.NumValues, flat.BoolKeys, flat.BoolValues
		if err := json.Unmarshal([]byte(tags), &r.Tags); err != nil {
			t.Fatal(err)
		}
		var evs []struct {
			Kind, Ref, SHA256 string
			ContentType       string `json:"content_type"`
			Time              int64  `json:"time_ms"`
		}
		if err := json.Unmarshal([]byte(evidence), &evs); err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			r.EvKinds, r.EvRefs, r.EvTimes = append(r.EvKinds, ev.Kind), append(r.EvRefs, ev.Ref), append(r.EvTimes, ev.Time)
			r.EvTypes, r.EvSHA256 = append(r.EvTypes, ev.ContentType), append(r.EvSHA256, ev.SHA256)
		}
	}
	r.Schema, r.HasLocation = schema, hasLoc == 1
	if len(r.Tags) == 0 {
		r.Tags = nil
	}
	return r
}

func count(t *testing.T, db *sql.DB, q string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestStoreRoundTripAndReplay(t *testing.T) {
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			s := analyticstest.Open(t, driver)
			at := time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)
			var b analytics.Batch
			var sent []*event.Event
			for i := range 50 {
				e := fullEvent(i, at.Add(time.Duration(i)*time.Minute))
				sent = append(sent, e)
				b.Events = append(b.Events, analytics.EventFromEvent(e))
			}
			b.Cases = append(b.Cases, analytics.CaseFromChange(change("c1", 1, at, "register", cases.Registered)),
				analytics.CaseFromChange(change("c1", 2, at.Add(time.Hour), "resolve", cases.Resolved)))
			h := event.New(event.SourceCamera, "cam-0042", event.TypeCameraHealth)
			h.Time = event.NewTime(at)
			h.SetNumber("online_seconds", 42)
			h.SetNumber("window_seconds", 60)
			h.SetString("faults", "video.frozen,camera.degraded")
			hr, err := analytics.HealthFromEvent(h)
			if err != nil {
				t.Fatal(err)
			}
			b.Health = append(b.Health, hr)

			replay := analytics.Batch{Events: append([]analytics.EventRow{}, b.Events...), Cases: append([]analytics.CaseRow{}, b.Cases...), Health: append([]analytics.HealthRow{}, b.Health...)}
			n, err := s.Insert(ctx, &b, true)
			if err != nil {
				t.Fatal(err)
			}
			if n.Events != 50 || n.Cases != 2 || n.Health != 1 || n.Skipped != 0 {
				t.Fatalf("inserted %+v, want 50 events, 2 case events, 1 health row", n)
			}
			// Every field intact.
			for _, e := range sent {
				got := readEvent(t, s, e.ID.String())
				back, err := got.Event()
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(back, e) {
					a, _ := json.Marshal(back)
					w, _ := json.Marshal(e)
					t.Fatalf("event came back changed:\n got %s\nwant %s", a, w)
				}
			}
			// The replayed batch (a crash before the commit) counts once.
			n, err = s.Insert(ctx, &replay, true)
			if err != nil {
				t.Fatal(err)
			}
			if n.Skipped != 53 || n.Events+n.Cases+n.Health != 0 {
				t.Fatalf("replay inserted %+v, want everything skipped", n)
			}
			if got := count(t, s.DB(), "SELECT count() FROM events"); driver == analytics.ClickHouse && got != 50 {
				t.Fatalf("%d events stored, want 50", got)
			}
			if got := count(t, s.DB(), "SELECT sum(n) FROM events_hourly"); got != 50 {
				t.Fatalf("hourly rollup counts %d events, want 50", got)
			}
			if got := count(t, s.DB(), "SELECT sum(opened) FROM cases_hourly"); got != 1 {
				t.Fatalf("cases rollup counts %d opened, want 1", got)
			}
			if got := count(t, s.DB(), "SELECT sum(minutes) FROM camera_health_hourly"); got != 1 {
				t.Fatalf("camera health rollup counts %d minutes, want 1", got)
			}
			if got := count(t, s.DB(), "SELECT count(*) FROM (SELECT case_id FROM cases_current GROUP BY case_id)"); got != 1 {
				t.Fatalf("cases_current holds %d cases, want 1", got)
			}
			if got := count(t, s.DB(), "SELECT count(*) FROM case_events WHERE late = 1"); got != 2 {
				t.Fatalf("%d late case events, want 2", got)
			}
		})
	}
}

func TestMigrationsTwiceAreANoOp(t *testing.T) {
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			cfg := analyticstest.Config(t, driver)
			s1 := analyticstest.OpenConfig(t, cfg)
			var b analytics.Batch
			b.Events = append(b.Events, analytics.EventFromEvent(fullEvent(1, time.Now().UTC())))
			if _, err := s1.Insert(context.Background(), &b, false); err != nil {
				t.Fatal(err)
			}
			s1.Close()
			s2 := analyticstest.OpenConfig(t, cfg)
			if got := count(t, s2.DB(), "SELECT count(*) FROM events"); got != 1 {
				t.Fatalf("%d events after reopening, want 1", got)
			}
			if ch, ok := s2.(*analytics.CHStore); ok {
				vs, err := ch.Migrations(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for v := 1; v <= analytics.CHMigrations; v++ {
					if vs[v] != 1 {
						t.Errorf("migration %d recorded %d times, want once (all: %v)", v, vs[v], vs)
					}
				}
				if len(vs) != analytics.CHMigrations {
					t.Errorf("migrations recorded %v, want versions 1 to %d once each", vs, analytics.CHMigrations)
				}
			}
		})
	}
}

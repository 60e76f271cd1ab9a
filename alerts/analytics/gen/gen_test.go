package gen_test

import (
	"bytes"
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/gen"
	"sharpeye/alerts/cases"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/event"
)

// small is a county of 300 cameras over a week, with a day of health.
func small() gen.Config {
	c := gen.Defaults()
	c.Days, c.Cameras, c.Devices = 7, 300, 100
	c.EventsPerDay, c.CasesPerDay, c.HealthDays = 20_000, 300, 1
	c.Batch = 5000
	return c
}

// collect runs Generate and returns its batches.
func collect(t testing.TB, cfg gen.Config) []*analytics.Batch {
	t.Helper()
	var out []*analytics.Batch
	if err := gen.Generate(t.Context(), cfg, func(b *analytics.Batch) error {
		out = append(out, b)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func all(bs []*analytics.Batch) analytics.Batch {
	var a analytics.Batch
	for _, b := range bs {
		a.Events = append(a.Events, b.Events...)
		a.Cases = append(a.Cases, b.Cases...)
		a.Health = append(a.Health, b.Health...)
	}
	return a
}

func TestDeterministic(t *testing.T) {
	cfg := small()
	cfg.Days, cfg.HealthDays, cfg.Cameras = 2, 1, 100
	a, b := all(collect(t, cfg)), all(collect(t, cfg))
	if a.Len() == 0 {
		t.Fatal("no rows")
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same configuration made different rows")
	}
	cfg.Seed++
	c := all(collect(t, cfg))
	if reflect.DeepEqual(a.Events[:100], c.Events[:100]) {
		t.Fatal("another seed made the same rows")
	}
	if !reflect.DeepEqual(gen.County(cfg), gen.County(cfg)) {
		t.Fatal("the same configuration made different counties")
	}
}

func TestSizesAndOrder(t *testing.T) {
	cfg := small()
	bs := collect(t, cfg)
	rows := all(bs)
	perDay := func(n int) float64 { return float64(n) / float64(cfg.Days) }
	within := func(what string, got, want float64) {
		t.Helper()
		if got < 0.9*want || got > 1.1*want {
			t.Errorf("%s: %.0f a day, want %.0f ± 10 %%", what, got, want)
		} else {
			t.Logf("%s: %.0f a day (configured %.0f)", what, got, want)
		}
	}
	within("events", perDay(len(rows.Events)), float64(cfg.EventsPerDay))
	opened := 0
	for _, r := range rows.Cases {
		if r.Seq == 1 {
			opened++
		}
	}
	within("cases opened", perDay(opened), float64(cfg.CasesPerDay))
	if want := cfg.Cameras * 1440 * cfg.HealthDays; len(rows.Health) != want {
		t.Errorf("%d camera health rows, want %d (cameras × minutes)", len(rows.Health), want)
	}
	t.Logf("case events per case: %.1f", float64(len(rows.Cases))/float64(opened))

	// Batches in time order, and within a batch each table in order.
	begin, end := cfg.Begin(), cfg.End()
	var prevMax time.Time
	for i, b := range bs {
		times := func(yield func(time.Time) bool) {
			for _, r := range b.Events {
				yield(r.Time)
			}
			for _, r := range b.Cases {
				yield(r.Time)
			}
			for _, r := range b.Health {
				yield(r.Minute)
			}
		}
		var lo, hi time.Time
		for at := range times {
			if lo.IsZero() || at.Before(lo) {
				lo = at
			}
			if hi.Before(at) {
				hi = at
			}
		}
		if lo.Before(prevMax) {
			t.Fatalf("batch %d starts at %v, before the previous batch's last row at %v", i, lo, prevMax)
		}
		if lo.Before(begin) || hi.After(end) {
			t.Fatalf("batch %d spans %v to %v, outside the history %v to %v", i, lo, hi, begin, end)
		}
		prevMax = hi
		for j := 1; j < len(b.Events); j++ {
			if b.Events[j].Time.Before(b.Events[j-1].Time) {
				t.Fatalf("batch %d: events out of order at %d", i, j)
			}
		}
		for j := 1; j < len(b.Cases); j++ {
			if b.Cases[j].Time.Before(b.Cases[j-1].Time) {
				t.Fatalf("batch %d: case events out of order at %d", i, j)
			}
		}
		if i < len(bs)-1 && b.Len() < cfg.Batch {
			t.Fatalf("batch %d holds %d rows, want at least %d", i, b.Len(), cfg.Batch)
		}
	}

	// Every category, source and event type turns up.
	seen := map[string]bool{}
	for _, r := range rows.Cases {
		seen["category "+r.Category] = true
		seen["source "+r.Source] = true
		seen["action "+r.Action] = true
	}
	for _, r := range rows.Events {
		seen["type "+r.Type] = true
	}
	var want []string
	for _, pb := range cases.Defaults().Playbooks {
		want = append(want, "category "+pb.Category)
	}
	for _, s := range []string{"alert", "window", "hotline", "grid", "police"} {
		want = append(want, "source "+s)
	}
	for _, a := range []string{"registered", "assess", "dispatch", "accept", "resolve", "follow_up", "close", "dismiss",
		"merge", "merged_in", "reminded", "urged", "supervised", "risk_warning", "alert_repeated"} {
		want = append(want, "action "+a)
	}
	for _, typ := range []string{"motion", "detection.person", "detection.vehicle", "detection.crowd", "detection.fall", "telemetry",
		"sensor.alarm_button.pressed", "sensor.door.forced", "camera.offline", "camera.online", "video.frozen", "video.frozen.cleared",
		"camera.degraded", "device.offline", "device.online"} {
		want = append(want, "type "+typ)
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("no %s in a week", w)
		}
	}
}

// TestMessagesRoundTrip checks the bus messages: every event decodes
// (event.Decode validates it) and encodes back to the same bytes, and the
// sink turns the messages into exactly the rows Generate makes.
func TestMessagesRoundTrip(t *testing.T) {
	cfg := small()
	cfg.Days, cfg.HealthDays, cfg.EventsPerDay, cfg.CasesPerDay = 1, 1, 10_000, 300
	cfg.Cameras = 60 // 86,400 health samples
	var msgs []bus.Message
	if err := gen.Messages(t.Context(), cfg, func(m []bus.Message) error {
		msgs = append(msgs, m...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if m.Topic != bus.TopicEvents {
			continue
		}
		e, err := event.Decode(m.Value)
		if err != nil {
			t.Fatalf("message %d does not decode: %v\n%s", i, err, m.Value)
		}
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
		again, err := e.Encode()
		if err != nil || !bytes.Equal(again, m.Value) {
			t.Fatalf("message %d encodes differently after decoding (%v):\n%s\n%s", i, err, m.Value, again)
		}
		if m.Key != e.PartitionKey() {
			t.Fatalf("message %d has key %q, want %q", i, m.Key, e.PartitionKey())
		}
	}
	fromBus, bad := analytics.FromMessages(msgs)
	if len(bad) > 0 {
		t.Fatalf("%d messages rejected by the sink, first: %s", len(bad), bad[0].Reason)
	}
	rows := all(collect(t, cfg))
	if len(fromBus.Events) != len(rows.Events) || len(fromBus.Cases) != len(rows.Cases) || len(fromBus.Health) != len(rows.Health) {
		t.Fatalf("the bus gives %d/%d/%d rows, Generate %d/%d/%d", len(fromBus.Events), len(fromBus.Cases), len(fromBus.Health),
			len(rows.Events), len(rows.Cases), len(rows.Health))
	}
	for i := range rows.Events {
		a, b := rows.Events[i], fromBus.Events[i]
		a.Received, a.Partition, a.Offset = time.Time{}, 0, 0
		b.Received, b.Partition, b.Offset = time.Time{}, 0, 0
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("event %d differs through the bus:\n%+v\n%+v", i, a, b)
		}
	}
	for i := range rows.Cases {
		a, b := rows.Cases[i], fromBus.Cases[i]
		a.Partition, a.Offset, b.Partition, b.Offset = 0, 0, 0, 0
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("case event %d differs through the bus:\n%+v\n%+v", i, a, b)
		}
	}
	for i := range rows.Health {
		a, b := rows.Health[i], fromBus.Health[i]
		a.Partition, a.Offset, b.Partition, b.Offset = 0, 0, 0, 0
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("health row %d differs through the bus:\n%+v\n%+v", i, a, b)
		}
	}
}

// transitions are the state changes the case workflow makes.
var transitions = map[[2]string]bool{
	{"", "registered"}: true, {"registered", "assessed"}: true, {"assessed", "dispatched"}: true,
	{"dispatched", "accepted"}: true, {"accepted", "resolved"}: true, {"resolved", "followed_up"}: true,
	{"followed_up", "closed"}: true, {"resolved", "closed"}: true, {"resolved", "dispatched"}: true,
	{"accepted", "dispatched"}: true, {"registered", "closed"}: true, {"assessed", "closed"}: true,
	{"dispatched", "closed"}: true, {"accepted", "closed"}: true,
}

func TestCaseHistories(t *testing.T) {
	cfg := small()
	cfg.HealthDays = 0
	rows := all(collect(t, cfg))
	byCase := map[string][]analytics.CaseRow{}
	var order []string
	for _, r := range rows.Cases {
		if _, ok := byCase[r.CaseID]; !ok {
			order = append(order, r.CaseID)
		}
		byCase[r.CaseID] = append(byCase[r.CaseID], r)
	}
	late, merged, numbers := 0, 0, map[string]bool{}
	prevNumber := ""
	for _, id := range order {
		h := byCase[id]
		first := h[0]
		if first.Seq != 1 || first.Action != "registered" || first.State != "registered" {
			t.Fatalf("case %s starts with seq %d %s (%s)", id, first.Seq, first.Action, first.State)
		}
		if numbers[first.Number] || first.Number <= prevNumber {
			t.Fatalf("case %s has number %q after %q: numbers must be unique and follow the order of opening", id, first.Number, prevNumber)
		}
		numbers[first.Number], prevNumber = true, first.Number
		state := ""
		for i, r := range h {
			if r.Seq != i+1 {
				t.Fatalf("case %s: row %d has seq %d", id, i, r.Seq)
			}
			if i > 0 && !r.Time.After(h[i-1].Time) {
				t.Fatalf("case %s: seq %d at %v is not after seq %d at %v", id, r.Seq, r.Time, h[i-1].Seq, h[i-1].Time)
			}
			if r.Number != first.Number || r.Category != first.Category || !r.Created.Equal(first.Created) {
				t.Fatalf("case %s: seq %d changed its number, category or creation", id, r.Seq)
			}
			if state == "closed" {
				t.Fatalf("case %s: %s after it was closed", id, r.Action)
			}
			if r.FromState != "" && r.FromState != state {
				t.Fatalf("case %s: seq %d %s from %s, but the case was %s", id, r.Seq, r.Action, r.FromState, state)
			}
			if r.ToState != "" {
				if !transitions[[2]string{state, r.ToState}] {
					t.Fatalf("case %s: seq %d %s goes %s → %s, which the workflow does not do", id, r.Seq, r.Action, state, r.ToState)
				}
				if r.ToState != r.State {
					t.Fatalf("case %s: seq %d enters %s but leaves the case %s", id, r.Seq, r.ToState, r.State)
				}
			} else if state != "" && r.State != state {
				t.Fatalf("case %s: seq %d %s changed the state %s → %s without saying so", id, r.Seq, r.Action, state, r.State)
			}
			state = r.State
			if r.Version != int64(r.Seq) {
				t.Fatalf("case %s: seq %d has version %d", id, r.Seq, r.Version)
			}
			if r.Late {
				late++
			}
			switch r.Action {
			case "dispatch":
				if r.Department == "" || r.Dispatched.IsZero() || r.Deadline.IsZero() {
					t.Fatalf("case %s: dispatched without a department or deadline: %+v", id, r)
				}
			case "resolve":
				if r.Outcome == "" || r.Resolved.IsZero() {
					t.Fatalf("case %s: resolved without an outcome", id)
				}
			case "close", "dismiss", "merge":
				if r.Closed.IsZero() || !r.Deadline.IsZero() {
					t.Fatalf("case %s: %s leaves closed %v, deadline %v", id, r.Action, r.Closed, r.Deadline)
				}
			}
			if r.MergedInto != "" && r.Action == "merge" {
				merged++
				into := byCase[r.MergedInto]
				if !slices.ContainsFunc(into, func(x analytics.CaseRow) bool { return x.Action == "merged_in" && x.Time.Equal(r.Time) }) {
					t.Fatalf("case %s merged into %s, which does not record it", id, r.MergedInto)
				}
			}
		}
	}
	if late == 0 || merged == 0 {
		t.Fatalf("%d late actions and %d merges in a week: the history is too tidy", late, merged)
	}
	t.Logf("%d cases, %d case events, %d late, %d merged", len(order), len(rows.Cases), late, merged)

	// False alerts: some rules' cases end not substantiated far more
	// often than others'.
	total, unsub := map[string]int{}, map[string]int{}
	for _, id := range order {
		h := byCase[id]
		last := h[len(h)-1]
		if last.Rule == "" || last.State != "closed" || last.MergedInto != "" {
			continue
		}
		total[last.Rule]++
		if last.Outcome == "unsubstantiated" {
			unsub[last.Rule]++
		}
	}
	rate := func(rule string) float64 { return float64(unsub[rule]) / float64(max(total[rule], 1)) }
	if total["crowd"] < 20 || total["camera-offline"] < 20 || rate("crowd") < 2*rate("camera-offline") {
		t.Errorf("false alerts: crowd %d/%d, camera-offline %d/%d: crowd should be far more often false",
			unsub["crowd"], total["crowd"], unsub["camera-offline"], total["camera-offline"])
	}
}

func TestChronicCamerasAreOftenDown(t *testing.T) {
	cfg := small()
	cfg.Days, cfg.HealthDays, cfg.EventsPerDay, cfg.CasesPerDay = 3, 3, 1000, 50
	a := gen.County(cfg)
	chronic := a.CamerasOf(gen.Chronic)
	if len(chronic) == 0 {
		t.Fatal("no chronic camera in the county")
	}
	online, window := map[string]float64{}, map[string]float64{}
	for _, b := range collect(t, cfg) {
		for _, h := range b.Health {
			online[h.Camera] += h.OnlineSeconds
			window[h.Camera] += h.WindowSeconds
		}
	}
	rate := func(ids []string) []float64 {
		var out []float64
		for _, id := range ids {
			out = append(out, online[id]/window[id])
		}
		slices.Sort(out)
		return out
	}
	ch, healthy := rate(chronic), rate(a.CamerasOf(gen.Healthy))
	mean := 0.0
	for _, r := range ch {
		mean += r / float64(len(ch))
	}
	if mean > 0.8 {
		t.Errorf("chronic cameras online %.1f %% of the time on average, want under 80 %%", 100*mean)
	}
	if med := healthy[len(healthy)/2]; med < 0.98 {
		t.Errorf("healthy cameras' median online rate %.1f %%, want at least 98 %%", 100*med)
	}
	t.Logf("online: chronic %.1f %% (%d cameras), healthy median %.2f %%", 100*mean, len(ch), 100*healthy[len(healthy)/2])
}

func TestHotGridsHeatUp(t *testing.T) {
	cfg := small()
	cfg.Days, cfg.HealthDays, cfg.EventsPerDay, cfg.CasesPerDay = 28, 0, 4000, 100
	hot := gen.County(cfg).HotGrids()
	if len(hot) < 3 {
		t.Fatalf("%d hot grids, want a handful", len(hot))
	}
	begin := cfg.Begin()
	week := func(t time.Time) int { return int(t.Sub(begin) / (7 * 24 * time.Hour)) }
	var inHot, all [4]float64
	for _, b := range collect(t, cfg) {
		for _, r := range b.Events {
			w := week(r.Time)
			all[w]++
			if slices.Contains(hot, r.Grid) {
				inHot[w]++
			}
		}
	}
	first, last := inHot[0]/all[0], inHot[3]/all[3]
	if last < 2.5*first {
		t.Errorf("hot grids' share of events: %.2f %% in the first week, %.2f %% in the last: want a clear rise", 100*first, 100*last)
	}
	t.Logf("hot grids' share of events by week: %.2f %%, %.2f %%, %.2f %%, %.2f %%",
		100*inHot[0]/all[0], 100*inHot[1]/all[1], 100*inHot[2]/all[2], 100*inHot[3]/all[3])
}

func TestCounty(t *testing.T) {
	a := gen.County(gen.Defaults())
	if a.Name != "示范县" || len(a.Townships) != 12 || len(a.Cameras) != 2000 || len(a.Devices) != 500 {
		t.Fatalf("county %s: %d townships, %d cameras, %d devices", a.Name, len(a.Townships), len(a.Cameras), len(a.Devices))
	}
	for _, tw := range a.Townships {
		if n := len(tw.Villages); n < 8 || n > 15 {
			t.Errorf("%s has %d villages, want 8 to 15", tw.Name, n)
		}
		if !strings.HasSuffix(tw.Name, "街道") && !strings.HasSuffix(tw.Name, "镇") {
			t.Errorf("township %q is neither 街道 nor 镇", tw.Name)
		}
	}
	names := map[string]bool{}
	for _, v := range a.Villages {
		if names[v.Name] {
			t.Errorf("two villages called %s", v.Name)
		}
		names[v.Name] = true
		if len(v.Grids) == 0 || !strings.HasPrefix(v.Region, a.Name+"/") {
			t.Errorf("village %s: %d grids, region %q", v.Name, len(v.Grids), v.Region)
		}
	}
	vendors := map[string]int{}
	for _, c := range a.Cameras {
		vendors[c.Vendor]++
		if d := max(c.Lat-31.2, 31.2-c.Lat, c.Lon-115.6, 115.6-c.Lon); d > 0.4 {
			t.Errorf("camera %s at %v,%v is %v degrees from the county town", c.ID, c.Lat, c.Lon, d)
		}
	}
	if vendors["hikvision"] < vendors["dahua"] || vendors["dahua"] < vendors["uniview"] || vendors["uniview"] == 0 {
		t.Errorf("vendor shares %v: want hikvision > dahua > uniview > 0", vendors)
	}
	ai := 0
	for _, c := range a.Cameras {
		if c.Analyser >= 0 {
			ai++
		}
	}
	if ai < 300 {
		t.Errorf("%d cameras analysed by AI boxes, want several hundred", ai)
	}
}

// BenchmarkGenerate makes a day of the benchmark county (111,000 events,
// 2,222 cases), without camera health.
func BenchmarkGenerate(b *testing.B) {
	cfg := gen.Benchmark()
	cfg.Days, cfg.HealthDays = 1, 0
	b.ReportAllocs()
	rows, events := 0, 0
	start := time.Now()
	for b.Loop() {
		if err := gen.Generate(context.Background(), cfg, func(bt *analytics.Batch) error {
			rows += bt.Len()
			events += len(bt.Events)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
}

// BenchmarkHealth makes an hour of camera health for 2,000 cameras.
func BenchmarkHealth(b *testing.B) {
	cfg := gen.Defaults()
	cfg.Days, cfg.HealthDays, cfg.EventsPerDay, cfg.CasesPerDay = 1, 1, 0, 0
	b.ReportAllocs()
	n := 0
	start := time.Now()
	for b.Loop() {
		k := 0
		if err := gen.Generate(context.Background(), cfg, func(bt *analytics.Batch) error {
			n += len(bt.Health)
			if k += len(bt.Health); k >= 2000*60 {
				return gen.ErrStop
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "rows/s")
}

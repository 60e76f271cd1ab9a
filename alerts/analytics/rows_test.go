package analytics_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/gen"
	"sharpeye/ingest/bus"
)

// TestEventRowAttributes: each kind of attribute value goes to its own
// key/value columns, sorted by key; values of no column's kind (objects,
// lists) are left to the JSON of the event; all of it takes three
// allocations, one for the keys and string values and one for each of
// the other kinds' values, whatever the number of attributes.
func TestEventRowAttributes(t *testing.T) {
	attrs := map[string]any{
		"plate": "浙A12345", "lane": 2.0, "speed": 61.5, "night": true, "zone": "north gate",
		"confidence": 0.93, "loitering": false, "boxes": []any{1.0, 2.0}, "meta": map[string]any{"a": "b"},
	}
	r := analytics.EventRowAttributes(attrs)
	if !slices.Equal(r.StrKeys, []string{"plate", "zone"}) || !slices.Equal(r.StrValues, []string{"浙A12345", "north gate"}) {
		t.Fatalf("string columns %q = %q", r.StrKeys, r.StrValues)
	}
	if !slices.Equal(r.NumKeys, []string{"confidence", "lane", "speed"}) || !slices.Equal(r.NumValues, []float64{0.93, 2, 61.5}) {
		t.Fatalf("number columns %q = %v", r.NumKeys, r.NumValues)
	}
	if !slices.Equal(r.BoolKeys, []string{"loitering", "night"}) || !slices.Equal(r.BoolValues, []bool{false, true}) {
		t.Fatalf("bool columns %q = %v", r.BoolKeys, r.BoolValues)
	}
	if r := analytics.EventRowAttributes(map[string]any{"only": 1.0}); r.StrKeys != nil || r.BoolKeys != nil || len(r.NumKeys) != 1 {
		t.Fatalf("one number: %+v", r)
	}
	if n := testing.AllocsPerRun(200, func() { r = analytics.EventRowAttributes(attrs) }); n > 3 {
		t.Fatalf("%.1f allocations for the attribute columns, want 3", n)
	}
}

// BenchmarkFromMessages: the sink's CPU per event before the store,
// decoding generated events (the bench's county) into rows.
func BenchmarkFromMessages(b *testing.B) {
	gc := gen.Benchmark()
	gc.CasesPerDay, gc.HealthDays, gc.Batch = 0, 0, 5000
	gc.Days = 1
	gc.Start = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var msgs []bus.Message
	err := gen.Messages(b.Context(), gc, func(ms []bus.Message) error {
		msgs = append(msgs, ms...)
		if len(msgs) >= 20000 {
			return gen.ErrStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, gen.ErrStop) {
		b.Fatal(err)
	}
	var size int
	for _, m := range msgs {
		size += len(m.Value)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < len(msgs); i += 1000 {
			batch, bad := analytics.FromMessages(msgs[i:min(i+1000, len(msgs))])
			if len(bad) != 0 || len(batch.Events) == 0 {
				b.Fatalf("%d rejected, %d events", len(bad), len(batch.Events))
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/event")
}

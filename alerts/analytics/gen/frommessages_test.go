package gen_test

import (
	"reflect"
	"runtime"
	"strconv"
	"testing"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/gen"
	"sharpeye/ingest/bus"
)

// FromMessages decodes large batches on every core; the rows and the
// rejected messages must come out as one core would give them, in order.
func TestFromMessagesParallelKeepsOrder(t *testing.T) {
	// Several cores, whatever the machine has: with one, FromMessages
	// would compare its single-core path with itself.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	cfg := small()
	cfg.Days, cfg.HealthDays, cfg.EventsPerDay, cfg.CasesPerDay, cfg.Cameras = 1, 1, 3_000, 200, 3
	var msgs []bus.Message
	if err := gen.Messages(t.Context(), cfg, func(m []bus.Message) error {
		msgs = append(msgs, m...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Garbage among them, on both topics.
	for i := 0; i < len(msgs); i += 997 {
		msgs[i] = bus.Message{Topic: msgs[i].Topic, Key: "bad-" + strconv.Itoa(i), Value: []byte(`{"schema":1,"oops":` + strconv.Itoa(i) + `}`), Offset: int64(i)}
	}
	if len(msgs) < 5000 {
		t.Fatalf("only %d messages", len(msgs))
	}
	var one analytics.Batch
	var oneBad []analytics.Rejected
	for _, m := range msgs { // one at a time: never in parallel
		b, bad := analytics.FromMessages([]bus.Message{m})
		one.Events = append(one.Events, b.Events...)
		one.Cases = append(one.Cases, b.Cases...)
		one.Health = append(one.Health, b.Health...)
		oneBad = append(oneBad, bad...)
	}
	all, bad := analytics.FromMessages(msgs)
	if len(all.Events) == 0 || len(all.Cases) == 0 || len(all.Health) == 0 || len(bad) == 0 {
		t.Fatalf("batch of %d events, %d case changes, %d health samples, %d rejected: want some of each",
			len(all.Events), len(all.Cases), len(all.Health), len(bad))
	}
	if !reflect.DeepEqual(all, one) {
		t.Errorf("rows decoded in parallel differ from one core's (%d/%d/%d against %d/%d/%d)",
			len(all.Events), len(all.Cases), len(all.Health), len(one.Events), len(one.Cases), len(one.Health))
	}
	if !reflect.DeepEqual(bad, oneBad) {
		t.Errorf("rejected in parallel %d, one core %d (or in another order)", len(bad), len(oneBad))
	}
}

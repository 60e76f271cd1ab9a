package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/outbox"
	"sharpeye/configs/conf"
	"sharpeye/console/api/apitest"
	"sharpeye/ingest/bus"
)

// wait bounds every wait for a delivery, to turn a hang into a failure.
const wait = 60 * time.Second

// newBus returns a running in-memory bus with one partition, so that the
// order of all messages can be observed.
func newBus(t testing.TB, reg prometheus.Registerer) *bus.Embedded {
	t.Helper()
	cfg := bus.Defaults()
	cfg.Partitions = 1
	b, err := bus.NewMemory(cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.Run(ctx); err != nil {
			t.Errorf("bus: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

// consume returns the messages of topic sharpeye.cases as group sees them.
func consume(t testing.TB, b bus.Consumer, group string) <-chan bus.Message {
	t.Helper()
	ch := make(chan bus.Message, 100000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := b.Consume(ctx, group, []string{bus.TopicCases}, 500, 5*time.Millisecond, func(ctx context.Context, msgs []bus.Message) error {
			for _, m := range msgs {
				select {
				case ch <- m:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("consume: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

// receive returns the next n values from ch.
func receive[T any](t testing.TB, ch <-chan T, n int) []T {
	t.Helper()
	out := make([]T, 0, n)
	timeout := time.After(wait)
	for len(out) < n {
		select {
		case v := <-ch:
			out = append(out, v)
		case <-timeout:
			t.Fatalf("received %d of %d within %s", len(out), n, wait)
		}
	}
	return out
}

func testConfig() outbox.Config {
	cfg := outbox.Defaults()
	cfg.Poll = conf.Duration(20 * time.Millisecond)
	return cfg
}

// newDispatcher returns a dispatcher whose backoffs do not wait.
func newDispatcher(t testing.TB, cfg outbox.Config, db *casedb.DB, p bus.Producer, reg prometheus.Registerer) *outbox.Dispatcher {
	t.Helper()
	return newDispatcherLog(t, cfg, db, p, reg, nil)
}

func newDispatcherLog(t testing.TB, cfg outbox.Config, db *casedb.DB, p bus.Producer, reg prometheus.Registerer, log *slog.Logger) *outbox.Dispatcher {
	t.Helper()
	d, err := outbox.NewDispatcher(cfg, db, p, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	outbox.SetSleep(d, func(ctx context.Context, _ time.Duration) error { return ctx.Err() })
	return d
}

// run runs d until the returned stop is called (or the test ends); stop
// returns once Run has.
func run(t testing.TB, d *outbox.Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return stop
}

// rec is the i-th test record of a case.
func rec(caseID string, i int) outbox.Record {
	return outbox.Record{
		Topic:   bus.TopicCases,
		Key:     caseID,
		Type:    "case.updated",
		Value:   fmt.Appendf(nil, `{"case":%q,"n":%d,"title":"河道漂浮物"}`, caseID, i),
		Headers: map[string]string{"n": fmt.Sprint(i)},
	}
}

// enqueue commits recs in one transaction.
func enqueue(t testing.TB, db *casedb.DB, recs ...outbox.Record) {
	t.Helper()
	if err := inTx(db, func(tx *sql.Tx) error { return outbox.Enqueue(context.Background(), tx, db.Driver(), recs...) }); err != nil {
		t.Fatal(err)
	}
}

func inTx(db *casedb.DB, f func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// values returns the messages' values as strings.
func values(msgs []bus.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Value)
	}
	return out
}

func recValues(recs []outbox.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Value)
	}
	return out
}

func TestCommittedRecordsReachTheBusInOrder(t *testing.T) {
	t.Parallel()
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			b := newBus(t, nil)
			msgs := consume(t, b, "analytics")

			// A change rolled back leaves nothing behind.
			ctx := t.Context()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := outbox.Enqueue(ctx, tx, driver, rec("rolled-back", 0), rec("rolled-back", 1)); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			var want []outbox.Record
			for i := range 12 {
				want = append(want, rec(fmt.Sprintf("case-%d", i%3), i))
			}
			enqueue(t, db, want[:5]...)
			enqueue(t, db, want[5:]...)

			d := newDispatcher(t, testConfig(), db, b, nil)
			run(t, d)
			d.Notify()
			got := receive(t, msgs, len(want))
			if !slices.Equal(values(got), recValues(want)) {
				t.Fatalf("bus got\n%q\nwant\n%q", values(got), recValues(want))
			}
			ids := map[string]bool{}
			for i, m := range got {
				if m.Key != want[i].Key || m.Topic != bus.TopicCases {
					t.Errorf("message %d: topic %s key %q, want %q", i, m.Topic, m.Key, want[i].Key)
				}
				if m.Headers["n"] != fmt.Sprint(i) || m.Headers[outbox.HeaderType] != "case.updated" || m.Headers[outbox.HeaderID] == "" {
					t.Errorf("message %d: headers %v", i, m.Headers)
				}
				ids[m.Headers[outbox.HeaderID]] = true
			}
			if len(ids) != len(want) {
				t.Errorf("%d distinct outbox-id headers for %d records", len(ids), len(want))
			}

			// Nothing else is in between: the next record is the next
			// message.
			last := rec("case-last", 99)
			enqueue(t, db, last)
			d.Notify()
			if m := receive(t, msgs, 1)[0]; string(m.Value) != string(last.Value) {
				t.Fatalf("after the records, got %s", m.Value)
			}
		})
	}
}

func TestEnqueueRefusesBadRecords(t *testing.T) {
	t.Parallel()
	db := casedbtest.Open(t, casedb.SQLite)
	big := `{"x":"` + strings.Repeat("a", outbox.MaxValueBytes) + `"}`
	tests := []struct {
		name   string
		driver string
		rec    outbox.Record
		want   error
	}{
		{"too large", casedb.SQLite, outbox.Record{Topic: bus.TopicCases, Key: "c", Type: "case.created", Value: []byte(big)}, outbox.ErrTooLarge},
		{"not JSON", casedb.SQLite, outbox.Record{Topic: bus.TopicCases, Key: "c", Type: "case.created", Value: []byte("{oops")}, outbox.ErrInvalidRecord},
		{"no value", casedb.SQLite, outbox.Record{Topic: bus.TopicCases, Key: "c", Type: "case.created"}, outbox.ErrInvalidRecord},
		{"no type", casedb.SQLite, outbox.Record{Topic: bus.TopicCases, Key: "c", Value: []byte("{}")}, outbox.ErrInvalidRecord},
		{"no topic", casedb.SQLite, outbox.Record{Key: "c", Type: "case.created", Value: []byte("{}")}, outbox.ErrInvalidRecord},
		{"empty header name", casedb.SQLite, outbox.Record{Topic: bus.TopicCases, Type: "case.created", Value: []byte("{}"), Headers: map[string]string{"": "x"}}, outbox.ErrInvalidRecord},
		{"unknown driver", "mysql", rec("c", 1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := inTx(db, func(tx *sql.Tx) error {
				return outbox.Enqueue(t.Context(), tx, tt.driver, rec("good", 0), tt.rec)
			})
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	var n int
	if err := db.QueryRow(t.Context(), "SELECT COUNT(*) FROM outbox").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d records kept (%v), want none", n, err)
	}
}

// crashingProducer publishes through the real bus, and on its crashAt-th
// call publishes then hangs as a process would die before saving its
// cursor: it reports the batch on crashed and returns only when ctx ends.
type crashingProducer struct {
	bus.Producer
	crashAt int
	calls   int
	crashed chan []bus.Message
}

func (p *crashingProducer) Publish(ctx context.Context, msgs ...bus.Message) error {
	if err := p.Producer.Publish(ctx, msgs...); err != nil {
		return err
	}
	p.calls++
	if p.calls == p.crashAt {
		p.crashed <- msgs
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func TestCrashRedeliversOnlyTheBatchInFlight(t *testing.T) {
	t.Parallel()
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			b := newBus(t, nil)
			msgs := consume(t, b, "analytics")
			var all []outbox.Record
			for i := range 300 {
				all = append(all, rec(fmt.Sprintf("case-%d", i%7), i))
			}
			for chunk := range slices.Chunk(all, 40) {
				enqueue(t, db, chunk...)
			}
			cfg := testConfig()
			cfg.Batch = 25

			crash := &crashingProducer{Producer: b, crashAt: 5, crashed: make(chan []bus.Message, 1)}
			stop := run(t, newDispatcher(t, cfg, db, crash, nil))
			inFlight := receive(t, crash.crashed, 1)[0]
			stop()

			run(t, newDispatcher(t, cfg, db, b, nil))
			seen := map[string]int{}
			for len(seen) < len(all) {
				m := receive(t, msgs, 1)[0]
				seen[string(m.Value)]++
			}
			for _, r := range all {
				if seen[string(r.Value)] == 0 {
					t.Errorf("record %s lost", r.Value)
				}
			}
			var dup []string
			for v, n := range seen {
				if n > 1 {
					dup = append(dup, v)
				}
			}
			// Every message up to the last record was received: duplicates
			// can only be the batch whose cursor the crash did not save.
			slices.Sort(dup)
			want := values(inFlight)
			slices.Sort(want)
			if !slices.Equal(dup, want) {
				t.Fatalf("delivered twice:\n%q\nwant exactly the batch in flight:\n%q", dup, want)
			}
		})
	}
}

func TestTwoDispatchersDeliverOnce(t *testing.T) {
	t.Parallel()
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			busReg := prometheus.NewRegistry()
			b := newBus(t, busReg)
			msgs := consume(t, b, "analytics")
			cfg := testConfig()
			cfg.Lease = conf.Duration(3 * time.Second)
			regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
			ds := []*outbox.Dispatcher{newDispatcher(t, cfg, db, b, regs[0]), newDispatcher(t, cfg, db, b, regs[1])}
			stops := []func(){run(t, ds[0]), run(t, ds[1])}

			var want []outbox.Record
			for i := range 200 {
				r := rec(fmt.Sprintf("case-%d", i%5), i)
				want = append(want, r)
				enqueue(t, db, r)
				ds[i%2].Notify()
			}
			got := receive(t, msgs, len(want))
			if !slices.Equal(values(got), recValues(want)) {
				t.Fatalf("two dispatchers delivered\n%q", values(got))
			}
			leader := -1
			for i, reg := range regs {
				if apitest.Metric(t, reg, "sharpeye_outbox_lease_held") == 1 {
					if leader >= 0 {
						t.Fatal("both dispatchers hold the lease")
					}
					leader = i
				}
			}
			if leader < 0 {
				t.Fatal("no dispatcher holds the lease")
			}

			// The leader stops; the other takes over and delivers the rest.
			stops[leader]()
			more := rec("case-after", 1000)
			enqueue(t, db, more)
			ds[1-leader].Notify()
			if m := receive(t, msgs, 1)[0]; string(m.Value) != string(more.Value) {
				t.Fatalf("after the takeover got %s, want %s", m.Value, more.Value)
			}
			if apitest.Metric(t, regs[1-leader], "sharpeye_outbox_lease_held") != 1 {
				t.Fatal("the dispatcher left does not hold the lease")
			}
			stops[1-leader]()

			// Read the topic again from the start: every record once.
			again := receive(t, consume(t, b, "recount"), len(want)+1)
			if !slices.Equal(values(again), append(recValues(want), string(more.Value))) {
				t.Fatalf("the topic holds\n%q", values(again))
			}
			if n := apitest.Metric(t, busReg, "sharpeye_bus_published_messages_total"); n != float64(len(want)+1) {
				t.Fatalf("%v messages published for %d records", n, len(want)+1)
			}
		})
	}
}

func TestPruneDeletesWhatEverySinkDelivered(t *testing.T) {
	t.Parallel()
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			b := newBus(t, nil)
			msgs := consume(t, b, "analytics")
			var recs []outbox.Record
			for i := range 1200 {
				recs = append(recs, rec("case-1", i))
			}
			enqueue(t, db, recs...)
			stop := run(t, newDispatcher(t, testConfig(), db, b, nil))
			receive(t, msgs, len(recs))
			// The bus sink saves its cursor before it publishes the next
			// batch: once this one arrives, the rest is recorded.
			enqueue(t, db, rec("case-1", 1200))
			receive(t, msgs, 1)
			stop()

			cfg := testConfig()
			cfg.Webhooks = []outbox.Webhook{{Name: "province", URL: "http://127.0.0.1:1/hook", Secret: "0123456789abcdef"}}
			reg := prometheus.NewRegistry()
			d := newDispatcher(t, cfg, db, b, reg)
			count := func() int {
				var n int
				if err := db.QueryRow(t.Context(), "SELECT COUNT(*) FROM outbox").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			clock := time.Now()
			outbox.SetClock(d, func() time.Time { return clock })
			steps := []struct {
				name      string
				later     time.Duration
				webhookAt int64 // the webhook's cursor; -1 for none
				deleted   int64
			}{
				{"a sink without a cursor holds everything", 8 * 24 * time.Hour, -1, 0},
				{"retention not passed", time.Hour, 700, 0},
				{"up to the slowest sink", 8 * 24 * time.Hour, 700, 700},
				{"again, nothing more", 8 * 24 * time.Hour, 700, 0},
			}
			for _, s := range steps {
				if s.webhookAt >= 0 {
					if _, err := db.Exec(t.Context(), "DELETE FROM outbox_cursors WHERE sink = 'webhook:province'"); err != nil {
						t.Fatal(err)
					}
					if _, err := db.Exec(t.Context(), "INSERT INTO outbox_cursors (sink, last_id, updated_at) VALUES ('webhook:province', ?, 0)", s.webhookAt); err != nil {
						t.Fatal(err)
					}
				}
				clock = time.Now().Add(s.later)
				n, err := outbox.Prune(t.Context(), d)
				if err != nil || n != s.deleted {
					t.Fatalf("%s: deleted %d (%v), want %d", s.name, n, err, s.deleted)
				}
			}
			if n := count(); n != 1201-700 {
				t.Fatalf("%d records left, want %d", n, 1201-700)
			}
			if v := apitest.Metric(t, reg, "sharpeye_outbox_pruned_records_total"); v != 700 {
				t.Fatalf("pruned counter %v", v)
			}
		})
	}
}

// TestConcurrentWritersNoneSkipped enqueues from 8 goroutines while the
// dispatcher reads: a record committed late with a smaller id would be
// skipped by a reader that had passed it.
func TestConcurrentWritersNoneSkipped(t *testing.T) {
	t.Parallel()
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			b := newBus(t, nil)
			msgs := consume(t, b, "analytics")
			cfg := testConfig()
			cfg.Poll = conf.Duration(time.Millisecond * 10)
			d := newDispatcher(t, cfg, db, b, nil)
			run(t, d)

			const writers, txs = 8, 40
			var (
				wg        sync.WaitGroup
				mu        sync.Mutex
				committed []string
			)
			for w := range writers {
				wg.Go(func() {
					for i := range txs {
						recs := []outbox.Record{rec(fmt.Sprintf("writer-%d", w), 2*i), rec(fmt.Sprintf("writer-%d", w), 2*i+1)}
						err := inTx(db, func(tx *sql.Tx) error {
							// The case change would be here; some fail.
							if err := outbox.Enqueue(t.Context(), tx, driver, recs...); err != nil {
								return err
							}
							if i%5 == 4 {
								return errRollback
							}
							return nil
						})
						switch {
						case errors.Is(err, errRollback):
						case err != nil:
							t.Errorf("writer %d: %v", w, err)
							return
						default:
							mu.Lock()
							committed = append(committed, recValues(recs)...)
							mu.Unlock()
							d.Notify()
						}
					}
				})
			}
			wg.Wait()
			got := receive(t, msgs, len(committed))
			seen := map[string]int{}
			for _, v := range got {
				seen[string(v.Value)]++
			}
			for _, v := range committed {
				if seen[v] != 1 {
					t.Errorf("record %s delivered %d times", v, seen[v])
				}
			}
			// Each writer's records arrive in the order it committed them.
			last := map[string]int{}
			for _, m := range got {
				var v struct{ N int }
				if err := json.Unmarshal(m.Value, &v); err != nil {
					t.Fatal(err)
				}
				if prev, ok := last[m.Key]; ok && v.N <= prev {
					t.Errorf("%s: record %d after %d", m.Key, v.N, prev)
				}
				last[m.Key] = v.N
			}
			// Ids are gap-free: rolled-back transactions took none.
			var n, lo, hi int64
			if err := db.QueryRow(t.Context(), "SELECT COUNT(*), MIN(id), MAX(id) FROM outbox").Scan(&n, &lo, &hi); err != nil {
				t.Fatal(err)
			}
			if n != int64(len(committed)) || lo != 1 || hi != n {
				t.Fatalf("%d records with ids %d..%d, want %d from 1", n, lo, hi, len(committed))
			}
		})
	}
}

var errRollback = errors.New("rolled back on purpose")

// TestLeaseOfACrashedNodeExpires: a node that died holding the lease holds
// delivery up until the lease expires, then another takes over.
func TestLeaseOfACrashedNodeExpires(t *testing.T) {
	t.Parallel()
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			busReg := prometheus.NewRegistry()
			b := newBus(t, busReg)
			msgs := consume(t, b, "analytics")
			start := time.Now()
			if _, err := db.Exec(t.Context(), "UPDATE outbox_lease SET holder = 'crashed-node', expires_at = ?", casedb.Millis(start.Add(15*time.Second))); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig()
			cfg.Lease = conf.Duration(3 * time.Second)
			d := newDispatcher(t, cfg, db, b, nil)
			var now atomic.Int64
			now.Store(start.UnixNano())
			// Waiting for the lease, the dispatcher reads the clock once per
			// attempt to claim it.
			claims := make(chan struct{}, 100)
			outbox.SetClock(d, func() time.Time {
				select {
				case claims <- struct{}{}:
				default:
				}
				return time.Unix(0, now.Load())
			})
			r := rec("case-1", 1)
			enqueue(t, db, r)
			run(t, d)
			receive(t, claims, 2) // the first attempt has failed
			var holder string
			if err := db.QueryRow(t.Context(), "SELECT holder FROM outbox_lease").Scan(&holder); err != nil || holder != "crashed-node" {
				t.Fatalf("lease taken before it expired: holder %q (%v)", holder, err)
			}
			if n := apitest.Metric(t, busReg, "sharpeye_bus_published_messages_total"); n != 0 {
				t.Fatalf("%v records delivered without the lease", n)
			}
			now.Store(start.Add(16 * time.Second).UnixNano())
			if m := receive(t, msgs, 1)[0]; string(m.Value) != string(r.Value) {
				t.Fatalf("got %s", m.Value)
			}
		})
	}
}

// checkNoGoroutines fails the test if a goroutine of the dispatcher is
// still running: Run must reap what it starts before it returns.
func checkNoGoroutines(t testing.TB) {
	t.Helper()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "sharpeye/alerts/outbox.(*Dispatcher)") {
			t.Fatalf("goroutine left after Run returned:\n%s", g)
		}
	}
}

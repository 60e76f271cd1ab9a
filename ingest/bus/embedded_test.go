package bus_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/configs/conf"
	"sharpeye/console/api/apitest"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/bus/bustest"
	"sharpeye/ingest/bus/internal/leak"
)

// testConfig keeps retries short so that redelivery tests are quick.
func testConfig() bus.Config {
	c := bus.Defaults()
	c.RetryBackoffMin = conf.Duration(5 * time.Millisecond)
	c.RetryBackoffMax = conf.Duration(50 * time.Millisecond)
	c.Synchronous = bus.SyncNormal
	return c
}

// running is an embedded bus with its Run goroutine.
type running struct {
	*bus.Embedded
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// start runs an embedded bus on dir (memory when dir is "") until stop or
// the end of the test.
func start(t testing.TB, cfg bus.Config, dir string) *running {
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("BUS_DEBUG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	t.Helper()
	reg := prometheus.NewRegistry()
	var (
		e   *bus.Embedded
		err error
	)
	if dir == "" {
		e, err = bus.NewMemory(cfg, reg, logger)
	} else {
		e, err = bus.NewEmbedded(cfg, dir, reg, logger)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Embedded: e, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- e.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends Run and waits for it.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		r.done <- nil // later calls return at once
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its context ending")
	}
}

func TestEmbeddedConformance(t *testing.T) {
	leak.Check(t)
	bustest.Run(t, bustest.Options{
		New: func(t testing.TB) bus.Bus { return start(t, testConfig(), t.TempDir()) },
		Bounded: func(t testing.TB, maxBytes int64) bus.Bus {
			c := testConfig()
			c.MaxBytes = maxBytes
			return start(t, c, t.TempDir())
		},
	})
}

func TestMemoryConformance(t *testing.T) {
	leak.Check(t)
	bustest.Run(t, bustest.Options{
		New: func(t testing.TB) bus.Bus { return start(t, testConfig(), "") },
		Bounded: func(t testing.TB, maxBytes int64) bus.Bus {
			c := testConfig()
			c.MaxBytes = maxBytes
			return start(t, c, "")
		},
	})
}

// collect consumes topic in group until n distinct messages (by id header)
// have been handled, then stops and returns them in delivery order.
func collect(t testing.TB, b bus.Bus, group, topic string, n int) []bus.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []bus.Message
	seen := map[string]bool{}
	err := b.Consume(ctx, group, []string{topic}, 100, time.Millisecond, func(_ context.Context, ms []bus.Message) error {
		for _, m := range ms {
			if !seen[m.Headers["id"]] {
				seen[m.Headers["id"]] = true
				got = append(got, m)
			}
		}
		if len(seen) >= n {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	if len(seen) < n {
		t.Fatalf("consumed %d messages before the timeout, want %d", len(seen), n)
	}
	return got
}

func messages(topic string, n, from int) []bus.Message {
	ms := make([]bus.Message, n)
	for i := range ms {
		seq := from + i
		id := strconv.Itoa(seq)
		ms[i] = bus.Message{Topic: topic, Key: "k" + strconv.Itoa(seq%10), Value: []byte("event " + id),
			Headers: map[string]string{"id": id, "seq": id}}
	}
	return ms
}

// publishKiB publishes n messages of 1 KiB to topic, numbered from from.
func publishKiB(t testing.TB, b bus.Producer, topic string, n, from int) {
	t.Helper()
	ms := messages(topic, n, from)
	for i := range ms {
		ms[i].Value = make([]byte, 1024)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := b.Publish(ctx, ms...); err != nil {
		t.Fatalf("publish messages %d to %d: %v", from, from+n-1, err)
	}
}

// TestEmbeddedSurvivesRestart: acknowledged messages and committed offsets
// are still there when the bus is opened again.
func TestEmbeddedSurvivesRestart(t *testing.T) {
	leak.Check(t)
	dir := t.TempDir()
	b := start(t, testConfig(), dir)
	if err := b.Publish(t.Context(), messages("t", 100, 0)...); err != nil {
		t.Fatal(err)
	}
	// Commit 40 in batches of 10.
	committed := map[string]bool{}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	err := b.Consume(ctx, "g", []string{"t"}, 10, 0, func(_ context.Context, ms []bus.Message) error {
		if len(committed) >= 40 {
			cancel()
			return errors.New("stop")
		}
		for _, m := range ms {
			committed[m.Headers["id"]] = true
		}
		return nil
	})
	cancel()
	if err != nil || len(committed) != 40 {
		t.Fatalf("first consumer: %v, %d committed", err, len(committed))
	}
	b.stop(t)
	if err := b.Publish(t.Context(), messages("t", 1, 100)...); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Run returned: %v, want ErrClosed", err)
	}

	b = start(t, testConfig(), dir)
	got := collect(t, b, "g", "t", 60)
	if len(got) != 60 {
		t.Errorf("after the restart the group got %d messages, want the 60 it had not committed", len(got))
	}
	for _, m := range got {
		if committed[m.Headers["id"]] {
			t.Errorf("message %s committed before the restart was delivered again", m.Headers["id"])
		}
	}
	if got := collect(t, b, "other", "t", 100); len(got) != 100 {
		t.Errorf("a new group got %d of 100 messages", len(got))
	}
}

// TestEmbeddedCrashCopy copies bus.db and its WAL while the bus runs, as a
// crash (kill -9) would leave them: every acknowledged message is in the
// copy.
func TestEmbeddedCrashCopy(t *testing.T) {
	leak.Check(t)
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Synchronous = bus.SyncFull
	b := start(t, cfg, dir)
	for i := range 10 {
		if err := b.Publish(t.Context(), messages("t", 50, i*50)...); err != nil {
			t.Fatal(err)
		}
	}
	crashed := t.TempDir()
	for _, name := range []string{"bus.db", "bus.db-wal"} {
		copyFile(t, filepath.Join(dir, name), filepath.Join(crashed, name))
	}
	b.stop(t)

	c := start(t, testConfig(), crashed)
	got := collect(t, c, "g", "t", 500)
	if err := bustest.CheckKeyOrder(got); err != nil {
		t.Error(err)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestEmbeddedTrimsConsumed: past max_bytes, the messages every group has
// committed make room, so Publish does not block for a group that keeps up.
func TestEmbeddedTrimsConsumed(t *testing.T) {
	leak.Check(t)
	cfg := testConfig()
	cfg.MaxBytes = 64 << 10
	b := start(t, cfg, t.TempDir())
	const rounds, per = 20, 20 // 20 × 20 × ~1 KiB: six times the bound
	for r := range rounds {
		publishKiB(t, b, "t", per, r*per)
		collect(t, b, "g", "t", per)
	}
	if got := apitest.Metric(t, b.reg, "sharpeye_bus_log_bytes"); got > float64(cfg.MaxBytes) {
		t.Errorf("log holds %v bytes, bound %d", got, cfg.MaxBytes)
	}
}

// TestEmbeddedOffsetsAfterTrim: once every row of the log was deleted,
// the offsets still continue where they were after a restart (the
// partitions' next offsets are kept with the deletion, not in each write).
func TestEmbeddedOffsetsAfterTrim(t *testing.T) {
	leak.Check(t)
	dir := t.TempDir()
	cfg := testConfig()
	cfg.MaxBytes = 64 << 10
	b := start(t, cfg, dir)
	last := map[int]int64{}
	for r := range 4 {
		publishKiB(t, b, "t", 30, r*30)
		for _, m := range collect(t, b, "g", "t", 30) {
			last[m.Partition] = max(last[m.Partition], m.Offset)
		}
	}
	publishKiB(t, b, "t", 30, 120) // room made by deleting everything read
	if got := apitest.Metric(t, b.reg, "sharpeye_bus_log_messages"); got > 30 {
		t.Fatalf("%v messages kept, want the last 30", got)
	}
	for _, m := range collect(t, b, "g", "t", 30) {
		last[m.Partition] = max(last[m.Partition], m.Offset)
	}
	b.stop(t)
	b = start(t, cfg, dir)
	publishKiB(t, b, "t", 10, 150)
	for _, m := range collect(t, b, "g", "t", 10) {
		if m.Offset <= last[m.Partition] {
			t.Errorf("after the restart partition %d reused offset %d (was at %d)", m.Partition, m.Offset, last[m.Partition])
		}
	}
}

// TestEmbeddedRetention: messages past the retention are deleted, and
// those a group had not read are counted.
func TestEmbeddedRetention(t *testing.T) {
	leak.Check(t)
	cfg := testConfig()
	cfg.Retention = conf.Duration(time.Hour)
	dir := t.TempDir()
	b := start(t, cfg, dir)
	if err := b.Publish(t.Context(), messages("t", 30, 0)...); err != nil {
		t.Fatal(err)
	}
	collect(t, b, "reader", "t", 30)
	// A group that joined but committed nothing.
	ctx, cancel := context.WithCancel(t.Context())
	_ = b.Consume(ctx, "laggard", []string{"t"}, 1, 0, func(context.Context, []bus.Message) error {
		cancel()
		return errors.New("refused")
	})
	if err := b.Publish(t.Context(), messages("t", 10, 30)...); err != nil {
		t.Fatal(err)
	}
	b.stop(t)

	// Two hours later, retention runs when the bus starts.
	b2, err := bus.NewEmbedded(cfg, dir, b.reg, nil)
	if err == nil {
		t.Fatal("registering the metrics twice in one registry went unnoticed")
	}
	reg := prometheus.NewRegistry()
	b2, err = bus.NewEmbedded(cfg, dir, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus.SetClock(b2, func() time.Time { return time.Now().Add(2 * time.Hour) })
	ctx, cancel = context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b2.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if err := b2.Publish(t.Context(), messages("t", 1, 40)...); err != nil {
		t.Fatal(err)
	}
	if got := apitest.Metric(t, reg, "sharpeye_bus_log_messages"); got != 1 {
		t.Errorf("%v messages kept, want 1 (the one published after the expiry)", got)
	}
	if got := apitest.Metric(t, reg, "sharpeye_bus_expired_unconsumed_total"); got != 50 {
		t.Errorf("expired unconsumed %v, want 50 (10 the reader had not read, 40 the laggard had not)", got)
	}
	// The laggard resumes after the gap.
	got := collect(t, b2, "laggard", "t", 1)
	if got[0].Headers["id"] != "40" {
		t.Errorf("laggard got %s, want 40", got[0].Headers["id"])
	}
}

// TestEmbeddedCorruptRow: a batch row that cannot be decoded is skipped
// and counted; the others are delivered.
func TestEmbeddedCorruptRow(t *testing.T) {
	leak.Check(t)
	dir := t.TempDir()
	b := start(t, testConfig(), dir)
	// Event 3 is published alone, so that it has a batch row of its own.
	ms := messages("t", 10, 0)
	for _, part := range [][]bus.Message{ms[:3], ms[3:4], ms[4:]} {
		if err := b.Publish(t.Context(), part...); err != nil {
			t.Fatal(err)
		}
	}
	b.stop(t)

	db, err := sql.Open("sqlite", filepath.Join(dir, "bus.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The row holding event 3 is cut short in the middle of a message.
	res, err := db.Exec(`UPDATE batches SET data = substr(data, 1, instr(data, CAST('event 3' AS BLOB)) + 2) WHERE instr(data, CAST('event 3' AS BLOB)) > 0`)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("corrupted %d rows", n)
	}
	// Damaged bounds are repaired from the rows present.
	for p := range bus.Defaults().Partitions {
		if _, err := db.Exec(`INSERT OR REPLACE INTO parts(topic, part, start, next) VALUES ('t', ?, 1000, 0)`, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	b = start(t, testConfig(), dir)
	got := collect(t, b, "g", "t", 9)
	for _, m := range got {
		if m.Headers["id"] == "3" {
			t.Error("the corrupt message was delivered")
		}
	}
	if c := apitest.Metric(t, b.reg, "sharpeye_bus_corrupt_total"); c < 2 {
		t.Errorf("corrupt counter %v, want the row and the bounds", c)
	}
	// New messages do not collide with the old offsets.
	if err := b.Publish(t.Context(), messages("t", 10, 10)...); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, b, "g2", "t", 19); len(got) != 19 {
		t.Errorf("got %d messages", len(got))
	}
}

// TestEmbeddedPublishWaitsForRun: Publish before Run waits for it; a bus
// whose Run failed refuses calls.
func TestEmbeddedPublishWaitsForRun(t *testing.T) {
	leak.Check(t)
	e, err := bus.NewEmbedded(testConfig(), t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	published := make(chan error, 1)
	go func() { published <- e.Publish(context.Background(), messages("t", 1, 0)...) }()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := e.Run(t.Context()); err == nil {
		t.Error("a second Run returned nil")
	}

	// A directory that is a file cannot hold bus.db.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad, err := bus.NewEmbedded(testConfig(), file, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Run(t.Context()); err == nil {
		t.Error("Run on an unusable directory returned nil")
	}
	if err := bad.Publish(t.Context(), messages("t", 1, 0)...); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish on a bus that failed to open: %v, want ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*bus.Config)
		want string
	}{
		"defaults":   {func(*bus.Config) {}, ""},
		"retention":  {func(c *bus.Config) { c.Retention = conf.Duration(time.Second) }, "retention: must be at least 1m"},
		"max_bytes":  {func(c *bus.Config) { c.MaxBytes = 10 }, "max_bytes: must be at least 65536"},
		"partitions": {func(c *bus.Config) { c.Partitions = 0 }, "partitions: must be between 1 and 1024"},
		"sync":       {func(c *bus.Config) { c.Synchronous = "off" }, `synchronous: must be full or normal, not "off"`},
		"backoff":    {func(c *bus.Config) { c.RetryBackoffMax = conf.Duration(time.Millisecond) }, "retry_backoff_max: must be at least retry_backoff_min"},
	} {
		t.Run(name, func(t *testing.T) {
			c := bus.Defaults()
			tc.edit(&c)
			err := conf.Load(&c, nil, "", nil)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("error %v, want %s", err, tc.want)
			}
			if tc.want != "" {
				if _, err := bus.NewEmbedded(c, t.TempDir(), nil, nil); err == nil {
					t.Error("NewEmbedded accepted the configuration")
				}
			}
		})
	}
}

// TestPartitionCountKept: a bus.db keeps the partition count it was made
// with, so keys stay in their partitions.
func TestPartitionCountKept(t *testing.T) {
	leak.Check(t)
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Partitions = 3
	b := start(t, cfg, dir)
	if err := b.Publish(t.Context(), messages("t", 30, 0)...); err != nil {
		t.Fatal(err)
	}
	first := collect(t, b, "g", "t", 30)
	b.stop(t)
	cfg.Partitions = 7
	b = start(t, cfg, dir)
	if err := b.Publish(t.Context(), messages("t", 30, 30)...); err != nil {
		t.Fatal(err)
	}
	second := collect(t, b, "g", "t", 30)
	parts := map[string]int{}
	for _, m := range append(first, second...) {
		if m.Partition >= 3 {
			t.Fatalf("message %s in partition %d of 3", m.Headers["id"], m.Partition)
		}
		if p, ok := parts[m.Key]; ok && p != m.Partition {
			t.Fatalf("key %s moved from partition %d to %d", m.Key, p, m.Partition)
		}
		parts[m.Key] = m.Partition
	}
}

func ExampleEmbedded() {
	dir, _ := os.MkdirTemp("", "bus")
	defer os.RemoveAll(dir)
	b, err := bus.NewEmbedded(bus.Defaults(), dir, nil, nil)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	err = b.Publish(ctx, bus.Message{Topic: bus.TopicEvents, Key: "camera-1", Value: []byte(`{"kind":"motion"}`)})
	fmt.Println("published:", err)

	cctx, stop := context.WithCancel(ctx)
	_ = b.Consume(cctx, "alerts", []string{bus.TopicEvents}, 100, 10*time.Millisecond, func(_ context.Context, ms []bus.Message) error {
		for _, m := range ms {
			fmt.Printf("%s %s\n", m.Key, m.Value)
		}
		stop()
		return nil
	})
	cancel()
	fmt.Println("run:", <-done)
	// Output:
	// published: <nil>
	// camera-1 {"kind":"motion"}
	// run: <nil>
}

// TestEmbeddedUnreadTopic: a topic no group reads does not block Publish
// when the log is full: its oldest messages are deleted, counted.
func TestEmbeddedUnreadTopic(t *testing.T) {
	leak.Check(t)
	cfg := testConfig()
	cfg.MaxBytes = 64 << 10
	b := start(t, cfg, t.TempDir())
	for r := range 20 {
		publishKiB(t, b, bus.TopicDeadLetter, 20, r*20)
	}
	if v := apitest.Metric(t, b.reg, "sharpeye_bus_deleted_unread_total"); v == 0 {
		t.Error("no deletion of unread messages counted")
	}
	if v := apitest.Metric(t, b.reg, "sharpeye_bus_log_bytes"); v > float64(cfg.MaxBytes) {
		t.Errorf("log holds %v bytes, bound %d", v, cfg.MaxBytes)
	}
}

// TestEmbeddedDeleteGroup: a group that lags holds a full log (Publish
// blocks) until it is deleted.
func TestEmbeddedDeleteGroup(t *testing.T) {
	leak.Check(t)
	cfg := testConfig()
	cfg.MaxBytes = 64 << 10
	b := start(t, cfg, t.TempDir())

	ctx, cancel := context.WithCancel(t.Context())
	joined := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, "laggard", []string{"t"}, 10, 0, func(context.Context, []bus.Message) error {
			select {
			case <-joined:
			default:
				close(joined)
			}
			return errors.New("never ready")
		})
	}()
	if err := b.Publish(t.Context(), messages("t", 1, 0)...); err != nil {
		t.Fatal(err)
	}
	<-joined
	for i := 1; ; i++ {
		ms := messages("t", 1, i)
		ms[0].Value = make([]byte, 1024)
		pctx, pcancel := context.WithTimeout(t.Context(), time.Second)
		err := b.Publish(pctx, ms...)
		pcancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i > 1000 {
			t.Fatal("Publish never blocked for the lagging group")
		}
	}
	if err := b.DeleteGroup(t.Context(), "laggard"); err == nil {
		t.Error("DeleteGroup succeeded while the group had a member")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteGroup(t.Context(), "laggard"); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer pcancel()
	if err := b.Publish(pctx, messages("t", 1, 5000)...); err != nil {
		t.Fatalf("Publish after the lagging group was deleted: %v", err)
	}
}

// TestEmbeddedGroupCommit: publishers that wait for the writer share its
// next transaction; every message is stored once, each publisher's in its
// order.
func TestEmbeddedGroupCommit(t *testing.T) {
	b := start(t, testConfig(), t.TempDir())
	defer b.stop(t)
	const publishers, each = 40, 50
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				id := strconv.Itoa(p*each + i)
				m := bus.Message{Topic: "t", Key: "pub-" + strconv.Itoa(p), Value: []byte(id), Headers: map[string]string{"id": id}}
				if err := b.Publish(t.Context(), m); err != nil {
					t.Errorf("publish %s: %v", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	calls := apitest.Metric(t, b.reg, "sharpeye_bus_publish_group_size") // transactions
	if calls >= publishers*each {
		t.Errorf("%v transactions for %d concurrent Publish calls: none shared", calls, publishers*each)
	}
	got := collect(t, b, "g", "t", publishers*each)
	last := map[string]int{}
	for _, m := range got {
		n, _ := strconv.Atoi(string(m.Value))
		if prev, ok := last[m.Key]; ok && n <= prev {
			t.Fatalf("publisher %s: message %d after %d", m.Key, n, prev)
		}
		last[m.Key] = n
	}
	if len(got) != publishers*each || len(last) != publishers {
		t.Fatalf("%d messages from %d publishers, want %d from %d", len(got), len(last), publishers*each, publishers)
	}
}

// TestEmbeddedUpgrades: a log written by schema 1 (a row per message in a
// WITHOUT ROWID table) or schema 2 (the same in a rowid table) is moved
// into batch rows when the bus opens: every message kept, readable, with
// its offset; a message whose headers cannot be decoded left out and
// counted; new messages after the old ones.
func TestEmbeddedUpgrades(t *testing.T) {
	for _, tc := range []struct {
		schema, table string
	}{
		{"1", ", PRIMARY KEY (topic, part, off)) WITHOUT ROWID"},
		{"2", ")"},
	} {
		t.Run("schema "+tc.schema, func(t *testing.T) {
			leak.Check(t)
			dir := t.TempDir()
			b := start(t, testConfig(), dir)
			if err := b.Publish(t.Context(), messages("other", 1, 0)...); err != nil { // the database is open
				t.Fatal(err)
			}
			b.stop(t)

			// The old layout, by hand: 50 messages over 8 partitions, the
			// one with id 7 with damaged headers.
			db, err := sql.Open("sqlite", filepath.Join(dir, "bus.db"))
			if err != nil {
				t.Fatal(err)
			}
			for _, stmt := range []string{
				`DELETE FROM batches`,
				`DELETE FROM parts`,
				`CREATE TABLE log (topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL, key TEXT NOT NULL,
					value BLOB, headers BLOB, time INTEGER NOT NULL, ins INTEGER NOT NULL, size INTEGER NOT NULL` + tc.table,
				`UPDATE meta SET v = '` + tc.schema + `' WHERE k = 'schema'`,
			} {
				if _, err := db.Exec(stmt); err != nil {
					t.Fatalf("%s: %v", stmt, err)
				}
			}
			// Each message stored at a time of its own; the rows read 7
			// at a time, so that a partition spans several reads.
			base := time.Now().Add(-time.Hour).UnixMilli()
			ins := func(i int) int64 { return base + int64(i) }
			defer bus.SetUpgradeChunk(bus.SetUpgradeChunk(7))
			for i := range 50 {
				headers := fmt.Sprintf(`{"id":"%d","seq":"%d"}`, i, i)
				if i == 7 {
					headers = "{{{"
				}
				if _, err := db.Exec(`INSERT INTO log VALUES ('t', ?, ?, ?, ?, ?, ?, ?, 100)`,
					i%8, i/8, "k"+strconv.Itoa(i), []byte("event "+strconv.Itoa(i)), []byte(headers), int64(i)*1e9, ins(i)); err != nil {
					t.Fatal(err)
				}
			}
			for p := range 8 {
				if _, err := db.Exec(`INSERT INTO parts VALUES ('t', ?, 0, ?)`, p, (50-p+7)/8); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			b = start(t, testConfig(), dir)
			got := collect(t, b, "g", "t", 49)
			if len(got) != 49 {
				t.Fatalf("after the upgrade the group got %d of 49 messages", len(got))
			}
			if c := apitest.Metric(t, b.reg, "sharpeye_bus_corrupt_total"); c != 1 {
				t.Errorf("corrupt counter %v, want 1", c)
			}
			for _, m := range got {
				id, _ := strconv.Atoi(m.Headers["id"])
				if m.Headers["id"] == "7" || m.Partition != id%8 || m.Offset != int64(id/8) ||
					string(m.Value) != "event "+m.Headers["id"] || m.Key != "k"+m.Headers["id"] || m.Time.UnixNano() != int64(id)*1e9 {
					t.Errorf("message %+v after the upgrade", m)
				}
			}
			if err := b.Publish(t.Context(), messages("t", 10, 50)...); err != nil {
				t.Fatal(err)
			}
			if got := collect(t, b, "g", "t", 10); len(got) != 10 {
				t.Fatalf("got %d of the 10 messages published after the upgrade", len(got))
			}
			b.stop(t)

			db, err = sql.Open("sqlite", filepath.Join(dir, "bus.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var version string
			var tables, rows int
			if err := db.QueryRow(`SELECT v FROM meta WHERE k = 'schema'`).Scan(&version); err != nil || version != "3" {
				t.Fatalf("schema %q, %v", version, err)
			}
			if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'log'`).Scan(&tables); err != nil || tables != 0 {
				t.Fatalf("the old log is still there: %d %v", tables, err)
			}
			// Each old row is stored at the time of its latest message (the
			// one of the highest offset: i = off*8 + part), and together
			// they hold the 49 messages.
			olds, err := db.Query(`SELECT part, off, last, n, ins FROM batches WHERE ins < ? ORDER BY part, off`, base+100)
			if err != nil {
				t.Fatal(err)
			}
			defer olds.Close()
			held := 0
			for olds.Next() {
				var part, off, last, n int
				var got int64
				if err := olds.Scan(&part, &off, &last, &n, &got); err != nil {
					t.Fatal(err)
				}
				rows++
				held += n
				if want := ins(last*8 + part); got != want {
					t.Errorf("row of partition %d, offsets %d-%d: stored at %d, want %d (its latest message's)", part, off, last, got, want)
				}
			}
			if err := olds.Err(); err != nil {
				t.Fatal(err)
			}
			if held != 49 || rows <= 8 {
				t.Fatalf("the old rows hold %d messages in %d rows, want 49 in more than one row per partition (read 7 at a time)", held, rows)
			}
		})
	}
}

// TestEmbeddedBatchRows: a Publish of 1,000 messages of one key is stored
// in rows of at most 256; a group reading 7 at a time, stopped in the
// middle of a row and started again, gets each message once, in order.
func TestEmbeddedBatchRows(t *testing.T) {
	leak.Check(t)
	dir := t.TempDir()
	b := start(t, testConfig(), dir)
	ms := messages("t", 1000, 0)
	for i := range ms {
		ms[i].Key = "one"
	}
	if err := b.Publish(t.Context(), ms...); err != nil {
		t.Fatal(err)
	}
	var got []bus.Message
	read := func(stopAt int) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		err := b.Consume(ctx, "g", []string{"t"}, 7, time.Millisecond, func(_ context.Context, batch []bus.Message) error {
			got = append(got, batch...)
			if len(got) >= stopAt {
				cancel()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	read(300) // 43 batches of 7: the last one ends in the second row
	b.stop(t)
	b = start(t, testConfig(), dir)
	read(1000)
	if len(got) != 1000 {
		t.Fatalf("got %d messages, want 1000", len(got))
	}
	for i, m := range got {
		if m.Offset != int64(i) || m.Headers["id"] != strconv.Itoa(i) {
			t.Fatalf("message %d is offset %d, id %s", i, m.Offset, m.Headers["id"])
		}
	}
	b.stop(t)
	db, err := sql.Open("sqlite", filepath.Join(dir, "bus.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, most int
	if err := db.QueryRow(`SELECT COUNT(*), MAX(n) FROM batches`).Scan(&rows, &most); err != nil || rows != 4 || most != 256 {
		t.Fatalf("%d rows of at most %d messages, want 4 of 256: %v", rows, most, err)
	}
}

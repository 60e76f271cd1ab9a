package bus

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite" // SQLite driver "sqlite", pure Go

	"sharpeye/configs/conf"
)

// retentionInterval is how often Run deletes expired messages.
const retentionInterval = time.Minute

// msgOverhead is added to each message's encoding (its key, value and
// headers, with their lengths) to count its size against max_bytes: its
// share of the batch row and of the b-tree.
const msgOverhead = 48

// Embedded is the default bus: an append-only log per topic in an SQLite
// database (bus.db in a directory the caller gives), with the consumer
// groups' offsets in the same database. See the package documentation for
// its guarantees.
//
// New checks the configuration; Run opens the database and must be running
// for Publish and Consume to work (they wait for it to start).
type Embedded struct {
	cfg     Config
	path    string // the database file; "" keeps the log in memory
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time // the clock of retention, replaced in tests

	started atomic.Bool
	ready   chan struct{} // closed once the log is open, or Run failed
	done    chan struct{} // closed when Run has returned
	openErr error         // why Run failed to open the log; read after ready

	db  *sql.DB
	wmu sync.Mutex // serialises the write transactions

	qmu   sync.Mutex
	queue []*write // Publish calls waiting to be written, for group commit

	lastUnreadLog time.Time // guarded by wmu

	mu       sync.Mutex
	closing  bool
	ops      sync.WaitGroup // Publish and Consume calls in progress
	cancels  map[uint64]context.CancelFunc
	nextOp   uint64
	changed  chan struct{} // closed and replaced on every change
	parts    int
	logs     map[topicPart]*partLog
	bytes    int64 // stored in the log
	count    int64 // messages in the log
	reserved int64 // admitted by Publish, being written
	groups   map[string]*group
	rr       atomic.Uint32 // partition for the next message without a key
	nextRow  int64         // the id of the next batch row; guarded by wmu
}

var (
	_ Bus               = (*Embedded)(nil)
	_ RebalanceConsumer = (*Embedded)(nil)
)

type topicPart struct {
	topic string
	part  int
}

func (tp topicPart) String() string { return tp.topic + "/" + strconv.Itoa(tp.part) }

func compareTP(a, b topicPart) int {
	if a.topic != b.topic {
		if a.topic < b.topic {
			return -1
		}
		return 1
	}
	return a.part - b.part
}

// partLog is one partition of a topic: its messages are [start, next),
// in the batch rows listed in rows (in offset order).
type partLog struct {
	start, next int64
	rows        []rowRef
}

// rowRef is what the bus keeps in memory of a batch row: enough to find
// the rows to read, delete or expire without an index in the database,
// which cost each transaction a page written per partition.
type rowRef struct {
	id, off, last int64
	n             int64
	size          int64
	ins           int64
}

// firstRow is the index in pl.rows of the first row ending at or
// after off.
func (pl *partLog) firstRow(off int64) int {
	i, _ := slices.BinarySearchFunc(pl.rows, off, func(r rowRef, off int64) int { return cmp.Compare(r.last, off) })
	return i
}

// group is a consumer group: its committed offsets (for every partition of
// every topic it ever subscribed to) and its members at present.
type group struct {
	name      string
	committed map[topicPart]int64
	members   []*member
	claims    map[topicPart]*member // the member holding each partition, or claiming it in Assigned
	nextID    uint64
}

// member is one Consume call in a group.
type member struct {
	g      *group
	id     uint64
	topics []string
	owned  map[topicPart]struct{} // held, Assigned returned; written by its Consume under mu
	rot    int                    // where the next batch starts reading, for fairness
}

// NewEmbedded returns an embedded bus keeping its log in dir/bus.db. It
// checks cfg and creates nothing: Run opens the database. reg may be nil.
func NewEmbedded(cfg Config, dir string, reg prometheus.Registerer, log *slog.Logger) (*Embedded, error) {
	if dir == "" {
		return nil, errors.New("embedded bus: no directory for bus.db")
	}
	return newEmbedded(cfg, filepath.Join(dir, "bus.db"), reg, log)
}

// NewMemory returns a bus with the semantics of the embedded bus (batches,
// groups, partitions, back-pressure) whose log lives in memory and
// disappears with it: for tests of other packages. It still needs Run.
func NewMemory(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Embedded, error) {
	return newEmbedded(cfg, "", reg, log)
}

func newEmbedded(cfg Config, path string, reg prometheus.Registerer, log *slog.Logger) (*Embedded, error) {
	if err := conf.Load(&cfg, nil, "", nil); err != nil {
		return nil, fmt.Errorf("embedded bus configuration: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Embedded{
		cfg:     cfg,
		path:    path,
		log:     log.With("component", "bus"),
		now:     time.Now,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		cancels: make(map[uint64]context.CancelFunc),
		changed: make(chan struct{}),
		logs:    make(map[topicPart]*partLog),
		groups:  make(map[string]*group),
	}
	m, err := newMetrics(reg, e)
	if err != nil {
		return nil, err
	}
	e.metrics = m
	return e, nil
}

// Run opens the log, expires old messages once a minute and returns when
// ctx ends, after every Publish and Consume in progress has returned
// (they are cancelled) and the database is closed. It returns an error
// only when the log cannot be opened. Run may be called once.
func (e *Embedded) Run(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("embedded bus: Run called twice")
	}
	defer close(e.done)
	if err := e.open(ctx); err != nil {
		e.mu.Lock()
		e.closing = true
		e.mu.Unlock()
		e.openErr = err
		close(e.ready)
		if ctx.Err() != nil {
			return nil // stopped while opening
		}
		return err
	}
	// Expire what aged while the bus was down before serving.
	e.expire(ctx)
	e.mu.Lock()
	e.log.Info("embedded bus open", "path", e.path, "messages", e.count, "bytes", e.bytes, "groups", len(e.groups), "partitions", e.parts)
	e.mu.Unlock()
	close(e.ready)

	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.shutdown()
			return nil
		case <-t.C:
			e.expire(ctx)
		}
	}
}

// shutdown cancels and waits for the calls in progress, then closes the
// database.
func (e *Embedded) shutdown() {
	e.mu.Lock()
	e.closing = true
	for _, cancel := range e.cancels {
		cancel()
	}
	e.broadcastLocked()
	e.mu.Unlock()
	e.ops.Wait()
	if err := e.db.Close(); err != nil {
		e.log.Error("close bus database", "err", err)
	}
}

// Done is closed when Run has returned.
func (e *Embedded) Done() <-chan struct{} { return e.done }

// enter waits for Run to have opened the log and registers a call, whose
// context is cancelled when the bus shuts down; leave must be called.
func (e *Embedded) enter(ctx context.Context) (context.Context, func(), error) {
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if e.openErr != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrClosed, e.openErr)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	id := e.nextOp
	e.nextOp++
	e.cancels[id] = cancel
	e.ops.Add(1)
	leave := func() {
		e.mu.Lock()
		delete(e.cancels, id)
		e.mu.Unlock()
		cancel()
		e.ops.Done()
	}
	return ctx, leave, nil
}

// ctxErr is the error of a call whose context ended: ErrClosed when the bus
// is shutting down, the context's error otherwise.
func (e *Embedded) ctxErr(ctx context.Context) error {
	e.mu.Lock()
	closing := e.closing
	e.mu.Unlock()
	if closing {
		return ErrClosed
	}
	return ctx.Err()
}

// broadcastLocked wakes everything waiting for a change: consumers waiting
// for messages, publishers waiting for room.
func (e *Embedded) broadcastLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

func (e *Embedded) partLocked(tp topicPart) *partLog {
	pl := e.logs[tp]
	if pl == nil {
		pl = &partLog{}
		e.logs[tp] = pl
	}
	return pl
}

// open opens (creating if needed) the database and reads the state.
func (e *Embedded) open(ctx context.Context) error {
	var dsn string
	if e.path == "" {
		dsn = "file::memory:"
	} else {
		if err := os.MkdirAll(filepath.Dir(e.path), 0o750); err != nil {
			return fmt.Errorf("create bus directory: %w", err)
		}
		q := url.Values{}
		for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(" + e.cfg.Synchronous + ")"} {
			q.Add("_pragma", p)
		}
		q.Set("_txlock", "immediate")
		dsn = "file:" + e.path + "?" + q.Encode()
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("open bus database: %w", err)
	}
	if e.path == "" {
		// Each connection to :memory: is a database of its own.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
	} else {
		db.SetMaxOpenConns(4)
		db.SetMaxIdleConns(4)
	}
	if err := e.load(ctx, db); err != nil {
		db.Close()
		return err
	}
	e.db = db
	return nil
}

const schema = `
CREATE TABLE IF NOT EXISTS meta (
	k TEXT PRIMARY KEY,
	v TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
	id    INTEGER PRIMARY KEY,
	topic TEXT    NOT NULL,
	part  INTEGER NOT NULL,
	off   INTEGER NOT NULL, -- the offset of the row's first message
	last  INTEGER NOT NULL, -- the offset of its last
	n     INTEGER NOT NULL, -- its messages
	ins   INTEGER NOT NULL, -- when it was stored, Unix milliseconds, for retention
	size  INTEGER NOT NULL, -- its messages' sizes, counted against max_bytes
	data  BLOB    NOT NULL  -- the messages (see batchFormat)
);
CREATE TABLE IF NOT EXISTS parts (
	topic TEXT    NOT NULL,
	part  INTEGER NOT NULL,
	start INTEGER NOT NULL, -- the first offset kept
	next  INTEGER NOT NULL, -- the offset of the next message, when the last rows were deleted
	PRIMARY KEY (topic, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
	grp   TEXT    NOT NULL,
	topic TEXT    NOT NULL,
	part  INTEGER NOT NULL,
	off   INTEGER NOT NULL, -- the next offset the group will read
	PRIMARY KEY (grp, topic, part)
) WITHOUT ROWID;
`

// schemaVersion is stored in meta; a database from a newer version is
// refused rather than misread. Schema 3 keeps the messages in batch rows
// (see batchFormat), listed in memory (partLog.rows); schemas 1 and
// 2 kept a row per message in a table named log (schema 1 clustered by
// offset, schema 2 in a rowid table) and are upgraded when the bus opens.
const schemaVersion = "3"

func (e *Embedded) load(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create bus schema in %s: %w", e.where(), err)
	}
	if _, err := db.ExecContext(ctx, `INSERT OR IGNORE INTO meta(k, v) VALUES ('schema', ?), ('partitions', ?)`,
		schemaVersion, strconv.Itoa(e.cfg.Partitions)); err != nil {
		return fmt.Errorf("initialise bus database %s: %w", e.where(), err)
	}
	meta := map[string]string{}
	rows, err := db.QueryContext(ctx, `SELECT k, v FROM meta`)
	if err != nil {
		return fmt.Errorf("read bus database %s: %w", e.where(), err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return fmt.Errorf("read bus database %s: %w", e.where(), err)
		}
		meta[k] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read bus database %s: %w", e.where(), err)
	}
	switch meta["schema"] {
	case schemaVersion:
	case "1", "2":
		start := time.Now()
		if err := e.upgradeLog(ctx, db); err != nil {
			return fmt.Errorf("upgrade bus database %s to schema %s: %w", e.where(), schemaVersion, err)
		}
		e.log.Info("bus database upgraded", "path", e.path, "schema", schemaVersion, "took", time.Since(start))
	default:
		return fmt.Errorf("bus database %s has schema %q; this version reads %q", e.where(), meta["schema"], schemaVersion)
	}
	parts, err := strconv.Atoi(meta["partitions"])
	if err != nil || parts < 1 || parts > 1024 {
		return fmt.Errorf("bus database %s: bad partition count %q", e.where(), meta["partitions"])
	}
	if parts != e.cfg.Partitions {
		e.log.Warn("bus database keeps the partition count it was created with; partitions setting ignored",
			"path", e.path, "partitions", parts, "configured", e.cfg.Partitions)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	e.parts = parts
	if err := e.loadParts(ctx, db); err != nil {
		return err
	}
	if err := e.loadOffsets(ctx, db); err != nil {
		return err
	}
	return nil
}

func (e *Embedded) where() string {
	if e.path == "" {
		return "(memory)"
	}
	return e.path
}

// loadParts reads each partition's bounds and checks them against the
// messages present, repairing what does not match.
func (e *Embedded) loadParts(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT topic, part, start, next FROM parts`)
	if err != nil {
		return fmt.Errorf("read bus partitions: %w", err)
	}
	for rows.Next() {
		var tp topicPart
		var pl partLog
		if err := rows.Scan(&tp.topic, &tp.part, &pl.start, &pl.next); err != nil {
			rows.Close()
			return fmt.Errorf("read bus partitions: %w", err)
		}
		e.logs[tp] = &pl
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read bus partitions: %w", err)
	}

	rows, err = db.QueryContext(ctx, `SELECT id, topic, part, off, last, n, ins, size FROM batches ORDER BY id`)
	if err != nil {
		return fmt.Errorf("read bus log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var tp topicPart
		var r rowRef
		if err := rows.Scan(&r.id, &tp.topic, &tp.part, &r.off, &r.last, &r.n, &r.ins, &r.size); err != nil {
			return fmt.Errorf("read bus log: %w", err)
		}
		pl := e.partLocked(tp)
		if k := len(pl.rows); k > 0 && pl.rows[k-1].last >= r.off {
			e.metrics.corrupt.Inc()
			e.log.Error("bus batch row overlaps the one before it; skipped", "partition", tp.String(), "offsets", fmt.Sprintf("%d-%d", r.off, r.last))
			continue
		}
		pl.rows = append(pl.rows, r)
		e.nextRow = max(e.nextRow, r.id+1)
		e.bytes += r.size
		e.count += r.n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read bus log: %w", err)
	}
	for tp, pl := range e.logs {
		if pl.next < pl.start {
			e.metrics.corrupt.Inc()
			e.log.Error("bus partition bounds reversed; repaired", "partition", tp.String(), "start", pl.start, "next", pl.next)
			pl.next = pl.start
		}
		if len(pl.rows) == 0 {
			continue
		}
		// The next offset is past the last row: parts has it only from the
		// last deletion. The first row may begin before start (its first
		// messages were consumed and the rest were not), never end before.
		first, last := pl.rows[0], pl.rows[len(pl.rows)-1]
		pl.next = max(pl.next, last.last+1)
		if pl.start > first.last {
			e.metrics.corrupt.Inc()
			e.log.Error("bus partition start is past its first messages; repaired",
				"partition", tp.String(), "start", pl.start, "first", first.off)
			pl.start = first.off
		}
	}
	return nil
}

func (e *Embedded) loadOffsets(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT grp, topic, part, off FROM offsets`)
	if err != nil {
		return fmt.Errorf("read consumer offsets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var tp topicPart
		var off int64
		if err := rows.Scan(&name, &tp.topic, &tp.part, &off); err != nil {
			return fmt.Errorf("read consumer offsets: %w", err)
		}
		e.groupLocked(name).committed[tp] = off
	}
	return rows.Err()
}

func (e *Embedded) groupLocked(name string) *group {
	g := e.groups[name]
	if g == nil {
		g = &group{name: name, committed: make(map[topicPart]int64), claims: make(map[topicPart]*member)}
		e.groups[name] = g
	}
	return g
}

// Partitions implements Partitioned: every topic of the embedded bus has
// the partition count its database was created with.
func (e *Embedded) Partitions(ctx context.Context, topic string) (int, error) {
	if err := CheckTopic(topic); err != nil {
		return 0, err
	}
	_, leave, err := e.enter(ctx) // waits for the log to be open
	if err != nil {
		return 0, err
	}
	defer leave()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.parts, nil
}

// partition returns the partition of a key: FNV-1a modulo the partition
// count; messages without a key go round robin.
func (e *Embedded) partition(key string, parts int) int {
	if key == "" {
		return int(e.rr.Add(1) % uint32(parts))
	}
	return KeyPartition(key, parts)
}

// KeyPartition maps key onto one of parts partitions (FNV-1a): the
// embedded bus's keyed messages, and the ingest cluster's cameras (which
// are not published by key, so Kafka's own mapping does not matter to it).
func KeyPartition(key string, parts int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(parts))
}

// row is a message ready to be stored: enc is its encoding without its
// offset (see batchFormat).
type row struct {
	tp   topicPart
	off  int64
	enc  []byte
	size int64
	ins  int64 // when it is stored, Unix milliseconds
}

// Publish stores msgs in one transaction and returns once it is committed
// (synced to disk with synchronous: full). It blocks while the log is over
// max_bytes and the slowest consumer group has not committed enough to
// make room, until it has or ctx ends. Messages with the same key go to
// the same partition, in order.
func (e *Embedded) Publish(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	for i := range msgs {
		if err := CheckTopic(msgs[i].Topic); err != nil {
			return fmt.Errorf("publish message %d: %w", i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	ctx, leave, err := e.enter(ctx)
	if err != nil {
		return err
	}
	defer leave()
	now := e.now()

	e.mu.Lock()
	parts := e.parts
	e.mu.Unlock()
	// The messages are encoded here, by each publisher, into one buffer
	// sized for them all (so that it never moves and each row keeps its
	// slice): the writer, which has one transaction at a time, only
	// copies them.
	n := 0
	for i := range msgs {
		n += bodySize(msgs[i].Key, msgs[i].Headers, msgs[i].Value)
	}
	buf := make([]byte, 0, n)
	rows := make([]row, len(msgs))
	var size int64
	nowNs, nowMs := now.UnixNano(), now.UnixMilli()
	for i, m := range msgs {
		t := m.Time.UnixNano()
		if m.Time.IsZero() {
			t = nowNs
		}
		from := len(buf)
		buf = appendBody(buf, t, m.Key, m.Headers, m.Value)
		r := &rows[i]
		r.tp = topicPart{m.Topic, e.partition(m.Key, parts)}
		r.enc = buf[from:len(buf):len(buf)]
		r.size = int64(len(r.enc)) + msgOverhead
		r.ins = nowMs
		size += r.size
	}
	if err := e.admit(ctx, size); err != nil {
		return err
	}
	if err := e.append(rows, size); err != nil {
		return err
	}
	e.metrics.published.Add(float64(len(msgs)))
	e.metrics.publishSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// admit reserves size bytes of the log for a Publish, waiting for room
// (back-pressure) while the log is full. A Publish alone larger than the
// bound is admitted when the log is empty.
func (e *Embedded) admit(ctx context.Context, size int64) error {
	blocked := false
	for {
		e.mu.Lock()
		used := e.bytes + e.reserved
		if used == 0 || used+size <= e.cfg.MaxBytes {
			e.reserved += size
			e.mu.Unlock()
			return nil
		}
		ch := e.changed
		e.mu.Unlock()

		freed, err := e.trim(ctx, size)
		if err != nil && ctx.Err() == nil {
			e.log.Error("delete consumed messages", "err", err)
		}
		if freed > 0 {
			continue
		}
		if !blocked {
			blocked = true
			e.metrics.blocked.Inc()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return e.ctxErr(ctx)
		}
	}
}

// append writes rows in one transaction, giving them their offsets.
func (e *Embedded) append(rows []row, size int64) error {
	// Group commit: the Publish calls waiting for the writer share its
	// next transaction (and its sync), so that many publishers with a
	// message each cost one commit, not one each.
	w := &write{rows: rows, size: size, done: make(chan error, 1)}
	e.qmu.Lock()
	e.queue = append(e.queue, w)
	e.qmu.Unlock()

	e.wmu.Lock()
	defer e.wmu.Unlock()
	select {
	case err := <-w.done: // written by the writer before us
		return err
	default:
	}
	e.qmu.Lock()
	group := e.queue
	e.queue = nil
	e.qmu.Unlock()

	var all []row
	var total int64
	if len(group) == 1 {
		all, total = rows, size
	} else {
		for _, g := range group {
			all = append(all, g.rows...)
			total += g.size
		}
	}
	next := make(map[topicPart]int64)
	e.mu.Lock()
	for i := range all {
		r := &all[i]
		off, ok := next[r.tp]
		if !ok {
			off = e.partLocked(r.tp).next
		}
		r.off = off
		next[r.tp] = off + 1
	}
	e.mu.Unlock()

	// The transaction is not cancelled with the caller's context: a
	// commit interrupted half way would leave the offsets in doubt.
	written, err := e.writeRows(context.Background(), all)
	e.metrics.groupCommit.Observe(float64(len(group)))
	e.mu.Lock()
	e.reserved -= total
	if err != nil {
		e.broadcastLocked() // the reservation is free again
		err = fmt.Errorf("store messages: %w", err)
	} else {
		for tp, off := range next {
			e.partLocked(tp).next = off
		}
		for _, b := range written {
			pl := e.partLocked(b.tp)
			pl.rows = append(pl.rows, rowRef{id: b.id, off: b.off, last: b.last, n: int64(b.n), size: b.size, ins: b.ins})
		}
		e.bytes += total
		e.count += int64(len(all))
		e.broadcastLocked()
	}
	e.mu.Unlock()
	for _, g := range group {
		g.done <- err
	}
	return <-w.done
}

// write is one Publish waiting for the writer.
type write struct {
	rows []row
	size int64
	done chan error
}

// insertChunk is the most batch rows one INSERT statement writes: fewer
// statements cost less than one per row, and 64 rows of 8 values stay far
// under SQLite's limit on parameters.
const insertChunk = 64

// insertBatches[n] is the INSERT statement of n batch rows.
var insertBatches = func() (ins [insertChunk + 1]string) {
	for n := 1; n <= insertChunk; n++ {
		var b strings.Builder
		b.WriteString(`INSERT INTO batches(id, topic, part, off, last, n, ins, size, data) VALUES `)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`(?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		}
		ins[n] = b.String()
	}
	return ins
}()

// writeRows writes rows, which have their offsets, as batch rows in one
// transaction, and returns the rows written. The partitions' next offsets
// are not written: they follow from the last rows (parts has them when the
// last rows were deleted). The caller holds wmu.
func (e *Embedded) writeRows(ctx context.Context, rows []row) ([]rowBatch, error) {
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	batches := batchRows(rows)
	id, err := insertBatchRows(ctx, tx, batches, e.nextRow)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	e.nextRow = id
	return batches, nil
}

// insertBatchRows inserts batches, giving them ids from id on, and returns
// the id after the last.
func insertBatchRows(ctx context.Context, tx *sql.Tx, batches []rowBatch, id int64) (int64, error) {
	args := make([]any, 0, 9*min(len(batches), insertChunk))
	for rest := batches; len(rest) > 0; {
		chunk := rest[:min(len(rest), insertChunk)]
		rest = rest[len(chunk):]
		args = args[:0]
		for i := range chunk {
			b := &chunk[i]
			b.id = id
			id++
			args = append(args, b.id, b.tp.topic, b.tp.part, b.off, b.last, b.n, b.ins, b.size, b.data)
		}
		if _, err := tx.ExecContext(ctx, insertBatches[len(chunk)], args...); err != nil {
			return id, err
		}
	}
	return id, nil
}

// trim deletes the messages every consumer group has committed, when the
// log has no room for size more bytes, and returns the bytes it freed.
func (e *Embedded) trim(ctx context.Context, size int64) (int64, error) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	type cut struct {
		tp     topicPart
		off    int64
		nobody bool // no group reads the topic
	}
	var cuts []cut
	e.mu.Lock()
	if e.bytes+e.reserved+size <= e.cfg.MaxBytes {
		e.mu.Unlock()
		return 0, nil
	}
	for tp, pl := range e.logs {
		if pl.start >= pl.next {
			continue
		}
		b, nobody := pl.next, true
		for _, g := range e.groups {
			if off, ok := g.committed[tp]; ok {
				nobody = false
				b = min(b, off)
			}
		}
		if b > pl.start {
			cuts = append(cuts, cut{tp, b, nobody})
		}
	}
	e.mu.Unlock()
	var freed, n, unread int64
	for _, c := range cuts {
		b, k, err := e.deleteBefore(ctx, c.tp, c.off)
		if err != nil {
			return freed, err
		}
		freed += b
		n += k
		if c.nobody {
			unread += k
		}
	}
	if n > 0 {
		e.metrics.trimmed.WithLabelValues("size").Add(float64(n))
	}
	if unread > 0 {
		e.metrics.deletedUnread.Add(float64(unread))
		if now := time.Now(); now.Sub(e.lastUnreadLog) >= time.Minute {
			e.lastUnreadLog = now
			e.log.Warn("log full: deleted messages of topics no consumer group reads", "messages", unread, "max_bytes", e.cfg.MaxBytes)
		}
	}
	return freed, nil
}

// deleteBefore deletes the batch rows of tp that end before off and moves
// its start to off; it returns the bytes and messages deleted. A row that
// begins before off and ends after it stays whole until a later call: its
// first messages are no longer read (they are before start) but still
// counted as stored. The caller holds wmu.
func (e *Embedded) deleteBefore(ctx context.Context, tp topicPart, off int64) (int64, int64, error) {
	e.mu.Lock()
	pl := e.partLocked(tp)
	k := pl.firstRow(off) // pl.rows[:k] end before off
	ids := make([]any, k)
	var size, n int64
	for i, r := range pl.rows[:k] {
		ids[i] = r.id
		size += r.size
		n += r.n
	}
	next := pl.next
	e.mu.Unlock()

	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	const chunk = 500
	for rest := ids; len(rest) > 0; {
		c := rest[:min(len(rest), chunk)]
		rest = rest[len(c):]
		if _, err := tx.ExecContext(ctx, `DELETE FROM batches WHERE id IN (?`+strings.Repeat(", ?", len(c)-1)+`)`, c...); err != nil {
			return 0, 0, err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO parts(topic, part, start, next) VALUES (?, ?, ?, ?)
		ON CONFLICT(topic, part) DO UPDATE SET start = max(start, excluded.start), next = max(next, excluded.next)`,
		tp.topic, tp.part, off, next); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, err
	}
	e.mu.Lock()
	pl.start = max(pl.start, off)
	// Only this function removes rows, under wmu: the first k are those.
	// The slice moves forward (appends reallocate it, copying only what is
	// kept); it is copied here instead when what is kept is under a
	// quarter of the array it views, so that a partition gone idle does
	// not hold a large array of deleted rows. (Measured before moving:
	// after it, cap no longer counts the rows just deleted.)
	switch kept := len(pl.rows) - k; {
	case kept == 0:
		pl.rows = nil
	case cap(pl.rows) > 1024 && kept < cap(pl.rows)/4:
		pl.rows = slices.Clone(pl.rows[k:])
	default:
		pl.rows = pl.rows[k:]
	}
	e.bytes -= size
	e.count -= n
	e.broadcastLocked()
	e.mu.Unlock()
	return size, n, nil
}

// expire deletes the messages older than the retention, counting those a
// consumer group had not consumed yet.
func (e *Embedded) expire(ctx context.Context) {
	cutoff := e.now().Add(-e.cfg.Retention.D()).UnixMilli()
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.mu.Lock()
	tps := make([]topicPart, 0, len(e.logs))
	for tp, pl := range e.logs {
		if pl.start < pl.next {
			tps = append(tps, tp)
		}
	}
	e.mu.Unlock()
	var lost, deleted int64
	for _, tp := range tps {
		e.mu.Lock()
		pl := *e.partLocked(tp)
		e.mu.Unlock()
		// The first row stored since the cutoff: the rows before it go.
		first := pl.next
		e.mu.Lock()
		for _, r := range e.partLocked(tp).rows {
			if r.ins >= cutoff {
				first = r.off
				break
			}
		}
		e.mu.Unlock()
		if first <= pl.start {
			continue
		}
		_, n, err := e.deleteBefore(ctx, tp, first)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error("expire messages", "partition", tp.String(), "err", err)
			}
			return
		}
		deleted += n
		e.mu.Lock()
		for _, g := range e.groups {
			if off, ok := g.committed[tp]; ok && off < first {
				lost += first - max(off, pl.start)
			}
		}
		e.mu.Unlock()
	}
	if deleted > 0 {
		e.metrics.trimmed.WithLabelValues("age").Add(float64(deleted))
	}
	if lost > 0 {
		e.metrics.expiredUnconsumed.Add(float64(lost))
		e.log.Warn("messages expired before every consumer group read them", "messages", lost, "retention", e.cfg.Retention)
	}
}

// DeleteGroup forgets a consumer group that is no longer used, so that
// the messages it had not consumed no longer hold back the deletion of
// consumed messages (and Publish with it). It fails while the group has
// members.
func (e *Embedded) DeleteGroup(ctx context.Context, name string) error {
	ctx, leave, err := e.enter(ctx)
	if err != nil {
		return err
	}
	defer leave()
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.mu.Lock()
	if g := e.groups[name]; g != nil && len(g.members) > 0 {
		e.mu.Unlock()
		return fmt.Errorf("delete consumer group %q: it has %d members", name, len(g.members))
	}
	e.mu.Unlock()
	if _, err := e.db.ExecContext(ctx, `DELETE FROM offsets WHERE grp = ?`, name); err != nil {
		return fmt.Errorf("delete consumer group %q: %w", name, err)
	}
	e.mu.Lock()
	delete(e.groups, name)
	e.broadcastLocked()
	e.mu.Unlock()
	return nil
}

// sortedTPs returns the keys of a set of partitions in order.
func sortedTPs(set map[topicPart]struct{}) []topicPart {
	tps := make([]topicPart, 0, len(set))
	for tp := range set {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, compareTP)
	return tps
}

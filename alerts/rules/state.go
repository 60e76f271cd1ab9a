package rules

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/ingest/event"
)

// StateStore keeps the engine's per-group state across restarts: one JSON
// record per rule and group key.
type StateStore interface {
	// LoadState returns every stored record.
	LoadState(ctx context.Context) ([]StateRecord, error)
	// SaveState writes upserts and removes deletes, atomically.
	SaveState(ctx context.Context, upserts []StateRecord, deletes []StateKey) error
}

// PartitionedStateStore is a StateStore that can load the records of some
// partitions only: what a node of the partitioned alerts mode is given.
type PartitionedStateStore interface {
	StateStore
	// LoadPartitions returns the records stored with one of parts.
	LoadPartitions(ctx context.Context, parts []int) ([]StateRecord, error)
}

// Unpartitioned is the partition of the state of a single alerts node
// (Engine.Process), and of every record stored before partitions were.
const Unpartitioned = -1

// StateKey names one group's state.
type StateKey struct {
	Rule string
	Key  string
}

// StateRecord is one group's state.
type StateRecord struct {
	StateKey
	State   []byte    // JSON
	Updated time.Time // event time of the group's newest event
	// Part is the partition of sharpeye.alerts.events the group's events
	// come from, or Unpartitioned.
	Part int
}

// maxSeen bounds the event ids remembered per group to skip redeliveries.
const maxSeen = 256

// maxPending bounds the unpaired events kept per side of a correlation.
const maxPending = 16

// maxWindowEvents is how many of a count window's events a firing carries
// (the newest) and so how many are stored whole; the older ones are kept
// as id and time, enough to count them. A window of 60 motion events would
// otherwise rewrite 60 events' JSON at every change, and attach them all.
const maxWindowEvents = 10

// group is the state of one rule for one group key.
type group struct {
	Fingerprint string `json:"fp"`
	// Last is the newest event time seen for the group (Unix ms).
	Last int64 `json:"last"`
	// Window holds the matching events of a count rule, oldest first.
	Window []*entry `json:"window,omitempty"`
	// Holding, Since and Held are a for rule's episode: since when the
	// condition holds and its latest event; Fired once it fired.
	Holding bool   `json:"holding,omitempty"`
	Since   int64  `json:"since,omitempty"`
	Held    *entry `json:"held,omitempty"`
	Fired   bool   `json:"fired,omitempty"`
	// A and B are a correlation's unpaired events (primary and second).
	A []*entry `json:"a,omitempty"`
	B []*entry `json:"b,omitempty"`
	// HasFired and LastFire give the cooldown.
	HasFired bool  `json:"has_fired,omitempty"`
	LastFire int64 `json:"last_fire,omitempty"`
	// Labels are the inhibits.equal values of the last firing.
	Labels map[string]string `json:"labels,omitempty"`
	// Seen are the ids of the events that changed this state, newest last.
	Seen []string `json:"seen,omitempty"`

	seen map[string]struct{}
	// part is the partition of the group's latest event (StateRecord.Part).
	part int
}

func (g *group) isSeen(id string) bool {
	if g.seen == nil {
		g.seen = make(map[string]struct{}, len(g.Seen))
		for _, s := range g.Seen {
			g.seen[s] = struct{}{}
		}
	}
	_, ok := g.seen[id]
	return ok
}

func (g *group) markSeen(id string) {
	g.isSeen(id) // builds the map
	g.Seen = append(g.Seen, id)
	g.seen[id] = struct{}{}
	if n := len(g.Seen) - maxSeen; n > 0 {
		for _, old := range g.Seen[:n] {
			delete(g.seen, old)
		}
		g.Seen = slices.Delete(g.Seen, 0, n)
	}
}

// entry is one event kept in state: its id, time and (so that a firing
// after a restart has complete events) its encoding. The groups an event
// enters in one batch share its entry (evalCtx.entry), so it is encoded
// once: nothing changes an entry but filling in ev or Ev.
type entry struct {
	ID string          `json:"id"`
	T  int64           `json:"t"`
	Ev json.RawMessage `json:"ev,omitempty"`

	ev *event.Event
}

// event returns the entry's event, decoding it when it came from the store.
func (en *entry) event() *event.Event {
	if en.ev == nil && len(en.Ev) > 0 {
		if e, err := event.Decode(en.Ev); err == nil {
			en.ev = e
		}
	}
	return en.ev
}

// encode fills Ev before the entry is stored.
func (en *entry) encode() {
	if en.Ev == nil && en.ev != nil {
		if b, err := en.ev.Encode(); err == nil && len(b) <= event.MaxSize {
			en.Ev = b
		}
	}
}

// marshal encodes the group as encoding/json would (the fields of group,
// read back with json.Unmarshal), without reflection and without scanning
// each stored event again: the state of every group an event touches is
// written after each batch, so this is on the alerts role's hot path.
func (g *group) marshal() ([]byte, error) {
	whole := max(0, len(g.Window)-maxWindowEvents) // the window's entries stored whole from here
	size := 256 + len(g.Seen)*40 + whole*64
	for _, s := range [][]*entry{g.Window[whole:], g.A, g.B, {g.Held}} {
		for _, en := range s {
			if en != nil {
				en.encode()
				size += 64 + len(en.Ev)
			}
		}
	}
	b := make([]byte, 0, size)
	b = append(b, `{"fp":`...)
	b = event.AppendJSONString(b, g.Fingerprint)
	b = append(b, `,"last":`...)
	b = strconv.AppendInt(b, g.Last, 10)
	b = appendEntries(b, "window", g.Window, whole)
	if g.Holding {
		b = append(b, `,"holding":true`...)
	}
	if g.Since != 0 {
		b = append(b, `,"since":`...)
		b = strconv.AppendInt(b, g.Since, 10)
	}
	if g.Held != nil {
		b = append(b, `,"held":`...)
		b = g.Held.appendJSON(b)
	}
	if g.Fired {
		b = append(b, `,"fired":true`...)
	}
	b = appendEntries(b, "a", g.A, 0)
	b = appendEntries(b, "b", g.B, 0)
	if g.HasFired {
		b = append(b, `,"has_fired":true`...)
	}
	if g.LastFire != 0 {
		b = append(b, `,"last_fire":`...)
		b = strconv.AppendInt(b, g.LastFire, 10)
	}
	if len(g.Labels) > 0 {
		b = append(b, `,"labels":{`...)
		for i, k := range slices.Sorted(maps.Keys(g.Labels)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = event.AppendJSONString(b, k)
			b = append(b, ':')
			b = event.AppendJSONString(b, g.Labels[k])
		}
		b = append(b, '}')
	}
	if len(g.Seen) > 0 {
		b = append(b, `,"seen":[`...)
		for i, id := range g.Seen {
			if i > 0 {
				b = append(b, ',')
			}
			b = event.AppendJSONString(b, id)
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// appendEntries appends es as the member name; those before whole are
// written as id and time only (counted, not carried).
func appendEntries(b []byte, name string, es []*entry, whole int) []byte {
	if len(es) == 0 {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":[`...)
	for i, en := range es {
		if i > 0 {
			b = append(b, ',')
		}
		if i < whole && en != nil {
			en = &entry{ID: en.ID, T: en.T}
		}
		b = en.appendJSON(b)
	}
	return append(b, ']')
}

// appendJSON appends the entry; its event is valid JSON already (from
// event.Encode, or as read from the store), so it is copied as it is.
func (en *entry) appendJSON(b []byte) []byte {
	if en == nil {
		return append(b, "null"...)
	}
	b = append(b, `{"id":`...)
	b = event.AppendJSONString(b, en.ID)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, en.T, 10)
	if len(en.Ev) > 0 {
		b = append(b, `,"ev":`...)
		b = append(b, en.Ev...)
	}
	return append(b, '}')
}

// SQLState is the StateStore in the case database (table rule_state).
type SQLState struct {
	db *casedb.DB
}

// NewSQLState returns the state store in db.
func NewSQLState(db *casedb.DB) *SQLState { return &SQLState{db: db} }

// LoadState implements StateStore.
func (s *SQLState) LoadState(ctx context.Context) ([]StateRecord, error) {
	return s.load(ctx, "SELECT rule_id, group_key, state, updated_at, part FROM rule_state")
}

// LoadPartitions implements PartitionedStateStore.
func (s *SQLState) LoadPartitions(ctx context.Context, parts []int) ([]StateRecord, error) {
	if len(parts) == 0 {
		return nil, nil
	}
	q := "SELECT rule_id, group_key, state, updated_at, part FROM rule_state WHERE part IN (?" + strings.Repeat(", ?", len(parts)-1) + ")"
	args := make([]any, len(parts))
	for i, p := range parts {
		args[i] = p
	}
	return s.load(ctx, q, args...)
}

func (s *SQLState) load(ctx context.Context, q string, args ...any) ([]StateRecord, error) {
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("load rule state: %w", err)
	}
	defer rows.Close()
	var out []StateRecord
	for rows.Next() {
		var r StateRecord
		var st string
		var ms int64
		if err := rows.Scan(&r.Rule, &r.Key, &st, &ms, &r.Part); err != nil {
			return nil, fmt.Errorf("load rule state: %w", err)
		}
		r.State = []byte(st)
		r.Updated = casedb.FromMillis(ms)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load rule state: %w", err)
	}
	return out, nil
}

// SaveState implements StateStore.
func (s *SQLState) SaveState(ctx context.Context, upserts []StateRecord, deletes []StateKey) error {
	if len(upserts) == 0 && len(deletes) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save rule state: %w", err)
	}
	defer tx.Rollback()
	if err := s.save(ctx, tx, upserts, deletes); err != nil {
		return fmt.Errorf("save rule state: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save rule state: %w", err)
	}
	return nil
}

// SaveStateTx is SaveState within tx, a transaction of the same case
// database: the alerts role writes a batch's rule state in the
// transaction that turns its firings into cases.
func (s *SQLState) SaveStateTx(ctx context.Context, tx *sql.Tx, upserts []StateRecord, deletes []StateKey) error {
	if err := s.save(ctx, tx, upserts, deletes); err != nil {
		return fmt.Errorf("save rule state: %w", err)
	}
	return nil
}

func (s *SQLState) save(ctx context.Context, tx *sql.Tx, upserts []StateRecord, deletes []StateKey) error {
	if len(deletes) > 0 {
		del, err := tx.PrepareContext(ctx, s.db.Rebind("DELETE FROM rule_state WHERE rule_id = ? AND group_key = ?"))
		if err != nil {
			return err
		}
		defer del.Close()
		for _, k := range deletes {
			if _, err := del.ExecContext(ctx, k.Rule, k.Key); err != nil {
				return err
			}
		}
	}
	// Many rows a statement: on PostgreSQL each statement is a round trip,
	// and a batch of events touches hundreds of groups.
	for len(upserts) > 0 {
		n := min(len(upserts), upsertRows)
		q := "INSERT INTO rule_state (rule_id, group_key, state, updated_at, part) VALUES " + casedb.Placeholders(n, 5) +
			" ON CONFLICT (rule_id, group_key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, part = excluded.part"
		args := make([]any, 0, 5*n)
		for _, r := range upserts[:n] {
			args = append(args, r.Rule, r.Key, string(r.State), casedb.Millis(r.Updated), r.Part)
		}
		if _, err := tx.ExecContext(ctx, s.db.Rebind(q), args...); err != nil {
			return err
		}
		upserts = upserts[n:]
	}
	return nil
}

// upsertRows is how many rule state rows one statement writes (five
// parameters each, well under SQLite's and PostgreSQL's limits).
const upsertRows = 200

var _ PartitionedStateStore = (*SQLState)(nil)

package rules

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"sharpeye/alerts/casedb"
)

// Store errors.
var (
	ErrNotFound  = errors.New("no such rule")
	ErrExists    = errors.New("rule exists")
	ErrConflict  = errors.New("rule changed since it was read")
	ErrNoStorage = errors.New("rules cannot be changed without a case database")
)

// Where a rule comes from.
const (
	SourceConfig = "config" // the configuration file, unchanged
	SourceAPI    = "api"    // created or changed through the API
)

// Change actions in the history.
const (
	ActionCreate  = "create"
	ActionUpdate  = "update"
	ActionDelete  = "delete"  // an API rule removed
	ActionDisable = "disable" // a configuration rule deleted through the API: kept, disabled
)

// Entry is a rule as the store knows it.
type Entry struct {
	Rule
	// Version is the rule set version of the rule's last change; 0 for a
	// configuration rule never changed through the API.
	Version int64 `json:"version"`
	// Source is config or api.
	Source string `json:"source"`
	// OverridesConfig is set on an API rule that replaces (or, deleted,
	// disables) the configuration's rule of the same id.
	OverridesConfig bool       `json:"overrides_config,omitempty"`
	UpdatedBy       string     `json:"updated_by,omitempty"`
	UpdatedAt       *time.Time `json:"updated_at,omitempty"`
}

// Change is one entry of a rule's history.
type Change struct {
	Version int64     `json:"version"`
	Action  string    `json:"action"`
	Actor   string    `json:"actor"`
	At      time.Time `json:"at"`
	// Spec is the rule after the change (before it, for a delete).
	Spec Rule `json:"spec"`
}

// Store holds the rule set: the configuration's rules overridden and
// extended by those edited through the API, kept in the case database.
// Every change is validated with the whole set before it is stored, and
// bumps the set's version; Run makes other nodes pick it up.
type Store struct {
	db     *casedb.DB // nil: the configuration only, read-only
	config []Rule
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	set     *Set
	entries []Entry
	loc     Locality
}

// NewStore returns a store over the configuration's rules and db (nil for
// none: the rules cannot be changed). It checks the configuration's rules
// compile; call Load to read the database.
func NewStore(config []Rule, db *casedb.DB, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	set, err := Compile(config)
	if err != nil {
		return nil, fmt.Errorf("alerts.rules: %w", err)
	}
	s := &Store{db: db, config: slices.Clone(config), log: log, now: time.Now, set: set}
	s.entries, _ = merge(config, nil)
	return s, nil
}

// SetLocality makes the store refuse, from now on, rules that loc cannot
// partition (Locality.Check): those of the configuration now, those of
// the database at Load, and changes through the API. Call it before Load.
func (s *Store) SetLocality(loc Locality) error {
	if _, err := CompileIn(s.config, loc); err != nil {
		return fmt.Errorf("alerts.rules: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loc = loc
	return nil
}

// Locality returns the locality the rules must fit (see SetLocality).
func (s *Store) Locality() Locality {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loc
}

// Set returns the current rule set.
func (s *Store) Set() *Set {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set
}

// Entries returns every rule, configuration rules first (in file order),
// then the API's by id.
func (s *Store) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.entries)
}

// Entry returns the rule id.
func (s *Store) Entry(id string) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.entries, func(e Entry) bool { return e.ID == id })
	if i < 0 {
		return Entry{}, false
	}
	return s.entries[i], true
}

// row is a rule stored in the database.
type row struct {
	spec      Rule
	version   int64
	updatedBy string
	updatedAt int64
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) readRows(ctx context.Context, q querier) (int64, map[string]row, error) {
	var version int64
	if err := q.QueryRowContext(ctx, "SELECT version FROM rule_set WHERE id = 1").Scan(&version); err != nil {
		return 0, nil, fmt.Errorf("read rule set version: %w", err)
	}
	rows, err := q.QueryContext(ctx, "SELECT id, spec, version, updated_by, updated_at FROM rules")
	if err != nil {
		return 0, nil, fmt.Errorf("read rules: %w", err)
	}
	defer rows.Close()
	out := make(map[string]row)
	for rows.Next() {
		var id, spec string
		var r row
		if err := rows.Scan(&id, &spec, &r.version, &r.updatedBy, &r.updatedAt); err != nil {
			return 0, nil, fmt.Errorf("read rules: %w", err)
		}
		if err := json.Unmarshal([]byte(spec), &r.spec); err != nil {
			return 0, nil, fmt.Errorf("read rule %q: %w", id, err)
		}
		r.spec.ID = id
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("read rules: %w", err)
	}
	return version, out, nil
}

// merge returns the effective rules: the configuration's overridden by the
// database's, then the database's own, by id.
func merge(config []Rule, db map[string]row) ([]Entry, []Rule) {
	var entries []Entry
	for _, r := range config {
		e := Entry{Rule: r, Source: SourceConfig}
		if d, ok := db[r.ID]; ok {
			e = d.entry()
			e.OverridesConfig = true
		}
		entries = append(entries, e)
	}
	var extra []string
	for id := range db {
		if !slices.ContainsFunc(config, func(r Rule) bool { return r.ID == id }) {
			extra = append(extra, id)
		}
	}
	slices.Sort(extra)
	for _, id := range extra {
		entries = append(entries, db[id].entry())
	}
	rules := make([]Rule, len(entries))
	for i := range entries {
		rules[i] = entries[i].Rule
	}
	return entries, rules
}

func (r row) entry() Entry {
	at := casedb.FromMillis(r.updatedAt)
	return Entry{Rule: r.spec, Version: r.version, Source: SourceAPI, UpdatedBy: r.updatedBy, UpdatedAt: &at}
}

// Load reads the rules from the database and compiles the set. A set that
// no longer compiles (the configuration changed under the database's rules)
// is an error and the previous set stays in use.
func (s *Store) Load(ctx context.Context) (*Set, error) {
	if s.db == nil {
		return s.Set(), nil
	}
	version, rows, err := s.readRows(ctx, s.db.DB)
	if err != nil {
		return nil, err
	}
	entries, rules := merge(s.config, rows)
	set, err := CompileIn(rules, s.Locality())
	if err != nil {
		return nil, fmt.Errorf("rule set version %d: %w", version, err)
	}
	set.version = version
	s.mu.Lock()
	s.set, s.entries = set, entries
	s.mu.Unlock()
	return set, nil
}

// Run polls the set's version every poll until ctx ends and hands every
// new set to apply. A set that fails to load is logged and skipped.
func (s *Store) Run(ctx context.Context, poll time.Duration, apply func(*Set)) error {
	if s.db == nil {
		<-ctx.Done()
		return nil
	}
	return casedb.Poll(ctx, poll, func(ctx context.Context) error {
		var v int64
		if err := s.db.QueryRow(ctx, "SELECT version FROM rule_set WHERE id = 1").Scan(&v); err != nil {
			s.log.Warn("poll rule set version", "err", err)
			return nil
		}
		if v == s.Set().Version() {
			return nil
		}
		set, err := s.Load(ctx)
		if err != nil {
			s.log.Error("reload rules; keeping the previous set", "err", err)
			return nil
		}
		s.log.Info("rules reloaded", "version", set.Version(), "rules", len(set.rules))
		apply(set)
		return nil
	})
}

// Create adds a rule.
func (s *Store) Create(ctx context.Context, r Rule, actor string) (Entry, error) {
	return s.change(ctx, actor, r.ID, func(cur *Entry, isConfig bool) (*Rule, string, error) {
		if cur != nil {
			return nil, "", fmt.Errorf("%w: %q", ErrExists, r.ID)
		}
		return &r, ActionCreate, nil
	})
}

// Update replaces the rule r.ID, which must be at version.
func (s *Store) Update(ctx context.Context, r Rule, version int64, actor string) (Entry, error) {
	return s.change(ctx, actor, r.ID, func(cur *Entry, isConfig bool) (*Rule, string, error) {
		if cur == nil {
			return nil, "", fmt.Errorf("%w: %q", ErrNotFound, r.ID)
		}
		if cur.Version != version {
			return nil, "", fmt.Errorf("%w: %q is at version %d, not %d; read it again", ErrConflict, r.ID, cur.Version, version)
		}
		return &r, ActionUpdate, nil
	})
}

// Delete removes the rule id; a configuration rule is kept, disabled.
func (s *Store) Delete(ctx context.Context, id, actor string) (Entry, error) {
	return s.change(ctx, actor, id, func(cur *Entry, isConfig bool) (*Rule, string, error) {
		if cur == nil {
			return nil, "", fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		if isConfig {
			r := cur.Rule
			off := false
			r.Enabled = &off
			return &r, ActionDisable, nil
		}
		return nil, ActionDelete, nil
	})
}

// change applies one change in a transaction: the set's version is bumped
// first (serialising writers on every node), the whole new set compiled,
// then the rule and its history written.
func (s *Store) change(ctx context.Context, actor, id string, f func(cur *Entry, isConfig bool) (*Rule, string, error)) (Entry, error) {
	if s.db == nil {
		return Entry{}, ErrNoStorage
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Entry{}, fmt.Errorf("change rule: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "UPDATE rule_set SET version = version + 1 WHERE id = 1"); err != nil {
		return Entry{}, fmt.Errorf("change rule: %w", err)
	}
	version, rows, err := s.readRows(ctx, tx)
	if err != nil {
		return Entry{}, err
	}
	entries, _ := merge(s.config, rows)
	var cur *Entry
	if i := slices.IndexFunc(entries, func(e Entry) bool { return e.ID == id }); i >= 0 {
		cur = &entries[i]
	}
	isConfig := slices.ContainsFunc(s.config, func(r Rule) bool { return r.ID == id })
	next, action, err := f(cur, isConfig)
	if err != nil {
		return Entry{}, err
	}
	now := casedb.Millis(s.now())
	old, had := rows[id]
	if next == nil {
		delete(rows, id)
	} else {
		rows[id] = row{spec: *next, version: version, updatedBy: actor, updatedAt: now}
	}
	newEntries, rules := merge(s.config, rows)
	set, err := CompileIn(rules, s.Locality())
	if err != nil {
		return Entry{}, err
	}
	set.version = version

	var spec []byte
	switch {
	case next != nil:
		spec, err = json.Marshal(next)
		if err != nil {
			return Entry{}, err
		}
		q := "UPDATE rules SET spec = ?, version = ?, updated_by = ?, updated_at = ? WHERE id = ?"
		if !had {
			q = "INSERT INTO rules (spec, version, updated_by, updated_at, id) VALUES (?, ?, ?, ?, ?)"
		}
		if _, err := tx.ExecContext(ctx, s.db.Rebind(q), string(spec), version, actor, now, id); err != nil {
			return Entry{}, fmt.Errorf("store rule %q: %w", id, err)
		}
	default:
		// Only an API rule is deleted, so it had a row.
		spec, _ = json.Marshal(old.spec)
		if _, err := tx.ExecContext(ctx, s.db.Rebind("DELETE FROM rules WHERE id = ?"), id); err != nil {
			return Entry{}, fmt.Errorf("delete rule %q: %w", id, err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.db.Rebind("INSERT INTO rule_history (rule_id, version, spec, actor, action, at) VALUES (?, ?, ?, ?, ?, ?)"),
		id, version, string(spec), actor, action, now); err != nil {
		return Entry{}, fmt.Errorf("record rule history: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Entry{}, fmt.Errorf("change rule: %w", err)
	}
	s.mu.Lock()
	s.set, s.entries = set, newEntries
	s.mu.Unlock()
	s.log.Info("rule changed", "rule", id, "action", action, "actor", actor, "version", version)
	if i := slices.IndexFunc(newEntries, func(e Entry) bool { return e.ID == id }); i >= 0 {
		return newEntries[i], nil
	}
	return Entry{Rule: Rule{ID: id}, Version: version, Source: SourceAPI}, nil
}

// History returns the changes of rule id, newest first.
func (s *Store) History(ctx context.Context, id string) ([]Change, error) {
	out := []Change{}
	if s.db == nil {
		return out, nil
	}
	rows, err := s.db.Query(ctx, "SELECT version, spec, actor, action, at FROM rule_history WHERE rule_id = ? ORDER BY version DESC", id)
	if err != nil {
		return nil, fmt.Errorf("read rule history: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c Change
		var spec string
		var at int64
		if err := rows.Scan(&c.Version, &spec, &c.Actor, &c.Action, &at); err != nil {
			return nil, fmt.Errorf("read rule history: %w", err)
		}
		if err := json.NewDecoder(strings.NewReader(spec)).Decode(&c.Spec); err != nil {
			return nil, fmt.Errorf("read rule history of %q: %w", id, err)
		}
		c.At = casedb.FromMillis(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

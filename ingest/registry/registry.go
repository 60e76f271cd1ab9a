// Package registry keeps one kind of record (cameras, devices) that comes
// both from the configuration file, read-only, and from the case database,
// where the API adds, changes and removes records. A stored record whose id
// the configuration also defines is shadowed by the configuration's.
//
// Reads take no lock: they see an immutable snapshot. Changes are serialised,
// published as a new snapshot and announced through Changed; Run polls the
// database so that changes made on another node sharing it apply here too.
// The kind's package does the SQL and its own checks; the registry does the
// rest.
package registry

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"sharpeye/alerts/casedb"
)

// Sources of a record.
const (
	FromConfig = "config" // the configuration file; read-only through the API
	FromAPI    = "api"    // added through the API; kept in the case database
)

// Stored is where an entry comes from and its version (0 for the
// configuration's). Entries embed it.
type Stored struct {
	Source  string `json:"source"`
	Version int64  `json:"version"`
}

// Origin returns s: through it, a struct embedding Stored is an Entry.
func (s Stored) Origin() Stored { return s }

// Entry is a record as a registry holds it.
type Entry interface{ Origin() Stored }

// Kind is what a registry needs to know of its records besides the entries.
type Kind[E Entry, X any] struct {
	// Load reads every stored entry, by id; nil when there is no database.
	Load func(ctx context.Context) (map[string]E, error)
	// Index derives from every entry the lookups other than by id (nil: none).
	Index func(entries map[string]E) X
	// The errors answered, each naming the kind.
	NotFound, Exists, ReadOnly, Conflict error
}

// snapshot is one immutable set of entries; changed is closed when the
// next replaces it.
type snapshot[E Entry, X any] struct {
	byID    map[string]E
	index   X
	changed chan struct{}
}

// Registry holds every entry of one kind, keyed by id.
type Registry[E Entry, X any] struct {
	kind   Kind[E, X]
	config map[string]E

	mu   sync.Mutex // serialises changes and loads
	snap atomic.Pointer[snapshot[E, X]]
}

// New holds the configuration's entries (Source FromConfig), by id; Load
// adds the stored ones.
func New[E Entry, X any](kind Kind[E, X], config map[string]E) *Registry[E, X] {
	if config == nil {
		config = map[string]E{}
	}
	r := &Registry[E, X]{kind: kind, config: config}
	r.publishLocked(maps.Clone(config))
	return r
}

// Changed returns a channel closed at the next change of any entry.
func (r *Registry[E, X]) Changed() <-chan struct{} { return r.snap.Load().changed }

// publishLocked stores a new set of entries and announces it.
func (r *Registry[E, X]) publishLocked(entries map[string]E) {
	s := &snapshot[E, X]{byID: entries, changed: make(chan struct{})}
	if r.kind.Index != nil {
		s.index = r.kind.Index(entries)
	}
	old := r.snap.Swap(s)
	if old != nil {
		close(old.changed)
	}
}

// All returns every entry, sorted by id.
func (r *Registry[E, X]) All() []E {
	m := r.snap.Load().byID
	out := make([]E, 0, len(m))
	for _, id := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[id])
	}
	return out
}

// Get returns one entry.
func (r *Registry[E, X]) Get(id string) (E, bool) {
	e, ok := r.snap.Load().byID[id]
	return e, ok
}

// Index returns what Kind.Index derived from the current entries.
func (r *Registry[E, X]) Index() X { return r.snap.Load().index }

// Load reads the stored entries.
func (r *Registry[E, X]) Load(ctx context.Context) error {
	if r.kind.Load == nil {
		return nil
	}
	// Held across the read so that a change made here meanwhile is not
	// undone by an older read.
	r.mu.Lock()
	defer r.mu.Unlock()
	stored, err := r.kind.Load(ctx)
	if err != nil {
		return err
	}
	next := maps.Clone(r.config)
	for id, e := range stored {
		if _, ok := next[id]; !ok {
			next[id] = e
		}
	}
	if !sameEntries(r.snap.Load().byID, next) {
		r.publishLocked(next)
	}
	return nil
}

func sameEntries[E Entry](a, b map[string]E) bool {
	if len(a) != len(b) {
		return false
	}
	for id, ea := range a {
		eb, ok := b[id]
		if !ok || ea.Origin() != eb.Origin() {
			return false
		}
	}
	return true
}

// Run reloads the stored entries every interval until ctx ends, so that
// entries changed on another node apply here too.
func (r *Registry[E, X]) Run(ctx context.Context, interval time.Duration) error {
	return casedb.Poll(ctx, interval, r.Load)
}

// Create adds the entry store writes, unless id exists. store runs with
// changes serialised; it does the kind's own checks and writes the record.
func (r *Registry[E, X]) Create(id string, store func() (E, error)) (E, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var zero E
	if _, ok := r.Get(id); ok {
		return zero, r.kind.Exists
	}
	e, err := store()
	if err != nil {
		return zero, err
	}
	r.putLocked(id, e)
	return e, nil
}

// Update replaces a stored entry by the one store writes; version must be
// the one read (optimistic concurrency; 0 skips the check). store gets the
// entry it replaces and runs with changes serialised.
func (r *Registry[E, X]) Update(id string, version int64, store func(old E) (E, error)) (E, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var zero E
	old, ok := r.Get(id)
	switch {
	case !ok:
		return zero, r.kind.NotFound
	case old.Origin().Source == FromConfig:
		return zero, r.kind.ReadOnly
	case version != 0 && version != old.Origin().Version:
		return zero, r.kind.Conflict
	}
	e, err := store(old)
	if err != nil {
		return zero, err
	}
	r.putLocked(id, e)
	return e, nil
}

// Delete removes a stored entry once remove has removed its record.
func (r *Registry[E, X]) Delete(id string, remove func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.Get(id)
	switch {
	case !ok:
		return r.kind.NotFound
	case old.Origin().Source == FromConfig:
		return r.kind.ReadOnly
	}
	if err := remove(); err != nil {
		return err
	}
	next := maps.Clone(r.snap.Load().byID)
	delete(next, id)
	r.publishLocked(next)
	return nil
}

func (r *Registry[E, X]) putLocked(id string, e E) {
	next := maps.Clone(r.snap.Load().byID)
	next[id] = e
	r.publishLocked(next)
}

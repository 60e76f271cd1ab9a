package camera

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
)

// Sources of a camera record.
const (
	FromConfig = "config" // the configuration file; read-only through the API
	FromAPI    = "api"    // added through the API; kept in the case database
)

// Errors callers test for.
var (
	ErrNotFound  = errors.New("no such camera")
	ErrExists    = errors.New("a camera with that id exists")
	ErrReadOnly  = errors.New("the camera is defined in the configuration file; change it there")
	ErrConflict  = errors.New("the camera was changed by someone else; reload and retry")
	errNoStorage = errors.New("no camera storage")
)

// Entry is a camera record with where it comes from.
type Entry struct {
	Camera
	Source  string `json:"source"`
	Version int64  `json:"version"`
}

// Registry holds every camera: the configuration's and the API's. Changes
// made through the API (here or on another node sharing the database) are
// seen by Run's polling and announced through Changed.
type Registry struct {
	db     *casedb.DB
	config map[string]Camera

	mu      sync.Mutex
	entries map[string]Entry
	changed chan struct{}
}

// NewRegistry holds the configuration's cameras; Load adds the stored ones.
func NewRegistry(config []Camera, db *casedb.DB) *Registry {
	r := &Registry{db: db, config: map[string]Camera{}, entries: map[string]Entry{}, changed: make(chan struct{})}
	for _, c := range config {
		c.Normalize()
		r.config[c.ID] = c
		r.entries[c.ID] = Entry{Camera: c, Source: FromConfig}
	}
	return r
}

// Changed returns a channel closed at the next change of any camera.
func (r *Registry) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *Registry) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// All returns every camera, sorted by id.
func (r *Registry) All() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Collect(maps.Values(r.entries))
	slices.SortFunc(out, func(a, b Entry) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out
}

// Get returns one camera.
func (r *Registry) Get(id string) (Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	return e, ok
}

// Load reads the stored cameras; a stored camera whose id the
// configuration also defines is shadowed by the configuration's.
func (r *Registry) Load(ctx context.Context) error {
	if r.db == nil {
		return nil
	}
	rows, err := r.db.Query(ctx, "SELECT id, spec, password, version FROM cameras")
	if err != nil {
		return fmt.Errorf("load cameras: %w", err)
	}
	defer rows.Close()
	stored := map[string]Entry{}
	for rows.Next() {
		var id, spec, pw string
		var version int64
		if err := rows.Scan(&id, &spec, &pw, &version); err != nil {
			return err
		}
		var c Camera
		if err := json.Unmarshal([]byte(spec), &c); err != nil {
			return fmt.Errorf("camera %s: stored record unreadable: %w", id, err)
		}
		c.ID, c.Password = id, conf.Secret(pw)
		c.Normalize()
		stored[id] = Entry{Camera: c, Source: FromAPI, Version: version}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := map[string]Entry{}
	for id, c := range r.config {
		next[id] = Entry{Camera: c, Source: FromConfig}
	}
	for id, e := range stored {
		if _, ok := next[id]; !ok {
			next[id] = e
		}
	}
	if !sameEntries(r.entries, next) {
		r.entries = next
		r.notifyLocked()
	}
	return nil
}

func sameEntries(a, b map[string]Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for id, ea := range a {
		eb, ok := b[id]
		if !ok || ea.Version != eb.Version || ea.Source != eb.Source {
			return false
		}
	}
	return true
}

// Run reloads the stored cameras every interval until ctx ends, so that
// cameras changed on another node apply here too.
func (r *Registry) Run(ctx context.Context, interval time.Duration) error {
	return casedb.Poll(ctx, interval, r.Load)
}

func (r *Registry) store(ctx context.Context, c Camera, version int64, create bool) (Entry, error) {
	if r.db == nil {
		return Entry{}, errNoStorage
	}
	spec, err := json.Marshal(c)
	if err != nil {
		return Entry{}, err
	}
	now := casedb.Millis(time.Now())
	if create {
		_, err = r.db.Exec(ctx, "INSERT INTO cameras (id, spec, password, region, version, created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
			c.ID, string(spec), c.Password.Reveal(), c.Region, now, now)
		if casedb.IsUniqueViolation(err) {
			return Entry{}, ErrExists
		}
		if err != nil {
			return Entry{}, fmt.Errorf("store camera: %w", err)
		}
		return Entry{Camera: c, Source: FromAPI, Version: 1}, nil
	}
	res, err := r.db.Exec(ctx, "UPDATE cameras SET spec = ?, password = ?, region = ?, version = version + 1, updated_at = ? WHERE id = ? AND version = ?",
		string(spec), c.Password.Reveal(), c.Region, now, c.ID, version)
	if err != nil {
		return Entry{}, fmt.Errorf("store camera: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Entry{}, ErrConflict
	}
	return Entry{Camera: c, Source: FromAPI, Version: version + 1}, nil
}

// Create adds a camera (it must be valid: see Problems).
func (r *Registry) Create(ctx context.Context, c Camera) (Entry, error) {
	c.Normalize()
	if _, ok := r.Get(c.ID); ok {
		return Entry{}, ErrExists
	}
	e, err := r.store(ctx, c, 0, true)
	if err != nil {
		return Entry{}, err
	}
	r.put(e)
	return e, nil
}

// Update replaces a stored camera's record; version must be the one read
// (optimistic concurrency). An empty password keeps the stored one.
func (r *Registry) Update(ctx context.Context, c Camera, version int64) (Entry, error) {
	c.Normalize()
	old, ok := r.Get(c.ID)
	switch {
	case !ok:
		return Entry{}, ErrNotFound
	case old.Source == FromConfig:
		return Entry{}, ErrReadOnly
	case version != 0 && version != old.Version:
		return Entry{}, ErrConflict
	}
	if c.Password == "" && c.PasswordEnv == "" {
		c.Password = old.Password
	}
	e, err := r.store(ctx, c, old.Version, false)
	if err != nil {
		return Entry{}, err
	}
	r.put(e)
	return e, nil
}

// Delete removes a stored camera.
func (r *Registry) Delete(ctx context.Context, id string) error {
	old, ok := r.Get(id)
	switch {
	case !ok:
		return ErrNotFound
	case old.Source == FromConfig:
		return ErrReadOnly
	}
	if _, err := r.db.Exec(ctx, "DELETE FROM cameras WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete camera: %w", err)
	}
	r.mu.Lock()
	delete(r.entries, id)
	r.notifyLocked()
	r.mu.Unlock()
	return nil
}

func (r *Registry) put(e Entry) {
	r.mu.Lock()
	r.entries[e.ID] = e
	r.notifyLocked()
	r.mu.Unlock()
}

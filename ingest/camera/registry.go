package camera

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
	"sharpeye/ingest/registry"
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
	registry.Stored
}

// table is the registry's generic part; embedded under this name so that
// its Create, Update and Delete, which take the SQL, stay inside.
type table = registry.Registry[Entry, struct{}]

// Registry holds every camera: the configuration's and the API's. Changes
// made through the API (here or on another node sharing the database) are
// seen by Run's polling and announced through Changed. Reads (All, Get)
// take no lock.
type Registry struct {
	*table
	db *casedb.DB
}

// NewRegistry holds the configuration's cameras; Load adds the stored ones.
// db may be nil: configuration only, and the API cannot add cameras.
func NewRegistry(config []Camera, db *casedb.DB) *Registry {
	r := &Registry{db: db}
	kind := registry.Kind[Entry, struct{}]{NotFound: ErrNotFound, Exists: ErrExists, ReadOnly: ErrReadOnly, Conflict: ErrConflict}
	if db != nil {
		kind.Load = r.load
	}
	entries := map[string]Entry{}
	for _, c := range config {
		c.Normalize()
		entries[c.ID] = Entry{Camera: c, Stored: registry.Stored{Source: registry.FromConfig}}
	}
	r.table = registry.New(kind, entries)
	return r
}

// load reads the stored cameras.
func (r *Registry) load(ctx context.Context) (map[string]Entry, error) {
	rows, err := r.db.Query(ctx, "SELECT id, spec, password, version FROM cameras")
	if err != nil {
		return nil, fmt.Errorf("load cameras: %w", err)
	}
	defer rows.Close()
	stored := map[string]Entry{}
	for rows.Next() {
		var id, spec, pw string
		var version int64
		if err := rows.Scan(&id, &spec, &pw, &version); err != nil {
			return nil, fmt.Errorf("load cameras: %w", err)
		}
		var c Camera
		if err := json.Unmarshal([]byte(spec), &c); err != nil {
			return nil, fmt.Errorf("camera %s: stored record unreadable: %w", id, err)
		}
		c.ID, c.Password = id, conf.Secret(pw)
		c.Normalize()
		stored[id] = Entry{Camera: c, Stored: registry.Stored{Source: registry.FromAPI, Version: version}}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load cameras: %w", err)
	}
	return stored, nil
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
		return Entry{Camera: c, Stored: registry.Stored{Source: registry.FromAPI, Version: 1}}, nil
	}
	res, err := r.db.Exec(ctx, "UPDATE cameras SET spec = ?, password = ?, region = ?, version = version + 1, updated_at = ? WHERE id = ? AND version = ?",
		string(spec), c.Password.Reveal(), c.Region, now, c.ID, version)
	if err != nil {
		return Entry{}, fmt.Errorf("store camera: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Entry{}, ErrConflict
	}
	return Entry{Camera: c, Stored: registry.Stored{Source: registry.FromAPI, Version: version + 1}}, nil
}

// Create adds a camera (it must be valid: see Problems).
func (r *Registry) Create(ctx context.Context, c Camera) (Entry, error) {
	c.Normalize()
	return r.table.Create(c.ID, func() (Entry, error) {
		return r.store(ctx, c, 0, true)
	})
}

// Update replaces a stored camera's record; version must be the one read
// (optimistic concurrency; 0 skips the check). An empty password keeps the
// stored one.
func (r *Registry) Update(ctx context.Context, c Camera, version int64) (Entry, error) {
	c.Normalize()
	return r.table.Update(c.ID, version, func(old Entry) (Entry, error) {
		if c.Password == "" && c.PasswordEnv == "" {
			c.Password = old.Password
		}
		return r.store(ctx, c, old.Version, false)
	})
}

// Delete removes a stored camera.
func (r *Registry) Delete(ctx context.Context, id string) error {
	return r.table.Delete(id, func() error {
		if _, err := r.db.Exec(ctx, "DELETE FROM cameras WHERE id = ?", id); err != nil {
			return fmt.Errorf("delete camera: %w", err)
		}
		return nil
	})
}

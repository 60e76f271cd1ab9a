package device

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
	"sharpeye/ingest/registry"
)

// Errors callers test for.
var (
	ErrNotFound      = errors.New("no such device")
	ErrExists        = errors.New("a device with that id exists")
	ErrUsernameTaken = errors.New("another device has that MQTT username")
	ErrReadOnly      = errors.New("the device is defined in the configuration file; change it there")
	ErrConflict      = errors.New("the device was changed by someone else; reload and retry")
	ErrNoStorage     = errors.New("no device storage (no case database)")
)

// Entry is a device record with where it comes from.
type Entry struct {
	Device
	registry.Stored
	// hash is the stored password hash of a device added through the API.
	hash string
}

// HasCredential reports whether the device can log in to the embedded
// broker (it has a password).
func (e Entry) HasCredential() bool { return e.hash != "" || e.password() != "" }

// CheckPassword reports whether password is the device's.
func (e Entry) CheckPassword(password string) bool {
	if e.hash != "" {
		ok, err := checkHash(e.hash, password)
		return err == nil && ok
	}
	want := e.password()
	return want != "" && equalSecret(want, password)
}

// CredentialID changes whenever the device's username or password does: a
// session opened with an older credential is closed.
func (e Entry) CredentialID() string {
	h := sha256.New()
	h.Write([]byte(e.MQTTUsername()))
	h.Write([]byte{0})
	if e.hash != "" {
		h.Write([]byte(e.hash))
	} else {
		h.Write([]byte(e.password()))
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// Usernames maps each MQTT username to its device: the index ByUsername
// reads.
type Usernames map[string]Entry

func indexUsernames(entries map[string]Entry) Usernames {
	idx := make(Usernames, len(entries))
	// Sorted, so that of two devices claiming one username (which the
	// configuration check refuses) the same one wins on every node.
	for _, id := range slices.Sorted(maps.Keys(entries)) {
		u := entries[id].MQTTUsername()
		if _, taken := idx[u]; !taken {
			idx[u] = entries[id]
		}
	}
	return idx
}

// table is the registry's generic part; embedded under this name so that
// its Create, Update and Delete, which take the SQL, stay inside.
type table = registry.Registry[Entry, Usernames]

// Registry holds every device: the configuration's and the API's. Changes
// made through the API (here or on another node sharing the database) are
// seen by Run's polling and announced through Changed. Reads (All, Get,
// ByUsername) take no lock.
type Registry struct {
	*table
	db *casedb.DB
}

// NewRegistry holds the configuration's devices (checked beforehand: see
// List.Validate); Load adds the stored ones. db may be nil: configuration
// only, and the API cannot add devices.
func NewRegistry(config []Device, db *casedb.DB) *Registry {
	r := &Registry{db: db}
	kind := registry.Kind[Entry, Usernames]{Index: indexUsernames,
		NotFound: ErrNotFound, Exists: ErrExists, ReadOnly: ErrReadOnly, Conflict: ErrConflict}
	if db != nil {
		kind.Load = r.load
	}
	entries := map[string]Entry{}
	for _, d := range config {
		d.Normalize()
		entries[d.ID] = Entry{Device: d, Stored: registry.Stored{Source: registry.FromConfig}}
	}
	r.table = registry.New(kind, entries)
	return r
}

// ByUsername returns the device whose MQTT username is user.
func (r *Registry) ByUsername(user string) (Entry, bool) {
	e, ok := r.Index()[user]
	return e, ok
}

// load reads the stored devices.
func (r *Registry) load(ctx context.Context) (map[string]Entry, error) {
	rows, err := r.db.Query(ctx, "SELECT id, spec, password_hash, version FROM devices")
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	defer rows.Close()
	stored := map[string]Entry{}
	for rows.Next() {
		var id, spec, hash string
		var version int64
		if err := rows.Scan(&id, &spec, &hash, &version); err != nil {
			return nil, fmt.Errorf("load devices: %w", err)
		}
		var d Device
		if err := json.Unmarshal([]byte(spec), &d); err != nil {
			return nil, fmt.Errorf("device %s: stored record unreadable: %w", id, err)
		}
		d.ID = id
		d.Normalize()
		stored[id] = Entry{Device: d, Stored: registry.Stored{Source: registry.FromAPI, Version: version}, hash: hash}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	return stored, nil
}

// usernameTaken reports whether another device than id uses user.
func (r *Registry) usernameTaken(id, user string) bool {
	other, ok := r.ByUsername(user)
	return ok && other.ID != id
}

func (r *Registry) store(ctx context.Context, e Entry, create bool) (Entry, error) {
	if r.db == nil {
		return Entry{}, ErrNoStorage
	}
	d := e.Device
	d.Password = "" // never in the record; the hash is kept apart
	spec, err := json.Marshal(d)
	if err != nil {
		return Entry{}, err
	}
	now := casedb.Millis(time.Now())
	if create {
		_, err = r.db.Exec(ctx, "INSERT INTO devices (id, spec, username, password_hash, region, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
			d.ID, string(spec), d.MQTTUsername(), e.hash, d.Region, now, now)
		if casedb.IsUniqueViolation(err) {
			if _, ok := r.Get(d.ID); ok {
				return Entry{}, ErrExists
			}
			// Either the id (added on another node since our last load)
			// or the username: tell which.
			var n int
			if r.db.QueryRow(ctx, "SELECT COUNT(*) FROM devices WHERE id = ?", d.ID).Scan(&n) == nil && n > 0 {
				return Entry{}, ErrExists
			}
			return Entry{}, ErrUsernameTaken
		}
		if err != nil {
			return Entry{}, fmt.Errorf("store device: %w", err)
		}
		e.Source, e.Version = registry.FromAPI, 1
		return e, nil
	}
	res, err := r.db.Exec(ctx, "UPDATE devices SET spec = ?, username = ?, password_hash = ?, region = ?, version = version + 1, updated_at = ? WHERE id = ? AND version = ?",
		string(spec), d.MQTTUsername(), e.hash, d.Region, now, d.ID, e.Version)
	if casedb.IsUniqueViolation(err) {
		return Entry{}, ErrUsernameTaken
	}
	if err != nil {
		return Entry{}, fmt.Errorf("store device: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Entry{}, ErrConflict
	}
	e.Source, e.Version = registry.FromAPI, e.Version+1
	return e, nil
}

// withHash replaces d's plaintext password (if any) by its hash in an entry.
func withHash(d Device, keep string) (Entry, error) {
	e := Entry{Device: d, hash: keep}
	if p := d.password(); p != "" {
		h, err := hashPassword(p)
		if err != nil {
			return Entry{}, err
		}
		e.hash = h
	}
	e.Password, e.PasswordEnv = "", ""
	return e, nil
}

// Create adds a device (it must be valid: see Problems). A password given
// in clear is stored hashed; password_env is read once, now.
func (r *Registry) Create(ctx context.Context, d Device) (Entry, error) {
	d.Normalize()
	return r.table.Create(d.ID, func() (Entry, error) {
		if r.usernameTaken(d.ID, d.MQTTUsername()) {
			return Entry{}, ErrUsernameTaken
		}
		e, err := withHash(d, "")
		if err != nil {
			return Entry{}, err
		}
		return r.store(ctx, e, true)
	})
}

// Update replaces a stored device's record; version must be the one read
// (optimistic concurrency; 0 skips the check). An empty password keeps the
// stored one.
func (r *Registry) Update(ctx context.Context, d Device, version int64) (Entry, error) {
	d.Normalize()
	return r.table.Update(d.ID, version, func(old Entry) (Entry, error) {
		if r.usernameTaken(d.ID, d.MQTTUsername()) {
			return Entry{}, ErrUsernameTaken
		}
		e, err := withHash(d, old.hash)
		if err != nil {
			return Entry{}, err
		}
		e.Version = old.Version
		return r.store(ctx, e, false)
	})
}

// Delete removes a stored device.
func (r *Registry) Delete(ctx context.Context, id string) error {
	return r.table.Delete(id, func() error {
		if _, err := r.db.Exec(ctx, "DELETE FROM devices WHERE id = ?", id); err != nil {
			return fmt.Errorf("delete device: %w", err)
		}
		return nil
	})
}

// List is the devices: section of the configuration. Its Validate checks
// what no single record can: that ids and MQTT usernames are unique.
type List []Device

// Validate implements conf.Validator.
func (l List) Validate(v *conf.V) {
	ids, users := map[string]int{}, map[string]int{}
	for i, d := range l {
		if j, dup := ids[d.ID]; dup && d.ID != "" {
			v.Errorf(fmt.Sprintf("[%d].id", i), "duplicate id %q (also devices[%d])", d.ID, j)
		} else {
			ids[d.ID] = i
		}
		u := d.MQTTUsername()
		if j, dup := users[u]; dup && u != "" {
			v.Errorf(fmt.Sprintf("[%d].username", i), "MQTT username %q is also that of devices[%d]", u, j)
		} else {
			users[u] = i
		}
	}
}

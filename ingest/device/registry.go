package device

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
)

// Sources of a device record.
const (
	FromConfig = "config" // the configuration file; read-only through the API
	FromAPI    = "api"    // added through the API; kept in the case database
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
	Source  string `json:"source"`
	Version int64  `json:"version"`
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

// snapshot is an immutable view of every device, read without locks on the
// message path.
type snapshot struct {
	byID   map[string]Entry
	byUser map[string]string // MQTT username -> device id
}

func newSnapshot(entries map[string]Entry) *snapshot {
	s := &snapshot{byID: entries, byUser: make(map[string]string, len(entries))}
	// Sorted, so that of two devices claiming one username (which the
	// configuration check refuses) the same one wins on every node.
	for _, id := range slices.Sorted(maps.Keys(entries)) {
		u := entries[id].MQTTUsername()
		if _, taken := s.byUser[u]; !taken {
			s.byUser[u] = id
		}
	}
	return s
}

// Registry holds every device: the configuration's and the API's. Changes
// made through the API (here or on another node sharing the database) are
// seen by Run's polling and announced through Changed. Reads (Get,
// ByUsername) take no lock.
type Registry struct {
	db     *casedb.DB
	config map[string]Device

	mu      sync.Mutex // serialises changes
	snap    atomic.Pointer[snapshot]
	changed chan struct{}
}

// NewRegistry holds the configuration's devices (checked beforehand: see
// List.Validate); Load adds the stored ones. db may be nil: configuration
// only, and the API cannot add devices.
func NewRegistry(config []Device, db *casedb.DB) *Registry {
	r := &Registry{db: db, config: map[string]Device{}, changed: make(chan struct{})}
	entries := map[string]Entry{}
	for _, d := range config {
		d.Normalize()
		r.config[d.ID] = d
		entries[d.ID] = Entry{Device: d, Source: FromConfig}
	}
	r.snap.Store(newSnapshot(entries))
	return r
}

// Changed returns a channel closed at the next change of any device.
func (r *Registry) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// setLocked publishes a new set of entries and announces it.
func (r *Registry) setLocked(entries map[string]Entry) {
	r.snap.Store(newSnapshot(entries))
	close(r.changed)
	r.changed = make(chan struct{})
}

// All returns every device, sorted by id.
func (r *Registry) All() []Entry {
	out := slices.Collect(maps.Values(r.snap.Load().byID))
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Len is the number of devices.
func (r *Registry) Len() int { return len(r.snap.Load().byID) }

// Get returns one device.
func (r *Registry) Get(id string) (Entry, bool) {
	e, ok := r.snap.Load().byID[id]
	return e, ok
}

// ByUsername returns the device whose MQTT username is user.
func (r *Registry) ByUsername(user string) (Entry, bool) {
	s := r.snap.Load()
	id, ok := s.byUser[user]
	if !ok {
		return Entry{}, false
	}
	e, ok := s.byID[id]
	return e, ok
}

// Load reads the stored devices; a stored device whose id the
// configuration also defines is shadowed by the configuration's.
func (r *Registry) Load(ctx context.Context) error {
	if r.db == nil {
		return nil
	}
	// Held across the query so that a change made here meanwhile is not
	// undone by an older read.
	r.mu.Lock()
	defer r.mu.Unlock()
	rows, err := r.db.Query(ctx, "SELECT id, spec, password_hash, version FROM devices")
	if err != nil {
		return fmt.Errorf("load devices: %w", err)
	}
	defer rows.Close()
	stored := map[string]Entry{}
	for rows.Next() {
		var id, spec, hash string
		var version int64
		if err := rows.Scan(&id, &spec, &hash, &version); err != nil {
			return fmt.Errorf("load devices: %w", err)
		}
		var d Device
		if err := json.Unmarshal([]byte(spec), &d); err != nil {
			return fmt.Errorf("device %s: stored record unreadable: %w", id, err)
		}
		d.ID = id
		d.Normalize()
		stored[id] = Entry{Device: d, Source: FromAPI, Version: version, hash: hash}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load devices: %w", err)
	}
	next := map[string]Entry{}
	for id, d := range r.config {
		next[id] = Entry{Device: d, Source: FromConfig}
	}
	for id, e := range stored {
		if _, ok := next[id]; !ok {
			next[id] = e
		}
	}
	if !sameEntries(r.snap.Load().byID, next) {
		r.setLocked(next)
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

// Run reloads the stored devices every interval until ctx ends, so that
// devices changed on another node apply here too.
func (r *Registry) Run(ctx context.Context, interval time.Duration) error {
	return casedb.Poll(ctx, interval, r.Load)
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
		e.Source, e.Version = FromAPI, 1
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
	e.Source, e.Version = FromAPI, e.Version+1
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
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.Get(d.ID); ok {
		return Entry{}, ErrExists
	}
	if r.usernameTaken(d.ID, d.MQTTUsername()) {
		return Entry{}, ErrUsernameTaken
	}
	e, err := withHash(d, "")
	if err != nil {
		return Entry{}, err
	}
	e, err = r.store(ctx, e, true)
	if err != nil {
		return Entry{}, err
	}
	r.putLocked(e)
	return e, nil
}

// Update replaces a stored device's record; version must be the one read
// (optimistic concurrency; 0 skips the check). An empty password keeps the
// stored one.
func (r *Registry) Update(ctx context.Context, d Device, version int64) (Entry, error) {
	d.Normalize()
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.Get(d.ID)
	switch {
	case !ok:
		return Entry{}, ErrNotFound
	case old.Source == FromConfig:
		return Entry{}, ErrReadOnly
	case version != 0 && version != old.Version:
		return Entry{}, ErrConflict
	}
	if r.usernameTaken(d.ID, d.MQTTUsername()) {
		return Entry{}, ErrUsernameTaken
	}
	e, err := withHash(d, old.hash)
	if err != nil {
		return Entry{}, err
	}
	e.Version = old.Version
	e, err = r.store(ctx, e, false)
	if err != nil {
		return Entry{}, err
	}
	r.putLocked(e)
	return e, nil
}

// Delete removes a stored device.
func (r *Registry) Delete(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.Get(id)
	switch {
	case !ok:
		return ErrNotFound
	case old.Source == FromConfig:
		return ErrReadOnly
	case r.db == nil:
		return ErrNoStorage
	}
	if _, err := r.db.Exec(ctx, "DELETE FROM devices WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	next := maps.Clone(r.snap.Load().byID)
	delete(next, id)
	r.setLocked(next)
	return nil
}

func (r *Registry) putLocked(e Entry) {
	next := maps.Clone(r.snap.Load().byID)
	next[e.ID] = e
	r.setLocked(next)
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

package registry_test

import (
	"context"
	"errors"
	"testing"

	"sharpeye/ingest/registry"
)

type rec struct {
	Name string
	registry.Stored
}

var errNotFound, errExists, errReadOnly, errConflict = errors.New("not found"), errors.New("exists"), errors.New("read-only"), errors.New("conflict")

// fakeDB is the stored records a kind's Load would read.
type fakeDB map[string]rec

func newRegistry(db fakeDB) *registry.Registry[rec, map[string]string] {
	kind := registry.Kind[rec, map[string]string]{
		Load: func(context.Context) (map[string]rec, error) { return db, nil },
		Index: func(m map[string]rec) map[string]string {
			idx := map[string]string{}
			for id, r := range m {
				idx[r.Name] = id
			}
			return idx
		},
		NotFound: errNotFound, Exists: errExists, ReadOnly: errReadOnly, Conflict: errConflict,
	}
	return registry.New(kind, map[string]rec{"cfg": {Name: "from config", Stored: registry.Stored{Source: registry.FromConfig}}})
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestLoadShadowsAndAnnounces(t *testing.T) {
	ctx := t.Context()
	db := fakeDB{
		"cfg": {Name: "stored under a config id", Stored: registry.Stored{Source: registry.FromAPI, Version: 4}},
		"api": {Name: "stored", Stored: registry.Stored{Source: registry.FromAPI, Version: 1}},
	}
	r := newRegistry(db)
	changed := r.Changed()
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if !closed(changed) {
		t.Fatal("a load that added an entry did not announce it")
	}
	if e, _ := r.Get("cfg"); e.Name != "from config" {
		t.Fatalf("the configuration's entry is not the one kept: %+v", e)
	}
	all := r.All()
	if len(all) != 2 || all[0].Name != "stored" || all[1].Name != "from config" {
		t.Fatalf("all, sorted by id: %+v", all)
	}
	if r.Index()["stored"] != "api" {
		t.Fatalf("index not derived from the entries: %v", r.Index())
	}

	changed = r.Changed()
	if err := r.Load(ctx); err != nil || closed(changed) {
		t.Fatalf("a load that changed nothing announced a change (%v)", err)
	}
	db["api"] = rec{Name: "changed elsewhere", Stored: registry.Stored{Source: registry.FromAPI, Version: 2}}
	if err := r.Load(ctx); err != nil || !closed(changed) {
		t.Fatalf("a load that saw a new version did not announce it (%v)", err)
	}
	if r.Index()["changed elsewhere"] != "api" {
		t.Fatalf("index not rebuilt: %v", r.Index())
	}
}

func TestChanges(t *testing.T) {
	r := newRegistry(nil)
	stored := func(name string, version int64) rec {
		return rec{Name: name, Stored: registry.Stored{Source: registry.FromAPI, Version: version}}
	}
	if _, err := r.Create("a", func() (rec, error) { return stored("a", 1), nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Create("a", func() (rec, error) { t.Fatal("stored over an existing id"); return rec{}, nil }); !errors.Is(err, errExists) {
		t.Fatalf("create over an id: %v", err)
	}
	failed := errors.New("database down")
	if _, err := r.Create("b", func() (rec, error) { return rec{}, failed }); !errors.Is(err, failed) {
		t.Fatalf("create whose store failed: %v", err)
	}
	if _, ok := r.Get("b"); ok {
		t.Fatal("an entry whose store failed is held")
	}

	keep := func(old rec) (rec, error) { return stored(old.Name, old.Version+1), nil }
	for _, c := range []struct {
		id      string
		version int64
		want    error
	}{
		{"none", 0, errNotFound},
		{"cfg", 0, errReadOnly},
		{"a", 7, errConflict},
	} {
		if _, err := r.Update(c.id, c.version, keep); !errors.Is(err, c.want) {
			t.Errorf("update %s at version %d: %v, want %v", c.id, c.version, err, c.want)
		}
	}
	if e, err := r.Update("a", 1, keep); err != nil || e.Version != 2 {
		t.Fatalf("update: %+v %v", e, err)
	}
	if e, _ := r.Get("a"); e.Version != 2 {
		t.Fatalf("update not held: %+v", e)
	}

	if err := r.Delete("cfg", func() error { return nil }); !errors.Is(err, errReadOnly) {
		t.Fatalf("delete a configuration entry: %v", err)
	}
	changed := r.Changed()
	if err := r.Delete("a", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Get("a"); ok || !closed(changed) {
		t.Fatal("deleted entry still held, or its deletion not announced")
	}
}

package device_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/configs/conf"
	"sharpeye/ingest/device"
	"sharpeye/ingest/event"
	"sharpeye/ingest/registry"
)

func ptr(f float64) *float64 { return &f }

func TestProblems(t *testing.T) {
	t.Setenv("DEVICE_PW_SET", "s3cret-pass")
	good := device.Device{ID: "smoke-1", Kind: device.KindSmoke, Region: "huangpi/wangjiahe", Grid: "g-01", Lat: ptr(30.8), Lon: ptr(114.3), Interval: conf.Duration(time.Minute), Password: "s3cret-pass"}
	if ps := good.Problems(); len(ps) != 0 {
		t.Fatalf("good device: %v", ps)
	}
	tests := []struct {
		name  string
		edit  func(d *device.Device)
		field string
	}{
		{"bad id", func(d *device.Device) { d.ID = "Smoke 1" }, "id"},
		{"no kind", func(d *device.Device) { d.Kind = "" }, "kind"},
		{"unknown kind", func(d *device.Device) { d.Kind = "toaster" }, "kind"},
		{"bad region", func(d *device.Device) { d.Region = "a//b" }, "region"},
		{"region the event schema refuses", func(d *device.Device) { d.Region = "Huangpi" }, "region"},
		{"lat without lon", func(d *device.Device) { d.Lon = nil }, "lat"},
		{"lat out of range", func(d *device.Device) { d.Lat = ptr(91) }, "lat"},
		{"bad camera", func(d *device.Device) { d.Cameras = []string{"CAM 1"} }, "cameras[0]"},
		{"interval too short", func(d *device.Device) { d.Interval = conf.Duration(time.Millisecond) }, "interval"},
		{"bad username", func(d *device.Device) { d.Username = "a b" }, "username"},
		{"password and env", func(d *device.Device) { d.PasswordEnv = "DEVICE_PW_SET" }, "password_env"},
		{"env unset", func(d *device.Device) { d.Password = ""; d.PasswordEnv = "DEVICE_PW_UNSET_XYZ" }, "password_env"},
		{"short password", func(d *device.Device) { d.Password = "short" }, "password"},
		{"empty tag", func(d *device.Device) { d.Tags = []string{""} }, "tags[0]"},
		{"control character in tag", func(d *device.Device) { d.Tags = []string{"a\x01"} }, "tags[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := good
			tt.edit(&d)
			ps := d.Problems()
			if len(ps) == 0 || ps[0].Field != tt.field {
				t.Fatalf("problems %v, want one on %s", ps, tt.field)
			}
		})
	}
}

func TestTemplate(t *testing.T) {
	d := device.Device{ID: "box-1", Kind: device.KindAnalyser, Name: "村口", Region: "huangpi/wangjiahe", Grid: "g-01", Lat: ptr(30.8), Lon: ptr(114.3), Tags: []string{"river"}}
	if d.SourceKind() != event.SourceAnalyser || d.TopicPrefix() != "sharpeye/analysers/box-1/" || d.MQTTUsername() != "box-1" {
		t.Fatalf("analyser: %s %s %s", d.SourceKind(), d.TopicPrefix(), d.MQTTUsername())
	}
	e := d.Template(d.SourceKind(), "telemetry")
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if e.Location.Region != d.Region || e.Location.Grid != "g-01" || *e.Location.Lat != 30.8 || e.Source.Name != "村口" || e.Tags[0] != "river" {
		t.Fatalf("template %+v", e)
	}
	if k, _ := e.String("device_kind"); k != "analyser" {
		t.Fatalf("device_kind %q", k)
	}
}

func TestListValidate(t *testing.T) {
	type root struct {
		Devices device.List `yaml:"devices"`
	}
	var cfg root
	err := conf.Load(&cfg, []byte(`
devices:
  - {id: a, kind: smoke, region: r}
  - {id: a, kind: gas, region: r}
  - {id: b, kind: gas, region: r, username: c}
  - {id: c, kind: gas, region: r}
`), "test.yml", nil)
	if err == nil {
		t.Fatal("duplicates accepted")
	}
	for _, want := range []string{"devices[1].id", "devices[3].username"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestRegistryStore(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			ctx := context.Background()
			r := device.NewRegistry([]device.Device{{ID: "cfg-1", Kind: device.KindSmoke, Password: "config-pass"}}, db)
			if err := r.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if e, ok := r.ByUsername("cfg-1"); !ok || !e.CheckPassword("config-pass") || e.CheckPassword("wrong-pass") {
				t.Fatalf("config device credential: %+v %v", e, ok)
			}
			changed := r.Changed()
			e, err := r.Create(ctx, device.Device{ID: "api-1", Kind: device.KindGas, Region: "north", Password: "api-pass-1"})
			if err != nil || e.Version != 1 || e.Source != registry.FromAPI {
				t.Fatalf("create: %+v %v", e, err)
			}
			select {
			case <-changed:
			default:
				t.Fatal("create did not announce a change")
			}
			if e.Password != "" || !e.CheckPassword("api-pass-1") {
				t.Fatal("stored device keeps its password in clear, or does not check it")
			}
			if _, err := r.Create(ctx, device.Device{ID: "api-1", Kind: device.KindGas}); !errors.Is(err, device.ErrExists) {
				t.Fatalf("duplicate: %v", err)
			}
			if _, err := r.Create(ctx, device.Device{ID: "api-2", Kind: device.KindGas, Username: "cfg-1"}); !errors.Is(err, device.ErrUsernameTaken) {
				t.Fatalf("username of another device: %v", err)
			}
			if _, err := r.Update(ctx, device.Device{ID: "cfg-1", Kind: device.KindSmoke}, 0); !errors.Is(err, device.ErrReadOnly) {
				t.Fatalf("update config device: %v", err)
			}
			// Update without a password keeps the stored one; a stale version is refused.
			e, err = r.Update(ctx, device.Device{ID: "api-1", Kind: device.KindGas, Region: "north", Name: "gas 1"}, 1)
			if err != nil || e.Version != 2 || !e.CheckPassword("api-pass-1") {
				t.Fatalf("update: %+v %v", e, err)
			}
			if _, err := r.Update(ctx, device.Device{ID: "api-1", Kind: device.KindGas}, 1); !errors.Is(err, device.ErrConflict) {
				t.Fatalf("stale update: %v", err)
			}
			cred := e.CredentialID()
			e, err = r.Update(ctx, device.Device{ID: "api-1", Kind: device.KindGas, Region: "north", Password: "api-pass-2"}, 2)
			if err != nil || !e.CheckPassword("api-pass-2") || e.CheckPassword("api-pass-1") || e.CredentialID() == cred {
				t.Fatalf("new password: %+v %v", e, err)
			}

			// Another node sharing the database sees the device, password included.
			other := device.NewRegistry(nil, db)
			if err := other.Load(ctx); err != nil {
				t.Fatal(err)
			}
			got, ok := other.Get("api-1")
			if !ok || got.Name != "" || got.Version != 3 || !got.CheckPassword("api-pass-2") {
				t.Fatalf("other node: %+v %v", got, ok)
			}
			// The stored record never holds the password.
			var spec string
			if err := db.QueryRow(ctx, "SELECT spec FROM devices WHERE id = ?", "api-1").Scan(&spec); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(spec, "api-pass") {
				t.Fatalf("stored record holds the password: %s", spec)
			}
			if err := r.Delete(ctx, "api-1"); err != nil {
				t.Fatal(err)
			}
			if err := r.Delete(ctx, "cfg-1"); !errors.Is(err, device.ErrReadOnly) {
				t.Fatalf("delete config device: %v", err)
			}
			if err := other.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if _, ok := other.Get("api-1"); ok {
				t.Fatal("deleted device still seen by the other node")
			}
		})
	}
}

func TestRegistryWithoutStorage(t *testing.T) {
	r := device.NewRegistry(nil, nil)
	if _, err := r.Create(context.Background(), device.Device{ID: "a", Kind: device.KindGas}); !errors.Is(err, device.ErrNoStorage) {
		t.Fatalf("create without storage: %v", err)
	}
}

func TestPublicHidesPassword(t *testing.T) {
	d := device.Device{ID: "a", Kind: device.KindGas, Password: "hunter2-long"}
	b, _ := json.Marshal(d.Public())
	if strings.Contains(string(b), "hunter2") {
		t.Fatalf("public view %s", b)
	}
	b, _ = json.Marshal(d)
	if strings.Contains(string(b), "hunter2") {
		t.Fatalf("JSON of a device %s", b)
	}
}

package camera_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/configs/conf"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/registry"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"rtsp://admin:hik12345@10.1.2.3:554/Streaming/Channels/101": "rtsp://10.1.2.3:554/Streaming/Channels/101",
		"rtsp://10.1.2.3/live":                        "rtsp://10.1.2.3/live",
		"rtsp://user@cam/x":                           "rtsp://cam/x",
		"rtsp://a:b%zz@cam/x":                         "rtsp://cam/x",
		"rtsps://op:pa:ss@cam.example:322/stream?q=1": "rtsps://cam.example:322/stream?q=1",
	} {
		if got := camera.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCredentials(t *testing.T) {
	t.Setenv("CAM_PW", "from-env")
	for _, tc := range []struct {
		cam              camera.Camera
		wantUser, wantPw string
	}{
		{camera.Camera{URL: "rtsp://u:p@h/x"}, "u", "p"},
		{camera.Camera{URL: "rtsp://u:p@h/x", Username: "v", Password: "q"}, "v", "q"},
		{camera.Camera{URL: "rtsp://h/x", Username: "v", PasswordEnv: "CAM_PW"}, "v", "from-env"},
		{camera.Camera{URL: "rtsp://h/x"}, "", ""},
	} {
		u, p := tc.cam.Credentials()
		if u != tc.wantUser || p != tc.wantPw {
			t.Errorf("%+v: got %q %q", tc.cam, u, p)
		}
	}
}

func TestProblems(t *testing.T) {
	lat := 91.0
	for _, tc := range []struct {
		cam   camera.Camera
		field string
	}{
		{camera.Camera{ID: "ok-1", URL: "rtsp://h/x"}, ""},
		{camera.Camera{ID: "Bad ID", URL: "rtsp://h/x"}, "id"},
		{camera.Camera{ID: "c", URL: ""}, "url"},
		{camera.Camera{ID: "c", URL: "http://h/x"}, "url"},
		{camera.Camera{ID: "c", URL: "rtsp:///x"}, "url"},
		{camera.Camera{ID: "c", URL: "rtsp://h/x", Transport: "sctp"}, "transport"},
		{camera.Camera{ID: "c", URL: "rtsp://h/x", Region: "a//b"}, "region"},
		{camera.Camera{ID: "c", URL: "rtsp://h/x", Lat: &lat, Lon: &lat}, "lat"},
		{camera.Camera{ID: "c", URL: "rtsp://h/x", PasswordEnv: "SHARPEYE_SURELY_UNSET"}, "password_env"},
		{camera.Camera{ID: "c", URL: "rtsp://h/x", Tags: []string{""}}, "tags[0]"},
	} {
		ps := tc.cam.Problems()
		got := ""
		if len(ps) > 0 {
			got = ps[0].Field
		}
		if got != tc.field {
			t.Errorf("%+v: problems %v, want field %q", tc.cam, ps, tc.field)
		}
	}
	// A URL that does not parse is reported without its password.
	c := camera.Camera{ID: "c", URL: "rtsp://admin:se cret\x7f@h/x"}
	for _, p := range c.Problems() {
		if strings.Contains(p.Msg, "se cret") {
			t.Fatalf("problem shows the password: %s", p.Msg)
		}
	}
}

func TestPublicHidesSecrets(t *testing.T) {
	c := camera.Camera{ID: "c", URL: "rtsp://admin:hik12345@h/x", Password: conf.Secret("pw2")}
	p := c.Public()
	if strings.Contains(p.URL, "hik12345") || p.Password != "" {
		t.Fatalf("public view %+v", p)
	}
}

func TestRegistryStore(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			ctx := context.Background()
			r := camera.NewRegistry([]camera.Camera{{ID: "cfg-1", URL: "rtsp://h/a"}}, db)
			if err := r.Load(ctx); err != nil {
				t.Fatal(err)
			}
			changed := r.Changed()
			e, err := r.Create(ctx, camera.Camera{ID: "api-1", URL: "rtsp://h/b", Password: "pw", Region: "north"})
			if err != nil || e.Version != 1 || e.Source != registry.FromAPI {
				t.Fatalf("create: %+v %v", e, err)
			}
			select {
			case <-changed:
			default:
				t.Fatal("create did not announce a change")
			}
			if _, err := r.Create(ctx, camera.Camera{ID: "api-1", URL: "rtsp://h/c"}); !errors.Is(err, camera.ErrExists) {
				t.Fatalf("duplicate: %v", err)
			}
			if _, err := r.Update(ctx, camera.Camera{ID: "cfg-1", URL: "rtsp://h/z"}, 0); !errors.Is(err, camera.ErrReadOnly) {
				t.Fatalf("update config camera: %v", err)
			}
			// Update without a password keeps the stored one; a stale version is refused.
			e, err = r.Update(ctx, camera.Camera{ID: "api-1", URL: "rtsp://h/b2", Region: "north"}, 1)
			if err != nil || e.Version != 2 || e.Password.Reveal() != "pw" {
				t.Fatalf("update: %+v %v", e, err)
			}
			if _, err := r.Update(ctx, camera.Camera{ID: "api-1", URL: "rtsp://h/b3"}, 1); !errors.Is(err, camera.ErrConflict) {
				t.Fatalf("stale update: %v", err)
			}

			// Another node sharing the database sees the camera.
			other := camera.NewRegistry(nil, db)
			if err := other.Load(ctx); err != nil {
				t.Fatal(err)
			}
			got, ok := other.Get("api-1")
			if !ok || got.URL != "rtsp://h/b2" || got.Password.Reveal() != "pw" || got.Version != 2 {
				t.Fatalf("other node: %+v %v", got, ok)
			}
			if err := r.Delete(ctx, "api-1"); err != nil {
				t.Fatal(err)
			}
			if err := r.Delete(ctx, "cfg-1"); !errors.Is(err, camera.ErrReadOnly) {
				t.Fatalf("delete config camera: %v", err)
			}
			if err := other.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if _, ok := other.Get("api-1"); ok {
				t.Fatal("deleted camera still seen by the other node")
			}
		})
	}
}

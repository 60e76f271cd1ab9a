package node

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/console/auth"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/simcam"
)

// TestCameraAPI drives the camera API as an admin and as scoped users:
// cameras added at run time are pulled at once, credentials never come
// back, updates are guarded, scope hides other regions.
func TestCameraAPI(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			sim := startSim(t, simcam.Config{Username: "admin", Password: "hik12345"}, map[string]string{"north-gate": "street-360p.h264", "south-gate": "street-360p.h264"})
			bare := strings.Replace(sim.URL("x"), "admin:hik12345@", "", 1)
			bare = strings.TrimSuffix(bare, "/x")

			n := startNode(t, driver, func(c *Config) {
				c.Cameras = []camera.Camera{{ID: "from-file", URL: "rtsp://127.0.0.1:1/none", Region: "north"}}
			})
			ctx := context.Background()
			for _, u := range []auth.NewUser{
				{Username: "admin", Password: "admin-password-1", Role: auth.Admin},
				{Username: "north.cmd", Password: "north-password-1", Role: auth.Commander, Region: "north"},
			} {
				if _, err := n.Auth().EnsureUser(ctx, u); err != nil {
					t.Fatal(err)
				}
			}
			admin, north := newClient(t, n), newClient(t, n)
			admin.do("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"admin","password":"admin-password-1"}`))
			north.do("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"north.cmd","password":"north-password-1"}`))

			for _, c := range []string{
				`{"id":"north-gate","name":"北门","url":"` + bare + `/north-gate","username":"admin","password":"hik12345","transport":"tcp","region":"north/a"}`,
				`{"id":"south-gate","url":"rtsp://admin:hik12345@` + strings.TrimPrefix(bare, "rtsp://") + `/south-gate","transport":"tcp","region":"south"}`,
			} {
				if res, body := admin.do("POST", "/api/v1/cameras", strings.NewReader(c)); res.StatusCode != 201 || res.Header.Get("ETag") != `"1"` {
					t.Fatalf("create: %d ETag %s %s", res.StatusCode, res.Header.Get("ETag"), body)
				}
			}
			if res, body := north.do("POST", "/api/v1/cameras", strings.NewReader(`{"id":"x","url":"rtsp://h/x"}`)); res.StatusCode != 403 {
				t.Fatalf("commander creating a camera: %d %s", res.StatusCode, body)
			}
			if res, body := admin.do("POST", "/api/v1/cameras", strings.NewReader(`{"id":"bad","url":"http://h/x"}`)); res.StatusCode != 400 || !bytes.Contains(body, []byte(`"field":"url"`)) {
				t.Fatalf("bad url: %d %s", res.StatusCode, body)
			}

			// Pulled at once, no restart.
			var st struct {
				Status struct {
					State string `json:"state"`
					Width int    `json:"width"`
				} `json:"status"`
				Version int64 `json:"version"`
			}
			deadline := time.Now().Add(20 * time.Second)
			for st.Status.State != "online" {
				if time.Now().After(deadline) {
					t.Fatalf("camera added through the API never came online: %+v", st)
				}
				_, body := admin.do("GET", "/api/v1/cameras/north-gate", nil)
				json.Unmarshal(body, &st)
				time.Sleep(20 * time.Millisecond)
			}
			if st.Status.Width != 640 {
				t.Fatalf("width %d", st.Status.Width)
			}

			// No credentials in any answer or in the metrics.
			_, list := admin.do("GET", "/api/v1/cameras", nil)
			_, metrics := admin.do("GET", "/metrics", nil)
			for _, b := range [][]byte{list, metrics} {
				if bytes.Contains(b, []byte("hik12345")) {
					t.Fatalf("password leaked: %.400s", b)
				}
			}
			if !bytes.Contains(metrics, []byte(`sharpeye_camera_up{camera="north-gate",region="north/a"} 1`)) {
				t.Fatalf("camera metrics missing")
			}
			// Two cameras streaming: sessions, none read by a reactor
			// (it takes connections from 64 sessions on).
			if !regexp.MustCompile(`(?m)^sharpeye_rtsp_sessions [1-9]`).Match(metrics) || !bytes.Contains(metrics, []byte("\nsharpeye_rtsp_reactor_connections 0\n")) {
				t.Fatalf("session metrics: %s", regexp.MustCompile(`(?m)^sharpeye_rtsp_.*$`).FindAll(metrics, -1))
			}

			// Scope: the north commander sees north cameras only.
			_, body := north.do("GET", "/api/v1/cameras", nil)
			if !bytes.Contains(body, []byte(`"north-gate"`)) || bytes.Contains(body, []byte(`"south-gate"`)) {
				t.Fatalf("north commander sees: %.300s", body)
			}
			if res, _ := north.do("GET", "/api/v1/cameras/south-gate", nil); res.StatusCode != 404 {
				t.Fatalf("out-of-region camera: %d", res.StatusCode)
			}
			// The summary counts what each may see, by state (the north
			// commander: north-gate, online, and from-file, unreachable).
			var sum struct {
				Summary struct {
					Total  int            `json:"total"`
					States map[string]int `json:"states"`
				} `json:"summary"`
				Cameras []json.RawMessage `json:"cameras"`
			}
			_, body = north.do("GET", "/api/v1/cameras?summary=true", nil)
			if err := json.Unmarshal(body, &sum); err != nil || sum.Summary.Total != 2 || sum.Summary.States["online"] != 1 || len(sum.Cameras) != 0 {
				t.Fatalf("north commander's summary: %s", body)
			}
			_, body = admin.do("GET", "/api/v1/cameras?summary=true", nil)
			sum.Summary.States = nil
			if err := json.Unmarshal(body, &sum); err != nil || sum.Summary.Total != 3 || sum.Summary.States["online"] < 1 {
				t.Fatalf("admin's summary: %s", body)
			}
			if res, body := admin.do("GET", "/api/v1/cameras?summary=yes", nil); res.StatusCode != 400 || !bytes.Contains(body, []byte(`"field":"summary"`)) {
				t.Fatalf("summary=yes: %d %s", res.StatusCode, body)
			}

			// Guarded updates.
			upd := `{"id":"north-gate","url":"` + bare + `/north-gate","username":"admin","transport":"tcp","region":"north/b"}`
			if res, body := admin.do("PUT", "/api/v1/cameras/north-gate", strings.NewReader(upd), "If-Match", `"99"`); res.StatusCode != 412 {
				t.Fatalf("stale update: %d %s", res.StatusCode, body)
			}
			if res, body := admin.do("PUT", "/api/v1/cameras/north-gate", strings.NewReader(upd), "If-Match", `"1"`); res.StatusCode != 200 || !bytes.Contains(body, []byte(`"north/b"`)) || res.Header.Get("ETag") != `"2"` {
				t.Fatalf("update: %d ETag %s %s", res.StatusCode, res.Header.Get("ETag"), body)
			}
			if res, _ := admin.do("PUT", "/api/v1/cameras/from-file", strings.NewReader(`{"id":"from-file","url":"rtsp://h/y"}`)); res.StatusCode != 409 {
				t.Fatalf("updating a configuration camera: %d", res.StatusCode)
			}
			if res, _ := admin.do("DELETE", "/api/v1/cameras/south-gate", nil); res.StatusCode != 204 {
				t.Fatalf("delete: %d", res.StatusCode)
			}
			if res, _ := admin.do("GET", "/api/v1/cameras/south-gate", nil); res.StatusCode != 404 {
				t.Fatalf("deleted camera: %d", res.StatusCode)
			}
		})
	}
}

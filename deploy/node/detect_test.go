package node

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
	"sharpeye/console/auth"
	"sharpeye/deploy/testpeer"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/detect"
	"sharpeye/ingest/event"
	"sharpeye/ingest/simcam"
)

// TestDetectorEventsOnTheBus: a camera that never answers becomes a
// camera.offline event on the bus, with the camera's place; with ffmpeg,
// a live camera's snapshot is served as a JPEG.
func TestDetectorEventsOnTheBus(t *testing.T) {
	sim := startSim(t, simcam.Config{}, map[string]string{"gate": "street-360p.h264"})

	n := startNode(t, casedb.SQLite, func(c *Config) {
		c.Cameras = []camera.Camera{
			{ID: "gate", URL: sim.URL("gate"), Transport: "tcp", Region: "lanxi/dongcheng", Grid: "grid-01"},
			{ID: "dead", URL: "rtsp://127.0.0.1:1/none", Transport: "tcp", Region: "lanxi/nanshan", Grid: "grid-11"},
		}
		c.Ingest.Detect.Health.OfflineAfter = conf.Duration(time.Second)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu      sync.Mutex
		offline *event.Event
	)
	found := make(chan struct{})
	go n.Bus().Consume(ctx, "test", []string{bus.TopicEvents}, 100, 50*time.Millisecond, func(_ context.Context, msgs []bus.Message) error {
		for _, m := range msgs {
			e, err := event.Decode(m.Value)
			if err != nil {
				t.Errorf("undecodable event on the bus: %v", err)
				continue
			}
			if e.Type == "camera.offline" && e.Source.ID == "dead" {
				mu.Lock()
				if offline == nil {
					offline = e
					close(found)
				}
				mu.Unlock()
			}
		}
		return nil
	})
	select {
	case <-found:
	case <-ctx.Done():
		t.Fatal("no camera.offline event for a camera that never answered")
	}
	mu.Lock()
	if offline.Location.Region != "lanxi/nanshan" || offline.Location.Grid != "grid-11" || offline.Source.Kind != event.SourceCamera {
		t.Fatalf("offline event %+v", offline)
	}
	mu.Unlock()

	if !testpeer.Enabled(testpeer.FFmpeg) {
		return
	}
	if _, err := n.Auth().EnsureUser(context.Background(), auth.NewUser{Username: "admin", Password: "admin-password-1", Role: auth.Admin}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, n)
	c.do("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"admin","password":"admin-password-1"}`))
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, body := c.do("GET", "/api/v1/cameras/gate/snapshot", nil)
		if res.StatusCode == 200 {
			if res.Header.Get("Content-Type") != "image/jpeg" || !bytes.HasPrefix(body, []byte{0xff, 0xd8}) {
				t.Fatalf("snapshot: %s %x", res.Header.Get("Content-Type"), body[:min(8, len(body))])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot: %d %s", res.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res, _ := c.do("GET", "/api/v1/cameras/dead/snapshot", nil); res.StatusCode != 503 {
		t.Fatalf("snapshot of an offline camera: %d", res.StatusCode)
	}
}

// TestStoredSnapshots: a snapshot the detectors stored for a camera is
// served to those who may see the camera, and to nobody else.
func TestStoredSnapshots(t *testing.T) {
	n := startNode(t, casedb.SQLite, func(c *Config) {
		c.Cameras = []camera.Camera{
			{ID: "gate", URL: "rtsp://127.0.0.1:1/none", Transport: "tcp", Region: "lanxi/dongcheng", Grid: "grid-01"},
			{ID: "well", URL: "rtsp://127.0.0.1:1/none", Transport: "tcp", Region: "lanxi/nanshan", Grid: "grid-11"},
		}
	})
	picture := []byte("\xff\xd8\xff\xe0 the gate at 06:40\xff\xd9")
	_, sum, err := n.Ingest().Blobs().PutOwned(context.Background(), detect.BlobOwner("gate"), "image/jpeg", picture)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, u := range []auth.NewUser{
		{Username: "admin", Password: "admin-password-1", Role: auth.Admin},
		{Username: "nanshan", Password: "nanshan-password-1", Role: auth.Commander, Region: "lanxi/nanshan"},
	} {
		if _, err := n.Auth().EnsureUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	anon := newClient(t, n)
	if res, _ := anon.do("GET", "/api/v1/cameras/gate/snapshots/"+sum, nil); res.StatusCode != 401 {
		t.Fatalf("unauthenticated: %d", res.StatusCode)
	}
	admin := newClient(t, n)
	admin.do("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"admin","password":"admin-password-1"}`))
	res, body := admin.do("GET", "/api/v1/cameras/gate/snapshots/"+sum, nil)
	if res.StatusCode != 200 || !bytes.Equal(body, picture) || res.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("stored snapshot: %d %s %q", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	etag := res.Header.Get("ETag")
	if res, _ := admin.do("GET", "/api/v1/cameras/gate/snapshots/"+sum, nil, "If-None-Match", etag); res.StatusCode != 304 {
		t.Fatalf("If-None-Match %s: %d", etag, res.StatusCode)
	}
	for _, c := range []struct {
		path string
		code int
		says string
	}{
		{"/api/v1/cameras/well/snapshots/" + sum, 404, `no stored snapshot ` + sum + ` of camera \"well\"`},
		{"/api/v1/cameras/none/snapshots/" + sum, 404, `no camera \"none\"`},
		{"/api/v1/cameras/gate/snapshots/" + strings.Repeat("0", 64), 404, "never taken here"},
		{"/api/v1/cameras/gate/snapshots/NOT-HEX", 400, "64 lowercase hex digits"},
	} {
		res, body := admin.do("GET", c.path, nil)
		if res.StatusCode != c.code || !strings.Contains(string(body), c.says) {
			t.Errorf("GET %s: %d %s, want %d saying %q", c.path, res.StatusCode, body, c.code, c.says)
		}
	}
	// A commander of another township does not see the gate camera.
	other := newClient(t, n)
	other.do("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"nanshan","password":"nanshan-password-1"}`))
	if res, body := other.do("GET", "/api/v1/cameras/gate/snapshots/"+sum, nil); res.StatusCode != 404 || bytes.Contains(body, picture) {
		t.Fatalf("out-of-region snapshot: %d %s", res.StatusCode, body)
	}
}

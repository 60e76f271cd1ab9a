package node

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/configs/conf"
	"sharpeye/console/auth"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/simcam"
	"sharpeye/relay"
)

// token issues an API token on n for a new user.
func token(t *testing.T, n *Node, u auth.NewUser) string {
	t.Helper()
	ctx := context.Background()
	user, err := n.Auth().EnsureUser(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := n.Auth().CreateToken(ctx, user.ID, "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// A node running only the relay role plays a camera of another node's
// ingest role: it pulls it from that node's RTSP re-serve, with a token
// of a user of that node, while a viewer watches.
func TestRelayNodePullsFromIngestNode(t *testing.T) {
	sim := startSim(t, simcam.Config{}, map[string]string{"gate": "street-360p.h264"})
	cams := []camera.Camera{{ID: "gate", Name: "gate", URL: sim.URL("gate"), Transport: "tcp", Region: "lanxi/dongcheng"}}
	ingestNode := startRoles(t, "sqlite", []string{Ingest}, func(c *Config) { c.Cameras = cams })
	relayToken := token(t, ingestNode, auth.NewUser{Username: "relay-1", Role: auth.ServiceAccount, Region: "lanxi"})

	relayNode := startRoles(t, "sqlite", []string{Relay}, func(c *Config) {
		c.Cameras = cams
		c.Relay.Upstream = rtsp.Upstream{URL: "rtsp://" + ingestNode.ingest.RTSPAddr(), Username: "relay-1", Password: conf.Secret(relayToken), Transport: "tcp"}
	})
	viewerToken := token(t, relayNode, auth.NewUser{Username: "wall-1", Password: "wall-password-1", Role: auth.Commander, Region: "lanxi"})

	keys := make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := relay.DialWith(ctx, relayNode.URL(), "gate", viewerToken, relay.DialOptions{OnFrame: func(f relay.Frame) {
		if f.Key {
			select {
			case keys <- struct{}{}:
			default:
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	select {
	case <-keys:
	case <-ctx.Done():
		t.Fatal("no keyframe at the relay node's viewer")
	}
	if st, _ := relayNode.upstream.Status("gate"); st.Status.State != rtsp.StateOnline {
		t.Errorf("relay node's upstream pull is %s", st.Status.State)
	}
	if _, _, readers := sim.Stats("gate"); readers != 1 {
		t.Errorf("%d sessions at the camera, want the ingest node's one", readers)
	}
}

// Without the ingest role or an upstream, the relay role does not start,
// and says what to set.
func TestRelayNodeNeedsASource(t *testing.T) {
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Relay.UDPListen = "127.0.0.1:0"
	cfg.CaseDB = casedbtest.Config(t, "sqlite")
	n := New(cfg, Options{Roles: []string{Relay}}, NewLogs(LogConfig{Format: "text", Level: "error"}, io.Discard))
	err := n.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "relay.upstream.url") {
		t.Fatalf("relay without a source: %v", err)
	}
}

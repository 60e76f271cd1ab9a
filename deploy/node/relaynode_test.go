package node

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/configs/conf"
	"sharpeye/console/auth"
	"sharpeye/ingest"
	"sharpeye/ingest/bus/kafka/kafkatest"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/simcam"
	"sharpeye/ingest/stream/streamtest"
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

// watchKeyframe plays camera id at n over WebRTC (WHEP) until a keyframe
// arrives; the viewer stays until the test ends.
func watchKeyframe(t *testing.T, n *Node, id, token, who string) {
	t.Helper()
	keys := make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := relay.DialWith(ctx, n.URL(), id, token, relay.DialOptions{OnFrame: func(f relay.Frame) {
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
	t.Cleanup(func() { v.Close() })
	select {
	case <-keys:
	case <-ctx.Done():
		t.Fatalf("no keyframe at %s", who)
	}
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

	watchKeyframe(t, relayNode, "gate", viewerToken, "the relay node's viewer")
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

// freeAddr is a loopback address with a port free a moment ago: a
// cluster node advertises its re-serve before it binds it.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startAt starts a node whose configuration needs its RTSP address before
// it listens (mutate takes the address): the port freeAddr found may be
// taken by another process before the node listens on it, so a start that
// fails on a taken address tries another.
func startAt(t *testing.T, roles []string, mutate func(addr string) func(*Config)) *Node {
	t.Helper()
	for try := 0; ; try++ {
		n, err := tryStartRoles(t, "sqlite", roles, mutate(freeAddr(t)))
		if err == nil {
			return n
		}
		if !errors.Is(err, syscall.EADDRINUSE) || try == 4 {
			t.Fatal(err)
		}
	}
}

// testCluster is six simulated cameras and what a node of a cluster
// pulling them needs (Kafka in kfake, a shared case database, the
// service account the nodes pull from each other with): member(addr)
// configures a node whose re-serve listens on addr ("": none).
func testCluster(t *testing.T) (ids []string, sim *simcam.Server, member func(addr string) func(*Config)) {
	t.Helper()
	ids = []string{"gate", "bridge", "market", "school", "clinic", "depot"}
	fixtures := map[string]string{}
	var cams []camera.Camera
	for _, id := range ids {
		fixtures[id] = "street-360p.h264"
	}
	sim = startSim(t, simcam.Config{}, fixtures)
	for _, id := range ids {
		cams = append(cams, camera.Camera{ID: id, Name: id, URL: sim.URL(id), Transport: "tcp", Region: "lanxi/dongcheng"})
	}
	kcfg := kafkatest.Cluster(t, 8)
	db := casedbtest.Config(t, "sqlite")
	// The service account, issued before any node starts (the case
	// database, and so its users, is shared).
	setup := startRoles(t, "sqlite", []string{Console}, func(c *Config) { c.CaseDB = db })
	secret := token(t, setup, auth.NewUser{Username: "relay-1", Role: auth.ServiceAccount, Region: "lanxi"})
	member = func(addr string) func(*Config) {
		return func(c *Config) {
			c.Cameras = cams
			c.CaseDB = db
			c.Bus.Driver, c.Bus.Kafka = "kafka", kcfg
			c.Ingest.RegistryPoll = conf.Duration(time.Second)
			c.Ingest.Cluster.Enabled = true
			c.Ingest.Cluster.Advertise = "rtsp://" + addr
			c.Ingest.Cluster.Announce = conf.Duration(time.Second)
			c.Ingest.Cluster.Username, c.Ingest.Cluster.Password = "relay-1", conf.Secret(secret)
			if addr != "" {
				c.Ingest.RTSPServer.Listen = addr
			}
		}
	}
	return ids, sim, member
}

// waitShared waits until each camera is pulled from the camera by one of
// a and b, both used (b joins the group after a has taken every
// partition), with one session at the camera, and returns one camera b
// pulls.
func waitShared(t *testing.T, ids []string, sim *simcam.Server, a, b *Node) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		owned, theirs := map[*Node]int{}, ""
		for _, id := range ids {
			var owners []*Node
			for _, n := range []*Node{a, b} {
				if st, ok := n.ingest.Status(id); ok && st.Pulled == ingest.PulledCamera && st.Status.State == rtsp.StateOnline {
					owners = append(owners, n)
				}
			}
			if _, _, readers := sim.Stats(id); len(owners) == 1 && readers == 1 {
				owned[owners[0]]++
				if owners[0] == b {
					theirs = id
				}
			}
		}
		if owned[a]+owned[b] == len(ids) && owned[a] > 0 && owned[b] > 0 {
			return theirs
		}
		if time.Now().After(deadline) {
			t.Fatalf("cameras owned by one node each, with one session: %d by a, %d by b, of %d", owned[a], owned[b], len(ids))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Two ingest nodes with ingest.cluster share the cameras through a Kafka
// consumer group (kfake here), one RTSP session per camera between them,
// and a relay-only node with the cluster enabled and no upstream plays a
// camera from whichever node owns it: the wiring of the node's roles, on
// top of the ingest package's own cluster tests.
func TestClusterNodesShareTheCameras(t *testing.T) {
	ids, sim, member := testCluster(t)
	a := startAt(t, []string{Ingest}, member)
	b := startAt(t, []string{Ingest}, member)
	// A relay-only node follows the cluster without a re-serve, and on
	// any bus.
	edge := startRoles(t, "sqlite", []string{Relay}, member(""), func(c *Config) {
		c.Ingest.Cluster.Advertise = ""
		c.Bus.Driver = "embedded"
	})

	// A viewer at the relay-only node, of a camera b owns.
	theirs := waitShared(t, ids, sim, a, b)
	viewerToken := token(t, edge, auth.NewUser{Username: "wall-1", Password: "wall-password-1", Role: auth.Commander, Region: "lanxi"})
	watchKeyframe(t, edge, theirs, viewerToken, "the relay-only node's viewer")
	if st, _ := edge.upstream.Status(theirs); st.Pulled != ingest.PulledNode || st.Owner != b.cfg.Ingest.Cluster.Advertise {
		t.Errorf("the relay-only node pulls %s %q from %q, want from b (%s)", theirs, st.Pulled, st.Owner, b.cfg.Ingest.Cluster.Advertise)
	}
	// A consumer at a of the same camera: a pulls it from b, with the
	// cluster's account.
	hub, _, ok := a.ingest.Lookup(theirs)
	if !ok {
		t.Fatalf("camera %s unknown at a", theirs)
	}
	streamtest.Watch(t, hub, "a consumer at a")
	if st, _ := a.ingest.Status(theirs); st.Pulled != ingest.PulledNode {
		t.Errorf("a takes %s from %q, want from b", theirs, st.Pulled)
	}
	if _, _, readers := sim.Stats(theirs); readers != 1 {
		t.Errorf("%d sessions at camera %s with viewers at a and at the relay-only node, want b's one", readers, theirs)
	}
}

// A node with the ingest role in the cluster needs the Kafka bus (the
// embedded one is the node's own) and must say where the others reach its
// re-serve; it is refused at start, naming what is missing.
func TestClusterIngestNodeRefused(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		mutate     func(*Config)
	}{
		{"embedded bus", "needs bus.driver kafka", func(c *Config) { c.Ingest.Cluster.Advertise = "rtsp://127.0.0.1:8554" }},
		{"no advertise", "ingest.cluster.advertise is required", func(c *Config) {
			c.Bus.Driver, c.Bus.Kafka = "kafka", kafkatest.Cluster(t, 2)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Defaults()
			cfg.DataDir = t.TempDir()
			cfg.HTTP.Listen = "127.0.0.1:0"
			cfg.Ingest.RTSPServer.Listen = "127.0.0.1:0"
			cfg.CaseDB = casedbtest.Config(t, "sqlite")
			cfg.Ingest.Cluster.Enabled = true
			tc.mutate(&cfg)
			n := New(cfg, Options{Roles: []string{Ingest}}, NewLogs(LogConfig{Format: "text", Level: "error"}, io.Discard))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := n.Start(ctx); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("an ingest node of the cluster with %s: %v", tc.name, err)
			}
		})
	}
}

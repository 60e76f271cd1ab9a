package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/configs/conf"
	"sharpeye/console/api/apitest"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/bus/kafka/kafkatest"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/stream/streamtest"
)

// clusterNode is one ingest node of a test cluster.
type clusterNode struct {
	*Ingest
	reg  *prometheus.Registry
	stop func()
}

// startClusterNode runs an ingest node of the cluster on b and db, with
// its re-serve on a free port, until stop or the test's end.
func startClusterNode(t *testing.T, cams []camera.Camera, db *casedb.DB, b bus.Bus) *clusterNode {
	t.Helper()
	cfg := Defaults()
	cfg.RTSPServer.Listen = "127.0.0.1:0"
	cfg.RegistryPoll = conf.Duration(time.Second)
	cfg.Cluster.Enabled = true
	cfg.Cluster.Username, cfg.Cluster.Password = "relay-1", "sey_relay_token"
	cfg.Cluster.HandoverGrace = conf.Duration(300 * time.Millisecond)
	cfg.Cluster.Announce = conf.Duration(time.Second)
	reg := prometheus.NewRegistry()
	in := New(cfg, cams, db, relayAuth{}, reg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	if err := in.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The re-serve's port is known once it is bound.
	in.cfg.Cluster.Advertise = "rtsp://" + in.RTSPAddr()
	if err := in.JoinCluster(b); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingest: %v", err)
		}
	}
	t.Cleanup(stop)
	return &clusterNode{Ingest: in, reg: reg, stop: stop}
}

// owners waits until every camera is pulled from the camera by exactly one
// of nodes and from that node by the others (each naming it as the owner),
// and returns the owner of each camera.
func owners(t *testing.T, ids []string, nodes ...*clusterNode) map[string]*clusterNode {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, problem := map[string]*clusterNode{}, ""
		for _, id := range ids {
			for _, n := range nodes {
				st, _ := n.Status(id)
				if st.Pulled == PulledCamera {
					if out[id] != nil {
						problem = fmt.Sprintf("camera %s pulled itself by two nodes", id)
					}
					out[id] = n
				}
			}
			if out[id] == nil {
				problem = fmt.Sprintf("camera %s pulled by no node", id)
				continue
			}
			for _, n := range nodes {
				if st, _ := n.Status(id); st.Owner != out[id].cfg.Cluster.Advertise ||
					(n != out[id] && st.Pulled != PulledNode) {
					problem = fmt.Sprintf("camera %s at %s: pulled %q, owner %q; want %s", id, n.cfg.Cluster.Advertise, st.Pulled, st.Owner, out[id].cfg.Cluster.Advertise)
				}
			}
		}
		if problem == "" {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatal(problem)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Two ingest nodes on one bus and one case database share the cameras:
// each camera has one session, at its owner, which the other node names
// and pulls from while someone watches it there, as does a relay-only
// node; when a node stops, the other takes its cameras over and a viewer
// of one of them goes on. On the embedded bus (both nodes in one process
// share it) and on Kafka (kfake; a client each).
func TestClusterSharesTheCameras(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		b := embeddedBus(t)
		clusterSharesTheCameras(t, func() bus.Bus { return b })
	})
	t.Run("kafka", func(t *testing.T) {
		kcfg := kafkatest.Cluster(t, 8)
		clusterSharesTheCameras(t, func() bus.Bus { return kafkatest.Start(t, kcfg) })
	})
}

// embeddedBus runs an embedded bus of 8 partitions until the test ends:
// nodes in one process sharing it are a cluster.
func embeddedBus(t *testing.T) bus.Bus {
	t.Helper()
	bcfg := bus.Defaults()
	bcfg.Partitions = 8
	b, err := bus.NewEmbedded(bcfg, t.TempDir(), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runBus(t, b.Run)
	return b
}

// runBus runs a bus until the test ends.
func runBus(t *testing.T, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bus: %v", err)
		}
	})
}

func clusterSharesTheCameras(t *testing.T, newBus func() bus.Bus) {
	ids := []string{"gate", "bridge", "market", "school", "clinic", "square", "river", "depot"}
	sim := startSim(t, ids...)
	var cams []camera.Camera
	for _, id := range ids {
		cams = append(cams, camera.Camera{ID: id, URL: sim.URL(id), Transport: "tcp", Region: "north"})
	}
	db := casedbtest.Open(t, casedb.SQLite)
	a := startClusterNode(t, cams, db, newBus())
	c := startClusterNode(t, cams, db, newBus())
	own := owners(t, ids, a, c)
	count := map[*clusterNode]int{}
	for _, id := range ids {
		count[own[id]]++
		waitState(t, own[id].Ingest, id, rtsp.StateOnline, true)
	}
	if count[a] == 0 || count[c] == 0 {
		t.Fatalf("one node owns every camera (%d and %d): the cluster shares nothing", count[a], count[c])
	}
	t.Logf("owned: %d and %d cameras", count[a], count[c])
	// The metric says which node pulls each camera from the camera.
	for _, n := range []*clusterNode{a, c} {
		for _, id := range ids {
			want := 0.0
			if own[id] == n {
				want = 1
			}
			if got := apitest.Metric(t, n.reg, "sharpeye_camera_pulled_here", "camera", id); got != want {
				t.Errorf("sharpeye_camera_pulled_here{camera=%q} at %s: %v, want %v", id, n.cfg.Cluster.Advertise, got, want)
			}
		}
	}

	// A viewer at a of a camera c owns: pulled from c's re-serve, still
	// one session at the camera.
	var theirs string
	for _, id := range ids {
		if own[id] == c {
			theirs = id
			break
		}
	}
	hub, _, ok := a.Lookup(theirs)
	if !ok {
		t.Fatalf("camera %s unknown at a", theirs)
	}
	sub := streamtest.Watch(t, hub, "viewer at the non-owner")
	if st, _ := a.Status(theirs); st.Status.State != rtsp.StateOnline || st.Pulled != PulledNode {
		t.Fatalf("camera %s at a: %s, pulled %q", theirs, st.Status.State, st.Pulled)
	}
	for _, id := range ids {
		if _, _, readers := sim.Stats(id); readers != 1 {
			t.Errorf("camera %s has %d sessions, want its owner's one", id, readers)
		}
	}

	// a relays the camera to a recorder, even one logged in with the
	// cluster's account, but not to another node of the cluster: a node
	// asks the owner itself.
	if err := describeAs(a, theirs, "relay-1", "sey_relay_token", true); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("a node of the cluster asking a for %s, which c owns: %v, want 503", theirs, err)
	}
	if err := describeAs(a, theirs, "recorder-1", "sey_recorder_token", false); err != nil {
		t.Errorf("a recorder asking a for %s: %v", theirs, err)
	}
	if err := describeAs(a, theirs, "relay-1", "sey_relay_token", false); err != nil {
		t.Errorf("a relay with the cluster's account, not of the cluster, asking a for %s: %v", theirs, err)
	}
	if err := describeAs(c, theirs, "relay-1", "sey_relay_token", true); err != nil {
		t.Errorf("a node of the cluster asking the owner for %s: %v", theirs, err)
	}

	// A relay-only node pulls the camera from its owner too.
	edge := startFollower(t, cams, db, time.Second)
	waitPulledFrom(t, edge, theirs, c.cfg.Cluster.Advertise)
	ehub, _, _ := edge.Lookup(theirs)
	esub := streamtest.Watch(t, ehub, "viewer at the relay-only node")

	// c stops: a takes its cameras, and the viewers go on.
	stopped := time.Now()
	c.stop()
	owners(t, ids, a)
	waitPulledFrom(t, edge, theirs, a.cfg.Cluster.Advertise)
	for _, id := range ids {
		waitState(t, a.Ingest, id, rtsp.StateOnline, true)
	}
	t.Logf("hand-over: every camera online at the remaining node %v after the other stopped", time.Since(stopped).Round(time.Millisecond))
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		for {
			_, _, readers := sim.Stats(id)
			if readers == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("camera %s has %d sessions after the hand-over, want a's one", id, readers)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	streamtest.Fresh(t, sub, "viewer at a after the hand-over")
	streamtest.Fresh(t, esub, "viewer at the relay-only node after the hand-over")
	if _, _, readers := sim.Stats(theirs); readers != 1 {
		t.Errorf("camera %s has %d sessions with viewers at two nodes, want a's one", theirs, readers)
	}
}

// describeAs asks n's re-serve for camera id's description as user, with
// the cluster's User-Agent if peer.
func describeAs(n *clusterNode, id, user, pass string, peer bool) error {
	u, err := base.ParseURL(n.cfg.Cluster.Advertise + "/" + id)
	if err != nil {
		return err
	}
	u.User = url.UserPassword(user, pass)
	c := gortsplib.Client{Scheme: u.Scheme, Host: u.Host, ReadTimeout: 10 * time.Second}
	if peer {
		c.UserAgent = rtsp.PeerUserAgent
	}
	if err := c.Start2(); err != nil {
		return err
	}
	defer c.Close()
	_, _, err = c.Describe(u)
	return err
}

// startFollower runs a relay-only node of the cluster on db (no re-serve,
// no bus) until the test ends, reading the directory every poll.
func startFollower(t *testing.T, cams []camera.Camera, db *casedb.DB, poll time.Duration) *Ingest {
	t.Helper()
	cfg := Defaults()
	cfg.RegistryPoll = conf.Duration(poll)
	cfg.Cluster.Enabled = true
	cfg.Cluster.Username, cfg.Cluster.Password = "relay-1", "sey_relay_token"
	cfg.Cluster.Announce = conf.Duration(time.Second)
	edge := New(cfg, cams, db, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err := edge.FollowCluster(); err != nil {
		t.Fatal(err)
	}
	startRunning(t, edge)
	return edge
}

// waitPulledFrom waits until in pulls camera id from the node at owner.
func waitPulledFrom(t *testing.T, in *Ingest, id, owner string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _ := in.Status(id)
		if st.Pulled == PulledNode && st.Owner == owner {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("camera %s: pulled %q, owner %q; want from %s", id, st.Pulled, st.Owner, owner)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A camera whose owner stopped confirming it (every node of the cluster
// gone) is pulled from nowhere, and says why.
func TestClusterOwnerGone(t *testing.T) {
	cams := []camera.Camera{{ID: "gate", URL: "rtsp://127.0.0.1:1/gate", Region: "north"}}
	db := casedbtest.Open(t, casedb.SQLite)
	old := time.Now().Add(-time.Hour).UnixMilli()
	if _, err := db.Exec(context.Background(), `INSERT INTO camera_owners (camera_id, node, since, seen) VALUES (?, ?, ?, ?)`,
		"gate", "rtsp://ingest-9:8554", old, old); err != nil {
		t.Fatal(err)
	}
	edge := startFollower(t, cams, db, time.Second)
	waitState(t, edge, "gate", rtsp.StateError, true)
	st, _ := edge.Status("gate")
	if st.Pulled != PulledNone || st.Status.State != rtsp.StateError || st.Status.Reason != errNoOwner.Error() {
		t.Fatalf("pulled %q, state %s (%s); want none, error: %v", st.Pulled, st.Status.State, st.Status.Reason, errNoOwner)
	}
	if st.Owner != "rtsp://ingest-9:8554" {
		t.Errorf("owner %q, want the last one written", st.Owner)
	}

	// An owner that stops confirming while a viewer's puller pulls from it
	// (here, in vain): once its row is stale, the puller is replaced.
	now := time.Now().UnixMilli()
	if _, err := db.Exec(context.Background(), `UPDATE camera_owners SET since = ?, seen = ? WHERE camera_id = ?`, now, now, "gate"); err != nil {
		t.Fatal(err)
	}
	hub, _, _ := edge.Lookup("gate")
	sub, err := hub.Subscribe(16)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitFor(t, "the viewer's puller pulls from the owner that confirms", func() bool {
		st, _ := edge.Status("gate")
		return st.Pulled == PulledNode
	})
	waitFor(t, "the puller follows the owner gone silent", func() bool {
		st, _ := edge.Status("gate")
		return st.Pulled == PulledNone && st.Status.Reason == errNoOwner.Error()
	})
}

// A revoked partition's cameras are pulled on for the grace, and a
// partition given straight back never stops being pulled; an older owner's
// write does not undo a newer one's.
func TestClusterHandover(t *testing.T) {
	cams := []camera.Camera{{ID: "gate", URL: "rtsp://127.0.0.1:1/gate", Region: "north"}}
	c, db := unitCluster(t, casedb.SQLite, cams, time.Hour)
	cfg := c.cfg
	c.nparts = 4
	ctx := context.Background()
	p := []bus.TopicPartition{{Topic: bus.TopicCameras, Partition: c.partitionOf("gate")}}
	direct := func() bool { return c.source("gate", time.Now()) == pullDirect }
	if direct() {
		t.Fatal("pulled before the partition was given")
	}
	if err := c.assigned(ctx, p); err != nil {
		t.Fatal(err)
	}
	var node string
	var since int64
	if err := db.QueryRow(ctx, `SELECT node, since FROM camera_owners WHERE camera_id = 'gate'`).Scan(&node, &since); err != nil || node != cfg.Advertise {
		t.Fatalf("owner row: %q (%v), want %s", node, err, cfg.Advertise)
	}
	c.revoked(ctx, p)
	if !direct() {
		t.Fatal("let go within the grace")
	}
	if err := c.assigned(ctx, p); err != nil {
		t.Fatal(err)
	}
	if len(c.leaving) != 0 || !direct() {
		t.Fatal("a partition given back is still leaving")
	}
	// Handed over for good (no grace): not pulled here any more.
	c.cfg.HandoverGrace = 0
	c.revoked(ctx, p)
	if direct() {
		t.Fatal("pulled after the grace")
	}
	// The partition is forgotten when its grace ends.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c.mu.Lock()
		n := len(c.leaving)
		c.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d partitions leaving after their grace", n)
		}
	}
	// Another node took it later; this node's late write loses.
	if _, err := db.Exec(ctx, `UPDATE camera_owners SET node = 'rtsp://ingest-2:8554', since = ? WHERE camera_id = 'gate'`, since+1000); err != nil {
		t.Fatal(err)
	}
	c.owned[p[0].Partition] = since
	if err := c.announce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `SELECT node FROM camera_owners WHERE camera_id = 'gate'`).Scan(&node); err != nil || node != "rtsp://ingest-2:8554" {
		t.Fatalf("owner %q (%v) after an older write, want the newer owner kept", node, err)
	}
}

// A node pulling a camera from its owner looks for a new owner as soon as
// that pull fails, not at its next poll: here it polls every hour and
// still follows the hand-over within seconds.
func TestClusterFollowerFindsTheNewOwnerAtOnce(t *testing.T) {
	sim := startSim(t, "gate")
	cams := []camera.Camera{{ID: "gate", URL: sim.URL("gate"), Transport: "tcp", Region: "north"}}
	db := casedbtest.Open(t, casedb.SQLite)
	b := embeddedBus(t)
	first := startClusterNode(t, cams, db, b)
	owners(t, []string{"gate"}, first)
	edge := startFollower(t, cams, db, time.Hour)
	waitPulledFrom(t, edge, "gate", first.cfg.Cluster.Advertise)
	// A viewer at the relay-only node, which pulls on demand.
	hub, _, _ := edge.Lookup("gate")
	sub := streamtest.Watch(t, hub, "viewer at the relay-only node")

	// The owner stops; another node starts and takes the camera over.
	stopped := time.Now()
	first.stop()
	second := startClusterNode(t, cams, db, b)
	owners(t, []string{"gate"}, second)
	waitPulledFrom(t, edge, "gate", second.cfg.Cluster.Advertise)
	streamtest.Fresh(t, sub, "viewer after the hand-over")
	t.Logf("the relay-only node pulls from the new owner %v after the old one stopped", time.Since(stopped).Round(time.Millisecond))
}

// The directory forgets the cameras deleted from the registry: the rows
// this node wrote, and those nobody confirms any more; not a row another
// node confirms (its registry may know the camera).
func TestClusterForgetsDeletedCameras(t *testing.T) {
	cams := []camera.Camera{{ID: "gate", URL: "rtsp://127.0.0.1:1/gate", Region: "north"}}
	c, db := unitCluster(t, casedb.SQLite, cams, DefaultClusterConfig().HandoverGrace.D())
	cfg := c.cfg
	ctx := context.Background()
	now, old := time.Now().UnixMilli(), time.Now().Add(-time.Hour).UnixMilli()
	for _, r := range []struct {
		id, node string
		seen     int64
	}{
		{"gate", "rtsp://ingest-2:8554", now},
		{"deleted-mine", cfg.Advertise, now},
		{"deleted-theirs", "rtsp://ingest-2:8554", now},
		{"deleted-stale", "rtsp://ingest-3:8554", old},
	} {
		if _, err := db.Exec(ctx, `INSERT INTO camera_owners (camera_id, node, since, seen) VALUES (?, ?, ?, ?)`, r.id, r.node, r.seen, r.seen); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.readDirectory(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.announce(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(ctx, `SELECT camera_id FROM camera_owners ORDER BY camera_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var left []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left = append(left, id)
	}
	if fmt.Sprint(left) != "[deleted-theirs gate]" {
		t.Fatalf("rows left %v, want [deleted-theirs gate]", left)
	}
}

// TestClusterAnnouncesManyCameras: an announce of more cameras than one
// statement writes, on each case database, takes every camera of the
// owned partitions whose row is older or unconfirmed, keeps a newer
// owner's, and forgets the deleted cameras it wrote.
func TestClusterAnnouncesManyCameras(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			n := 2*ownerRows + 50
			cams := make([]camera.Camera, n)
			for i := range cams {
				id := fmt.Sprintf("cam-%03d", i)
				cams[i] = camera.Camera{ID: id, URL: "rtsp://127.0.0.1:1/" + id, Region: "north"}
			}
			c, db := unitCluster(t, driver, cams, DefaultClusterConfig().HandoverGrace.D())
			cfg := c.cfg
			ctx := context.Background()
			since := time.Now().UnixMilli()
			now, old := since, time.Now().Add(-time.Hour).UnixMilli()
			// cam-000: another node's newer assignment, confirmed: kept.
			// cam-001: another node's older assignment, unconfirmed: taken.
			// cam-002: another node's newer assignment, unconfirmed: taken.
			// gone-*: cameras deleted from the registry, this node's rows.
			// gone-theirs: another node's, confirmed: kept; gone-stale:
			// another node's, unconfirmed: deleted.
			pre := []struct {
				id, node    string
				since, seen int64
			}{
				{"cam-000", "rtsp://ingest-2:8554", since + 1000, now},
				{"cam-001", "rtsp://ingest-2:8554", old, old},
				{"cam-002", "rtsp://ingest-2:8554", since + 1000, old},
				{"gone-theirs", "rtsp://ingest-2:8554", old, now},
				{"gone-stale", "rtsp://ingest-2:8554", old, old},
			}
			for i := range ownerRows + 10 {
				pre = append(pre, struct {
					id, node    string
					since, seen int64
				}{fmt.Sprintf("gone-%03d", i), cfg.Advertise, old, now})
			}
			for _, r := range pre {
				if _, err := db.Exec(ctx, `INSERT INTO camera_owners (camera_id, node, since, seen) VALUES (?, ?, ?, ?)`, r.id, r.node, r.since, r.seen); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.readDirectory(ctx); err != nil {
				t.Fatal(err)
			}
			c.nparts = 1
			c.owned[0] = since
			if err := c.announce(ctx); err != nil {
				t.Fatal(err)
			}
			rows, err := db.Query(ctx, `SELECT camera_id, node FROM camera_owners`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			owners := map[string]string{}
			for rows.Next() {
				var id, node string
				if err := rows.Scan(&id, &node); err != nil {
					t.Fatal(err)
				}
				owners[id] = node
			}
			if len(owners) != n+1 || owners["gone-theirs"] != "rtsp://ingest-2:8554" {
				t.Fatalf("%d rows, want %d: the cameras and gone-theirs (%q)", len(owners), n+1, owners["gone-theirs"])
			}
			for _, cam := range cams {
				want := cfg.Advertise
				if cam.ID == "cam-000" {
					want = "rtsp://ingest-2:8554"
				}
				if owners[cam.ID] != want {
					t.Fatalf("%s owned by %q, want %q", cam.ID, owners[cam.ID], want)
				}
			}
		})
	}
}

// unitCluster is a cluster member of cams on a new case database of
// driver, advertising rtsp://ingest-1:8554, with no bus: its methods are
// called by the test. grace is its hand-over grace.
func unitCluster(t *testing.T, driver string, cams []camera.Camera, grace time.Duration) (*cluster, *casedb.DB) {
	t.Helper()
	db := casedbtest.Open(t, driver)
	cfg := DefaultClusterConfig()
	cfg.Enabled, cfg.Advertise = true, "rtsp://ingest-1:8554"
	cfg.HandoverGrace = conf.Duration(grace)
	c, err := newCluster(cfg, db, camera.NewRegistry(cams, nil), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return c, db
}

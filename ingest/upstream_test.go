package ingest

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/configs/conf"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/stream/streamtest"
)

// relayAuth lets the relay node's account read every region.
type relayAuth struct{}

func (relayAuth) CheckRTSP(_ context.Context, user, pass, _ string) (func(string) bool, error) {
	if (user != "relay-1" || pass != "sey_relay_token") && (user != "recorder-1" || pass != "sey_recorder_token") {
		return nil, errors.New("bad credentials")
	}
	return func(string) bool { return true }, nil
}

// startUpstream runs an ingest node with its re-serve on a free port.
func startUpstream(t *testing.T, cams []camera.Camera) *Ingest {
	t.Helper()
	cfg := Defaults()
	cfg.RTSPServer.Listen = "127.0.0.1:0"
	in := New(cfg, cams, nil, relayAuth{}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	startRunning(t, in)
	return in
}

// A relay-only node pulls a camera from the ingest node's re-serve while
// someone watches it there, and lets it go when they leave; the ingest
// node keeps its single session to the camera.
func TestPullFromUpstream(t *testing.T) {
	sim := startSim(t, "gate")
	cams := []camera.Camera{{ID: "gate", URL: sim.URL("gate"), Transport: "tcp", Region: "north"}}
	up := startUpstream(t, cams)

	cfg := Defaults()
	cfg.Pull.OnDemandIdle = conf.Duration(200 * time.Millisecond)
	edge := New(cfg, cams, nil, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	edge.PullFrom(rtsp.Upstream{URL: "rtsp://" + up.RTSPAddr(), Username: "relay-1", Password: "sey_relay_token", Transport: "tcp"})
	edge.cfg.RTSPServer.Listen = ""
	startRunning(t, edge)

	// Nobody watches at the edge: nothing pulled from the upstream.
	waitState(t, edge, "gate", rtsp.StateIdle, true)
	hub, region, ok := edge.Lookup("gate")
	if !ok || region != "north" {
		t.Fatalf("edge lookup: ok %v, region %q", ok, region)
	}
	sub, err := hub.Subscribe(64)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, edge, "gate", rtsp.StateOnline, true)
	streamtest.WaitKeyframe(t, sub, streamtest.Timeout, "viewer at the edge")
	if n := up.rtsp.Readers(); n != 1 {
		t.Errorf("%d readers at the upstream's re-serve, want the edge", n)
	}
	if _, _, readers := sim.Stats("gate"); readers != 1 {
		t.Errorf("%d sessions at the camera, want the ingest node's one", readers)
	}
	sub.Close()
	waitState(t, edge, "gate", rtsp.StateIdle, true)
}

// Wrong credentials at the upstream: the camera is in error at the edge,
// with a reason that names the upstream and no password.
func TestPullFromUpstreamRefused(t *testing.T) {
	reason := edgeError(t, "gate", "sey_wrong_token")
	if !strings.Contains(reason, "upstream ingest node") || strings.Contains(reason, "sey_wrong_token") {
		t.Fatalf("reason %q, want the upstream named and no password", reason)
	}
	t.Logf("the edge says: %s", reason)
}

// A camera the upstream does not have: the edge says so, naming the
// upstream rather than the camera.
func TestPullFromUpstreamUnknownCamera(t *testing.T) {
	if reason := edgeError(t, "ghost", "sey_relay_token"); !strings.Contains(reason, "not found on the upstream ingest node") {
		t.Fatalf("reason %q", reason)
	}
}

// edgeError runs an upstream with the camera "gate" and an edge pulling
// from it with password, whose registry has "gate" and "ghost"; it has a
// viewer watch camera id at the edge until the puller fails, and returns
// the reason the edge gives.
func edgeError(t *testing.T, id, password string) string {
	sim := startSim(t, "gate")
	cams := []camera.Camera{{ID: "gate", URL: sim.URL("gate"), Transport: "tcp", Region: "north"}}
	up := startUpstream(t, cams)
	edgeCams := []camera.Camera{cams[0], {ID: "ghost", URL: sim.URL("ghost"), Transport: "tcp", Region: "north"}}
	edge := New(Defaults(), edgeCams, nil, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	edge.PullFrom(rtsp.Upstream{URL: "rtsp://" + up.RTSPAddr(), Username: "relay-1", Password: conf.Secret(password), Transport: "tcp"})
	edge.cfg.RTSPServer.Listen = ""
	startRunning(t, edge)
	waitState(t, edge, id, rtsp.StateIdle, true)
	hub, _, _ := edge.Lookup(id)
	sub, err := hub.Subscribe(8)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitState(t, edge, id, rtsp.StateError, true)
	st, _ := edge.Status(id)
	return st.Status.Reason
}

// startRunning starts and runs in until the test ends.
func startRunning(t testing.TB, in *Ingest) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := in.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingest: %v", err)
		}
	})
}

package ingest

import (
	"errors"
	"time"

	"sharpeye/ingest/bus"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/stream"
)

// PullFrom makes the role pull every camera of the registry from up
// instead of from the camera itself, and only while someone watches (on
// demand): what a node that relays without ingesting does, so that each
// camera keeps one session, at its ingest node, however many relays play
// it. The registry (regions, names) is still this node's: the same
// database as the ingest nodes'. Call it before Start; run such a role
// without detectors and without a re-serve of its own.
func (in *Ingest) PullFrom(up rtsp.Upstream) { in.upstream = &up }

// JoinCluster makes this node one of the ingest nodes sharing the cameras
// (ingest.cluster, which must be enabled): it pulls itself, and runs the
// detectors of, only the cameras the group on b gives it, and pulls the
// others on demand from their owners' re-serves. Call it before Run
// (after Start, when the advertised address is the re-serve's bound port).
func (in *Ingest) JoinCluster(b bus.Bus) error {
	if in.cfg.Cluster.Advertise == "" {
		return errNoAdvertise
	}
	return in.setCluster(b)
}

// PullsHere says whether this node pulls camera id from the camera itself
// (rtsp.PeerSource): in a cluster, whether it owns it or is handing it
// over; without one, whether it has the camera.
func (in *Ingest) PullsHere(id string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	r, ok := in.cams[id]
	return ok && (in.cluster == nil || r.source == pullDirect)
}

// FollowCluster makes a relay-only node pull every camera on demand from
// the ingest node that owns it (ingest.cluster), instead of from one
// upstream. Call it before Start.
func (in *Ingest) FollowCluster() error { return in.setCluster(nil) }

// setCluster takes part in the cluster: a member on b, a follower without.
func (in *Ingest) setCluster(b bus.Bus) error {
	c, err := newCluster(in.cfg.Cluster, in.db, in.reg, b, in.log.With("component", "cluster"))
	if err != nil {
		return err
	}
	in.cluster = c
	return nil
}

// Where a camera is pulled from (running.source): the camera itself, a
// node's re-serve (its base URL), or, in a cluster whose owner of the
// camera is not known, nowhere.
const (
	pullDirect  = ""
	pullNowhere = "-"
)

var errNoOwner = errors.New("no ingest node of the cluster has announced that it pulls this camera (yet)")

// pullFrom is where camera id is pulled from now.
func (in *Ingest) pullFrom(id string) string {
	switch {
	case in.cluster != nil:
		return in.cluster.source(id, time.Now())
	case in.upstream != nil:
		return in.upstream.URL
	}
	return pullDirect
}

// newPuller is the puller of camera c feeding hub from source (see
// pullFrom): it dials the camera, or the camera's feed at a node's
// re-serve (and then names that node in its errors).
func (in *Ingest) newPuller(c camera.Camera, hub *stream.Hub, source string) *rtsp.Puller {
	if source == pullDirect || source == pullNowhere {
		return rtsp.NewPuller(c, hub, in.cfg.Pull, in.log)
	}
	up := in.upstream
	if in.cluster != nil {
		peer := in.cluster.cfg.peer(source)
		up = &peer
	}
	p := rtsp.NewPuller(up.Camera(c), hub, in.cfg.Pull, in.log)
	if in.cluster == nil {
		p.FromUpstream()
		return p
	}
	p.FromClusterPeer()
	// The owner may be gone: look for the new one at once.
	p.OnSessionFailed(func(error) { in.cluster.pullFailed() })
	return p
}

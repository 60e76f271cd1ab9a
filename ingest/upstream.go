package ingest

import (
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

// newPuller is the puller of camera c feeding hub: it dials the camera,
// or the camera's feed at the upstream re-serve (and then names that node
// in its errors).
func (in *Ingest) newPuller(c camera.Camera, hub *stream.Hub) *rtsp.Puller {
	if in.upstream == nil {
		return rtsp.NewPuller(c, hub, in.cfg.Pull, in.log)
	}
	p := rtsp.NewPuller(in.upstream.Camera(c), hub, in.cfg.Pull, in.log)
	p.FromUpstream()
	return p
}

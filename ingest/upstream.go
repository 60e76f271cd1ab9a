package ingest

import (
	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
)

// PullFrom makes the role pull every camera of the registry from up
// instead of from the camera itself, and only while someone watches (on
// demand): what a node that relays without ingesting does, so that each
// camera keeps one session, at its ingest node, however many relays play
// it. The registry (regions, names) is still this node's: the same
// database as the ingest nodes'. Call it before Start; run such a role
// without detectors and without a re-serve of its own.
func (in *Ingest) PullFrom(up rtsp.Upstream) { in.upstream = &up }

// pullTarget is what a camera's puller dials: the camera, or its feed at
// the upstream re-serve.
func (in *Ingest) pullTarget(c camera.Camera) camera.Camera {
	if in.upstream == nil {
		return c
	}
	return in.upstream.Camera(c)
}

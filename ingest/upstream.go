package ingest

import (
	"strings"

	"sharpeye/configs/conf"
	"sharpeye/ingest/camera"
)

// Upstream is another node's RTSP re-serve (rtsp://HOST:8554/{camera-id}).
type Upstream struct {
	URL       string // the re-serve's base, rtsp://ingest-1:8554
	Username  string
	Password  string
	Transport string // tcp, udp or auto
}

// PullFrom makes the role pull every camera of the registry from up
// instead of from the camera itself, and only while someone watches (on
// demand): what a node that relays without ingesting does, so that each
// camera keeps one session, at its ingest node, however many relays play
// it. The registry (regions, names) is still this node's: the same
// database as the ingest nodes'. Call it before Start; run such a role
// without detectors and without a re-serve of its own.
func (in *Ingest) PullFrom(up Upstream) { in.upstream = &up }

// pullTarget is what a camera's puller dials: the camera, or its feed at
// the upstream re-serve.
func (in *Ingest) pullTarget(c camera.Camera) camera.Camera {
	up := in.upstream
	if up == nil {
		return c
	}
	c.URL = strings.TrimSuffix(up.URL, "/") + "/" + c.ID
	c.Username, c.Password, c.PasswordEnv = up.Username, conf.Secret(up.Password), ""
	c.Transport = up.Transport
	c.OnDemand = true
	return c
}

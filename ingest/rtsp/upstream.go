package rtsp

import (
	"net/url"
	"strings"

	"sharpeye/configs/conf"
	"sharpeye/ingest/camera"
)

// Upstream is an ingest node's RTSP re-serve (relay.upstream). A
// relay-only node pulls each camera from it (rtsp://HOST:8554/{camera-id})
// while someone watches, so that a camera has one session at its ingest
// node however many relays play it.
type Upstream struct {
	// URL is the re-serve's base, rtsp://ingest-1:8554 ("" = none: the
	// relay role then needs the ingest role in the same process).
	URL string `yaml:"url"`
	// Username and Password log in to the re-serve: a console user whose
	// region covers the cameras, or any name with an API token as the
	// password.
	Username string      `yaml:"username"`
	Password conf.Secret `yaml:"password"`
	// Transport is tcp, udp or auto (TCP; UDP if the ingest node refuses TCP).
	Transport string `yaml:"transport"`
}

// DefaultUpstream is none, over TCP once set.
func DefaultUpstream() Upstream { return Upstream{Transport: camera.TransportTCP} }

// Validate implements conf.Validator.
func (u *Upstream) Validate(v *conf.V) {
	if u.URL != "" {
		if problem := CheckReserveURL(u.URL); problem != "" {
			v.Errorf("url", "%s", problem)
		}
	}
	if !ValidTransport(u.Transport) {
		v.Errorf("transport", "must be tcp, udp or auto")
	}
}

// CheckReserveURL returns what is wrong with s as the base of an ingest
// node's RTSP re-serve, "" when nothing is.
func CheckReserveURL(s string) string {
	p, err := url.Parse(s)
	switch {
	case err != nil || (p.Scheme != "rtsp" && p.Scheme != "rtsps") || p.Host == "":
		return "must be an ingest node's RTSP re-serve such as rtsp://ingest-1:8554"
	case p.User != nil:
		return "must not hold credentials: use username and password"
	case p.RawQuery != "" || p.Fragment != "" || strings.Trim(p.Path, "/") != "":
		return "must be scheme://host:port only: the camera id is added to it"
	}
	return ""
}

// ValidTransport reports whether t is tcp, udp or auto.
func ValidTransport(t string) bool {
	switch t {
	case camera.TransportTCP, camera.TransportUDP, camera.TransportAuto:
		return true
	}
	return false
}

// Camera is c as pulled from the upstream: its feed at the re-serve, with
// the upstream's credentials and transport, on demand.
func (u Upstream) Camera(c camera.Camera) camera.Camera {
	c.URL = strings.TrimSuffix(u.URL, "/") + "/" + c.ID
	c.Username, c.Password, c.PasswordEnv = u.Username, u.Password, ""
	c.Transport = u.Transport
	c.OnDemand = true
	return c
}

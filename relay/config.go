package relay

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v4"

	"sharpeye/configs/conf"
	"sharpeye/ingest/rtsp"
)

// Config is the relay section of the configuration.
type Config struct {
	// UDPListen is the one UDP address every viewer's media flows through
	// (ICE UDP mux). Open this port to the viewers' networks.
	UDPListen string `yaml:"udp_listen"`
	// NAT1To1IPs are public addresses advertised as host candidates in
	// addition to the local ones, for a relay behind a 1:1 NAT (a cloud
	// instance's elastic IP, a port-forwarded gateway).
	NAT1To1IPs []string `yaml:"nat_1to1_ips"`
	// STUNServers (stun:host:port) let the relay discover its public
	// address by itself. Prefer nat_1to1_ips: a STUN answer is waited for
	// before each WHEP answer, and its candidates use ports of their own
	// instead of udp_listen. They are also advertised to WHEP clients.
	STUNServers []string `yaml:"stun_servers"`
	// TURNServers relay media for viewers that cannot reach udp_listen;
	// they are advertised to WHEP clients (with their credentials) and
	// used by the relay's own peer connections.
	TURNServers []TURNServer `yaml:"turn_servers"`
	// ICETCPListen ("" = off) accepts ICE over TCP on this address, for
	// viewers on networks that block UDP.
	ICETCPListen string `yaml:"ice_tcp_listen"`
	// IncludeLoopback advertises loopback candidates, so that a browser on
	// the relay's own machine (the demo) can connect to 127.0.0.1.
	IncludeLoopback bool `yaml:"include_loopback"`
	// MaxViewersPerCamera and MaxViewers bound the sessions, per camera and
	// in all; a WHEP request over either is refused with 503.
	MaxViewersPerCamera int `yaml:"max_viewers_per_camera"`
	MaxViewers          int `yaml:"max_viewers"`
	// SessionIdleTimeout closes a session whose peer connection has not
	// been connected for this long (never connected, or disconnected).
	SessionIdleTimeout conf.Duration `yaml:"session_idle_timeout"`
	// TrackWait is how long a WHEP request waits for a camera that is not
	// streaming yet (an on-demand camera starting) before giving up.
	TrackWait conf.Duration `yaml:"track_wait"`
	// NACKBuffer is the number of packets kept per viewer to answer
	// retransmission requests: a power of two, or 0 for no
	// retransmission. Packets are kept by reference to the camera's
	// shared payloads: about 40 bytes each per viewer.
	NACKBuffer int `yaml:"nack_buffer"`
	// CORSOrigins are the other origins whose pages may use the WHEP
	// endpoints (with a bearer token), e.g. https://wall.example.org; "*"
	// allows any. Empty: same origin only.
	CORSOrigins []string `yaml:"cors_origins"`
	// Queue is the number of access units queued per viewer, beyond the
	// cached group of pictures, before the viewer is dropped from the
	// camera and resubscribed (it restarts at the latest keyframe).
	Queue int `yaml:"queue"`
	// Upstream is where a node that runs the relay role without the ingest
	// role takes its cameras from: an ingest node's RTSP re-serve.
	Upstream rtsp.Upstream `yaml:"upstream"`
}

// TURNServer is a TURN server and its long-term credentials.
type TURNServer struct {
	// URL is turn:host:port[?transport=udp|tcp] or turns:host:port.
	URL        string      `yaml:"url"`
	Username   string      `yaml:"username"`
	Credential conf.Secret `yaml:"credential"`
}

// Defaults returns the compiled defaults: one UDP port on the loopback
// interface, which is what `sharpeye demo` needs.
func Defaults() Config {
	return Config{
		UDPListen:           "127.0.0.1:8189",
		NAT1To1IPs:          []string{},
		STUNServers:         []string{},
		TURNServers:         []TURNServer{},
		CORSOrigins:         []string{},
		IncludeLoopback:     true,
		MaxViewersPerCamera: 50,
		MaxViewers:          500,
		SessionIdleTimeout:  conf.Duration(30 * time.Second),
		TrackWait:           conf.Duration(8 * time.Second),
		NACKBuffer:          256,
		Queue:               128,
		Upstream:            rtsp.DefaultUpstream(),
	}
}

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	if host, err := checkHostPort(c.UDPListen); err != "" {
		v.Errorf("udp_listen", "%s", err)
	} else if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() && !c.IncludeLoopback {
		v.Errorf("udp_listen", "is a loopback address, which is only advertised with include_loopback: true")
	}
	if c.ICETCPListen != "" {
		if _, err := checkHostPort(c.ICETCPListen); err != "" {
			v.Errorf("ice_tcp_listen", "%s", err)
		}
	}
	for i, s := range c.NAT1To1IPs {
		if net.ParseIP(s) == nil {
			v.Errorf("nat_1to1_ips["+strconv.Itoa(i)+"]", "%q is not an IP address", s)
		}
	}
	for i, s := range c.STUNServers {
		u, err := stun.ParseURI(s)
		switch {
		case err != nil:
			v.Errorf("stun_servers["+strconv.Itoa(i)+"]", "%q is not a STUN URL such as stun:stun.example.org:3478 (%v)", s, err)
		case u.Scheme != stun.SchemeTypeSTUN && u.Scheme != stun.SchemeTypeSTUNS:
			v.Errorf("stun_servers["+strconv.Itoa(i)+"]", "%q: scheme must be stun or stuns (TURN servers go in turn_servers)", s)
		}
	}
	for i, t := range c.TURNServers {
		key := "turn_servers[" + strconv.Itoa(i) + "]"
		u, err := stun.ParseURI(t.URL)
		switch {
		case err != nil:
			v.Errorf(key+".url", "%q is not a TURN URL such as turn:turn.example.org:3478 (%v)", t.URL, err)
		case u.Scheme != stun.SchemeTypeTURN && u.Scheme != stun.SchemeTypeTURNS:
			v.Errorf(key+".url", "%q: scheme must be turn or turns", t.URL)
		}
		if t.Username == "" {
			v.Errorf(key+".username", "required")
		}
		if t.Credential == "" {
			v.Errorf(key+".credential", "required")
		}
	}
	if c.MaxViewersPerCamera < 1 {
		v.Errorf("max_viewers_per_camera", "must be at least 1")
	}
	if c.MaxViewers < 1 {
		v.Errorf("max_viewers", "must be at least 1")
	}
	if d := c.SessionIdleTimeout.D(); d < time.Second || d > time.Hour {
		v.Errorf("session_idle_timeout", "must be between 1s and 1h")
	}
	if d := c.TrackWait.D(); d < 0 || d > time.Minute {
		v.Errorf("track_wait", "must be between 0s and 1m")
	}
	if n := c.NACKBuffer; n != 0 && (n < 16 || n > 32768 || n&(n-1) != 0) {
		v.Errorf("nack_buffer", "must be a power of two from 16 to 32768, or 0 for no retransmission")
	}
	for i, o := range c.CORSOrigins {
		if err := checkOrigin(o); err != "" {
			v.Errorf("cors_origins["+strconv.Itoa(i)+"]", "%q %s", o, err)
		}
	}
	if c.Queue < 1 || c.Queue > 10000 {
		v.Errorf("queue", "must be between 1 and 10000")
	}
}

// checkHostPort returns the host of a host:port address, or why it is not
// one.
func checkHostPort(addr string) (string, string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "must be host:port, e.g. 0.0.0.0:8189"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", "port must be 0-65535"
	}
	return host, ""
}

// checkOrigin says what is wrong with a CORS origin, if anything.
func checkOrigin(o string) string {
	if o == "*" {
		return ""
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "must be an origin such as https://wall.example.org, or *"
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.HasSuffix(o, "/") {
		return "must be scheme://host[:port] only, without a path or a trailing /"
	}
	return ""
}

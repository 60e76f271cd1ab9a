package relay

import (
	"strings"
	"testing"

	"sharpeye/configs/conf"
)

type root struct {
	Relay Config `yaml:"relay"`
}

func load(t *testing.T, yml string, env ...string) (Config, error) {
	t.Helper()
	r := root{Relay: Defaults()}
	err := conf.Load(&r, []byte(yml), "test.yml", env)
	return r.Relay, err
}

func TestConfigDefaultsAreValid(t *testing.T) {
	if _, err := load(t, ""); err != nil {
		t.Fatal(err)
	}
	c, err := load(t, `
relay:
  udp_listen: 0.0.0.0:8189
  nat_1to1_ips: [203.0.113.7]
  stun_servers: ["stun:stun.example.org:3478"]
  turn_servers:
    - {url: "turn:turn.example.org:3478?transport=udp", username: wall, credential: s3cret}
  ice_tcp_listen: 0.0.0.0:8189
  include_loopback: false
  max_viewers_per_camera: 10
  max_viewers: 100
  session_idle_timeout: 10s
  track_wait: 0s
  nack_buffer: 512
  cors_origins: ["https://wall.example.org", "*"]
  queue: 64
  upstream: {url: "rtsp://ingest-1:8554/", username: relay-1, transport: auto}
`, "SHARPEYE_RELAY_MAX_VIEWERS=200", "SHARPEYE_RELAY_UPSTREAM_PASSWORD=sey_token")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxViewers != 200 || c.TURNServers[0].Credential.Reveal() != "s3cret" || c.NACKBuffer != 512 || c.Upstream.Password.Reveal() != "sey_token" {
		t.Fatalf("got %+v", c)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ yml, want string }{
		{"relay: {udp_listen: 8189}", "relay.udp_listen"},
		{"relay: {udp_listen: '127.0.0.1:8189', include_loopback: false}", "include_loopback"},
		{"relay: {ice_tcp_listen: 'x'}", "relay.ice_tcp_listen"},
		{"relay: {nat_1to1_ips: [public]}", "relay.nat_1to1_ips[0]"},
		{"relay: {stun_servers: ['http://x']}", "relay.stun_servers[0]"},
		{"relay: {stun_servers: ['turn:x:3478']}", "turn_servers"},
		{"relay: {turn_servers: [{url: 'turn:x:3478'}]}", "relay.turn_servers[0].username"},
		{"relay: {turn_servers: [{url: 'stun:x', username: a, credential: b}]}", "relay.turn_servers[0].url"},
		{"relay: {max_viewers: 0}", "relay.max_viewers"},
		{"relay: {upstream: {url: 'http://ingest-1:8554'}}", "relay.upstream.url"},
		{"relay: {upstream: {url: 'rtsp://relay:pw@ingest-1:8554'}}", "must not hold credentials"},
		{"relay: {upstream: {url: 'rtsp://ingest-1:8554/cam-1'}}", "the camera id is added"},
		{"relay: {upstream: {transport: quic}}", "relay.upstream.transport"},
		{"relay: {max_viewers_per_camera: -1}", "relay.max_viewers_per_camera"},
		{"relay: {session_idle_timeout: 10ms}", "relay.session_idle_timeout"},
		{"relay: {track_wait: 2m}", "relay.track_wait"},
		{"relay: {nack_buffer: 300}", "relay.nack_buffer"},
		{"relay: {cors_origins: ['https://wall.example.org/']}", "relay.cors_origins[0]"},
		{"relay: {cors_origins: ['wall.example.org']}", "relay.cors_origins[0]"},
		{"relay: {queue: 0}", "relay.queue"},
		{"relay: {udp_port: 1}", "udp_port"},
	} {
		_, err := load(t, tc.yml)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %s", tc.yml, err, tc.want)
		}
	}
}

func TestTURNCredentialRedacted(t *testing.T) {
	c := Defaults()
	c.TURNServers = []TURNServer{{URL: "turn:x:3478", Username: "u", Credential: "hunter2"}}
	b, err := conf.Marshal(root{Relay: c})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "hunter2") {
		t.Fatalf("credential printed:\n%s", b)
	}
}

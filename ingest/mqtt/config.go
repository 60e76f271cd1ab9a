package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"time"

	"sharpeye/configs/conf"
)

// Config is the mqtt section of the configuration.
type Config struct {
	// URL is the external broker to take messages from (EMQX, Mosquitto):
	// tcp://, mqtt://, ssl://, tls://, mqtts://, ws:// or wss://. Empty
	// starts the embedded broker instead.
	URL string `yaml:"url"`
	// Listen is the embedded broker's TCP address.
	Listen string `yaml:"listen"`
	// Username and Password are Sharpeye's own credential: on an external
	// broker, the intake client's login; on the embedded broker, an
	// optional read-only account that may subscribe to sharpeye/# (for
	// monitoring tools and bridges).
	Username string      `yaml:"username"`
	Password conf.Secret `yaml:"password"`
	// TLS applies to an external broker reached over ssl://, tls://,
	// mqtts:// or wss://.
	TLS TLSConfig `yaml:"tls"`
	// ClientID is the intake client's fixed id on an external broker; its
	// persistent session holds the messages that arrive while Sharpeye is
	// away. Each node needs its own.
	ClientID string `yaml:"client_id"`
	// QoS of the intake's subscriptions on an external broker: 1 (at least
	// once, the default) or 2; 0 loses messages on any failure.
	QoS int `yaml:"qos"`
	// MaxPayload is the largest message payload accepted, in bytes; larger
	// ones are dead-lettered. The embedded broker drops the connection of a
	// client sending a packet over twice this.
	MaxPayload int `yaml:"max_payload"`
	// OfflineCheck is how often silent devices are looked for.
	OfflineCheck conf.Duration `yaml:"offline_check"`
	// KeepAlive is the intake client's MQTT keep-alive on an external broker.
	KeepAlive conf.Duration `yaml:"keep_alive"`
	// BatchMax bounds the messages of one publish to the bus; BatchWait is
	// how long a batch waits for more messages before it is published (0:
	// publish as soon as the bus is free, batching what arrived meanwhile).
	BatchMax  int           `yaml:"batch_max"`
	BatchWait conf.Duration `yaml:"batch_wait"`
	// MaxInflight bounds the unacknowledged QoS 1/2 messages the embedded
	// broker keeps per client (its offline queue), at most 65535.
	MaxInflight int `yaml:"max_inflight"`
}

// TLSConfig is how the intake client verifies an external broker.
type TLSConfig struct {
	// CAFile is a PEM file of the authorities to trust; empty trusts the
	// system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, for brokers that ask
	// for one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify accepts any server certificate: tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Defaults returns the compiled defaults.
func Defaults() Config {
	return Config{
		Listen:       "127.0.0.1:1883",
		ClientID:     "sharpeye-intake",
		QoS:          1,
		MaxPayload:   64 << 10,
		OfflineCheck: conf.Duration(10 * time.Second),
		KeepAlive:    conf.Duration(30 * time.Second),
		BatchMax:     500,
		MaxInflight:  65535,
	}
}

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`)

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	if c.URL == "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			v.Errorf("listen", "must be host:port, such as 127.0.0.1:1883 or 0.0.0.0:1883")
		}
	} else {
		u, err := url.Parse(c.URL)
		switch {
		case err != nil:
			v.Errorf("url", "not a URL")
		case !knownScheme(u.Scheme):
			v.Errorf("url", "scheme must be tcp, mqtt, ssl, tls, mqtts, ws or wss, not %q", u.Scheme)
		case u.Host == "":
			v.Errorf("url", "has no host (tcp://broker:1883)")
		case u.User != nil:
			v.Errorf("url", "give the credential in username and password, not in the URL")
		}
		if !clientIDPattern.MatchString(c.ClientID) {
			v.Errorf("client_id", "must be 1-64 characters of letters, digits, _ . : and -")
		}
	}
	if c.Username == "" && c.Password != "" {
		v.Errorf("username", "required with a password")
	}
	if c.QoS < 0 || c.QoS > 2 {
		v.Errorf("qos", "must be 0, 1 or 2")
	}
	if c.MaxPayload < 1<<10 || c.MaxPayload > 16<<20 {
		v.Errorf("max_payload", "must be between 1024 and 16777216 bytes")
	}
	if c.OfflineCheck.D() < 10*time.Millisecond || c.OfflineCheck.D() > time.Hour {
		v.Errorf("offline_check", "must be between 10ms and 1h")
	}
	if c.KeepAlive.D() < time.Second || c.KeepAlive.D() > 18*time.Hour {
		v.Errorf("keep_alive", "must be between 1s and 18h")
	}
	if c.BatchMax < 1 || c.BatchMax > 10000 {
		v.Errorf("batch_max", "must be between 1 and 10000")
	}
	if c.BatchWait.D() < 0 || c.BatchWait.D() > time.Second {
		v.Errorf("batch_wait", "must be between 0s and 1s")
	}
	if c.MaxInflight < 1024 || c.MaxInflight > 65535 {
		v.Errorf("max_inflight", "must be between 1024 and 65535")
	}
	for _, f := range []struct{ key, path string }{{"tls.ca_file", c.TLS.CAFile}, {"tls.cert_file", c.TLS.CertFile}, {"tls.key_file", c.TLS.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			v.Errorf(f.key, "cannot read %s: %v", f.path, err)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		v.Errorf("tls.cert_file", "cert_file and key_file go together")
	}
}

func knownScheme(s string) bool {
	switch s {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
		return true
	}
	return false
}

// tlsConfig builds the client's TLS configuration (nil when none is set).
func (c *Config) tlsConfig() (*tls.Config, error) {
	t := c.TLS
	if t == (TLSConfig{}) {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // documented as tests only
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load tls.cert_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

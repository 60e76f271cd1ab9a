package kafka

import (
	"net"
	"strconv"
	"time"

	"sharpeye/configs/conf"
)

// Config is the kafka section of the configuration.
type Config struct {
	// Brokers are the bootstrap brokers, host:port.
	Brokers []string `yaml:"brokers"`
	// ClientID names this node in the brokers' logs and quotas.
	ClientID string `yaml:"client_id"`
	// TLS connects with TLS, checking the brokers' certificates against
	// the system's roots, or against TLSCAFile when set.
	TLS       bool   `yaml:"tls"`
	TLSCAFile string `yaml:"tls_ca_file"`
	// SASL authenticates the connections when Mechanism is set.
	SASL SASL `yaml:"sasl"`
	// Partitions and Replication are used for the topics the bus creates
	// when they are missing; existing topics are left as they are.
	Partitions  int `yaml:"partitions"`
	Replication int `yaml:"replication"`
	// BatchSize is the most messages written to Kafka at once: a larger
	// Publish (or spool delivery) is written in chunks, one after the
	// other. BatchTimeout is how long a partition's produce request waits
	// for more messages (from concurrent Publish calls) before it is sent:
	// the least latency of a Publish, and what lets many small Publish
	// calls share requests.
	BatchSize    int           `yaml:"batch_size"`
	BatchTimeout conf.Duration `yaml:"batch_timeout"`
	// SpoolAfter is how long Publish waits for Kafka's acknowledgement
	// before it writes the messages to the spool instead.
	SpoolAfter conf.Duration `yaml:"spool_after"`
	// SpoolDir holds the messages Kafka could not take in time; "" means
	// <data_dir>/spool.
	SpoolDir string `yaml:"spool_dir"`
	// SpoolMaxBytes bounds the spool; when it is full, Publish blocks
	// (back-pressure) until the spool drains or its context ends.
	SpoolMaxBytes int64 `yaml:"spool_max_bytes"`
	// MemoryBuffer bounds the messages being published at once (waiting
	// for Kafka or the spool); Publish blocks beyond it.
	MemoryBuffer int `yaml:"memory_buffer"`
	// RetryBackoffMin and RetryBackoffMax bound the waits between retries:
	// produce requests, deliveries from the spool, batches a handler
	// refused.
	RetryBackoffMin conf.Duration `yaml:"retry_backoff_min"`
	RetryBackoffMax conf.Duration `yaml:"retry_backoff_max"`
	// SessionTimeout and HeartbeatInterval are the consumer group's: a
	// consumer silent for SessionTimeout loses its partitions; members
	// learn of a rebalance at their next heartbeat.
	SessionTimeout    conf.Duration `yaml:"session_timeout"`
	HeartbeatInterval conf.Duration `yaml:"heartbeat_interval"`
}

// SASL is the authentication of the connections to the brokers.
type SASL struct {
	// Mechanism is "" (none), plain, scram-sha-256 or scram-sha-512.
	Mechanism string      `yaml:"mechanism"`
	Username  string      `yaml:"username"`
	Password  conf.Secret `yaml:"password"`
}

// SASL mechanisms.
const (
	SASLPlain       = "plain"
	SASLSCRAMSHA256 = "scram-sha-256"
	SASLSCRAMSHA512 = "scram-sha-512"
)

// Defaults returns the compiled defaults.
func Defaults() Config {
	return Config{
		Brokers:           []string{"localhost:9092"},
		ClientID:          "sharpeye",
		Partitions:        12,
		Replication:       3,
		BatchSize:         1000,
		BatchTimeout:      conf.Duration(5 * time.Millisecond),
		SpoolAfter:        conf.Duration(2 * time.Second),
		SpoolMaxBytes:     1 << 30,
		MemoryBuffer:      100_000,
		RetryBackoffMin:   conf.Duration(100 * time.Millisecond),
		RetryBackoffMax:   conf.Duration(5 * time.Second),
		SessionTimeout:    conf.Duration(30 * time.Second),
		HeartbeatInterval: conf.Duration(3 * time.Second),
	}
}

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	if len(c.Brokers) == 0 {
		v.Errorf("brokers", "at least one broker (host:port) is required")
	}
	for i, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			v.Errorf("brokers["+strconv.Itoa(i)+"]", "%q is not host:port", b)
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			v.Errorf("brokers["+strconv.Itoa(i)+"]", "%q: port must be between 1 and 65535", b)
		}
	}
	if c.TLSCAFile != "" && !c.TLS {
		v.Errorf("tls_ca_file", "is set but tls is false")
	}
	switch c.SASL.Mechanism {
	case "":
	case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
		if c.SASL.Username == "" {
			v.Errorf("sasl.username", "required with a SASL mechanism")
		}
		if c.SASL.Password == "" {
			v.Errorf("sasl.password", "required with a SASL mechanism")
		}
	default:
		v.Errorf("sasl.mechanism", "must be plain, scram-sha-256 or scram-sha-512, not %q", c.SASL.Mechanism)
	}
	if c.Partitions < 1 || c.Partitions > 10000 {
		v.Errorf("partitions", "must be between 1 and 10000")
	}
	if c.Replication < 1 || c.Replication > 32 {
		v.Errorf("replication", "must be between 1 and 32")
	}
	if c.BatchSize < 1 || c.BatchSize > 1_000_000 {
		v.Errorf("batch_size", "must be between 1 and 1000000")
	}
	if d := c.BatchTimeout.D(); d <= 0 || d > 10*time.Second {
		v.Errorf("batch_timeout", "must be between 1ns and 10s")
	}
	if d := c.SpoolAfter.D(); d < time.Millisecond || d > 5*time.Minute {
		v.Errorf("spool_after", "must be between 1ms and 5m")
	}
	if c.SpoolMaxBytes < 1<<16 {
		v.Errorf("spool_max_bytes", "must be at least 65536")
	}
	if c.MemoryBuffer < 1 {
		v.Errorf("memory_buffer", "must be at least 1")
	}
	if c.RetryBackoffMin.D() <= 0 {
		v.Errorf("retry_backoff_min", "must be positive")
	}
	if c.RetryBackoffMax.D() < c.RetryBackoffMin.D() {
		v.Errorf("retry_backoff_max", "must be at least retry_backoff_min")
	}
	if c.SessionTimeout.D() < time.Second {
		v.Errorf("session_timeout", "must be at least 1s")
	}
	if d := c.HeartbeatInterval.D(); d <= 0 || d >= c.SessionTimeout.D() {
		v.Errorf("heartbeat_interval", "must be positive and below session_timeout")
	}
}

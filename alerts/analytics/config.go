package analytics

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"sharpeye/configs/conf"
)

// Drivers.
const (
	SQLite     = "sqlite"
	ClickHouse = "clickhouse"
)

// Config is the analytics section of the configuration.
type Config struct {
	// Driver is sqlite (embedded, a file in the data directory) or
	// clickhouse.
	Driver string `yaml:"driver"`
	// SQLite is the embedded store's file; empty means
	// <data_dir>/analytics.db.
	SQLite string `yaml:"sqlite"`
	// ClickHouse is the production store.
	ClickHouse ClickHouseConfig `yaml:"clickhouse"`
	// Sink carries the bus into the store (it runs in the alerts role).
	Sink SinkConfig `yaml:"sink"`
	// Retention is how long each table keeps its rows.
	Retention Retention `yaml:"retention"`
	// Timezone is where days, weeks and months begin.
	Timezone string `yaml:"timezone"`
	// Targets are the fleet targets the camera answers are held against.
	Targets Targets `yaml:"targets"`
	// Query bounds every question asked through the API.
	Query QueryLimits `yaml:"query"`
}

// ClickHouseConfig connects to ClickHouse over its native protocol.
type ClickHouseConfig struct {
	// Addr lists host:port of the native protocol (9000).
	Addr     []string    `yaml:"addr"`
	Database string      `yaml:"database"`
	Username string      `yaml:"username"`
	Password conf.Secret `yaml:"password"`
	// SQLUsername and SQLPassword are the read-only user that analysts'
	// raw SQL runs as; empty: raw SQL is refused.
	SQLUsername string      `yaml:"sql_username"`
	SQLPassword conf.Secret `yaml:"sql_password"`
	// DialTimeout bounds each connection attempt.
	DialTimeout conf.Duration `yaml:"dial_timeout"`
	// MaxOpen bounds the connection pool.
	MaxOpen int `yaml:"max_open"`
}

// SinkConfig sizes the batches written to the store.
type SinkConfig struct {
	// Enabled runs the sink in the alerts role.
	Enabled bool `yaml:"enabled"`
	// Group is the consumer group on sharpeye.events and sharpeye.cases.
	Group string `yaml:"group"`
	// Batch and BatchWait bound one insert: ClickHouse wants thousands of
	// rows per insert and about one insert per second per table.
	Batch     int           `yaml:"batch"`
	BatchWait conf.Duration `yaml:"batch_wait"`
	// InsertTimeout bounds one batch's insert; a batch that fails is
	// retried (the sink stops consuming meanwhile).
	InsertTimeout conf.Duration `yaml:"insert_timeout"`
}

// Retention is in days, per table; 0 keeps rows forever.
type Retention struct {
	Events       int `yaml:"events"`
	CaseEvents   int `yaml:"case_events"`
	CameraHealth int `yaml:"camera_health"`
	// Every is how often old partitions are looked for (and, on ClickHouse,
	// settled days merged into one part each).
	Every conf.Duration `yaml:"every"`
}

// Targets are fractions (0..1).
type Targets struct {
	Online float64 `yaml:"online"`
	Intact float64 `yaml:"intact"`
}

// QueryLimits bound the questions and raw SQL.
type QueryLimits struct {
	Timeout   conf.Duration `yaml:"timeout"`
	MaxRows   int           `yaml:"max_rows"`
	MaxMemory int64         `yaml:"max_memory"`
	// MaxSQLBytes bounds a raw SQL query's text.
	MaxSQLBytes int `yaml:"max_sql_bytes"`
}

// Defaults returns the compiled defaults.
func Defaults() Config {
	return Config{
		Driver: SQLite,
		ClickHouse: ClickHouseConfig{
			Addr:        []string{"127.0.0.1:9000"},
			Database:    "sharpeye",
			Username:    "default",
			DialTimeout: conf.Duration(5 * time.Second),
			MaxOpen:     8,
		},
		Sink: SinkConfig{
			Enabled:       true,
			Group:         "sharpeye-analytics",
			Batch:         20000,
			BatchWait:     conf.Duration(time.Second),
			InsertTimeout: conf.Duration(30 * time.Second),
		},
		Retention: Retention{Events: 400, CaseEvents: 0, CameraHealth: 400, Every: conf.Duration(time.Hour)},
		Timezone:  "Asia/Shanghai",
		Targets:   Targets{Online: 0.98, Intact: 0.95},
		Query: QueryLimits{
			Timeout:     conf.Duration(10 * time.Second),
			MaxRows:     100000,
			MaxMemory:   1 << 30,
			MaxSQLBytes: 64 << 10,
		},
	}
}

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	switch c.Driver {
	case SQLite:
	case ClickHouse:
		if len(c.ClickHouse.Addr) == 0 {
			v.Errorf("clickhouse.addr", "at least one host:port is required when driver is clickhouse")
		}
		for i, a := range c.ClickHouse.Addr {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				v.Errorf("clickhouse.addr["+strconv.Itoa(i)+"]", "%q is not host:port", a)
			}
		}
		if !identifier(c.ClickHouse.Database) {
			v.Errorf("clickhouse.database", "%q must be letters, digits and underscores", c.ClickHouse.Database)
		}
	default:
		v.Errorf("driver", "must be sqlite or clickhouse, not %q", c.Driver)
	}
	if c.ClickHouse.DialTimeout.D() <= 0 {
		v.Errorf("clickhouse.dial_timeout", "must be positive")
	}
	if c.ClickHouse.MaxOpen < 1 || c.ClickHouse.MaxOpen > 100 {
		v.Errorf("clickhouse.max_open", "must be 1 to 100")
	}
	if c.Sink.Group == "" {
		v.Errorf("sink.group", "must not be empty")
	}
	if c.Sink.Batch < 1 || c.Sink.Batch > 1000000 {
		v.Errorf("sink.batch", "must be 1 to 1000000")
	}
	if c.Sink.BatchWait.D() <= 0 {
		v.Errorf("sink.batch_wait", "must be positive")
	}
	if c.Sink.InsertTimeout.D() <= 0 {
		v.Errorf("sink.insert_timeout", "must be positive")
	}
	for k, d := range map[string]int{"events": c.Retention.Events, "case_events": c.Retention.CaseEvents, "camera_health": c.Retention.CameraHealth} {
		if d < 0 || d > 36500 {
			v.Errorf("retention."+k, "must be 0 (forever) to 36500 days")
		}
	}
	if c.Retention.Every.D() < time.Minute {
		v.Errorf("retention.every", "must be at least 1m")
	}
	if _, err := time.LoadLocation(c.Timezone); err != nil || c.Timezone == "" {
		v.Errorf("timezone", "%q is not a time zone (such as Asia/Shanghai)", c.Timezone)
	}
	if c.Targets.Online <= 0 || c.Targets.Online > 1 {
		v.Errorf("targets.online", "must be in (0, 1]")
	}
	if c.Targets.Intact <= 0 || c.Targets.Intact > 1 {
		v.Errorf("targets.intact", "must be in (0, 1]")
	}
	if c.Query.Timeout.D() <= 0 {
		v.Errorf("query.timeout", "must be positive")
	}
	if c.Query.MaxRows < 1 {
		v.Errorf("query.max_rows", "must be positive")
	}
	if c.Query.MaxMemory < 1<<20 {
		v.Errorf("query.max_memory", "must be at least 1048576 bytes")
	}
	if c.Query.MaxSQLBytes < 64 || c.Query.MaxSQLBytes > 1<<20 {
		v.Errorf("query.max_sql_bytes", "must be 64 to 1048576")
	}
}

// Location returns the reporting time zone.
func (c *Config) Location() *time.Location {
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		panic(fmt.Sprintf("analytics: time zone %q passed validation but does not load: %v", c.Timezone, err))
	}
	return loc
}

func identifier(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

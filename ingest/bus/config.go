package bus

import (
	"time"

	"sharpeye/configs/conf"
)

// Config is the section of the embedded bus (Embedded).
type Config struct {
	// Retention is how long a message is kept after it was published.
	// Expiry ignores the consumer groups: a message a group had not
	// consumed yet is deleted too, counted and logged (it is the
	// operator's bound on disk use by a group left behind).
	Retention conf.Duration `yaml:"retention"`
	// MaxBytes bounds the log. Past it, messages every consumer group has
	// committed are deleted; when that is not enough because a group lags,
	// Publish blocks until the group catches up (back-pressure) or its
	// context ends. Nothing is dropped to make room.
	MaxBytes int64 `yaml:"max_bytes"`
	// Partitions is the number of partitions each topic is split into by
	// key hash, which is what lets several members of a consumer group
	// work in parallel while each key keeps its order. Fixed when bus.db
	// is created: a different value later is ignored with a warning.
	Partitions int `yaml:"partitions"`
	// Synchronous is the SQLite synchronous mode: "full" survives a power
	// cut (one fsync per Publish), "normal" survives a crash of the
	// process but may lose the last transactions on a power cut.
	Synchronous string `yaml:"synchronous"`
	// RetryBackoffMin and RetryBackoffMax bound the wait before a batch
	// whose handler failed is delivered again (doubling from min to max).
	RetryBackoffMin conf.Duration `yaml:"retry_backoff_min"`
	RetryBackoffMax conf.Duration `yaml:"retry_backoff_max"`
}

// Synchronous modes.
const (
	SyncFull   = "full"
	SyncNormal = "normal"
)

// Defaults returns the compiled defaults: a week of retention within 1 GiB.
func Defaults() Config {
	return Config{
		Retention:       conf.Duration(7 * 24 * time.Hour),
		MaxBytes:        1 << 30,
		Partitions:      8,
		Synchronous:     SyncFull,
		RetryBackoffMin: conf.Duration(100 * time.Millisecond),
		RetryBackoffMax: conf.Duration(10 * time.Second),
	}
}

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	if c.Retention.D() < time.Minute {
		v.Errorf("retention", "must be at least 1m")
	}
	if c.MaxBytes < 1<<16 {
		v.Errorf("max_bytes", "must be at least 65536")
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		v.Errorf("partitions", "must be between 1 and 1024")
	}
	if c.Synchronous != SyncFull && c.Synchronous != SyncNormal {
		v.Errorf("synchronous", "must be full or normal, not %q", c.Synchronous)
	}
	if c.RetryBackoffMin.D() <= 0 {
		v.Errorf("retry_backoff_min", "must be positive")
	}
	if c.RetryBackoffMax.D() < c.RetryBackoffMin.D() {
		v.Errorf("retry_backoff_max", "must be at least retry_backoff_min")
	}
}

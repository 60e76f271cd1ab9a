package blob

import (
	"time"

	"sharpeye/configs/conf"
)

// Config is the blobs section of the configuration.
type Config struct {
	// Dir holds the blobs. Empty: <data_dir>/blobs.
	Dir string `yaml:"dir"`
	// Retention is how long a blob is kept after it was last stored (a
	// Put of content already present counts as storing it again).
	Retention conf.Duration `yaml:"retention"`
	// MaxBytes bounds the store. Past it, the sweep deletes the least
	// recently stored blobs, however young, until the store is under 90 %
	// of it. 0: no bound but retention.
	MaxBytes int64 `yaml:"max_bytes"`
	// SweepEvery is how often Run applies retention and the size bound; a
	// Put that takes the store over MaxBytes starts a sweep at once.
	SweepEvery conf.Duration `yaml:"sweep_every"`
}

// Defaults returns the compiled defaults: 30 days within 10 GiB, swept
// every 10 minutes.
func Defaults() Config {
	return Config{
		Retention:  conf.Duration(720 * time.Hour),
		MaxBytes:   10 << 30,
		SweepEvery: conf.Duration(10 * time.Minute),
	}
}

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	if c.Retention.D() < time.Minute {
		v.Errorf("retention", "must be at least 1m")
	}
	if c.MaxBytes != 0 && c.MaxBytes < 1<<20 {
		v.Errorf("max_bytes", "must be 0 (no bound) or at least 1048576")
	}
	if c.SweepEvery.D() < time.Second {
		v.Errorf("sweep_every", "must be at least 1s")
	}
}

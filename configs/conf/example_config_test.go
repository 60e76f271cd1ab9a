package conf_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"sharpeye/configs/conf"
)

// Config is a sample configuration with every kind of field conf handles.
type Config struct {
	Common   `yaml:",inline"`
	HTTP     HTTP            `yaml:"http"`
	TLS      *TLS            `yaml:"tls"`
	Cameras  []Camera        `yaml:"cameras"`
	Sites    map[string]Site `yaml:"sites"`
	CaseDB   CaseDB          `yaml:"casedb"`
	Tags     []string        `yaml:"tags"`
	Ratio    float64         `yaml:"ratio"`
	Internal string          `yaml:"-"`
}

type Common struct {
	LogLevel slog.Level `yaml:"log_level"` // an encoding.TextUnmarshaler
	Debug    bool       `yaml:"debug"`
}

type HTTP struct {
	Listen      string        `yaml:"listen"`
	ReadTimeout conf.Duration `yaml:"read_timeout"`
	Enabled     bool          `yaml:"enabled"`
	Origins     []string      `yaml:"origins"`
	MaxBody     ByteSize      `yaml:"max_body"`
}

// ByteSize is a size written as 512, 64KB or 10MB: a yaml.Unmarshaler.
type ByteSize int64

func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("expected a size such as 10MB")
	}
	s, mult := n.Value, int64(1)
	for suffix, m := range map[string]int64{"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30} {
		if num, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = num, m
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("invalid size %q: use a number of bytes, or of KB, MB or GB", n.Value)
	}
	*b = ByteSize(v * mult)
	return nil
}

func (b ByteSize) MarshalYAML() (any, error) { return int64(b), nil }

type TLS struct {
	Cert string      `yaml:"cert"`
	Key  conf.Secret `yaml:"key"`
}

type Camera struct {
	Name     string        `yaml:"name"`
	URL      string        `yaml:"url"`
	Password conf.Secret   `yaml:"password"`
	FPS      int           `yaml:"fps"`
	Retry    conf.Duration `yaml:"retry"`
}

func (c *Camera) Validate(v *conf.V) {
	if c.Name == "" {
		v.Errorf("name", "required")
	}
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		v.Errorf("url", "required")
	case err != nil:
		v.Errorf("url", "%v", err)
	case u.Scheme != "rtsp" && u.Scheme != "rtsps":
		v.Errorf("url", "scheme must be rtsp or rtsps")
	}
	if c.FPS < 0 || c.FPS > 120 {
		v.Errorf("fps", "must be between 0 and 120")
	}
}

type Site struct {
	Zone     string `yaml:"zone"`
	Priority uint8  `yaml:"priority"`
}

// Validate has a value receiver, and Site values sit in a map.
func (s Site) Validate(v *conf.V) {
	if s.Zone == "" {
		v.Errorf("zone", "required")
	}
}

type CaseDB struct {
	DSN       conf.Secret `yaml:"dsn"`
	MaxOpen   int         `yaml:"max_open"`
	Threshold float32     `yaml:"threshold"`
}

// Validate runs after the cameras have validated themselves.
func (c *Config) Validate(v *conf.V) {
	seen := make(map[string]int)
	for i, cam := range c.Cameras {
		if j, dup := seen[cam.Name]; dup && cam.Name != "" {
			v.Errorf(fmt.Sprintf("cameras[%d].name", i), "same name as cameras[%d]", j)
			continue
		}
		seen[cam.Name] = i
	}
	if c.Ratio < 0 || c.Ratio > 1 {
		v.Errorf("ratio", "must be between 0 and 1")
	}
}

const (
	dsn       = "postgres://sharpeye:hunter2@db/sharpeye"
	tlsKey    = "tls-key-secret"
	doorPass  = "door-secret"
	envSecret = "env-secret-value"
)

func defaults() Config {
	return Config{
		Common: Common{LogLevel: slog.LevelInfo},
		HTTP: HTTP{
			Listen:      ":8080",
			ReadTimeout: conf.Duration(10 * time.Second),
			Enabled:     true,
			Origins:     []string{"*"},
			MaxBody:     1 << 20,
		},
		Cameras: []Camera{{Name: "demo", URL: "rtsp://demo.local/stream"}},
		Sites:   map[string]Site{"hq": {Zone: "eu", Priority: 1}},
		CaseDB:  CaseDB{DSN: dsn, MaxOpen: 10, Threshold: 0.5},
		Tags:    []string{"prod"},
		Ratio:   0.25,
	}
}

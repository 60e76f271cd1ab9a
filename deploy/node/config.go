package node

import (
	"fmt"
	"os"

	"sharpeye/alerts"
	"sharpeye/alerts/analytics"
	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
	"sharpeye/console/api"
	"sharpeye/console/auth"
	"sharpeye/ingest"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/bus/kafka"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/device"
	"sharpeye/ingest/mqtt"
	"sharpeye/relay"
)

// BusConfig chooses the event bus.
type BusConfig struct {
	// Driver is embedded (a durable log in the data directory) or kafka.
	Driver   string       `yaml:"driver"`
	Embedded bus.Config   `yaml:"embedded"`
	Kafka    kafka.Config `yaml:"kafka"`
}

// Validate implements conf.Validator.
func (c *BusConfig) Validate(v *conf.V) {
	if c.Driver != "embedded" && c.Driver != "kafka" {
		v.Errorf("driver", "must be embedded or kafka, not %q", c.Driver)
	}
}

// Config is the whole configuration file. Each section is defined beside
// the code that uses it; configs/sharpeye.yml documents every key.
type Config struct {
	// DataDir holds the embedded databases and the blob store.
	DataDir string `yaml:"data_dir"`
	// MemoryLimit is the Go runtime's soft memory limit: auto, off or a
	// size (see memlimit.go).
	MemoryLimit conf.MemoryLimit `yaml:"memory_limit"`
	Log         LogConfig        `yaml:"log"`
	HTTP        api.Config       `yaml:"http"`
	Auth        auth.Config      `yaml:"auth"`
	CaseDB      casedb.Config    `yaml:"casedb"`
	Ingest      ingest.Config    `yaml:"ingest"`
	Relay       relay.Config     `yaml:"relay"`
	Bus         BusConfig        `yaml:"bus"`
	MQTT        mqtt.Config      `yaml:"mqtt"`
	Alerts      alerts.Config    `yaml:"alerts"`
	// Analytics is the store analysts query and the sink that fills it.
	Analytics analytics.Config `yaml:"analytics"`
	// Cameras are the cameras of the configuration file; more can be
	// added through the API.
	Cameras []camera.Camera `yaml:"cameras"`
	// Devices are the sensors and analysers of the configuration file;
	// more can be added through the API.
	Devices device.List `yaml:"devices"`
}

// Defaults returns the compiled defaults: everything embedded, nothing
// installed.
func Defaults() Config {
	return Config{
		DataDir:     "./sharpeye-data",
		MemoryLimit: conf.MemoryLimitAuto,
		Log:         DefaultLogConfig(),
		HTTP:        api.Defaults(),
		Auth:        auth.Defaults(),
		CaseDB:      casedb.Defaults(),
		Ingest:      ingest.Defaults(),
		Relay:       relay.Defaults(),
		Bus:         BusConfig{Driver: "embedded", Embedded: bus.Defaults(), Kafka: kafka.Defaults()},
		MQTT:        mqtt.Defaults(),
		Alerts:      alerts.Defaults(),
		Analytics:   analytics.Defaults(),
		Devices:     device.List{},
		Cameras:     []camera.Camera{},
	}
}

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	if c.DataDir == "" {
		v.Errorf("data_dir", "must not be empty")
	}
	seen := map[string]int{}
	for i, cam := range c.Cameras {
		if j, ok := seen[cam.ID]; ok && cam.ID != "" {
			v.Errorf(fmt.Sprintf("cameras[%d].id", i), "%q is also the id of cameras[%d]", cam.ID, j)
		}
		seen[cam.ID] = i
	}
}

// LoadFile reads the configuration file at path over the defaults, then
// the SHARPEYE_* environment, and validates the result. An empty path
// means defaults and environment only.
func LoadFile(path string, environ []string) (Config, error) {
	cfg := Defaults()
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return cfg, fmt.Errorf("read configuration: %w", err)
		}
	}
	err := conf.Load(&cfg, data, path, environ)
	return cfg, err
}

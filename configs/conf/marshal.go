package conf

import (
	"bytes"

	"gopkg.in/yaml.v3"
)

// Marshal returns the effective configuration src as YAML, for
// "sharpeye check --print". Secrets print as "<redacted>" and durations as
// "10s". Keys follow the yaml tags, as Load reads them.
func Marshal(src any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(src); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

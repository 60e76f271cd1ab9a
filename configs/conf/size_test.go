package conf

import (
	"testing"

	"gopkg.in/yaml.v3"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "1048576": 1 << 20, "1024KiB": 1 << 20, "512MiB": 512 << 20, "2GiB": 2 << 30, "1TiB": 1 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1.5GiB", "512MB", "512 MiB", "MiB", "8388608TiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	for in, want := range map[string]MemoryLimit{
		"auto": MemoryLimitAuto, "off": 0, "0": 0, "512MiB": 512 << 20, "2GiB": 2 << 30, "1TiB": 1 << 40,
		"65536KiB": 64 << 20, "33554432": 32 << 20,
	} {
		var m MemoryLimit
		if err := m.UnmarshalText([]byte(in)); err != nil || m != want {
			t.Errorf("%q: %d, %v; want %d", in, m, err, want)
		}
		// What it writes reads back the same.
		var back MemoryLimit
		if err := back.UnmarshalText([]byte(m.String())); err != nil || back != m {
			t.Errorf("%q written %q reads back as %d, %v", in, m.String(), back, err)
		}
	}
	if s := MemoryLimit(110 << 20).String(); s != "110MiB" {
		t.Errorf("110 MiB written %q", s)
	}
	for _, in := range []string{"", "512", "16MiB", "-1GiB", "1.5GiB", "512MB", "512 MiB", "lots", "9999999999TiB"} {
		var m MemoryLimit
		if err := m.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestSize(t *testing.T) {
	for in, want := range map[string]Size{"0": 0, "1": 1, "1048576": 1 << 20, "1MiB": 1 << 20, "256KiB": 256 << 10} {
		var s Size
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("%q: %d, %v; want %d", in, s, err, want)
		}
		var back Size
		if err := back.UnmarshalText([]byte(s.String())); err != nil || back != s {
			t.Errorf("%q written %q reads back as %d, %v", in, s.String(), back, err)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "1MB", "lots"} {
		var s Size
		if err := s.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	// In YAML, as a number or with a unit.
	var c struct {
		A Size `yaml:"a"`
		B Size `yaml:"b"`
	}
	if err := yaml.Unmarshal([]byte("a: 1048576\nb: 2MiB\n"), &c); err != nil || c.A != 1<<20 || c.B != 2<<20 {
		t.Errorf("YAML: %+v, %v", c, err)
	}
}

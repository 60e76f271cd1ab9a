package conf

import (
	"encoding"
	"fmt"
	"strconv"
	"strings"
)

// sizeUnits are the binary units a size may be written in, largest
// first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// parseSize reads a size in bytes written as a whole number with an
// optional binary unit: 1048576, 1024KiB, 512MiB, 2GiB, 1TiB.
func parseSize(s string) (int64, error) {
	num, unit := s, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			num, unit = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/unit {
		return 0, fmt.Errorf("%q is not a size such as 512MiB (bytes, KiB, MiB, GiB or TiB)", s)
	}
	return n * unit, nil
}

// formatSize writes n in the largest unit that divides it.
func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// MemoryLimit is a soft memory limit for the Go runtime, written "auto"
// (MemoryLimitAuto: found by whoever applies it, from a cgroup), "off"
// (0) or a size of at least MinMemoryLimit such as "512MiB".
type MemoryLimit int64

// MemoryLimitAuto is the limit written "auto".
const MemoryLimitAuto MemoryLimit = -1

// MinMemoryLimit is the least size a MemoryLimit takes: below it Go's
// collector would run all the time.
const MinMemoryLimit = 32 << 20

var (
	_ encoding.TextMarshaler   = MemoryLimit(0)
	_ encoding.TextUnmarshaler = (*MemoryLimit)(nil)
)

// String returns m as it is written: auto, off or a size.
func (m MemoryLimit) String() string {
	switch {
	case m == MemoryLimitAuto:
		return "auto"
	case m <= 0:
		return "off"
	}
	return formatSize(int64(m))
}

// MarshalText returns m.String(); YAML and JSON use it too.
func (m MemoryLimit) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads auto, off (or 0) or a size of at least 32MiB.
func (m *MemoryLimit) UnmarshalText(text []byte) error {
	switch s := string(text); s {
	case "auto":
		*m = MemoryLimitAuto
	case "off", "0":
		*m = 0
	default:
		n, err := parseSize(s)
		if err != nil {
			return fmt.Errorf("%q must be auto, off or a size such as 512MiB (bytes, KiB, MiB, GiB or TiB)", s)
		}
		if n < MinMemoryLimit {
			return fmt.Errorf("%q is below the least limit, 32MiB", s)
		}
		*m = MemoryLimit(n)
	}
	return nil
}

// Size is a number of bytes, written as a whole number with an optional
// binary unit (1048576, 1MiB); 0 is none.
type Size int64

var (
	_ encoding.TextMarshaler   = Size(0)
	_ encoding.TextUnmarshaler = (*Size)(nil)
)

// String returns s as it is written: 0 or a size in its largest unit.
func (s Size) String() string {
	if s <= 0 {
		return "0"
	}
	return formatSize(int64(s))
}

// MarshalText returns s.String(); YAML and JSON use it too.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads 0 or a size such as 1MiB.
func (s *Size) UnmarshalText(text []byte) error {
	if string(text) == "0" {
		*s = 0
		return nil
	}
	n, err := parseSize(string(text))
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

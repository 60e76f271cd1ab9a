package conf

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize reads a size in bytes written as a whole number with an
// optional binary unit: 1048576, 1024KiB, 512MiB, 2GiB, 1TiB.
func ParseSize(s string) (int64, error) {
	num, unit := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}} {
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

// MinMemoryLimit is the least memory limit ParseMemoryLimit accepts:
// below it Go's collector would run all the time.
const MinMemoryLimit = 32 << 20

// ParseMemoryLimit reads a memory limit setting: auto (-1), off or 0
// (0), or a size of at least MinMemoryLimit.
func ParseMemoryLimit(s string) (int64, error) {
	switch s {
	case "auto":
		return -1, nil
	case "off", "0":
		return 0, nil
	}
	n, err := ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("%q must be auto, off or a size such as 512MiB (bytes, KiB, MiB, GiB or TiB)", s)
	}
	if n < MinMemoryLimit {
		return 0, fmt.Errorf("%q is below the least limit, 32MiB", s)
	}
	return n, nil
}

package node

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"sharpeye/configs/conf"
)

// The memory_limit setting is the soft limit the Go runtime keeps the
// process's memory under (runtime/debug.SetMemoryLimit): nearing it, the
// garbage collector runs more often, and the buffers pooled for reuse
// are given back sooner. It is not a hard cap: a node that needs more
// takes more. Its values:
//
//	auto   90 % of the memory limit of the node's cgroup (a container's
//	       or a systemd unit's MemoryMax), none without one
//	off    no limit (Go's own pacing only: the heap may grow to twice
//	       what is live between collections)
//	512MiB a size in bytes, KiB, MiB, GiB or TiB, at least 32 MiB
//
// The GOMEMLIMIT environment variable (in Go's own syntax: 512MiB, off),
// when set, wins over it.

// autoMemoryShare is the share of a cgroup's limit that auto takes, the
// rest left to what the Go runtime does not count (thread stacks of cgo,
// the binary, the kernel's accounting of page cache).
const autoMemoryShare = 0.9

// cgroupRoot and procSelfCgroup are where the node finds its cgroups
// and their limits (variables for tests).
var (
	cgroupRoot     = "/sys/fs/cgroup"
	procSelfCgroup = "/proc/self/cgroup"
)

// cgroupMemoryLimit returns the memory limit the process's cgroups put
// on it (version 2 or version 1, the least of its cgroup's and its
// parents'), or 0 when they put none.
func cgroupMemoryLimit() (int64, error) {
	data, err := os.ReadFile(procSelfCgroup)
	if err != nil {
		return 0, err
	}
	var least int64
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		// hierarchy-ID:controllers:path; version 2 is 0::path.
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		var dir, file string
		switch {
		case f[0] == "0" && f[1] == "":
			dir, file = cgroupRoot, "memory.max"
		case slices.Contains(strings.Split(f[1], ","), "memory"):
			dir, file = filepath.Join(cgroupRoot, "memory"), "memory.limit_in_bytes"
		default:
			continue
		}
		// The cgroup's own limit and its parents' (inside a container the
		// path may be "/", the container's own cgroup).
		for p := path.Clean("/" + f[2]); ; p = path.Dir(p) {
			n, err := readCgroupLimit(filepath.Join(dir, p, file))
			if err != nil {
				return 0, err
			}
			if n > 0 && (least == 0 || n < least) {
				least = n
			}
			if p == "/" {
				break
			}
		}
	}
	return least, nil
}

// readCgroupLimit reads one limit file: 0 for none (no such file, "max",
// or version 1's huge number).
func readCgroupLimit(file string) (int64, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v := strings.TrimSpace(string(data))
	if v == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number of bytes", file, v)
	}
	if n >= 1<<60 {
		return 0, nil
	}
	return n, nil
}

// applyMemoryLimit sets the Go runtime's memory limit from setting (see
// above) unless GOMEMLIMIT is in environ, and logs what it did. It
// returns the limit now in force, 0 for none.
func applyMemoryLimit(setting conf.MemoryLimit, environ []string, log *slog.Logger) int64 {
	if v := lookupEnv(environ, "GOMEMLIMIT"); v != "" {
		limit := debug.SetMemoryLimit(-1)
		if limit == math.MaxInt64 {
			log.Info("no memory limit: GOMEMLIMIT is off", "limit", v)
			return 0
		}
		log.Info("memory limit from GOMEMLIMIT", "limit", v, "bytes", limit)
		return limit
	}
	limit, source := int64(setting), "memory_limit"
	if setting == conf.MemoryLimitAuto {
		source = "auto: 90% of the cgroup's limit"
		group, err := cgroupMemoryLimit()
		if err != nil {
			log.Warn("memory limit not set: cannot read the cgroup's", "err", err)
			return 0
		}
		limit = int64(float64(group) * autoMemoryShare)
		if group > 0 && limit < conf.MinMemoryLimit {
			log.Warn("the cgroup's memory limit leaves the node little room", "bytes", group)
		}
	}
	if limit <= 0 {
		return 0
	}
	debug.SetMemoryLimit(limit)
	log.Info("memory limit set", "bytes", limit, "MiB", limit>>20, "source", source)
	return limit
}

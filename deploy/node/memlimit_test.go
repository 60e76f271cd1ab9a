package node

import (
	"bytes"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"sharpeye/configs/conf"
	"strings"
	"testing"
)

// TestMemoryLimitSetting: memory_limit is read (and refused) at load.
func TestMemoryLimitSetting(t *testing.T) {
	if _, err := LoadFile("", []string{"SHARPEYE_MEMORY_LIMIT=512MB"}); err == nil || !strings.Contains(err.Error(), "memory_limit") {
		t.Fatalf("validation: %v", err)
	}
	if cfg, err := LoadFile("", []string{"SHARPEYE_MEMORY_LIMIT=2GiB"}); err != nil || cfg.MemoryLimit != 2<<30 {
		t.Fatalf("2GiB: %d, %v", cfg.MemoryLimit, err)
	}
}

// fakeCgroups lays out a cgroup tree under a temporary directory: files
// maps paths below the cgroup root to their contents.
func fakeCgroups(t *testing.T, self string, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, "cg", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "self"), []byte(self), 0o644); err != nil {
		t.Fatal(err)
	}
	oldRoot, oldSelf := cgroupRoot, procSelfCgroup
	cgroupRoot, procSelfCgroup = filepath.Join(dir, "cg"), filepath.Join(dir, "self")
	t.Cleanup(func() { cgroupRoot, procSelfCgroup = oldRoot, oldSelf })
}

func TestCgroupMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		name  string
		self  string
		files map[string]string
		want  int64
	}{
		{"v2, a systemd unit's MemoryMax", "0::/system.slice/sharpeye.service\n",
			map[string]string{"system.slice/sharpeye.service/memory.max": "1073741824\n", "system.slice/memory.max": "max\n"}, 1 << 30},
		{"v2, a parent's limit is less", "0::/a/b\n",
			map[string]string{"a/b/memory.max": "max\n", "a/memory.max": "536870912\n"}, 512 << 20},
		{"v2, inside a container", "0::/\n", map[string]string{"memory.max": "268435456\n"}, 256 << 20},
		{"v2, none", "0::/user.slice\n", map[string]string{"user.slice/memory.max": "max\n"}, 0},
		{"v1, the memory controller's", "4:memory:/process_api/x\n3:cpuset:/\n0::/\n",
			map[string]string{"memory/process_api/x/memory.limit_in_bytes": "2147483648\n", "memory/memory.limit_in_bytes": "9223372036854771712\n"}, 2 << 30},
		{"v1, none", "4:cpu,memory:/\n", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"no cgroup files", "0::/x\n", map[string]string{}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			fakeCgroups(t, c.self, c.files)
			got, err := cgroupMemoryLimit()
			if err != nil || got != c.want {
				t.Fatalf("%d, %v; want %d", got, err, c.want)
			}
		})
	}
	fakeCgroups(t, "0::/\n", map[string]string{"memory.max": "lots\n"})
	if _, err := cgroupMemoryLimit(); err == nil || !strings.Contains(err.Error(), "memory.max") {
		t.Fatalf("a bad limit file: %v", err)
	}
}

// TestApplyMemoryLimit: the limit set is the one asked for, auto finds
// the cgroup's, and GOMEMLIMIT wins.
func TestApplyMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))

	if got := applyMemoryLimit(512<<20, nil, log); got != 512<<20 || debug.SetMemoryLimit(-1) != 512<<20 {
		t.Fatalf("512MiB: %d, runtime %d", got, debug.SetMemoryLimit(-1))
	}
	fakeCgroups(t, "0::/\n", map[string]string{"memory.max": "1073741824\n"})
	gib := float64(1 << 30)
	if got := applyMemoryLimit(conf.MemoryLimitAuto, nil, log); got != int64(gib*autoMemoryShare) || debug.SetMemoryLimit(-1) != got {
		t.Fatalf("auto: %d, runtime %d", got, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(math.MaxInt64)
	fakeCgroups(t, "0::/\n", map[string]string{"memory.max": "max\n"})
	if got := applyMemoryLimit(conf.MemoryLimitAuto, nil, log); got != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("auto without a limit: %d, runtime %d", got, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(math.MaxInt64) // as GOMEMLIMIT=off would at start
	if got := applyMemoryLimit(512<<20, []string{"GOMEMLIMIT=off"}, log); got != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("GOMEMLIMIT=off: %d, runtime %d", got, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(300 << 20) // as GOMEMLIMIT=300MiB would at start
	if got := applyMemoryLimit(512<<20, []string{"GOMEMLIMIT=300MiB"}, log); got != 300<<20 || debug.SetMemoryLimit(-1) != 300<<20 {
		t.Fatalf("GOMEMLIMIT: %d, runtime %d", got, debug.SetMemoryLimit(-1))
	}
	out := buf.String()
	for _, want := range []string{"source=memory_limit", "source=\"auto: 90% of the cgroup's limit\"", "memory limit from GOMEMLIMIT"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

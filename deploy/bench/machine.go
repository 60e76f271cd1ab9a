package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// Machine is what the figures were taken on.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// MemTotal is the machine's RAM (MemTotal of /proc/meminfo).
	MemTotal  uint64 `json:"mem_total_bytes,omitempty"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Kernel    string `json:"kernel,omitempty"`
	GoVersion string `json:"go_version"`
	// Started is when the bench started.
	Started time.Time `json:"started"`
	// LoadStart and LoadEnd are the 1, 5 and 15 minute load averages when
	// the bench started and ended: other work on a shared machine shows
	// there.
	LoadStart []float64 `json:"load_average_start,omitempty"`
	LoadEnd   []float64 `json:"load_average_end,omitempty"`
}

// describeMachine reads the machine's description; what cannot be read
// is left empty.
func describeMachine() Machine {
	m := Machine{
		CPUs:       runtime.NumCPU(),
		CPUModel:   cpuModel(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		GoVersion:  runtime.Version(),
		Started:    time.Now().UTC().Truncate(time.Second),
		LoadStart:  loadAverage(),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if kb, ok := procField("/proc/meminfo", "MemTotal:"); ok {
		m.MemTotal = kb << 10
	}
	return m
}

// cpuModel is the first processor's model name, from /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name", "Model", "Hardware", "cpu model":
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
	}
	return "unknown"
}

// loadAverage returns the 1, 5 and 15 minute load averages (nil if
// unknown).
func loadAverage() []float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	fields := strings.Fields(string(b))
	if len(fields) < 3 {
		return nil
	}
	out := make([]float64, 3)
	for i := range out {
		if out[i], err = strconv.ParseFloat(fields[i], 64); err != nil {
			return nil
		}
	}
	return out
}

// procField reads a "Key: value kB" line of a /proc file, in kB.
func procField(file, key string) (uint64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte(key))
		if !ok {
			continue
		}
		fields := strings.Fields(string(rest))
		if len(fields) == 0 {
			return 0, false
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}

// rss is the process's resident set size (VmRSS), 0 if unknown.
func rss() uint64 {
	kb, _ := procField("/proc/self/status", "VmRSS:")
	return kb << 10
}

// usage is one reading of the process's clocks.
type usage struct {
	wall time.Time
	cpu  time.Duration
}

func readUsage() (usage, error) {
	cpu, err := cpuTime()
	return usage{wall: time.Now(), cpu: cpu}, err
}

// coresSince is the CPU used since u0, in cores.
func (u usage) coresSince(u0 usage) float64 {
	wall := u.wall.Sub(u0.wall)
	if wall <= 0 {
		return 0
	}
	return (u.cpu - u0.cpu).Seconds() / wall.Seconds()
}

// Process is what a process used over a measurement window.
type Process struct {
	// Window is the wall time measured.
	Window float64 `json:"window_seconds"`
	// Cores is CPU time (user and system) over wall time.
	Cores float64 `json:"cores"`
	// RSS is VmRSS at the end of the window, RSSPeak the highest of the
	// readings taken every second.
	RSS     uint64 `json:"rss_bytes"`
	RSSPeak uint64 `json:"rss_peak_bytes"`
	// Heap is runtime.MemStats.HeapInuse at the end of the window
	// (garbage not yet collected included).
	Heap uint64 `json:"go_heap_inuse_bytes"`
	// Live is the heap and stacks in use after a GC, once the window is
	// over.
	Live uint64 `json:"live_heap_stacks_bytes"`
	// Stacks is the goroutines' stacks, part of Live.
	Stacks     uint64 `json:"stacks_bytes"`
	Goroutines int    `json:"goroutines"`
}

// window is what measure watches.
type window struct {
	d time.Duration
	// atEnd, if set, is called as the window closes, before the memory
	// readings and their GC: read the counters that go with the window
	// there.
	atEnd func()
	// profile, if set, is a file prefix: a CPU profile of the window is
	// written to PROFILE.cpu.pprof, a heap profile at its end to
	// PROFILE.heap.pprof and the goroutines by stack to
	// PROFILE.goroutines.txt. Profiling costs a few percent of CPU.
	profile string
}

// measure watches the process for w.d: CPU over the window, memory at its
// end. RSS is sampled every second (a read of /proc, negligible). A
// cancelled ctx ends it early with ctx's error.
func measure(ctx context.Context, w window) (Process, error) {
	if w.profile != "" {
		f, err := os.Create(w.profile + ".cpu.pprof")
		if err != nil {
			return Process{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return Process{}, err
		}
		defer pprof.StopCPUProfile()
	}
	u0, err := readUsage()
	if err != nil {
		return Process{}, err
	}
	var p Process
	end := time.NewTimer(w.d)
	defer end.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return Process{}, ctx.Err()
		case <-tick.C:
			p.RSSPeak = max(p.RSSPeak, rss())
		case <-end.C:
			done = true
		}
	}
	u1, err := readUsage()
	if err != nil {
		return Process{}, err
	}
	if w.atEnd != nil {
		w.atEnd()
	}
	if w.profile != "" {
		pprof.StopCPUProfile()
	}
	p.Window = u1.wall.Sub(u0.wall).Seconds()
	p.Cores = u1.coresSince(u0)
	p.RSS = rss()
	p.RSSPeak = max(p.RSSPeak, p.RSS)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.Heap = ms.HeapInuse
	p.Goroutines = runtime.NumGoroutine()
	// After the CPU window: a forced GC would count in it.
	runtime.GC()
	runtime.ReadMemStats(&ms)
	p.Live, p.Stacks = ms.HeapInuse+ms.StackInuse, ms.StackInuse
	if w.profile != "" {
		if err := writeProfile("heap", w.profile+".heap.pprof", 0); err != nil {
			return p, err
		}
		if err := writeProfile("goroutine", w.profile+".goroutines.txt", 1); err != nil {
			return p, err
		}
	}
	return p, nil
}

// writeProfile writes the runtime profile name to file (debug 0: the
// pprof format; 1: text, the goroutines grouped by stack).
func writeProfile(name, file string, debug int) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, debug); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// releaseMemory returns what the process no longer uses to the OS, so that
// the next row's RSS does not include the previous row's garbage.
func releaseMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errTimeout reports a wait that ran out.
var errTimeout = errors.New("timed out")

// waitUntil polls cond every interval until it holds, ctx ends or timeout
// passes (errTimeout).
func waitUntil(ctx context.Context, timeout, interval time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, errTimeout)
		}
		if err := sleep(ctx, interval); err != nil {
			return err
		}
	}
}

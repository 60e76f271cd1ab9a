package relay

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// memTestEnv switches on TestViewerMemory, which takes a while:
//
//	SHARPEYE_RELAY_MEMTEST=50 go test -run TestViewerMemory -v ./relay/
//
// SHARPEYE_RELAY_MEMTEST_NACK_BUFFER sets relay.nack_buffer.
const memTestEnv = "SHARPEYE_RELAY_MEMTEST"

// TestViewerMemory measures the relay's memory per viewer: the viewers
// run in a child process (this test binary again), so that only the
// relay's side is counted here.
func TestViewerMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(memTestEnv))
	if n <= 0 {
		t.Skipf("set %s=<viewers> to measure memory per viewer", memTestEnv)
	}
	for _, fixture := range []string{"street-360p", "square-1080p"} {
		t.Run(fixture, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				c.MaxViewers, c.MaxViewersPerCamera = n, n
				if b, err := strconv.Atoi(os.Getenv(memTestEnv + "_NACK_BUFFER")); err == nil {
					c.NACKBuffer = b
				}
			})
			cam := e.camera(t, "cam1", "county/east", loadClip(t, fixture))
			cam.waitGOP(t, 25)
			before := heap(t)
			g0 := runtime.NumGoroutine()

			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperViewers$")
			cmd.Env = append(os.Environ(), "RELAY_HELPER_URL="+e.srv.URL, "RELAY_HELPER_N="+strconv.Itoa(n))
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				stdin.Close()
				_ = cmd.Wait()
			}()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() && sc.Text() != "ready" {
				t.Log(sc.Text())
			}
			if e.relay.Viewers() != n {
				t.Fatalf("%d viewers, want %d", e.relay.Viewers(), n)
			}
			// Let the NACK buffers fill (256 packets: a few seconds of
			// 360p, one GOP of 1080p).
			cpu0, wall0 := cpuTime(), time.Now()
			time.Sleep(6 * time.Second)
			cpu, wall := cpuTime()-cpu0, time.Since(wall0)
			after := heap(t)
			g1 := runtime.NumGoroutine()
			if p := os.Getenv("RELAY_HEAP_PROFILE"); p != "" {
				f, err := os.Create(p + "." + fixture)
				if err == nil {
					_ = pprof.WriteHeapProfile(f)
					f.Close()
				}
			}
			t.Logf("%s: %d viewers: %.0f KiB of heap and stacks per viewer, %.1f goroutines per viewer, %.2f%% of a core per viewer (relay and camera feed)",
				fixture, n, float64(after-before)/float64(n)/1024, float64(g1-g0)/float64(n), 100*cpu.Seconds()/wall.Seconds()/float64(n))
		})
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heap(t *testing.T) uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// TestHelperViewers is the viewers' process of TestViewerMemory.
func TestHelperViewers(t *testing.T) {
	url := os.Getenv("RELAY_HELPER_URL")
	if url == "" {
		t.Skip("helper process of TestViewerMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("RELAY_HELPER_N"))
	var (
		mu     sync.Mutex
		delays []time.Duration
	)
	onFrame := func(f Frame) {
		if !f.Sent.IsZero() {
			mu.Lock()
			delays = append(delays, f.Received.Sub(f.Sent))
			mu.Unlock()
		}
	}
	var vs []*Viewer
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		v, err := DialWith(ctx, url, "cam1", aliceToken, DialOptions{OnFrame: onFrame})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	var firsts []time.Duration
	for _, v := range vs {
		waitFor(t, "a keyframe", func() bool { _, ok := v.FirstKeyframe(); return ok })
		d, _ := v.FirstKeyframe()
		firsts = append(firsts, d)
	}
	slices.Sort(firsts)
	fmt.Printf("time to first keyframe (POST to keyframe depacketized, viewers dialled one after another): median %v, max %v\n",
		firsts[len(firsts)/2].Round(100*time.Microsecond), firsts[len(firsts)-1].Round(100*time.Microsecond))
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	mu.Lock()
	slices.Sort(delays)
	if len(delays) > 0 {
		fmt.Fprintf(os.Stderr, "relay-to-viewer delay by sender reports (%d frames): median %v, 99th percentile %v\n",
			len(delays), delays[len(delays)/2].Round(10*time.Microsecond), delays[len(delays)*99/100].Round(10*time.Microsecond))
	}
	mu.Unlock()
	for _, v := range vs {
		_ = v.Close()
	}
}

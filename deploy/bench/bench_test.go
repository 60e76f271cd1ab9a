package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// The bench runs its cameras and viewers in child processes by running its
// own executable again ("sharpeye bench camera-server ..."). Under go test
// that executable is the test binary, which TestMain turns into the child:
// the tests exercise the real child processes, at tiny sizes, without
// building the sharpeye binary first.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		if err := Main(os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "sharpeye:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// syncBuffer collects the output of the bench and of its children.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runJSON runs `sharpeye bench args... --json` and decodes its report
// (Report, or AnalyticsReport for `bench analytics`).
func runJSON[R any](t *testing.T, args ...string) *R {
	t.Helper()
	var stdout bytes.Buffer
	var stderr syncBuffer
	err := Main(append(args, "--json"), &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench %v: %v\nstderr:\n%s\nstdout:\n%s", args, err, stderr.String(), stdout.String())
	}
	var rep R
	var head struct {
		Machine Machine `json:"machine"`
	}
	if err := errors.Join(json.Unmarshal(stdout.Bytes(), &rep), json.Unmarshal(stdout.Bytes(), &head)); err != nil {
		t.Fatalf("bench %v: output is not a JSON report: %v\n%s", args, err, stdout.String())
	}
	if head.Machine.CPUs < 1 || head.Machine.GoVersion == "" {
		t.Errorf("report does not say what machine it ran on: %+v", head.Machine)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr.String())
		}
	})
	return &rep
}

// TestSmoke runs every section at tiny scale and checks what a user of the
// figures relies on: everything that should have been measured was.
// Timings and CPU figures are not checked: the machine is shared.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes and runs for seconds")
	}
	t.Run("ingest", func(t *testing.T) {
		t.Parallel()
		rep := runJSON[Report](t, "ingest", "--cameras", "2", "--warmup", "0s", "--duration", "2s", "--memory-limit", "1GiB")
		if rep.Ingest == nil || len(rep.Ingest.Rows) != 1 {
			t.Fatalf("want one row of 2 cameras, got %+v", rep.Ingest)
		}
		if rep.Ingest.MemoryLimit != 1<<30 {
			t.Errorf("memory limit reported %d, want 1 GiB", rep.Ingest.MemoryLimit)
		}
		row := rep.Ingest.Rows[0]
		if row.Cameras != 2 || row.Online != 2 {
			t.Errorf("%d of %d cameras streaming, want 2 of 2", row.Online, row.Cameras)
		}
		if row.Silent != 0 || row.MinCameraFPS <= 0 || row.Frames <= 0 {
			t.Errorf("a camera delivered nothing: %d silent, slowest %.1f fps, %.1f frames/s in all", row.Silent, row.MinCameraFPS, row.Frames)
		}
		if row.Expected != 50 {
			t.Errorf("expected frames/s = %v, want 2 cameras × 25 fps", row.Expected)
		}
		if row.Process.RSS == 0 || row.Process.Window <= 0 {
			t.Errorf("process not measured: %+v", row.Process)
		}
		for _, tc := range rep.Ingest.Targets {
			if tc.Met != nil {
				t.Errorf("the 500-camera targets were not measured, so they must not be reported met or missed: %+v", tc)
			}
		}
	})
	t.Run("relay", func(t *testing.T) {
		t.Parallel()
		rep := runJSON[Report](t, "relay", "--viewers", "2", "--warmup", "0s", "--duration", "2s")
		if rep.Relay == nil || len(rep.Relay.Rows) != 2 {
			t.Fatalf("want the baseline and a row of 2 viewers, got %+v", rep.Relay)
		}
		if base := rep.Relay.Rows[0]; base.Viewers != 0 || base.Process.RSS == 0 {
			t.Errorf("baseline row: %+v", base)
		}
		row := rep.Relay.Rows[1]
		if row.Viewers != 2 || row.Ready != 2 || row.Sessions != 2 {
			t.Errorf("viewers %d, ready %d, relay sessions %d: want 2 each (dial errors %v)", row.Viewers, row.Ready, row.Sessions, row.DialErrors)
		}
		if row.MinFPS <= 0 || row.Bitrate <= 0 {
			t.Errorf("a viewer received nothing: slowest %.1f fps, %.0f bit/s in all", row.MinFPS, row.Bitrate)
		}
	})
	t.Run("ttff", func(t *testing.T) {
		t.Parallel()
		rep := runJSON[Report](t, "ttff", "--trials", "2")
		r := rep.TTFF
		if r == nil || len(r.Trials) != 2 || r.Failed != 0 {
			t.Fatalf("want 2 trials timed, got %+v", r)
		}
		for i, d := range r.Trials {
			if d <= 0 {
				t.Errorf("trial %d: time to first frame %v ms", i+1, d)
			}
		}
		if len(r.Targets) != 1 || r.Targets[0].Met == nil {
			t.Errorf("target not checked: %+v", r.Targets)
		}
	})
	t.Run("latency", func(t *testing.T) {
		t.Parallel()
		rep := runJSON[Report](t, "latency", "--duration", "2s")
		r := rep.Latency
		if r == nil || r.Matched == 0 || r.Keyframes == 0 {
			t.Fatalf("no latency samples: %+v", r)
		}
		if r.Matched < r.Frames*9/10 {
			t.Errorf("only %d of %d frames paired with the camera's units", r.Matched, r.Frames)
		}
	})
}

// fakeCamera is a synthetic 25 fps camera with a keyframe every 50 units.
func fakeCamera(units int, start time.Time) []sentUnit {
	out := make([]sentUnit, units)
	for k := range out {
		out[k] = sentUnit{ticks: uint32(k * 3600), idr: k%50 == 0, at: start.Add(time.Duration(k) * 40 * time.Millisecond)}
	}
	return out
}

// fakeViewer receives the camera's units as the relay sends them: a burst of
// the GOP cached when it joined at unit join (compressed timestamps), then
// every unit live at camera timestamp + offset, delay after it was sent.
func fakeViewer(sent []sentUnit, join int, offset uint32, delay func(k int) time.Duration) []recvFrame {
	gopStart := join - join%50
	var out []recvFrame
	burstAt := sent[join].at.Add(time.Millisecond)
	for k := gopStart; k <= join; k++ {
		ts := offset + sent[join].ticks - uint32(join-k) // a tick apart
		out = append(out, recvFrame{ts: ts, key: k == gopStart, at: burstAt})
	}
	for k := join + 1; k < len(sent); k++ {
		out = append(out, recvFrame{ts: sent[k].ticks + offset, key: sent[k].idr, at: sent[k].at.Add(delay(k))})
	}
	return out
}

func TestMatchFrames(t *testing.T) {
	start := time.Unix(1700000000, 0)
	sent := fakeCamera(500, start) // 20 s
	tests := []struct {
		name   string
		join   int
		offset uint32
		delay  func(k int) time.Duration
		want   time.Duration // median
	}{
		{"constant 3ms", 70, 123456789, func(int) time.Duration { return 3 * time.Millisecond }, 3 * time.Millisecond},
		{"timestamps wrap", 10, ^uint32(0) - 100000, func(int) time.Duration { return 2 * time.Millisecond }, 2 * time.Millisecond},
		// A delay longer than a frame interval: each frame must still
		// be paired with its own unit, not the one sent just before.
		{"delay over a frame", 120, 42, func(k int) time.Duration { return 55*time.Millisecond + time.Duration(k%3)*time.Millisecond }, 56 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frames := fakeViewer(sent, tt.join, tt.offset, tt.delay)
			m, err := matchFrames(sent, frames)
			if err != nil {
				t.Fatal(err)
			}
			nextKey := (tt.join/50 + 1) * 50
			if wantFrames := len(sent) - nextKey; m.frames != wantFrames || len(m.delays) != wantFrames {
				t.Errorf("frames %d, matched %d; want %d of each (from the second keyframe on)", m.frames, len(m.delays), wantFrames)
			}
			d := slices.Clone(m.delays)
			slices.Sort(d)
			if got := percentile(d, 0.5); got != tt.want {
				t.Errorf("median %v, want %v", got, tt.want)
			}
			if m.keyframes != (len(sent)-nextKey+49)/50 {
				t.Errorf("%d keyframes agree on the offset", m.keyframes)
			}
		})
	}
}

func TestMatchFramesNeedsALiveKeyframe(t *testing.T) {
	sent := fakeCamera(45, time.Unix(1700000000, 0))
	frames := fakeViewer(sent, 5, 7, func(int) time.Duration { return time.Millisecond })
	if _, err := matchFrames(sent, frames); !errors.Is(err, errNoMatch) {
		t.Fatalf("a viewer with one keyframe only (the burst's): err %v, want errNoMatch", err)
	}
}

func TestSendLogCountsSkippedUnits(t *testing.T) {
	s := &sendLog{clipLen: 250, fps: 25}
	at := time.Now()
	// Units 0-2, then 3-4 skipped by a late sender, then the loop wraps.
	for _, idx := range []int{0, 1, 2, 5, 248, 249, 0, 1} {
		s.record("cam000", idx, idx%50 == 0, at)
	}
	var got []uint32
	for _, u := range s.units() {
		got = append(got, u.ticks/3600)
	}
	want := []uint32{0, 1, 2, 5, 248, 249, 250, 251}
	if !slices.Equal(got, want) {
		t.Errorf("timeline positions %v, want %v", got, want)
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		section string
		args    []string
		check   func(*options) error
		wantErr bool
	}{
		{"defaults", "all", nil, func(o *options) error {
			if !slices.Equal(o.cameras, intList{50, 200, 500}) || !slices.Equal(o.viewers, intList{1, 10, 50, 100, 200}) || o.trials != 20 || o.duration != 20*time.Second || o.warmup != 5*time.Second {
				return fmt.Errorf("%+v", *o)
			}
			return nil
		}, false},
		{"quick keeps what is given", "all", []string{"--quick", "--cameras", "3"}, func(o *options) error {
			if !slices.Equal(o.cameras, intList{3}) || !slices.Equal(o.viewers, intList{1, 10}) || o.trials != 5 || o.duration != 5*time.Second {
				return fmt.Errorf("%+v", *o)
			}
			return nil
		}, false},
		{"memory limit", "ingest", []string{"--memory-limit", "110MiB"}, func(o *options) error {
			if o.memLimit != 110<<20 || o.memLimit.String() != "110MiB" {
				return fmt.Errorf("memory limit %d", o.memLimit)
			}
			return nil
		}, false},
		{"bad memory limit", "relay", []string{"--memory-limit", "110MB"}, nil, true},
		{"memory limit too small", "relay", []string{"--memory-limit", "1"}, nil, true},
		{"memory limit auto", "relay", []string{"--memory-limit", "auto"}, nil, true},
		{"bad list", "ingest", []string{"--cameras", "10,x"}, nil, true},
		{"bad transport", "ingest", []string{"--transport", "http"}, nil, true},
		{"unknown fixture", "ttff", []string{"--fixture", "nope"}, nil, true},
		{"flag of another section", "ttff", []string{"--cameras", "3"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var o options
			o.register(fs, tt.section)
			err := o.parse(fs, tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if err == nil && tt.check != nil {
				if err := tt.check(&o); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestSectionArgs(t *testing.T) {
	given := map[string]string{"cameras": "2", "viewers": "3", "duration": "2s", "json": "true", "quick": "true"}
	tests := map[string][]string{
		"ingest":  {"ingest", "--json", "--lifeline", "--cameras=2", "--duration=2s", "--quick=true"},
		"relay":   {"relay", "--json", "--lifeline", "--duration=2s", "--quick=true", "--viewers=3"},
		"ttff":    {"ttff", "--json", "--lifeline", "--quick=true"},
		"latency": {"latency", "--json", "--lifeline", "--duration=2s", "--quick=true"},
	}
	for name, want := range tests {
		if got := sectionArgs(name, given); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 20; i++ {
		d = append(d, time.Duration(i))
	}
	for p, want := range map[float64]time.Duration{0.5: 10, 0.95: 19, 0.99: 20, 1: 20, 0: 1} {
		if got := percentile(d, p); got != want {
			t.Errorf("p%v = %v, want %v", p*100, got, want)
		}
	}
}

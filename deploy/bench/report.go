package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"sharpeye/ingest/simcam"
)

// Report is everything a bench run printed: the machine and the sections
// that ran. It is the --json output.
type Report struct {
	Machine Machine        `json:"machine"`
	Ingest  *IngestResult  `json:"ingest,omitempty"`
	Relay   *RelayResult   `json:"relay,omitempty"`
	TTFF    *TTFFResult    `json:"ttff,omitempty"`
	Latency *LatencyResult `json:"latency,omitempty"`
	// Errors are the sections that failed, with why; their results hold
	// what was measured before.
	Errors []string `json:"errors,omitempty"`
}

// TargetCheck is a figure compared with its target.
type TargetCheck struct {
	What string `json:"target"`
	// Met is nil when the figure was not measured.
	Met      *bool  `json:"met,omitempty"`
	Measured string `json:"measured"`
}

// check records the verdict and the figure it is based on.
func (t *TargetCheck) check(met bool, format string, args ...any) {
	t.Met = &met
	t.Measured = fmt.Sprintf(format, args...)
}

// Fixture describes the clip the cameras loop.
type Fixture struct {
	Name     string  `json:"name"`
	Width    int     `json:"width"`
	Height   int     `json:"height"`
	FPS      int     `json:"fps"`
	Bitrate  float64 `json:"bits_per_second"`
	Keyframe float64 `json:"keyframe_interval_seconds"`
}

func describeClip(c *simcam.Clip) Fixture {
	bytes := 0
	for _, u := range c.Units {
		for _, n := range u.NALUs {
			bytes += len(n)
		}
	}
	f := Fixture{Name: c.Name, Width: c.Width, Height: c.Height, FPS: c.FPS, Keyframe: keyframeInterval(c).Seconds()}
	if d := c.Duration(); d > 0 {
		f.Bitrate = float64(bytes*8) / d.Seconds()
	}
	return f
}

func (f Fixture) String() string {
	return fmt.Sprintf("%s, %dx%d %d fps %.1f Mb/s, a keyframe every %gs", f.Name, f.Width, f.Height, f.FPS, f.Bitrate/1e6, f.Keyframe)
}

// writeJSON prints the report as indented JSON.
func writeJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeText prints the report as tables.
func writeText(w io.Writer, r *Report) {
	m := r.Machine
	fmt.Fprintf(w, "Machine: %d CPUs (%s), GOMAXPROCS %d", m.CPUs, m.CPUModel, m.GOMAXPROCS)
	if m.MemTotal > 0 {
		fmt.Fprintf(w, ", %.1f GiB RAM", float64(m.MemTotal)/(1<<30))
	}
	fmt.Fprintf(w, "; %s/%s", m.OS, m.Arch)
	if m.Kernel != "" {
		fmt.Fprintf(w, " %s", m.Kernel)
	}
	fmt.Fprintf(w, "; %s\n", m.GoVersion)
	fmt.Fprintf(w, "Started %s; load average (1, 5, 15 min) %s at start, %s at end\n",
		m.Started.Format(time.RFC3339), loadString(m.LoadStart), loadString(m.LoadEnd))
	if r.Ingest != nil {
		writeIngest(w, r.Ingest)
	}
	if r.Relay != nil {
		writeRelay(w, r.Relay)
	}
	if r.TTFF != nil {
		writeTTFF(w, r.TTFF)
	}
	if r.Latency != nil {
		writeLatency(w, r.Latency)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nFAILED: %s\n", e)
	}
}

func loadString(l []float64) string {
	if len(l) != 3 {
		return "unknown"
	}
	return fmt.Sprintf("%.2f %.2f %.2f", l[0], l[1], l[2])
}

func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
}

// memoryLimitNote names the Go memory limit of the measured process.
func memoryLimitNote(limit int64) string {
	if limit <= 0 {
		return ""
	}
	return "; Go memory limit " + mib(uint64(limit))
}

func writeIngest(w io.Writer, r *IngestResult) {
	window := 0.0
	if len(r.Rows) > 0 {
		window = r.Rows[0].Process.Window
	}
	fmt.Fprintf(w, "\nIngest: CPU and memory of the ingest role pulling N cameras over RTSP/%s\n", strings.ToUpper(r.Transport))
	fmt.Fprintf(w, "(camera: %s; cameras in another process; %gs warm-up, %.0fs measured%s)\n\n", r.Fixture, r.Warmup, window, memoryLimitNote(r.MemoryLimit))
	tw := table(w)
	fmt.Fprintln(tw, "cameras\tstreaming\tcores\tcores/100 cams\tRSS\tRSS peak\tGo heap\tlive heap\tcached GOPs\treactor\tgoroutines\tframes/s\texpected\tslowest cam\tsilent\tRTP lost\tcamera proc\t")
	for _, x := range r.Rows {
		limit := "no bound"
		if x.GOPLimit > 0 {
			limit = "of " + mib(uint64(x.GOPLimit))
		}
		fmt.Fprintf(tw, "%d\t%d/%d\t%.3f\t%.3f\t%s\t%s\t%s\t%s\t%d cams, %s %s\t%d\t%d\t%.0f\t%.0f\t%.1f fps\t%d\t%d\t%.2f core\t\n",
			x.Cameras, x.Online, x.Cameras, x.Process.Cores, 100*x.Process.Cores/float64(x.Cameras),
			mib(x.Process.RSS), mib(x.Process.RSSPeak), mib(x.Process.Heap), mib(x.Process.Live), x.GOPCameras, mib(uint64(x.GOPBytes)), limit, x.Reactor, x.Process.Goroutines,
			x.Frames, x.Expected, finite(x.MinCameraFPS), x.Silent, x.Lost, x.CameraServer.Cores)
	}
	tw.Flush()
	for _, x := range r.Rows {
		if x.Reconnects > 0 || x.DecodeErrors > 0 || x.CameraServer.Skipped > 0 {
			fmt.Fprintf(w, "  %d cameras: %d reconnects, %d decode errors, %d units skipped by the camera process\n", x.Cameras, x.Reconnects, x.DecodeErrors, x.CameraServer.Skipped)
		}
	}
	writeTargets(w, r.Targets)
}

func writeRelay(w io.Writer, r *RelayResult) {
	window := 0.0
	if len(r.Rows) > 0 {
		window = r.Rows[0].Process.Window
	}
	fmt.Fprintf(w, "\nRelay: CPU and memory to serve V WebRTC viewers of one camera (ingest, relay and HTTP in the measured process)\n")
	fmt.Fprintf(w, "(camera: %s; camera and viewers in other processes; %gs warm-up, %.0fs measured%s)\n\n", r.Fixture, r.Warmup, window, memoryLimitNote(r.MemoryLimit))
	tw := table(w)
	fmt.Fprintln(tw, "viewers\tready\tcores\tcore/viewer\tRSS\tRSS/viewer\tlive/viewer\tgoroutines\tfps min\tfps median\tslow\tMb/s received\tviewers proc\t")
	for _, x := range r.Rows {
		if x.Viewers == 0 {
			fmt.Fprintf(tw, "0 (baseline)\t-\t%.3f\t-\t%s\t-\t-\t%d\t-\t-\t-\t-\t-\t\n", x.Process.Cores, mib(x.Process.RSS), x.Process.Goroutines)
			continue
		}
		fmt.Fprintf(tw, "%d\t%d\t%.3f\t%.4f\t%s\t%s\t%s\t%d\t%.1f\t%.1f\t%d\t%.1f\t%.2f core\t\n",
			x.Viewers, x.Ready, x.Process.Cores, x.CoresPerViewer, mib(x.Process.RSS), kib(x.RSSPerViewer), kib(x.LivePerViewer),
			x.Process.Goroutines, x.MinFPS, x.MedianFPS, x.Slow, x.Bitrate/1e6, x.ViewersCores)
	}
	tw.Flush()
	for _, x := range r.Rows {
		if x.HubDrops > 0 || x.DecodeErrors > 0 || len(x.DialErrors) > 0 || (x.Viewers > 0 && x.Sessions != x.Viewers) {
			fmt.Fprintf(w, "  %d viewers: %d relay sessions at the end, %d dropped by the hub for falling behind, %d packets undecodable; dial errors: %v\n",
				x.Viewers, x.Sessions, x.HubDrops, x.DecodeErrors, x.DialErrors)
		}
	}
	writeTargets(w, r.Targets)
}

func writeTTFF(w io.Writer, r *TTFFResult) {
	fmt.Fprintf(w, "\nTime to first frame: WHEP POST to the first complete keyframe at a fresh viewer\n")
	fmt.Fprintf(w, "(camera: %s; %d trials at random phases of the keyframe interval)\n\n", r.Fixture, len(r.Trials)+r.Failed)
	tw := table(w)
	fmt.Fprintln(tw, "trials\tfailed\tmin\tmedian\tp95\tmax\tdial to keyframe, median\t")
	fmt.Fprintf(tw, "%d\t%d\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f ms\t\n", len(r.Trials), r.Failed, r.Min, r.Median, r.P95, r.Max, r.DialMed)
	tw.Flush()
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  %s\n", e)
	}
	writeTargets(w, r.Targets)
}

func writeLatency(w io.Writer, r *LatencyResult) {
	fmt.Fprintf(w, "\nLatency added camera to viewer: unit sent by the camera to frame depacketized by the viewer (RTSP, ingest, relay, WebRTC)\n")
	fmt.Fprintf(w, "(camera: %s; camera, Sharpeye and viewer in one process; %.0fs measured after the initial burst)\n\n", r.Fixture, r.Window)
	tw := table(w)
	fmt.Fprintln(tw, "frames\tmatched\tmin\tmedian\tp99\tmax\tkeyframes, median\t")
	fmt.Fprintf(tw, "%d\t%d\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t\n", r.Frames, r.Matched, r.Min, r.Median, r.P99, r.Max, r.KeyMedian)
	tw.Flush()
	writeTargets(w, r.Targets)
}

func writeTargets(w io.Writer, targets []TargetCheck) {
	for _, t := range targets {
		if t.Met == nil {
			fmt.Fprintf(w, "Target: %s: %s\n", t.What, t.Measured)
			continue
		}
		verdict := "NOT MET"
		if *t.Met {
			verdict = "met"
		}
		fmt.Fprintf(w, "Target: %s: %s (%s)\n", t.What, verdict, t.Measured)
	}
}

// mib formats a number of bytes in MiB.
func mib[N float64 | uint64 | int](n N) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// kib formats a number of bytes in KiB.
func kib(n float64) string { return fmt.Sprintf("%.0f KiB", n/(1<<10)) }

// ms converts to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// finite replaces an infinity (no camera) with 0.
func finite(f float64) float64 {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0
	}
	return f
}

// percentile is the nearest-rank p-quantile of sorted (not empty).
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

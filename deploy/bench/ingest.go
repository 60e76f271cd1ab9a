package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"time"

	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/simcam"
)

// Targets of the ingest section: 500 cameras of 2 Mb/s pulled with under
// 0.3 core and 100 MiB.
const (
	ingestTargetCameras = 500
	ingestTargetCores   = 0.3
	ingestTargetRSS     = 100 << 20
)

// IngestResult is the ingest section: the cost of pulling N cameras.
type IngestResult struct {
	Fixture   Fixture `json:"fixture"`
	Transport string  `json:"transport"`
	Warmup    float64 `json:"warmup_seconds"`
	// MemoryLimit is the measuring process's Go memory limit (0: none).
	MemoryLimit int64         `json:"memory_limit_bytes,omitempty"`
	Rows        []IngestRow   `json:"rows"`
	Targets     []TargetCheck `json:"targets"`
}

// IngestRow is one number of cameras.
type IngestRow struct {
	Cameras int `json:"cameras"`
	// Online cameras were streaming when the window started; OnlineAfter
	// is how long after the pullers started they all were (or the wait
	// gave up).
	Online      int     `json:"online"`
	OnlineAfter float64 `json:"online_after_seconds"`
	// Process is the measuring process (the ingest role).
	Process Process `json:"process"`
	// Frames is access units received per second from all cameras;
	// Expected is cameras × the clip's frame rate. MinCameraFPS is the
	// slowest camera's; Silent cameras delivered nothing in the window.
	Frames       float64 `json:"frames_per_second"`
	Expected     float64 `json:"expected_frames_per_second"`
	MinCameraFPS float64 `json:"min_camera_fps"`
	Silent       int     `json:"silent_cameras"`
	// RTP packets received and lost, decode errors and reconnections in
	// the window, all cameras together.
	Packets      uint64 `json:"rtp_packets"`
	Lost         uint64 `json:"rtp_packets_lost"`
	DecodeErrors uint64 `json:"decode_errors"`
	Reconnects   uint64 `json:"reconnects"`
	// GOPCameras cameras had a cached GOP at the end of the window,
	// GOPBytes in all, within GOPLimit (ingest.gop_total_bytes, 0: none).
	GOPCameras int   `json:"gop_cameras"`
	GOPBytes   int64 `json:"gop_bytes"`
	GOPLimit   int64 `json:"gop_limit_bytes"`
	// Reactor is how many of the cameras' connections a reactor read at
	// the end of the window (ingest.pull.read_interval; the rest went
	// through Go's poller).
	Reactor int `json:"reactor_connections"`
	// CameraServer is the cameras' process over the same window.
	CameraServer cameraServerReport `json:"camera_server"`
}

// runIngest measures the ingest role pulling each number of cameras of
// o.cameras in turn.
func runIngest(ctx context.Context, o *options, progress io.Writer, log *slog.Logger) (*IngestResult, error) {
	clip, err := simcam.Load(o.fixture)
	if err != nil {
		return nil, err
	}
	res := &IngestResult{Fixture: describeClip(clip), Transport: o.transport, Warmup: o.warmup.Seconds()}
	var undo func()
	res.MemoryLimit, undo = o.withMemoryLimit()
	defer undo()
	for _, n := range o.cameras {
		row, err := ingestRow(ctx, o, n, clip, progress, log)
		if err != nil {
			return res, fmt.Errorf("%d cameras: %w", n, err)
		}
		res.Rows = append(res.Rows, row)
	}
	res.Targets = ingestTargets(res.Rows)
	return res, nil
}

func ingestRow(ctx context.Context, o *options, n int, clip *simcam.Clip, progress io.Writer, log *slog.Logger) (IngestRow, error) {
	row := IngestRow{Cameras: n, Expected: float64(n * clip.FPS)}
	fmt.Fprintf(progress, "bench ingest: %d cameras: starting the cameras\n", n)
	cs, err := startCameraServer(ctx, o, n, o.transport != camera.TransportTCP, progress)
	if err != nil {
		return row, err
	}
	defer cs.close()
	cams := make([]camera.Camera, n)
	for i := range cams {
		cams[i] = camera.Camera{ID: cs.info.Paths[i], URL: cs.info.URLs[i], Transport: o.transport}
	}
	releaseMemory() // the previous row's, and the start-up's
	t0 := time.Now()
	st, err := startStack(ctx, stackConfig{cameras: cams, gopTotal: &o.gopTotal, log: log})
	if err != nil {
		return row, err
	}
	defer st.close()

	// Every camera has a keyframe in each GOP; give the slowest a few.
	wait := 10*time.Second + 3*keyframeInterval(clip) + time.Duration(n)*20*time.Millisecond
	row.Online, err = st.waitStreaming(ctx, cs.info.Paths, wait)
	row.OnlineAfter = time.Since(t0).Seconds()
	if ctx.Err() != nil {
		return row, ctx.Err()
	}
	if err != nil {
		fmt.Fprintf(progress, "bench ingest: %d cameras: measuring anyway: %v\n", n, err)
	}
	fmt.Fprintf(progress, "bench ingest: %d cameras: %d streaming after %.1fs; warming up %v, measuring %v\n", n, row.Online, row.OnlineAfter, o.warmup, o.duration)
	if err := sleep(ctx, o.warmup); err != nil {
		return row, err
	}

	if err := cs.send("start"); err != nil {
		return row, err
	}
	before, t0 := st.snapshot(cs.info.Paths)
	var after []cameraCounters
	var t1 time.Time
	w := window{d: o.duration, profile: o.profilePrefix("ingest", n), atEnd: func() {
		after, t1 = st.snapshot(cs.info.Paths)
		row.GOPBytes, row.GOPCameras, row.GOPLimit = st.ingest.GOPCache()
		row.Reactor = rtsp.ReactorConnections()
	}}
	if row.Process, err = measure(ctx, w); err != nil {
		return row, err
	}
	if row.CameraServer, err = cs.report(ctx); err != nil {
		return row, err
	}

	// Frames over the counters' own window, which is a few ms longer
	// than the CPU's.
	window := t1.Sub(t0).Seconds()
	row.MinCameraFPS = math.Inf(1)
	var frames uint64
	for i := range after {
		a, b := after[i], before[i]
		units := a.units - b.units
		frames += units
		if units == 0 {
			row.Silent++
		}
		row.MinCameraFPS = min(row.MinCameraFPS, float64(units)/window)
		row.Packets += a.packets - b.packets
		row.Lost += a.lost - b.lost
		row.DecodeErrors += a.decode - b.decode
		row.Reconnects += a.reconnects - b.reconnects
	}
	row.Frames = float64(frames) / window
	row.MinCameraFPS = finite(row.MinCameraFPS)
	return row, nil
}

// ingestTargets checks the row at the targets' number of cameras, if
// there is one.
func ingestTargets(rows []IngestRow) []TargetCheck {
	cores := TargetCheck{What: fmt.Sprintf("%d cameras under %.1f core", ingestTargetCameras, ingestTargetCores)}
	mem := TargetCheck{What: fmt.Sprintf("%d cameras under %s RSS", ingestTargetCameras, mib(ingestTargetRSS))}
	i := slices.IndexFunc(rows, func(r IngestRow) bool { return r.Cameras == ingestTargetCameras })
	if i < 0 {
		cores.Measured = fmt.Sprintf("not measured (no row of %d cameras)", ingestTargetCameras)
		mem.Measured = cores.Measured
		return []TargetCheck{cores, mem}
	}
	r := rows[i]
	// The figures only count if every camera was delivering.
	delivering, note := r.Online == r.Cameras && r.Silent == 0, ""
	if !delivering {
		note = fmt.Sprintf(", but only %d of %d cameras streaming and %d silent", r.Online, r.Cameras, r.Silent)
	}
	cores.check(delivering && r.Process.Cores < ingestTargetCores, "%.2f core%s", r.Process.Cores, note)
	mem.check(delivering && r.Process.RSS < ingestTargetRSS, "%s RSS, %s live heap and stacks%s", mib(r.Process.RSS), mib(r.Process.Live), note)
	return []TargetCheck{cores, mem}
}

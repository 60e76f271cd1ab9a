package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"sharpeye/ingest/camera"
	"sharpeye/ingest/simcam"
)

// Targets of the relay section: 200 viewers of one 2 Mb/s camera under 0.3
// core, and under 0.5 MiB per viewer.
const (
	relayTargetViewers = 200
	relayTargetCores   = 0.3
	relayTargetPerView = 512 << 10
)

// slowViewer is the share of the camera's frame rate under which a viewer
// counts as slow.
const slowViewer = 0.9

// RelayResult is the relay section: the cost of V viewers of one camera.
type RelayResult struct {
	Fixture Fixture `json:"fixture"`
	Warmup  float64 `json:"warmup_seconds"`
	// MemoryLimit is the measuring process's Go memory limit (0: none).
	MemoryLimit int64 `json:"memory_limit_bytes,omitempty"`
	// Rows start with the baseline: the camera pulled, no viewer.
	Rows    []RelayRow    `json:"rows"`
	Targets []TargetCheck `json:"targets"`
}

// RelayRow is one number of viewers.
type RelayRow struct {
	Viewers int `json:"viewers"`
	// Ready viewers had their first keyframe when the window started;
	// Sessions is the relay's count at its end.
	Ready    int `json:"ready"`
	Sessions int `json:"sessions"`
	// DialErrors are the first few viewers that could not be dialled.
	DialErrors []string `json:"dial_errors,omitempty"`
	// Process is the measuring process (ingest of the camera, relay, HTTP).
	Process Process `json:"process"`
	// Per viewer: the difference from the baseline divided by the
	// number of viewers (0 for the baseline).
	CoresPerViewer float64 `json:"cores_per_viewer"`
	RSSPerViewer   float64 `json:"rss_bytes_per_viewer"`
	LivePerViewer  float64 `json:"live_bytes_per_viewer"`
	// What the viewers received: frames per second of the slowest and
	// the median viewer, viewers under 90 % of the camera's frame rate,
	// and the bitrate of all viewers together.
	MinFPS       float64 `json:"min_viewer_fps"`
	MedianFPS    float64 `json:"median_viewer_fps"`
	Slow         int     `json:"slow_viewers"`
	Bitrate      float64 `json:"received_bits_per_second"`
	DecodeErrors uint64  `json:"decode_errors"`
	// HubDrops counts viewers the camera's hub dropped for falling behind
	// (each is resubscribed at the next keyframe).
	HubDrops uint64 `json:"hub_slow_drops"`
	// FirstKeyframe is the median time from WHEP POST to first keyframe
	// while the viewers were dialled, 8 at a time (ms).
	FirstKeyframe float64 `json:"first_keyframe_median_ms,omitempty"`
	// ViewersCores and CameraCores are the other processes' CPU over the
	// window.
	ViewersCores float64 `json:"viewers_process_cores"`
	CameraCores  float64 `json:"camera_process_cores"`
}

// runRelay measures the relay with no viewer, then with each number of
// viewers of o.viewers, each on a fresh relay.
func runRelay(ctx context.Context, o *options, progress io.Writer, log *slog.Logger) (*RelayResult, error) {
	clip, err := simcam.Load(o.fixture)
	if err != nil {
		return nil, err
	}
	res := &RelayResult{Fixture: describeClip(clip), Warmup: o.warmup.Seconds()}
	var undo func()
	res.MemoryLimit, undo = o.withMemoryLimit()
	defer undo()
	cs, err := startCameraServer(ctx, o, 1, false, progress)
	if err != nil {
		return nil, err
	}
	defer cs.close()
	cam := camera.Camera{ID: cs.info.Paths[0], URL: cs.info.URLs[0], Transport: camera.TransportTCP}

	for _, v := range append([]int{0}, o.viewers...) {
		row, err := relayRow(ctx, o, v, cs, cam, clip, progress, log)
		if err != nil {
			return res, fmt.Errorf("%d viewers: %w", v, err)
		}
		if len(res.Rows) > 0 && v > 0 {
			b := res.Rows[0].Process
			row.CoresPerViewer = (row.Process.Cores - b.Cores) / float64(v)
			row.RSSPerViewer = (float64(row.Process.RSS) - float64(b.RSS)) / float64(v)
			row.LivePerViewer = (float64(row.Process.Live) - float64(b.Live)) / float64(v)
		}
		res.Rows = append(res.Rows, row)
	}
	res.Targets = relayTargets(res.Rows)
	return res, nil
}

func relayRow(ctx context.Context, o *options, v int, cs *cameraServer, cam camera.Camera, clip *simcam.Clip, progress io.Writer, log *slog.Logger) (RelayRow, error) {
	row := RelayRow{Viewers: v}
	releaseMemory() // the previous row's, and the start-up's
	st, err := startStack(ctx, stackConfig{cameras: []camera.Camera{cam}, withRelay: true, maxViewers: v, log: log})
	if err != nil {
		return row, err
	}
	defer st.close()
	ids := []string{cam.ID}
	if _, err := st.waitStreaming(ctx, ids, 10*keyframeInterval(clip)); err != nil {
		return row, err
	}
	var vc *viewersChild
	if v > 0 {
		fmt.Fprintf(progress, "bench relay: %d viewers: dialling\n", v)
		if vc, err = startViewers(ctx, st, cam.ID, v, progress); err != nil {
			return row, err
		}
		defer vc.close()
		row.Ready, row.DialErrors, row.FirstKeyframe = vc.ready.Ready, vc.ready.Errors, vc.ready.FirstKeyframeMedian
		if row.Ready < v {
			fmt.Fprintf(progress, "bench relay: %d viewers: only %d dialled and %d with a keyframe; measuring anyway (%v)\n", v, vc.ready.Dialled, row.Ready, vc.ready.Errors)
		}
	}
	fmt.Fprintf(progress, "bench relay: %d viewers: warming up %v, measuring %v\n", v, o.warmup, o.duration)
	if err := sleep(ctx, o.warmup); err != nil {
		return row, err
	}

	if err := cs.send("start"); err != nil {
		return row, err
	}
	if vc != nil {
		if err := vc.send("start"); err != nil {
			return row, err
		}
	}
	before := st.counters(ids)[0]
	w := window{d: o.duration, profile: o.profilePrefix("relay", v), atEnd: func() {
		row.Sessions = st.relay.Viewers()
		row.HubDrops = st.counters(ids)[0].slowDrops - before.slowDrops
	}}
	if row.Process, err = measure(ctx, w); err != nil {
		return row, err
	}
	camRep, err := cs.report(ctx)
	if err != nil {
		return row, err
	}
	row.CameraCores = camRep.Cores
	if vc == nil {
		return row, nil
	}
	rep, err := vc.report(ctx)
	if err != nil {
		return row, err
	}
	row.ViewersCores = rep.Cores
	fps := make([]float64, 0, v)
	var bytes uint64
	for _, r := range rep.Viewers {
		fps = append(fps, float64(r.Frames)/rep.Window)
		bytes += r.Bytes
		row.DecodeErrors += r.DecodeErrors
	}
	// Viewers that were never dialled received nothing.
	for len(fps) < v {
		fps = append(fps, 0)
	}
	slices.Sort(fps)
	row.MinFPS = fps[0]
	row.MedianFPS = fps[len(fps)/2]
	for _, f := range fps {
		if f < slowViewer*float64(clip.FPS) {
			row.Slow++
		}
	}
	row.Bitrate = float64(bytes*8) / rep.Window
	return row, nil
}

// relayTargets checks the row at the targets' number of viewers, if there
// is one.
func relayTargets(rows []RelayRow) []TargetCheck {
	cores := TargetCheck{What: fmt.Sprintf("%d viewers under %.1f core", relayTargetViewers, relayTargetCores)}
	mem := TargetCheck{What: fmt.Sprintf("%d viewers under %s RSS per viewer", relayTargetViewers, mib(relayTargetPerView))}
	i := slices.IndexFunc(rows, func(r RelayRow) bool { return r.Viewers == relayTargetViewers })
	if i < 0 {
		cores.Measured = fmt.Sprintf("not measured (no row of %d viewers)", relayTargetViewers)
		mem.Measured = cores.Measured
		return []TargetCheck{cores, mem}
	}
	r := rows[i]
	// The figures only count if every viewer was served.
	served, note := r.Ready == r.Viewers && r.Slow == 0, ""
	if !served {
		note = fmt.Sprintf(", but only %d of %d viewers ready and %d slow", r.Ready, r.Viewers, r.Slow)
	}
	cores.check(served && r.Process.Cores < relayTargetCores, "%.2f core%s", r.Process.Cores, note)
	mem.check(served && r.RSSPerViewer < relayTargetPerView, "%s RSS, %s live heap and stacks per viewer%s", kib(r.RSSPerViewer), kib(r.LivePerViewer), note)
	return []TargetCheck{cores, mem}
}

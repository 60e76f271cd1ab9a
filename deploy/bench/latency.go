package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"sharpeye/ingest/camera"
	"sharpeye/ingest/simcam"
	"sharpeye/relay"
)

// latencyTarget: 99 % of frames reach the viewer within 20 ms of leaving
// the camera.
const latencyTarget = 20 * time.Millisecond

// maxMatchDelay is the largest delay at which a viewer's frame is paired
// with a camera unit: well under the keyframe interval, so that a viewer
// keyframe can only match one camera keyframe.
const maxMatchDelay = time.Second

// LatencyResult is the latency section: camera to viewer through the
// ingest role and the relay.
type LatencyResult struct {
	Fixture Fixture `json:"fixture"`
	// Frames the viewer received after its initial burst; Matched those
	// paired with the camera unit they came from; Keyframes the keyframes
	// that agreed on the timestamp offset.
	Frames    int     `json:"frames"`
	Matched   int     `json:"matched"`
	Keyframes int     `json:"keyframes_agreeing"`
	Median    float64 `json:"median_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
	Min       float64 `json:"min_ms"`
	// KeyMedian is the median over keyframes alone (the largest units).
	KeyMedian float64       `json:"keyframe_median_ms"`
	Window    float64       `json:"window_seconds"`
	Targets   []TargetCheck `json:"targets"`
}

// runLatency runs a camera, Sharpeye and one viewer in this process, so
// that camera send times and viewer receive times share one clock, and
// pairs the viewer's frames with the camera's units.
func runLatency(ctx context.Context, o *options, progress io.Writer, log *slog.Logger) (*LatencyResult, error) {
	clip, err := simcam.Load(o.fixture)
	if err != nil {
		return nil, err
	}
	gop := keyframeInterval(clip)
	res := &LatencyResult{Fixture: describeClip(clip)}

	sent := &sendLog{clipLen: len(clip.Units), fps: clip.FPS}
	srv, err := simcam.NewServer(simcam.Config{Address: "127.0.0.1:0", OnUnitSent: sent.record}, log)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	defer srv.Close()
	id := cameraID(0)
	if err := srv.Add(simcam.NewCamera(id, clip)); err != nil {
		return nil, err
	}
	cam := camera.Camera{ID: id, URL: srv.URL(id), Transport: camera.TransportTCP}
	st, err := startStack(ctx, stackConfig{cameras: []camera.Camera{cam}, withRelay: true, maxViewers: 1, log: log})
	if err != nil {
		return nil, err
	}
	defer st.close()
	if _, err := st.waitStreaming(ctx, []string{id}, 10*gop); err != nil {
		return nil, err
	}

	recv := &recvLog{}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	v, err := relay.DialWith(dctx, st.baseURL, id, st.token, relay.DialOptions{OnFrame: recv.record})
	cancel()
	if err != nil {
		return nil, err
	}
	defer v.Close()
	// The first keyframe is the burst's; measure from the next, live one.
	if err := waitUntil(ctx, 3*gop+10*time.Second, 10*time.Millisecond, func() bool { return v.Stats().Keyframes >= 2 }); err != nil {
		return nil, fmt.Errorf("waiting for the viewer's second keyframe: %w", err)
	}
	fmt.Fprintf(progress, "bench latency: measuring %v\n", o.duration)
	t0 := time.Now()
	if err := sleep(ctx, o.duration); err != nil {
		return nil, err
	}
	res.Window = time.Since(t0).Seconds()
	_ = v.Close()

	m, err := matchFrames(sent.units(), recv.frames())
	if err != nil {
		return res, err
	}
	res.Frames, res.Matched, res.Keyframes = m.frames, len(m.delays), m.keyframes
	d := slices.Clone(m.delays)
	slices.Sort(d)
	res.Median, res.P99 = ms(percentile(d, 0.5)), ms(percentile(d, 0.99))
	res.Min, res.Max = ms(d[0]), ms(d[len(d)-1])
	if len(m.keyDelays) > 0 {
		k := slices.Clone(m.keyDelays)
		slices.Sort(k)
		res.KeyMedian = ms(percentile(k, 0.5))
	}
	t := TargetCheck{What: fmt.Sprintf("p99 under %v", latencyTarget)}
	t.check(percentile(d, 0.99) < latencyTarget, "p99 %.1f ms over %d frames", res.P99, res.Matched)
	res.Targets = []TargetCheck{t}
	return res, nil
}

// sentUnit is an access unit as the camera sent it.
type sentUnit struct {
	// ticks is its RTP timestamp less the camera's first one (90 kHz).
	ticks uint32
	idr   bool
	at    time.Time
}

// sendLog records the camera's units (simcam.Config.OnUnitSent). The
// callback gives a unit's index in the clip, not in the camera's
// timeline; the timeline position is counted, units skipped by a late
// sender included, as the distance from the previous index.
type sendLog struct {
	clipLen, fps int

	mu      sync.Mutex
	started bool
	k       uint64 // timeline position of the last unit
	lastIdx int
	log     []sentUnit
}

func (s *sendLog) record(_ string, idx int, idr bool, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		step := (idx - s.lastIdx + s.clipLen) % s.clipLen
		if step == 0 {
			step = s.clipLen
		}
		s.k += uint64(step)
	}
	s.started, s.lastIdx = true, idx
	fps := uint64(max(s.fps, 1))
	// As simcam computes it: the timestamp keeps growing across loops.
	ticks := uint32((s.k/fps)*90000 + (s.k%fps)*90000/fps)
	s.log = append(s.log, sentUnit{ticks: ticks, idr: idr, at: at})
}

func (s *sendLog) units() []sentUnit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// recvFrame is an access unit as the viewer received it.
type recvFrame struct {
	ts  uint32
	key bool
	at  time.Time
}

// recvLog records the viewer's frames (relay.DialOptions.OnFrame).
type recvLog struct {
	mu  sync.Mutex
	log []recvFrame
}

func (r *recvLog) record(f relay.Frame) {
	r.mu.Lock()
	r.log = append(r.log, recvFrame{ts: f.RTPTimestamp, key: f.Key, at: f.Received})
	r.mu.Unlock()
}

func (r *recvLog) frames() []recvFrame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// matched is what matchFrames found.
type matched struct {
	frames    int             // viewer frames considered (after the burst)
	keyframes int             // viewer keyframes agreeing on the offset
	delays    []time.Duration // per matched frame, receive minus send
	keyDelays []time.Duration // the same, keyframes only
}

// errNoMatch is a run whose frames could not be paired with the camera's.
var errNoMatch = errors.New("no viewer frame could be paired with a camera unit")

// matchFrames pairs the viewer's frames with the camera's units.
//
// The relay sends live units at viewer timestamp = camera timestamp +
// offset, the offset constant within a camera session (the cached GOP
// bursted at the start has compressed timestamps: frames before the
// viewer's second keyframe are left out). Keyframes, 2 s apart, give the
// offset without ambiguity: the one camera keyframe sent less than
// maxMatchDelay before a viewer keyframe arrived is the one it carries.
// The offset most keyframes agree on is kept; each frame is then paired
// with the unit at its timestamp less the offset.
func matchFrames(sent []sentUnit, frames []recvFrame) (matched, error) {
	var m matched
	keys := 0
	start := slices.IndexFunc(frames, func(f recvFrame) bool {
		if f.key {
			keys++
		}
		return keys == 2
	})
	if start < 0 {
		return m, fmt.Errorf("%w: the viewer received no keyframe after its first", errNoMatch)
	}
	live := frames[start:]
	m.frames = len(live)

	votes := map[uint32]int{}
	for _, f := range live {
		if !f.key {
			continue
		}
		for _, s := range sent {
			if d := f.at.Sub(s.at); s.idr && d >= 0 && d < maxMatchDelay {
				votes[f.ts-s.ticks]++
			}
		}
	}
	var offset uint32
	for o, n := range votes {
		if n > m.keyframes || (n == m.keyframes && o < offset) {
			offset, m.keyframes = o, n
		}
	}
	if m.keyframes == 0 {
		return m, fmt.Errorf("%w: no camera keyframe was sent within %v before a viewer keyframe", errNoMatch, maxMatchDelay)
	}

	byTicks := make(map[uint32]sentUnit, len(sent))
	for _, s := range sent {
		byTicks[s.ticks] = s
	}
	for _, f := range live {
		s, ok := lookupTicks(byTicks, f.ts-offset)
		if !ok {
			continue
		}
		d := f.at.Sub(s.at)
		if d < 0 || d >= maxMatchDelay {
			continue
		}
		m.delays = append(m.delays, d)
		if f.key {
			m.keyDelays = append(m.keyDelays, d)
		}
	}
	if len(m.delays) == 0 {
		return m, errNoMatch
	}
	return m, nil
}

// lookupTicks finds the unit at ts, give or take two ticks: the hub's
// presentation times are whole nanoseconds, and converting them back to
// 90 kHz may be a tick off at frame rates that do not divide 90000.
func lookupTicks(byTicks map[uint32]sentUnit, ts uint32) (sentUnit, bool) {
	for _, d := range []uint32{0, 1, ^uint32(0), 2, ^uint32(1)} {
		if s, ok := byTicks[ts+d]; ok {
			return s, true
		}
	}
	return sentUnit{}, false
}

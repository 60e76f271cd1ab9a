package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"sharpeye/ingest/camera"
	"sharpeye/ingest/simcam"
	"sharpeye/relay"
)

// ttffTarget: 95 % of viewers see a picture within 300 ms.
const ttffTarget = 300 * time.Millisecond

// ttffTimeout bounds one trial's wait for its keyframe.
const ttffTimeout = 10 * time.Second

// TTFFResult is the time-to-first-frame section.
type TTFFResult struct {
	Fixture Fixture `json:"fixture"`
	// Trials are each trial's time from WHEP POST to first keyframe
	// depacketized, in ms, in the order run; Dial adds the viewer's own
	// ICE gathering before the POST (what a browser also spends).
	Trials []float64 `json:"trials_ms"`
	Dial   []float64 `json:"dial_to_keyframe_ms"`
	// Failed trials got no keyframe within 10 s.
	Failed   int           `json:"failed"`
	Errors   []string      `json:"errors,omitempty"`
	Median   float64       `json:"median_ms"`
	P95      float64       `json:"p95_ms"`
	Max      float64       `json:"max_ms"`
	Min      float64       `json:"min_ms"`
	DialMed  float64       `json:"dial_median_ms"`
	Targets  []TargetCheck `json:"targets"`
	Keyframe float64       `json:"keyframe_interval_seconds"`
}

// runTTFF dials o.trials fresh viewers one after another, each after a
// random pause of up to a keyframe interval, and times their first
// keyframe. The camera runs in a child process; the viewers in this one
// (they are idle apart from the one being timed).
func runTTFF(ctx context.Context, o *options, progress io.Writer, log *slog.Logger) (*TTFFResult, error) {
	clip, err := simcam.Load(o.fixture)
	if err != nil {
		return nil, err
	}
	gop := keyframeInterval(clip)
	res := &TTFFResult{Fixture: describeClip(clip), Keyframe: gop.Seconds()}
	cs, err := startCameraServer(ctx, o, 1, false, progress)
	if err != nil {
		return nil, err
	}
	defer cs.close()
	cam := camera.Camera{ID: cs.info.Paths[0], URL: cs.info.URLs[0], Transport: camera.TransportTCP}
	st, err := startStack(ctx, stackConfig{cameras: []camera.Camera{cam}, withRelay: true, maxViewers: 4, log: log})
	if err != nil {
		return nil, err
	}
	defer st.close()
	if _, err := st.waitStreaming(ctx, []string{cam.ID}, 10*gop); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "bench ttff: %d trials, each after a random pause of up to %v\n", o.trials, gop)

	var posts, dials []time.Duration
	for i := range o.trials {
		if err := sleep(ctx, rand.N(gop)); err != nil {
			return res, err
		}
		post, dial, err := firstFrame(ctx, st, cam.ID)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if err != nil {
			res.Failed++
			if len(res.Errors) < 5 {
				res.Errors = append(res.Errors, fmt.Sprintf("trial %d: %v", i+1, err))
			}
			continue
		}
		posts, dials = append(posts, post), append(dials, dial)
		res.Trials, res.Dial = append(res.Trials, ms(post)), append(res.Dial, ms(dial))
	}
	if len(posts) == 0 {
		return res, fmt.Errorf("no trial got a keyframe: %v", res.Errors)
	}
	slices.Sort(posts)
	slices.Sort(dials)
	res.Median, res.P95 = ms(percentile(posts, 0.5)), ms(percentile(posts, 0.95))
	res.Min, res.Max = ms(posts[0]), ms(posts[len(posts)-1])
	res.DialMed = ms(percentile(dials, 0.5))
	t := TargetCheck{What: fmt.Sprintf("p95 under %v (a viewer waiting for the next keyframe would take %v on average)", ttffTarget, gop/2)}
	t.check(res.Failed == 0 && percentile(posts, 0.95) < ttffTarget, "p95 %.0f ms over %d trials, %d failed", res.P95, len(posts), res.Failed)
	res.Targets = []TargetCheck{t}
	return res, nil
}

// firstFrame dials one viewer and returns its time from WHEP POST, and
// from the start of the dial, to its first keyframe.
func firstFrame(ctx context.Context, st *stack, cam string) (post, dial time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, ttffTimeout)
	defer cancel()
	key := make(chan time.Time, 1)
	var once sync.Once
	t0 := time.Now()
	v, err := relay.DialWith(ctx, st.baseURL, cam, st.token, relay.DialOptions{OnFrame: func(f relay.Frame) {
		if f.Key {
			once.Do(func() { key <- f.Received })
		}
	}})
	if err != nil {
		return 0, 0, err
	}
	defer v.Close()
	select {
	case at := <-key:
		post, _ = v.FirstKeyframe()
		return post, at.Sub(t0), nil
	case <-v.Done():
		return 0, 0, fmt.Errorf("peer connection ended before a keyframe (%s)", v.State())
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("no keyframe within %v", ttffTimeout)
	}
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"sharpeye/relay"
)

// viewersReady is the viewers child's first answer, once every viewer has
// its first keyframe (or the wait gave up).
type viewersReady struct {
	// Dialled viewers have a WHEP session; Ready ones have received a
	// keyframe. Errors are the first few dial failures.
	Dialled int      `json:"dialled"`
	Ready   int      `json:"ready"`
	Errors  []string `json:"errors,omitempty"`
	// FirstKeyframe is the median and largest time from WHEP POST to
	// first keyframe, in ms (viewers dialled several at a time).
	FirstKeyframeMedian float64 `json:"first_keyframe_median_ms"`
	FirstKeyframeMax    float64 `json:"first_keyframe_max_ms"`
}

// viewersReport is the viewers child's answer to "stop": what each viewer
// received since "start".
type viewersReport struct {
	Window  float64          `json:"window_seconds"`
	Cores   float64          `json:"cores"`
	Viewers []viewerReceived `json:"viewers"`
}

// viewerReceived is one viewer's reception over the window.
type viewerReceived struct {
	Frames       uint64 `json:"frames"`
	Keyframes    uint64 `json:"keyframes"`
	Bytes        uint64 `json:"bytes"`
	Packets      uint64 `json:"packets"`
	DecodeErrors uint64 `json:"decode_errors"`
	// Connected is false for a viewer whose peer connection has ended.
	Connected bool `json:"connected"`
}

// dialConcurrency is how many viewers the child dials at a time.
const dialConcurrency = 8

// cmdViewers is `sharpeye bench viewers --url U --token T --camera C
// --count V`: V WebRTC viewers of camera C until standard input closes.
func cmdViewers(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("viewers", stderr)
	baseURL := fs.String("url", "", "Sharpeye's base URL (http://127.0.0.1:port)")
	token := fs.String("token", "", "API token")
	cam := fs.String("camera", "", "camera id")
	count := fs.Int("count", 1, "number of viewers")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for every viewer's first keyframe")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *baseURL == "" || *cam == "" || *count < 1 {
		return errors.New("viewers: --url, --camera and --count (at least 1) are required")
	}
	ctx, commands := control(stdin)

	viewers, ready := dialViewers(ctx, *baseURL, *cam, *token, *count, *timeout)
	defer closeViewers(viewers)
	if err := answer(stdout, ready); err != nil {
		return err
	}

	var u0 usage
	var base []relay.ViewerStats
	for cmd := range commands {
		switch cmd {
		case "start":
			u, err := readUsage()
			if err != nil {
				return err
			}
			u0, base = u, viewerStats(viewers)
		case "stop":
			u1, err := readUsage()
			if err != nil {
				return err
			}
			now := viewerStats(viewers)
			r := viewersReport{Window: u1.wall.Sub(u0.wall).Seconds(), Cores: u1.coresSince(u0)}
			for i, v := range viewers {
				a, b := now[i], base[i]
				connected := true
				select {
				case <-v.Done():
					connected = false
				default:
				}
				r.Viewers = append(r.Viewers, viewerReceived{
					Frames: a.Frames - b.Frames, Keyframes: a.Keyframes - b.Keyframes,
					Bytes: a.Bytes - b.Bytes, Packets: a.Packets - b.Packets,
					DecodeErrors: a.DecodeErrors - b.DecodeErrors, Connected: connected,
				})
			}
			if err := answer(stdout, r); err != nil {
				return err
			}
		default:
			return fmt.Errorf("viewers: %w %q", errUnknownCommand, cmd)
		}
	}
	return nil
}

// dialViewers dials count viewers, dialConcurrency at a time, and waits
// for their first keyframes. Viewers that could not be dialled are left
// out; the answer says how many there are.
func dialViewers(ctx context.Context, baseURL, cam, token string, count int, timeout time.Duration) ([]*relay.Viewer, viewersReady) {
	var (
		mu      sync.Mutex
		viewers []*relay.Viewer
		r       viewersReady
	)
	var g errgroup.Group
	g.SetLimit(dialConcurrency)
	for range count {
		g.Go(func() error {
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			v, err := relay.Dial(dctx, baseURL, cam, token)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if len(r.Errors) < 5 {
					r.Errors = append(r.Errors, err.Error())
				}
				return nil
			}
			viewers = append(viewers, v)
			return nil
		})
	}
	_ = g.Wait()
	r.Dialled = len(viewers)

	_ = waitUntil(ctx, timeout, 20*time.Millisecond, func() bool {
		for _, v := range viewers {
			if _, ok := v.FirstKeyframe(); !ok {
				return false
			}
		}
		return true
	})
	var firsts []time.Duration
	for _, v := range viewers {
		if d, ok := v.FirstKeyframe(); ok {
			firsts = append(firsts, d)
		}
	}
	r.Ready = len(firsts)
	if len(firsts) > 0 {
		slices.Sort(firsts)
		r.FirstKeyframeMedian = ms(percentile(firsts, 0.5))
		r.FirstKeyframeMax = ms(firsts[len(firsts)-1])
	}
	return viewers, r
}

func viewerStats(viewers []*relay.Viewer) []relay.ViewerStats {
	out := make([]relay.ViewerStats, len(viewers))
	for i, v := range viewers {
		out[i] = v.Stats()
	}
	return out
}

// closeViewers hangs every viewer up, a few at a time.
func closeViewers(viewers []*relay.Viewer) {
	var g errgroup.Group
	g.SetLimit(dialConcurrency * 2)
	for _, v := range viewers {
		g.Go(func() error {
			_ = v.Close()
			return nil
		})
	}
	_ = g.Wait()
}

// viewersChild is a viewers child seen from the bench.
type viewersChild struct {
	*child
	ready viewersReady
}

// startViewers runs count viewers of st's camera cam in a child process
// and waits until they are ready.
func startViewers(ctx context.Context, st *stack, cam string, count int, stderr io.Writer) (*viewersChild, error) {
	timeout := 30*time.Second + time.Duration(count)*100*time.Millisecond
	c, err := startChild(ctx, stderr, "viewers", "--url", st.baseURL, "--token", st.token, "--camera", cam,
		"--count", strconv.Itoa(count), "--timeout", timeout.String())
	if err != nil {
		return nil, err
	}
	vc := &viewersChild{child: c}
	// Dialling takes a while when the machine is loaded; the child
	// bounds each dial and the wait for keyframes.
	if err := c.recv(ctx, &vc.ready, 2*timeout+30*time.Second); err != nil {
		c.close()
		return nil, err
	}
	return vc, nil
}

// report asks for what the viewers received since "start".
func (vc *viewersChild) report(ctx context.Context) (viewersReport, error) {
	var r viewersReport
	if err := vc.send("stop"); err != nil {
		return r, err
	}
	err := vc.recv(ctx, &r, 30*time.Second)
	return r, err
}

package bench

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"sharpeye/console/api"
	"sharpeye/console/auth"
	"sharpeye/ingest"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
	"sharpeye/relay"
)

// stack is the Sharpeye under test, in the bench's own process: the ingest
// role pulling the cameras and, when asked for, the relay behind an HTTP
// server on 127.0.0.1, all built as `sharpeye run` builds them.
type stack struct {
	ingest *ingest.Ingest
	relay  *relay.Relay // nil without one
	// baseURL (http://127.0.0.1:port) and token reach the relay's WHEP
	// endpoints.
	baseURL, token string

	cancel context.CancelFunc
	g      *errgroup.Group
}

// stackConfig says what to run.
type stackConfig struct {
	cameras []camera.Camera
	// gopTotal, if set, replaces ingest.gop_total_bytes.
	gopTotal *int64
	// withRelay adds the relay and its HTTP server; maxViewers bounds its
	// sessions (per camera and in all).
	withRelay  bool
	maxViewers int
	log        *slog.Logger
}

// startStack starts the ingest role (and the relay) and returns once the
// relay serves; the cameras are still connecting.
func startStack(ctx context.Context, cfg stackConfig) (*stack, error) {
	reg := prometheus.NewRegistry()
	icfg := ingest.Defaults()
	icfg.RTSPServer.Listen = "" // the re-serve is not measured
	if cfg.gopTotal != nil {
		icfg.GOPTotalBytes = *cfg.gopTotal
	}
	in := ingest.New(icfg, cfg.cameras, nil, nil, reg, cfg.log.With("component", "ingest"))
	if err := in.Start(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	s := &stack{ingest: in, cancel: cancel, g: g}
	g.Go(func() error { return in.Run(gctx) })
	if !cfg.withRelay {
		return s, nil
	}
	if err := s.startRelay(gctx, cfg, reg); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *stack) startRelay(ctx context.Context, cfg stackConfig, reg prometheus.Registerer) error {
	rcfg := relay.Defaults()
	rcfg.UDPListen = "127.0.0.1:0"
	rcfg.IncludeLoopback = true
	rcfg.MaxViewers = max(cfg.maxViewers, 1)
	rcfg.MaxViewersPerCamera = rcfg.MaxViewers
	r, err := relay.New(rcfg, s.ingest, reg, cfg.log.With("component", "relay"))
	if err != nil {
		return err
	}
	s.relay = r
	s.g.Go(func() error { return r.Run(ctx) })
	select {
	case <-r.Ready():
	case <-ctx.Done():
		return fmt.Errorf("relay: %w", context.Cause(ctx))
	}

	s.token = rand.Text()
	rt := api.NewRouter(1<<20, 30*time.Second)
	rt.SetAuthenticator(benchAuth{token: s.token})
	r.Routes(rt)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.baseURL = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: rt, ReadHeaderTimeout: 10 * time.Second}
	s.g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	s.g.Go(func() error {
		<-ctx.Done()
		return srv.Close()
	})
	return nil
}

// close stops everything and waits for it.
func (s *stack) close() error {
	s.cancel()
	return s.g.Wait()
}

// cameraCounters are one camera's counters, as the ingest role sees them.
type cameraCounters struct {
	online                       bool
	reason                       string
	units, packets, lost, decode uint64
	reconnects, slowDrops, keys  uint64
	consumers                    int
}

// snapshot reads the counters of every camera in ids, and when: the middle
// of the reading, which takes milliseconds for hundreds of cameras.
func (s *stack) snapshot(ids []string) ([]cameraCounters, time.Time) {
	t0 := time.Now()
	c := s.counters(ids)
	return c, t0.Add(time.Since(t0) / 2)
}

// counters reads the counters of every camera in ids.
func (s *stack) counters(ids []string) []cameraCounters {
	out := make([]cameraCounters, len(ids))
	for i, id := range ids {
		st, ok := s.ingest.Status(id)
		if !ok {
			continue
		}
		out[i] = cameraCounters{
			online:     st.Status.State == rtsp.StateOnline,
			reason:     st.Status.Reason,
			units:      st.Stream.Units,
			packets:    st.Status.PacketsReceived,
			lost:       st.Status.PacketsLost,
			decode:     st.Status.DecodeErrors,
			reconnects: st.Status.Reconnects,
			slowDrops:  st.Stream.SlowDrops,
			keys:       st.Stream.Keyframes,
			consumers:  st.Stream.Subscribers,
		}
	}
	return out
}

// streaming reports whether a camera is online and has delivered a
// keyframe.
func (c cameraCounters) streaming() bool { return c.online && c.units > 0 && c.keys > 0 }

// waitStreaming waits until every camera of ids is streaming, or timeout;
// it returns how many are and, if not all, which one was not and why.
func (s *stack) waitStreaming(ctx context.Context, ids []string, timeout time.Duration) (int, error) {
	n := 0
	var last []cameraCounters
	err := waitUntil(ctx, timeout, 100*time.Millisecond, func() bool {
		last = s.counters(ids)
		n = 0
		for _, c := range last {
			if c.streaming() {
				n++
			}
		}
		return n == len(ids)
	})
	if err == nil || ctx.Err() != nil {
		return n, err
	}
	for i, c := range last {
		if !c.streaming() {
			why := "connected, no keyframe yet"
			if !c.online {
				why = "not online"
				if c.reason != "" {
					why += ": " + c.reason
				}
			}
			return n, fmt.Errorf("%d of %d cameras streaming %w; %s is %s", n, len(ids), err, ids[i], why)
		}
	}
	return n, err
}

// benchAuth admits the bench's one random token as an administrator. The
// real authentication (users, sessions, API tokens) is tested in
// console/auth; what costs CPU per viewer is after it, and a request made
// once per viewer does not change the figures.
type benchAuth struct{ token string }

func (a benchAuth) Authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(a.token)) != 1 {
		return nil, api.ErrUnauthenticated
	}
	p := &auth.Principal{UserID: "bench", Username: "bench", DisplayName: "sharpeye bench", Role: auth.Admin, Via: "token"}
	return r.WithContext(auth.WithPrincipal(r.Context(), p)), nil
}

// Interface guards.
var (
	_ api.Authenticator = benchAuth{}
	_ relay.Cameras     = (*ingest.Ingest)(nil)
)

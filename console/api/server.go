package api

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sharpeye/configs/conf"
)

// Config is the http section of the configuration.
type Config struct {
	// Listen is the address of the one HTTP listener.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey, both set, serve HTTPS (and mark cookies Secure).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// MaxBodyBytes is the default request body limit.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout conf.Duration `yaml:"read_header_timeout"`
	// RequestTimeout bounds one request's handling (streams excepted).
	RequestTimeout conf.Duration `yaml:"request_timeout"`
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout conf.Duration `yaml:"idle_timeout"`
	// ShutdownTimeout is how long in-flight requests may finish at stop.
	ShutdownTimeout conf.Duration `yaml:"shutdown_timeout"`
	// MetricsPublic serves /metrics without authentication (for a
	// Prometheus on a trusted network that cannot send a token).
	MetricsPublic bool `yaml:"metrics_public"`
}

// Defaults returns the compiled defaults.
func Defaults() Config {
	return Config{
		Listen:            "127.0.0.1:8080",
		MaxBodyBytes:      1 << 20,
		ReadHeaderTimeout: conf.Duration(10 * time.Second),
		RequestTimeout:    conf.Duration(30 * time.Second),
		IdleTimeout:       conf.Duration(120 * time.Second),
		ShutdownTimeout:   conf.Duration(5 * time.Second),
	}
}

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		v.Errorf("listen", "must be host:port, e.g. 127.0.0.1:8080 (%v)", err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.Errorf("listen", "port must be 0-65535")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		v.Errorf("tls_cert", "tls_cert and tls_key go together")
	}
	for _, f := range []struct{ key, path string }{{"tls_cert", c.TLSCert}, {"tls_key", c.TLSKey}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				v.Errorf(f.key, "%v", err)
			}
		}
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 1<<30 {
		v.Errorf("max_body_bytes", "must be between 1024 and 1073741824")
	}
	for _, f := range []struct {
		key string
		d   conf.Duration
	}{
		{"read_header_timeout", c.ReadHeaderTimeout}, {"request_timeout", c.RequestTimeout},
		{"idle_timeout", c.IdleTimeout}, {"shutdown_timeout", c.ShutdownTimeout},
	} {
		if f.d.D() <= 0 {
			v.Errorf(f.key, "must be positive")
		}
	}
	if c.ShutdownTimeout.D() > 9*time.Second {
		v.Errorf("shutdown_timeout", "must be at most 9s: the process stops within 10s of a signal")
	}
}

// TLS reports whether the listener serves HTTPS.
func (c *Config) TLS() bool { return c.TLSCert != "" }

// Server is the process's HTTP listener.
type Server struct {
	cfg    Config
	router *Router
	log    *slog.Logger
	srv    *http.Server
	ln     net.Listener

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
}

// NewServer builds the server around router and registers the health,
// readiness and metrics endpoints on it. metricsAuth, when the metrics are
// not public, is wrapped around the metrics handler (a role check).
func NewServer(cfg Config, router *Router, health *Health, reg *prometheus.Registry, log *slog.Logger, metricsAuth func(http.Handler) http.Handler) *Server {
	s := &Server{
		cfg:    cfg,
		router: router,
		log:    log,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sharpeye_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sharpeye_http_requests_in_flight",
			Help: "HTTP requests being answered.",
		}),
	}
	reg.MustRegister(s.requests, s.duration, s.inflight)
	router.OnError(func(r *http.Request, err error) {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get("X-Request-Id"), "err", err)
	})

	router.Handle(http.MethodGet, "/healthz", serveHealthz)
	router.Handle(http.MethodGet, "/readyz", health.serveReadyz)
	var metrics http.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	var opts []RouteOption
	if !cfg.MetricsPublic {
		opts = append(opts, Authenticated())
		if metricsAuth != nil {
			metrics = metricsAuth(metrics)
		}
	}
	router.Mount("GET /metrics", metrics, opts...)

	s.srv = &http.Server{
		Handler:           s.middleware(router),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout.D(),
		IdleTimeout:       cfg.IdleTimeout.D(),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// Listen binds the listener; Run serves on it. Binding first lets the
// caller report a busy port before anything else starts.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	if s.cfg.TLS() {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("http.tls_cert: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (after Listen).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL is the base URL of the bound listener.
func (s *Server) URL() string {
	scheme := "http"
	if s.cfg.TLS() {
		scheme = "https"
	}
	return scheme + "://" + s.ln.Addr().String()
}

// Run serves until ctx is cancelled, then lets in-flight requests finish
// for up to the shutdown timeout and closes what remains.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout.D())
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("requests still running at shutdown were cut off", "after", s.cfg.ShutdownTimeout.D())
		err = s.srv.Close()
	}
	<-errc
	return err
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// middleware wraps every request: request id, security headers, panic
// recovery, metrics and the access log.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 64 {
			id = rand.Text()[:16]
			r.Header.Set("X-Request-Id", id)
		}
		h := w.Header()
		h.Set("X-Request-Id", id)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "SAMEORIGIN")
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'")
		}
		if s.cfg.TLS() {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		sw := &statusWriter{ResponseWriter: w}
		s.inflight.Inc()
		defer func() {
			s.inflight.Dec()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "request_id", id, "panic", p, "stack", string(debug.Stack()))
				if sw.status == 0 {
					WriteError(sw, errors.New("panic"))
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			d := time.Since(start)
			s.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
			s.duration.WithLabelValues(route).Observe(d.Seconds())
			level := slog.LevelDebug
			if sw.status >= 500 {
				level = slog.LevelWarn
			}
			// The path only: query strings may carry tokens.
			s.log.Log(r.Context(), level, "http request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "took", d, "remote", r.RemoteAddr, "request_id", id)
		}()
		next.ServeHTTP(sw, r)
	})
}

// Close releases the listener of a server that is not running (Run closes
// its own).
func (s *Server) Close() {
	if s.ln != nil {
		s.ln.Close()
	}
}

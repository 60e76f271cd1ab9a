package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// HandlerFunc is an endpoint that may fail: a returned error is answered
// with WriteError (an *Error as it is, anything else as a 500, logged).
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Authenticator decides who is calling. Authenticate returns the request
// carrying the caller in its context, or an error (an *Error with status 401
// or 403) to answer instead.
type Authenticator interface {
	Authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, error)
}

// Route describes one registered endpoint.
type Route struct {
	Method  string
	Pattern string
	// Auth is true when the caller must be authenticated.
	Auth bool
	// Streaming routes (server-sent events, long polls) get no request timeout.
	Streaming bool
	// MaxBody overrides the server's request body limit when positive.
	MaxBody int64
}

// RouteOption adjusts a route as it is registered.
type RouteOption func(*Route)

// Public lets unauthenticated callers reach a route under /api/ (login).
func Public() RouteOption { return func(r *Route) { r.Auth = false } }

// Authenticated requires authentication on a route outside /api/.
func Authenticated() RouteOption { return func(r *Route) { r.Auth = true } }

// Streaming exempts a route from the request timeout.
func Streaming() RouteOption { return func(r *Route) { r.Streaming = true } }

// MaxBody sets the route's request body limit.
func MaxBody(n int64) RouteOption { return func(r *Route) { r.MaxBody = n } }

// Router collects every endpoint of the process.
type Router struct {
	mux     *http.ServeMux
	maxBody int64
	timeout time.Duration
	onError func(r *http.Request, err error)

	mu     sync.Mutex
	routes []Route
	auth   Authenticator
}

// NewRouter returns a router whose routes get maxBody as their request body
// limit and timeout as their deadline unless they say otherwise.
func NewRouter(maxBody int64, timeout time.Duration) *Router {
	rt := &Router{mux: http.NewServeMux(), maxBody: maxBody, timeout: timeout}
	// Anything under /api/ that no route matches: authenticate first, so
	// that an anonymous caller learns nothing about which routes exist.
	rt.mux.Handle("/api/", rt.wrap(Route{Pattern: "/api/", Auth: true}, func(w http.ResponseWriter, r *http.Request) error {
		if allow := rt.allowed(r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			return Errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))
		}
		return NotFound("no API endpoint %s %s", r.Method, r.URL.Path)
	}))
	return rt
}

// allowed lists the methods that have a route for r's path.
func (rt *Router) allowed(r *http.Request) []string {
	var out []string
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host}
		if _, pattern := rt.mux.Handler(probe); pattern != "/api/" && pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

// SetAuthenticator installs the authenticator; routes registered before it
// use it too.
func (rt *Router) SetAuthenticator(a Authenticator) {
	rt.mu.Lock()
	rt.auth = a
	rt.mu.Unlock()
}

// OnError sets the function told of every 5xx error a handler returns (the
// server logs them).
func (rt *Router) OnError(f func(r *http.Request, err error)) { rt.onError = f }

// Handle registers h for method and pattern (net/http pattern syntax,
// "/api/v1/cameras/{id}").
func (rt *Router) Handle(method, pattern string, h HandlerFunc, opts ...RouteOption) {
	route := Route{Method: method, Pattern: pattern, Auth: strings.HasPrefix(pattern, "/api/")}
	for _, o := range opts {
		o(&route)
	}
	rt.mu.Lock()
	rt.routes = append(rt.routes, route)
	rt.mu.Unlock()
	p := pattern
	if method != "" {
		p = method + " " + pattern
	}
	rt.mux.Handle(p, rt.wrap(route, h))
}

// Mount registers a plain http.Handler (static files, promhttp) on a
// pattern that may start with a method ("GET /metrics").
func (rt *Router) Mount(pattern string, h http.Handler, opts ...RouteOption) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	rt.Handle(method, path, func(w http.ResponseWriter, r *http.Request) error {
		h.ServeHTTP(w, r)
		return nil
	}, opts...)
}

// Routes lists every registered route, in registration order.
func (rt *Router) Routes() []Route {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Clone(rt.routes)
}

// ServeHTTP dispatches to the registered routes.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.mux.ServeHTTP(w, r) }

func (rt *Router) wrap(route Route, h HandlerFunc) http.Handler {
	limit := rt.maxBody
	if route.MaxBody > 0 {
		limit = route.MaxBody
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			WriteError(w, Errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body of %d bytes is over the limit of %d bytes", r.ContentLength, limit))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if !route.Streaming && rt.timeout > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), rt.timeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
		if route.Auth {
			rt.mu.Lock()
			a := rt.auth
			rt.mu.Unlock()
			if a == nil {
				WriteError(w, Errorf(http.StatusServiceUnavailable, CodeUnavailable, "authentication is not available on this node"))
				return
			}
			var err error
			if r, err = a.Authenticate(w, r); err != nil {
				WriteError(w, err)
				return
			}
		}
		if err := h(w, r); err != nil {
			var e *Error
			if errors.As(err, &e) && e.Status < 500 {
				WriteError(w, err)
				return
			}
			if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() != nil {
				err = Errorf(http.StatusGatewayTimeout, CodeTimeout, "the request took longer than %s", rt.timeout)
			}
			if rt.onError != nil {
				rt.onError(r, err)
			}
			WriteError(w, err)
		}
	})
}

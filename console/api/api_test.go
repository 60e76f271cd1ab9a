package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeAuth lets a request in when it carries "X-User".
type fakeAuth struct{}

func (fakeAuth) Authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	if r.Header.Get("X-User") == "" {
		return nil, ErrUnauthenticated
	}
	return r, nil
}

func newTestServer(t *testing.T, register func(rt *Router)) *httptest.Server {
	t.Helper()
	rt := NewRouter(1024, 200*time.Millisecond)
	rt.SetAuthenticator(fakeAuth{})
	register(rt)
	s := NewServer(Defaults(), rt, NewHealth(prometheus.NewRegistry()), prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	srv := httptest.NewServer(s.srv.Handler)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, method, url string, body string, hdr ...string) (int, Error) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e struct {
		Error Error `json:"error"`
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 400 {
		if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" {
			t.Fatalf("%s %s: error body %q is not the uniform error", method, url, b)
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("error content type %q", ct)
		}
	}
	return res.StatusCode, e.Error
}

type thing struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	Tags  []string
}

func TestDecodeAndErrors(t *testing.T) {
	srv := newTestServer(t, func(rt *Router) {
		rt.Handle("POST", "/api/v1/things", func(w http.ResponseWriter, r *http.Request) error {
			var v thing
			if err := DecodeJSON(r, &v); err != nil {
				return err
			}
			WriteJSON(w, 201, v)
			return nil
		})
		rt.Handle("GET", "/api/v1/slow", func(w http.ResponseWriter, r *http.Request) error {
			<-r.Context().Done()
			return r.Context().Err()
		})
		rt.Handle("GET", "/api/v1/panic", func(w http.ResponseWriter, r *http.Request) error { panic("boom") })
		rt.Handle("GET", "/api/v1/broken", func(w http.ResponseWriter, r *http.Request) error {
			return errors.New("database password=xyz unreachable")
		})
		rt.Handle("GET", "/api/v1/conflict", func(w http.ResponseWriter, r *http.Request) error { return Conflict("stale version 3") })
	})
	user := []string{"X-User", "u"}
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code, field, msg         string
	}{
		{"ok", "POST", "/api/v1/things", `{"name":"a","count":2}`, user, 201, "", "", ""},
		{"anonymous", "POST", "/api/v1/things", `{}`, nil, 401, "unauthenticated", "", "authentication required"},
		{"anonymous unknown path", "GET", "/api/v1/nothing", ``, nil, 401, "unauthenticated", "", ""},
		{"unknown path", "GET", "/api/v1/nothing", ``, user, 404, "not_found", "", "/api/v1/nothing"},
		{"wrong method", "DELETE", "/api/v1/things", ``, user, 405, "method_not_allowed", "", "allowed: POST"},
		{"unknown field", "POST", "/api/v1/things", `{"name":"a","colour":"red"}`, user, 400, "bad_request", "colour", "unknown field"},
		{"wrong type", "POST", "/api/v1/things", `{"count":"two"}`, user, 400, "bad_request", "count", "expected a number"},
		{"syntax", "POST", "/api/v1/things", `{"name":}`, user, 400, "bad_request", "", "malformed JSON"},
		{"truncated", "POST", "/api/v1/things", `{"name":"a"`, user, 400, "bad_request", "", "ends early"},
		{"empty", "POST", "/api/v1/things", ``, user, 400, "bad_request", "", "empty"},
		{"two values", "POST", "/api/v1/things", `{} {}`, user, 400, "bad_request", "", "single JSON value"},
		{"too large", "POST", "/api/v1/things", `{"name":"` + strings.Repeat("x", 2000) + `"}`, user, 413, "too_large", "", "1024 bytes"},
		{"timeout", "GET", "/api/v1/slow", ``, user, 504, "timeout", "", "longer than"},
		{"panic", "GET", "/api/v1/panic", ``, user, 500, "internal", "", "server log"},
		{"internal hides detail", "GET", "/api/v1/broken", ``, user, 500, "internal", "", "server log"},
		{"conflict", "GET", "/api/v1/conflict", ``, user, 409, "conflict", "", "stale version 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, e := get(t, tc.method, srv.URL+tc.path, tc.body, tc.hdr...)
			if status != tc.status || e.Code != tc.code || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("got %d %+v, want %d %s field=%q msg~%q", status, e, tc.status, tc.code, tc.field, tc.msg)
			}
			if strings.Contains(e.Message, "xyz") {
				t.Fatalf("internal detail leaked: %q", e.Message)
			}
		})
	}
}

func TestWrongContentType(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{}`))
	r.Header.Set("Content-Type", "text/plain")
	var v thing
	var e *Error
	if err := DecodeJSON(r, &v); !errors.As(err, &e) || e.Status != 415 {
		t.Fatalf("got %v", err)
	}
}

func TestHealthReadiness(t *testing.T) {
	h := NewHealth(prometheus.NewRegistry())
	if ready, _ := h.State(); ready {
		t.Fatal("ready with no components")
	}
	h.Starting("ingest")
	h.Ready("console")
	rec := httptest.NewRecorder()
	h.serveReadyz(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"reason":"starting"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	h.Ready("ingest")
	rec = httptest.NewRecorder()
	h.serveReadyz(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestServerShutdownReleasesPort(t *testing.T) {
	cfg := Defaults()
	cfg.Listen = "127.0.0.1:0"
	rt := NewRouter(1024, time.Second)
	s := NewServer(cfg, rt, NewHealth(prometheus.NewRegistry()), prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	res, err := http.Get(s.URL() + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", err, res)
	}
	res.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(s.URL() + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

func TestIfMatch(t *testing.T) {
	for _, c := range []struct {
		header string
		want   int64
		ok     bool
		err    bool
	}{
		{"", 0, false, false},
		{ETag(7), 7, true, false},
		{`W/"12"`, 12, true, false},
		{"3", 3, true, false},
		{`"seven"`, 0, false, true},
	} {
		r := httptest.NewRequest("PUT", "/", nil)
		if c.header != "" {
			r.Header.Set("If-Match", c.header)
		}
		v, ok, err := IfMatch(r, "thing")
		if v != c.want || ok != c.ok || (err != nil) != c.err {
			t.Errorf("If-Match %q: %d %v %v", c.header, v, ok, err)
		}
		var ae *Error
		if err != nil && (!errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, "thing's version")) {
			t.Errorf("If-Match %q: error %v is not a 400 naming the record", c.header, err)
		}
	}
}

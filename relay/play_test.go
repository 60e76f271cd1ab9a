package relay

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"sharpeye/console/api"
	"sharpeye/console/auth"
	"sharpeye/deploy/testpeer"
)

// The play page and its files load without authentication.
func TestPlayPage(t *testing.T) {
	e := newEnv(t, nil)
	for path, want := range map[string]string{
		"/play/cam1":     "play.js",
		"/play/play.js":  "/api/v1/auth/me",
		"/play/play.css": "video",
	} {
		res := do(t, "GET", e.srv.URL+path, "", "", nil)
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, body without %q", path, res.StatusCode, want)
		}
	}
}

// The play page in Chromium: log in, play the camera (640x360 from the
// cached keyframe), leave and end the session.
func TestPlayPageInChromium(t *testing.T) {
	testpeer.Require(t, testpeer.Chromium)
	e := newEnv(t, nil)
	e.camera(t, "cam1", "county/east", loadClip(t, "street-360p"))

	// The console's login and "me" endpoints, faked; the CSP the real
	// server sets, so that the page must do without inline script.
	rt := api.NewRouter(1<<20, 30*time.Second)
	rt.SetAuthenticator(fakeAuth{})
	e.relay.Routes(rt)
	rt.Handle("POST", "/api/v1/auth/login", func(w http.ResponseWriter, r *http.Request) error {
		var req struct{ Username, Password string }
		if err := api.DecodeJSON(r, &req); err != nil {
			return err
		}
		if req.Username != "alice" || req.Password != "correct horse" {
			return &api.Error{Status: 401, Code: api.CodeUnauthenticated, Message: "wrong username or password"}
		}
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: aliceToken, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		api.WriteJSON(w, 200, map[string]string{"username": "alice"})
		return nil
	}, api.Public())
	rt.Handle("GET", "/api/v1/auth/me", func(w http.ResponseWriter, r *http.Request) error {
		p, _ := auth.FromContext(r.Context())
		api.WriteJSON(w, 200, p)
		return nil
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'")
		}
		rt.ServeHTTP(w, r)
	}))
	defer srv.Close()

	// Not t.TempDir: Chromium's helpers may still write there for a
	// moment after it exits, which fails the test's cleanup.
	profile, err := os.MkdirTemp("", "sharpeye-chromium")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "Translate,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	if p := os.Getenv("CHROMIUM"); p != "" {
		opts = append(opts, chromedp.ExecPath(p))
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	if err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/play/cam1"),
		chromedp.WaitVisible("#login"),
		chromedp.SendKeys(`#login input[name="username"]`, "alice"),
		chromedp.SendKeys(`#login input[name="password"]`, "correct horse"),
		chromedp.Click(`#login button[type="submit"]`),
		chromedp.WaitVisible("#player"),
	); err != nil {
		t.Fatal(err)
	}
	for {
		var st struct {
			Width, Height int
			Time          float64
			Stats, Error  string
		}
		var raw string
		if err := chromedp.Run(ctx, chromedp.Evaluate(`(() => {
			const v = document.getElementById('video');
			return JSON.stringify({width: v.videoWidth, height: v.videoHeight, time: v.currentTime,
				stats: document.getElementById('stats').textContent, error: document.getElementById('error').textContent});
		})()`, &raw)); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			t.Fatal(err)
		}
		if st.Error != "" {
			t.Fatalf("the page shows an error: %s", st.Error)
		}
		if st.Width == 640 && st.Height == 360 && st.Time > 1 && strings.Contains(st.Stats, "640×360") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not playing: %+v (relay sessions: %+v)", st, e.relay.list(func(*session) bool { return true }))
		case <-time.After(100 * time.Millisecond):
		}
	}
	if n := e.relay.Viewers(); n != 1 {
		t.Fatalf("%d viewers, want 1", n)
	}
	// Leaving the page ends the session (DELETE with keepalive).
	if err := chromedp.Run(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session to end", func() bool { return e.relay.Viewers() == 0 })
}

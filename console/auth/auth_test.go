package auth_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/console/api"
	"sharpeye/console/auth"
)

const adminPassword = "correct horse battery"

type env struct {
	t      *testing.T
	svc    *auth.Service
	srv    *httptest.Server
	client *http.Client // with a cookie jar
}

func newEnv(t *testing.T, driver string, mutate ...func(*auth.Config)) *env {
	t.Helper()
	db := casedbtest.Open(t, driver)
	cfg := auth.Defaults()
	for _, m := range mutate {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := auth.NewService(cfg, db, false, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	rt := api.NewRouter(1<<20, 10*time.Second)
	rt.SetAuthenticator(svc)
	svc.Routes(rt)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	if _, err := svc.CreateUser(context.Background(), auth.NewUser{Username: "admin", Password: adminPassword, Role: auth.Admin}); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	return &env{t: t, svc: svc, srv: srv, client: &http.Client{Jar: jar}}
}

// do sends a request; body is JSON-encoded unless it is a string.
func (e *env) do(c *http.Client, method, path string, body any, hdr ...string) (*http.Response, map[string]any) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = strings.NewReader(string(j))
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res, out
}

func (e *env) login(c *http.Client, user, pw string) *http.Response {
	e.t.Helper()
	res, _ := e.do(c, "POST", "/api/v1/auth/login", map[string]string{"username": user, "password": pw})
	return res
}

func errCode(body map[string]any) string {
	if e, ok := body["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

func newJarClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

func forEachDriver(t *testing.T, f func(t *testing.T, driver string)) {
	for _, d := range casedbtest.Drivers() {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			f(t, d)
		})
	}
}

func TestLoginSessionLogout(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)

		res, body := e.do(e.client, "GET", "/api/v1/auth/me", nil)
		if res.StatusCode != 401 || errCode(body) != "unauthenticated" {
			t.Fatalf("me before login: %d %v", res.StatusCode, body)
		}

		res = e.login(e.client, "admin", adminPassword)
		if res.StatusCode != 200 {
			t.Fatalf("login: %d", res.StatusCode)
		}
		var cookie *http.Cookie
		for _, c := range res.Cookies() {
			if c.Name == "sharpeye_session" {
				cookie = c
			}
		}
		if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Secure || len(cookie.Value) < 40 {
			t.Fatalf("session cookie = %+v", cookie)
		}

		res, body = e.do(e.client, "GET", "/api/v1/auth/me", nil)
		if res.StatusCode != 200 || body["username"] != "admin" || body["role"] != "admin" || body["via"] != "session" {
			t.Fatalf("me: %d %v", res.StatusCode, body)
		}

		res, _ = e.do(e.client, "POST", "/api/v1/auth/logout", nil)
		if res.StatusCode != 204 {
			t.Fatalf("logout: %d", res.StatusCode)
		}
		// The old cookie value no longer works even if replayed.
		stale := &http.Client{}
		res, _ = e.do(stale, "GET", "/api/v1/auth/me", nil, "Cookie", "sharpeye_session="+cookie.Value)
		if res.StatusCode != 401 {
			t.Fatalf("replayed cookie after logout: %d", res.StatusCode)
		}
	})
}

func TestLoginRefusals(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		c := newJarClient()
		for _, tc := range []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"wrong password", map[string]string{"username": "admin", "password": "nope-nope-nope"}, 401, "unauthenticated"},
			{"unknown user", map[string]string{"username": "ghost", "password": "whatever-123"}, 401, "unauthenticated"},
			{"missing password", map[string]string{"username": "admin"}, 400, "bad_request"},
			{"unknown field", `{"username":"admin","password":"x","remember":true}`, 400, "bad_request"},
			{"malformed", `{"username":`, 400, "bad_request"},
			{"not json", `username=admin`, 400, "bad_request"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res, body := e.do(c, "POST", "/api/v1/auth/login", tc.body)
				if res.StatusCode != tc.status || errCode(body) != tc.code {
					t.Fatalf("got %d %v, want %d %s", res.StatusCode, body, tc.status, tc.code)
				}
			})
		}
		// Both refused logins above are in the audit log.
		c = newJarClient()
		e.login(c, "admin", adminPassword)
		_, body := e.do(c, "GET", "/api/v1/audit", nil)
		failed := 0
		for _, en := range body["entries"].([]any) {
			if en.(map[string]any)["action"] == "login.failed" {
				failed++
			}
		}
		if failed != 2 {
			t.Fatalf("audit has %d failed logins, want 2: %v", failed, body)
		}
	})
}

func TestLoginRateLimited(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *auth.Config) { c.LoginPerMinute = 1; c.LoginBurst = 3 })
	c := newJarClient()
	for i := range 3 {
		if res := e.login(c, "admin", "wrong-password-"+string(rune('a'+i))); res.StatusCode != 401 {
			t.Fatalf("attempt %d: %d", i, res.StatusCode)
		}
	}
	res, body := e.do(c, "POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": adminPassword})
	if res.StatusCode != 429 || errCode(body) != "rate_limited" {
		t.Fatalf("fourth attempt: %d %v", res.StatusCode, body)
	}
	// Another username from the same address still has its own budget.
	if res := e.login(c, "someone", "wrong-password"); res.StatusCode != 401 {
		t.Fatalf("other user: %d", res.StatusCode)
	}
}

func TestCrossOriginRefused(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *auth.Config) { c.TrustedOrigins = []string{"https://wall.example.org"} })
	e.login(e.client, "admin", adminPassword)
	newUser := map[string]string{"username": "li.na", "password": "long-enough-pw", "role": "clerk"}
	// A browser on another site posting with the user's cookie.
	res, body := e.do(e.client, "POST", "/api/v1/users", newUser, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if res.StatusCode != 403 || !strings.Contains(body["error"].(map[string]any)["message"].(string), "cross-origin") {
		t.Fatalf("cross-site POST: %d %v", res.StatusCode, body)
	}
	// Reads are allowed cross-site (they change nothing and CORS guards the answer).
	if res, _ := e.do(e.client, "GET", "/api/v1/auth/me", nil, "Sec-Fetch-Site", "cross-site"); res.StatusCode != 200 {
		t.Fatalf("cross-site GET: %d", res.StatusCode)
	}
	// A trusted origin may post.
	if res, body := e.do(e.client, "POST", "/api/v1/users", newUser, "Sec-Fetch-Site", "cross-site", "Origin", "https://wall.example.org"); res.StatusCode != 201 {
		t.Fatalf("trusted origin: %d %v", res.StatusCode, body)
	}
	// Login from another site is refused too (login CSRF).
	res, _ = e.do(newJarClient(), "POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": adminPassword}, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if res.StatusCode != 403 {
		t.Fatalf("cross-site login: %d", res.StatusCode)
	}
}

func TestTokens(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		e.login(e.client, "admin", adminPassword)

		// A service account for an AI box, with a token made by the admin.
		res, body := e.do(e.client, "POST", "/api/v1/users", map[string]string{"username": "aibox-7", "role": "service", "region": "huangpi/wangjiahe"})
		if res.StatusCode != 201 {
			t.Fatalf("create service account: %d %v", res.StatusCode, body)
		}
		svcID := body["id"].(string)
		res, body = e.do(e.client, "POST", "/api/v1/tokens", map[string]any{"name": "detections", "user_id": svcID, "expires_in": "720h"})
		if res.StatusCode != 201 {
			t.Fatalf("create token: %d %v", res.StatusCode, body)
		}
		secret := body["token"].(string)
		tokenID := body["id"].(string)
		if !strings.HasPrefix(secret, auth.TokenPrefix) || !strings.HasPrefix(secret, body["prefix"].(string)) {
			t.Fatalf("token %q, prefix %v", secret, body["prefix"])
		}

		bare := &http.Client{}
		res, body = e.do(bare, "GET", "/api/v1/auth/me", nil, "Authorization", "Bearer "+secret)
		if res.StatusCode != 200 || body["username"] != "aibox-7" || body["via"] != "token" || body["region"] != "huangpi/wangjiahe" {
			t.Fatalf("me with token: %d %v", res.StatusCode, body)
		}
		// A service account cannot reach admin endpoints nor log in.
		if res, _ := e.do(bare, "GET", "/api/v1/users", nil, "Authorization", "Bearer "+secret); res.StatusCode != 403 {
			t.Fatalf("service account listing users: %d", res.StatusCode)
		}
		// Tokens need no CSRF check: no cookie, no ambient authority.
		if res, _ := e.do(bare, "POST", "/api/v1/tokens", map[string]string{"name": "second"}, "Authorization", "Bearer "+secret, "Sec-Fetch-Site", "cross-site"); res.StatusCode != 201 {
			t.Fatalf("token-authenticated cross-site POST: %d", res.StatusCode)
		}

		for _, h := range []string{"Bearer sey_notatoken", "Basic YWRtaW46eA==", "Bearer"} {
			res, body := e.do(bare, "GET", "/api/v1/auth/me", nil, "Authorization", h)
			if res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%q: %d %v", h, res.StatusCode, body)
			}
		}

		if res, _ := e.do(e.client, "DELETE", "/api/v1/tokens/"+tokenID, nil); res.StatusCode != 204 {
			t.Fatalf("revoke: %d", res.StatusCode)
		}
		if res, _ := e.do(bare, "GET", "/api/v1/auth/me", nil, "Authorization", "Bearer "+secret); res.StatusCode != 401 {
			t.Fatalf("revoked token still works: %d", res.StatusCode)
		}
		// The token list never shows a secret.
		_, body = e.do(e.client, "GET", "/api/v1/tokens?user_id=all", nil)
		raw, _ := json.Marshal(body)
		if strings.Contains(string(raw), secret) || len(body["tokens"].([]any)) != 2 {
			t.Fatalf("token list: %s", raw)
		}
	})
}

func TestExpiredToken(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := context.Background()
	u, err := e.svc.CreateUser(ctx, auth.NewUser{Username: "box", Role: auth.ServiceAccount})
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := e.svc.CreateToken(ctx, u.ID, "short", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Millisecond)
	for time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if res, _ := e.do(&http.Client{}, "GET", "/api/v1/auth/me", nil, "Authorization", "Bearer "+secret); res.StatusCode != 401 {
		t.Fatalf("expired token: %d", res.StatusCode)
	}
}

func TestUserAdministration(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		ctx := context.Background()
		// A township admin manages only their township.
		if _, err := e.svc.CreateUser(ctx, auth.NewUser{Username: "town.admin", Password: adminPassword, Role: auth.Admin, Region: "huangpi/wangjiahe"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.CreateUser(ctx, auth.NewUser{Username: "other.clerk", Password: adminPassword, Role: auth.Clerk, Region: "huangpi/luohan"}); err != nil {
			t.Fatal(err)
		}
		c := newJarClient()
		e.login(c, "town.admin", adminPassword)

		for _, tc := range []struct {
			name   string
			body   any
			status int
			field  string
		}{
			{"in region", map[string]string{"username": "grid.07", "display_name": "王芳", "password": "grid-worker-pw", "role": "grid_worker", "region": "huangpi/wangjiahe/xinzhuang/grid-07"}, 201, ""},
			{"outside region", map[string]string{"username": "x1", "password": "long-enough-pw", "role": "clerk", "region": "huangpi/luohan"}, 400, "region"},
			{"unknown role", map[string]string{"username": "x2", "password": "long-enough-pw", "role": "mayor", "region": "huangpi/wangjiahe"}, 400, "role"},
			{"short password", map[string]string{"username": "x3", "password": "short", "role": "clerk", "region": "huangpi/wangjiahe"}, 400, "password"},
			{"bad username", map[string]string{"username": "a b", "password": "long-enough-pw", "role": "clerk", "region": "huangpi/wangjiahe"}, 400, "username"},
			{"bad region", map[string]string{"username": "x4", "password": "long-enough-pw", "role": "clerk", "region": "huangpi//x"}, 400, "region"},
			{"duplicate", map[string]string{"username": "grid.07", "password": "grid-worker-pw", "role": "grid_worker", "region": "huangpi/wangjiahe"}, 409, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res, body := e.do(c, "POST", "/api/v1/users", tc.body)
				if res.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %v", res.StatusCode, tc.status, body)
				}
				if tc.field != "" && body["error"].(map[string]any)["field"] != tc.field {
					t.Fatalf("field: %v", body)
				}
			})
		}

		_, body := e.do(c, "GET", "/api/v1/users", nil)
		var names []string
		var gridID string
		for _, u := range body["users"].([]any) {
			m := u.(map[string]any)
			names = append(names, m["username"].(string))
			if m["username"] == "grid.07" {
				gridID = m["id"].(string)
			}
		}
		if strings.Join(names, ",") != "grid.07,town.admin" {
			t.Fatalf("township admin sees %v", names)
		}

		// The grid worker logs in, then is disabled: the session ends at once.
		gw := newJarClient()
		if res := e.login(gw, "grid.07", "grid-worker-pw"); res.StatusCode != 200 {
			t.Fatalf("grid worker login: %d", res.StatusCode)
		}
		if res, _ := e.do(gw, "GET", "/api/v1/users", nil); res.StatusCode != 403 {
			t.Fatalf("grid worker lists users: %d", res.StatusCode)
		}
		if res, _ := e.do(c, "DELETE", "/api/v1/users/"+gridID, nil); res.StatusCode != 204 {
			t.Fatalf("disable: %d", res.StatusCode)
		}
		if res, _ := e.do(gw, "GET", "/api/v1/auth/me", nil); res.StatusCode != 401 {
			t.Fatalf("disabled user's session: %d", res.StatusCode)
		}
		if res := e.login(gw, "grid.07", "grid-worker-pw"); res.StatusCode != 403 {
			t.Fatalf("disabled user's login: %d", res.StatusCode)
		}
		// Re-enabled with a new password by PATCH.
		res, body := e.do(c, "PATCH", "/api/v1/users/"+gridID, map[string]any{"disabled": false, "password": "a-new-password"})
		if res.StatusCode != 200 || body["disabled"] != false {
			t.Fatalf("re-enable: %d %v", res.StatusCode, body)
		}
		if res := e.login(gw, "grid.07", "a-new-password"); res.StatusCode != 200 {
			t.Fatalf("login with new password: %d", res.StatusCode)
		}
		// Users of another township are invisible.
		_, body = e.do(e.client, "GET", "/api/v1/users", nil) // not logged in: 401
		if errCode(body) != "unauthenticated" {
			t.Fatalf("anonymous: %v", body)
		}
	})
}

func TestChangePassword(t *testing.T) {
	e := newEnv(t, "sqlite")
	a, b := newJarClient(), newJarClient()
	e.login(a, "admin", adminPassword)
	e.login(b, "admin", adminPassword)
	if res, body := e.do(a, "PUT", "/api/v1/auth/password", map[string]string{"current": "wrong-one", "new": "brand-new-password"}); res.StatusCode != 400 {
		t.Fatalf("wrong current: %d %v", res.StatusCode, body)
	}
	if res, _ := e.do(a, "PUT", "/api/v1/auth/password", map[string]string{"current": adminPassword, "new": "brand-new-password"}); res.StatusCode != 204 {
		t.Fatalf("change: %d", res.StatusCode)
	}
	if res, _ := e.do(a, "GET", "/api/v1/auth/me", nil); res.StatusCode != 200 {
		t.Fatalf("own session ended: %d", res.StatusCode)
	}
	if res, _ := e.do(b, "GET", "/api/v1/auth/me", nil); res.StatusCode != 401 {
		t.Fatalf("other session survived: %d", res.StatusCode)
	}
	if res := e.login(newJarClient(), "admin", "brand-new-password"); res.StatusCode != 200 {
		t.Fatalf("new password: %d", res.StatusCode)
	}
}

func TestSessionIdleExpiry(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *auth.Config) { c.SessionIdle = 0 })
	e.login(e.client, "admin", adminPassword)
	if res, _ := e.do(e.client, "GET", "/api/v1/auth/me", nil); res.StatusCode != 401 {
		t.Fatalf("session past its idle time: %d", res.StatusCode)
	}
}

// TestRTSPPasswordRemembered: a player sending the user's password with
// every RTSP request is not rate limited once the password has passed
// (each request would otherwise count as a login), while a wrong one
// still is, and a changed password takes effect at once.
func TestRTSPPasswordRemembered(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := context.Background()
	for i := range 3 * auth.Defaults().LoginBurst {
		if _, err := e.svc.CheckRTSP(ctx, "admin", adminPassword, "10.0.0.7:5000"); err != nil {
			t.Fatalf("request %d with the right password: %v", i+1, err)
		}
	}
	refused := 0
	for range 3 * auth.Defaults().LoginBurst {
		if _, err := e.svc.CheckRTSP(ctx, "admin", "wrong password", "10.0.0.8:5000"); err != nil {
			refused++
		}
	}
	if refused != 3*auth.Defaults().LoginBurst {
		t.Fatalf("%d wrong passwords refused of %d", refused, 3*auth.Defaults().LoginBurst)
	}
	// The right password still passes while its name is rate limited.
	if _, err := e.svc.CheckRTSP(ctx, "admin", adminPassword, "10.0.0.7:5000"); err != nil {
		t.Fatalf("the right password after the wrong ones: %v", err)
	}
	if _, err := e.svc.EnsureUser(ctx, auth.NewUser{Username: "admin", Password: "a new horse battery", Role: auth.Admin}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CheckRTSP(ctx, "admin", adminPassword, "10.0.0.7:5000"); err == nil {
		t.Fatal("the old password still passes after the change")
	}
}

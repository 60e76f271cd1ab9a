package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/console/api"
	"sharpeye/console/auth"
)

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// startNode runs a node with every role on a free port and a fresh case
// database, and returns it once it answers.
func startNode(t *testing.T, driver string, mutate ...func(*Config)) *Node {
	t.Helper()
	return startRoles(t, driver, nil, mutate...)
}

// startRoles runs a node with the given roles (all when none) until the
// test ends.
func startRoles(t *testing.T, driver string, roles []string, mutate ...func(*Config)) *Node {
	t.Helper()
	n, err := tryStartRoles(t, driver, roles, mutate...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tryStartRoles is startRoles returning the error of Start.
func tryStartRoles(t *testing.T, driver string, roles []string, mutate ...func(*Config)) (*Node, error) {
	t.Helper()
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Ingest.RTSPServer.Listen = "127.0.0.1:0"
	cfg.Relay.UDPListen = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.CaseDB = casedbtest.Config(t, driver)
	for _, m := range mutate {
		m(&cfg)
	}
	n := New(cfg, Options{Roles: roles}, NewLogs(LogConfig{Format: "text", Level: "error"}, io.Discard))
	ctx, cancel := context.WithCancel(context.Background())
	if err := n.Start(ctx); err != nil {
		cancel()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node stopped with %v", err)
		}
	})
	return n, nil
}

type client struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newClient(t *testing.T, n *Node) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: n.URL(), c: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

func (c *client) do(method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func TestNodeEndToEnd(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			n := startNode(t, driver)
			c := newClient(t, n)
			ctx := context.Background()
			if _, err := n.Auth().EnsureUser(ctx, auth.NewUser{Username: "admin", Password: "demo-password-1", Role: auth.Admin}); err != nil {
				t.Fatal(err)
			}

			if res, body := c.do("GET", "/readyz", nil); res.StatusCode != 200 || !bytes.Contains(body, []byte(`"ready":true`)) {
				t.Fatalf("readyz: %d %s", res.StatusCode, body)
			}
			if res, _ := c.do("GET", "/healthz", nil); res.StatusCode != 200 {
				t.Fatalf("healthz: %d", res.StatusCode)
			}

			// Anonymous: every API path, known or not, is 401 with the JSON error body.
			for _, p := range []string{"/api/v1/system", "/api/v1/users", "/api/v1/nonexistent", "/metrics"} {
				res, body := c.do("GET", p, nil)
				var e struct {
					Error api.Error `json:"error"`
				}
				if res.StatusCode != 401 || json.Unmarshal(body, &e) != nil || e.Error.Code != "unauthenticated" || e.Error.Message == "" {
					t.Errorf("anonymous GET %s: %d %s", p, res.StatusCode, body)
				}
			}

			res, body := c.do("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"admin","password":"demo-password-1"}`))
			if res.StatusCode != 200 {
				t.Fatalf("login: %d %s", res.StatusCode, body)
			}
			res, body = c.do("GET", "/api/v1/system", nil)
			if res.StatusCode != 200 || !bytes.Contains(body, []byte(`"casedb":"`+driver+`"`)) {
				t.Fatalf("system: %d %s", res.StatusCode, body)
			}
			if res, body := c.do("GET", "/api/v1/nonexistent", nil); res.StatusCode != 404 || !bytes.Contains(body, []byte(`"not_found"`)) {
				t.Fatalf("unknown path: %d %s", res.StatusCode, body)
			}
			big := strings.NewReader(`{"name":"` + strings.Repeat("x", 8<<10) + `"}`)
			if res, body := c.do("POST", "/api/v1/tokens", big); res.StatusCode != 413 || !bytes.Contains(body, []byte(`"too_large"`)) {
				t.Fatalf("oversized body: %d %s", res.StatusCode, body)
			}
			res, body = c.do("GET", "/metrics", nil)
			if res.StatusCode != 200 || !bytes.Contains(body, []byte("sharpeye_http_requests_total")) ||
				!bytes.Contains(body, []byte("go_goroutines")) || !bytes.Contains(body, []byte(`sharpeye_ready{component="console"} 1`)) {
				t.Fatalf("metrics: %d %.300s", res.StatusCode, body)
			}
			if res, body := c.do("GET", "/", nil); res.StatusCode != 200 || !bytes.Contains(body, []byte("Sharpeye")) || res.Header.Get("Content-Security-Policy") == "" {
				t.Fatalf("console page: %d %.200s", res.StatusCode, body)
			}
		})
	}
}

// TestOpenAPIMatchesRoutes keeps console/api/openapi.yaml true: every
// registered API route is documented and every documented one exists.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	n := startNode(t, casedb.SQLite)
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	registered := map[string]bool{}
	for _, r := range n.Router().Routes() {
		if !strings.HasPrefix(r.Pattern, "/api/") && !slices.Contains([]string{"/healthz", "/readyz", "/metrics"}, r.Pattern) {
			continue
		}
		if r.Method == "" {
			t.Errorf("API route %s has no method", r.Pattern)
			continue
		}
		key := r.Method + " " + r.Pattern
		registered[key] = true
		if !documented[key] {
			t.Errorf("%s is registered but not in console/api/openapi.yaml", key)
		}
	}
	for key := range documented {
		if !registered[key] {
			t.Errorf("%s is in console/api/openapi.yaml but not registered", key)
		}
	}
}

// buildBinary builds the sharpeye command once per test run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sharpeye-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sharpeye")
	out, err := exec.Command("go", "build", "-o", bin, "../..").CombinedOutput()
	if err != nil {
		return "", &buildError{out}
	}
	return bin, nil
})

type buildError struct{ out []byte }

func (e *buildError) Error() string { return "go build: " + string(e.out) }

// startDemo runs `sharpeye demo` as a user would and returns the process,
// its console URL and the printed admin password.
func startDemo(t *testing.T, args ...string) (*exec.Cmd, string, string, *bytes.Buffer) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"demo", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), "SHARPEYE_ADMIN_PASSWORD=", "SHARPEYE_INGEST_RTSP_SERVER_LISTEN=127.0.0.1:0", "SHARPEYE_RELAY_UDP_LISTEN=127.0.0.1:0", "SHARPEYE_MQTT_LISTEN=127.0.0.1:0")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	urlRe := regexp.MustCompile(`Console:\s+(http://\S+)/`)
	pwRe := regexp.MustCompile(`Login:\s+admin / (\S+)`)
	var url, pw string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && (url == "" || pw == "") {
		if m := urlRe.FindStringSubmatch(sc.Text()); m != nil {
			url = m[1]
		}
		if m := pwRe.FindStringSubmatch(sc.Text()); m != nil {
			pw = m[1]
		}
	}
	if url == "" || pw == "" {
		t.Fatalf("demo printed no URL and password; stderr:\n%s", stderr.String())
	}
	go io.Copy(io.Discard, stdout)
	return cmd, url, pw, &stderr
}

// TestDemoStopsCleanlyUnderLoad is SIGTERM during load: the process exits
// with code 0 on its own (it kills itself with code 1 after 10 s) and
// leaves nothing listening.
func TestDemoStopsCleanlyUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	cmd, url, pw, stderr := startDemo(t)

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	res, err := hc.Post(url+"/api/v1/auth/login", "application/json", strings.NewReader(`{"username":"admin","password":"`+pw+`"}`))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("login with the printed password: %v %v", err, res)
	}
	res.Body.Close()

	var ok, served atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				res, err := hc.Get(url + "/api/v1/system")
				if err != nil {
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				served.Add(1)
				if res.StatusCode == 200 {
					ok.Add(1)
				}
			}
		}()
	}
	for served.Load() < 200 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	stop()
	wg.Wait()
	if err != nil {
		t.Fatalf("demo exited with %v after SIGTERM; stderr:\n%s", err, stderr.String())
	}
	if ok.Load() < 200 {
		t.Fatalf("only %d requests answered 200 under load", ok.Load())
	}
	addr := strings.TrimPrefix(url, "http://")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s still taken after exit: %v", addr, err)
	}
	ln.Close()
	if !strings.Contains(stderr.String(), "sharpeye stopped") {
		t.Fatalf("no clean stop in the log:\n%s", stderr.String())
	}
}

// TestFailingRoleStopsProcess: a port already taken ends the process with
// one clear line and a non-zero exit.
func TestFailingRoleStopsProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	code := Main([]string{"demo", "--data", t.TempDir(), "--listen", ln.Addr().String(), "--log-format", "json", "--log-level", "error"}, &stdout, &stderr, []string{"SHARPEYE_INGEST_RTSP_SERVER_LISTEN=127.0.0.1:0", "SHARPEYE_RELAY_UDP_LISTEN=127.0.0.1:0", "SHARPEYE_MQTT_LISTEN=127.0.0.1:0"})
	if code != 1 {
		t.Fatalf("exit code %d", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "sharpeye: http.listen: ") || !strings.Contains(last, "address already in use") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
}

func TestMainUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"frobnicate"}, &out, &errb, nil); code != 2 || !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Fatalf("%d %s", code, errb.String())
	}
	if code := Main([]string{"run"}, &out, &errb, nil); code != 1 || !strings.Contains(errb.String(), "-c FILE is required") {
		t.Fatalf("%d %s", code, errb.String())
	}
	errb.Reset()
	if code := Main([]string{"run", "-c", defaultFile, "--roles", "ingest,video"}, &out, &errb, nil); code != 1 || !strings.Contains(errb.String(), `unknown role "video"`) {
		t.Fatalf("%d %s", code, errb.String())
	}
	out.Reset()
	if code := Main([]string{"version"}, &out, &errb, nil); code != 0 || !strings.HasPrefix(out.String(), "sharpeye ") {
		t.Fatalf("%d %s", code, out.String())
	}
}

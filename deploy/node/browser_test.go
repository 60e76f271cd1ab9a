package node

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"sharpeye/alerts/casedb"
	"sharpeye/console/auth"
	"sharpeye/deploy/testpeer"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/simcam"
)

// artifactDir is where browser tests leave their screenshots.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("SHARPEYE_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "sharpeye-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts headless Chromium (Debian's) for one test. A test takes
// about 10 s alone; under CI, with -race and another package's tests
// beside it, one took over 90 s, hence the generous bound (it only guards
// against a hang).
func browser(t *testing.T) context.Context { return browserFor(t, 4*time.Minute) }

// browserFor is browser with the whole test bounded by d.
func browserFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	testpeer.Require(t, testpeer.Chromium)
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Fatal("chromium switched on but not installed")
	}
	// Not t.TempDir: Chromium's helpers may still write to the profile for
	// a moment after it exits. Registered first, this cleanup runs last.
	profile, err := os.MkdirTemp("", "sharpeye-chromium")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		// WebRTC to a peer on loopback: let Chromium use 127.0.0.1 candidates.
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, d)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	return ctx
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.CaptureScreenshot(&png)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// startSim serves simulated cameras (id -> fixture) for one test.
func startSim(t *testing.T, cfg simcam.Config, fixtures map[string]string) *simcam.Server {
	t.Helper()
	cfg.Address = "127.0.0.1:0"
	sim, err := simcam.NewServer(cfg, discardLog)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	for id, fixture := range fixtures {
		clip, err := simcam.Load(fixture)
		if err != nil {
			t.Fatal(err)
		}
		if err := sim.Add(simcam.NewCamera(id, clip)); err != nil {
			t.Fatal(err)
		}
	}
	return sim
}

// startNodeWithCameras runs a node whose cameras are simulated.
func startNodeWithCameras(t *testing.T, fixtures map[string]string) *Node {
	t.Helper()
	sim := startSim(t, simcam.Config{}, fixtures)
	var cams []camera.Camera
	for id := range fixtures {
		cams = append(cams, camera.Camera{ID: id, Name: id, URL: sim.URL(id), Transport: "tcp", Region: "lanxi/dongcheng"})
	}
	return startNode(t, casedb.SQLite, func(c *Config) { c.Cameras = cams })
}

type inbound struct {
	Frames int `json:"frames"`
	Width  int `json:"width"`
	Height int `json:"height"`
}

const inboundJS = `(async () => {
  if (typeof pc === 'undefined' || !pc) return {frames: 0, width: 0, height: 0};
  const out = {frames: 0, width: 0, height: 0};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.frames = s.framesDecoded || 0; out.width = s.frameWidth || 0; out.height = s.frameHeight || 0;
    }
  });
  return out;
})()`

// TestBrowserPlaysCamera: the /play page, in Chromium, logs in and plays a
// camera over WebRTC; getStats reports decoded frames at the fixture's size.
func TestBrowserPlaysCamera(t *testing.T) {
	ctx := browser(t)
	n := startNodeWithCameras(t, map[string]string{"gate": "gate-720p.h264"})
	if _, err := n.Auth().EnsureUser(context.Background(), auth.NewUser{Username: "zhang.wei", DisplayName: "张伟", Password: "duty-commander-1", Role: auth.Commander}); err != nil {
		t.Fatal(err)
	}
	err := chromedp.Run(ctx,
		chromedp.Navigate(n.URL()+"/play/gate"),
		chromedp.WaitVisible(`#login`),
		chromedp.SendKeys(`#login input[name=username]`, "zhang.wei"),
		chromedp.SendKeys(`#login input[name=password]`, "duty-commander-1"),
		chromedp.Click(`#login button[type=submit]`),
		chromedp.WaitVisible(`#player`),
	)
	if err != nil {
		t.Fatalf("log in on the play page: %v", err)
	}
	var got inbound
	deadline := time.Now().Add(30 * time.Second)
	for got.Frames < 25 {
		if time.Now().After(deadline) {
			screenshot(t, ctx, "play-failed.png")
			t.Fatalf("no frames decoded in Chromium: %+v", got)
		}
		if err := chromedp.Run(ctx, chromedp.Evaluate(inboundJS, &got, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got.Width != 1280 || got.Height != 720 {
		t.Fatalf("decoded %dx%d, want 1280x720", got.Width, got.Height)
	}
	// The screenshot shows the stats line once it reports the picture.
	if err := chromedp.Run(ctx, chromedp.Poll(`document.getElementById("stats").textContent.includes("1280")`, nil, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the stats line never showed the picture size: %v", err)
	}
	screenshot(t, ctx, "play-gate.png")
}

// TestBrowserConsole: the console logs in and shows the platform's state.
func TestBrowserConsole(t *testing.T) {
	ctx := browser(t)
	n := startNodeWithCameras(t, map[string]string{"market": "street-360p.h264"})
	if _, err := n.Auth().EnsureUser(context.Background(), auth.NewUser{Username: "admin", Password: "admin-password-1", Role: auth.Admin}); err != nil {
		t.Fatal(err)
	}
	var tiles int
	if err := logIn(ctx, n.URL(), "", "admin", "admin-password-1"); err != nil {
		t.Fatalf("log in: %v", err)
	}
	err := chromedp.Run(ctx,
		chromedp.WaitVisible(`#status .tile`),
		chromedp.Evaluate(`document.querySelectorAll('#status .tile.ok').length`, &tiles),
	)
	if err != nil {
		t.Fatalf("console: %v", err)
	}
	if tiles < 4 {
		t.Fatalf("%d components shown ready", tiles)
	}
	// The camera tiles follow the camera's state (the overview looks again
	// every 10 s): the one camera, online.
	online := `(s => s && s.textContent)(document.querySelector('#camera-counts .cameras-online .state')) === "1" &&
		document.querySelector('#camera-counts .cameras-all .state').textContent === "1"`
	if err := chromedp.Run(ctx, chromedp.Poll(online, nil, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		var text string
		chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById('camera-counts').innerText`, &text))
		t.Fatalf("the overview's camera tiles never showed the camera online: %v (%q)", err, text)
	}
	screenshot(t, ctx, "console-overview.png")
	if err := chromedp.Run(ctx, chromedp.Navigate(n.URL()+"/#/users"), chromedp.WaitVisible(`#users tr`)); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "console-users.png")
	var rows int
	err = chromedp.Run(ctx,
		chromedp.Navigate(n.URL()+"/#/cameras"),
		chromedp.WaitVisible(`#cameras tr .state-online`),
		chromedp.Evaluate(`document.querySelectorAll('#cameras tr').length`, &rows),
	)
	if err != nil || rows != 1 {
		t.Fatalf("camera list: %v, %d rows", err, rows)
	}
	// Nobody watches: the detectors' passive subscription is no viewer.
	var watching string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector('#cameras tr td:nth-child(7)').textContent`, &watching)); err != nil || watching != "0" {
		t.Fatalf("watching %q (%v), want 0", watching, err)
	}
	screenshot(t, ctx, "console-cameras.png")

}

package node

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"sharpeye/console/auth"
)

// wallTiles reads each tile of the console's video wall: its camera, its
// state and the size of the picture its video element shows.
const wallTilesJS = `JSON.stringify([...document.querySelectorAll('#wall .wall-tile')].map((t) => ({
  camera: t.querySelector('select').value,
  state: t.querySelector('.wall-state').textContent,
  width: t.querySelector('video').videoWidth,
  height: t.querySelector('video').videoHeight,
})))`

type wallTile struct {
	Camera string `json:"camera"`
	State  string `json:"state"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// watchingJS asks the API how many viewers each camera has.
const watchingJS = `(async () => {
  const r = await fetch('/api/v1/cameras', { credentials: 'same-origin' });
  const out = {};
  for (const c of (await r.json()).cameras) out[c.id] = c.stream.watching;
  return JSON.stringify(out);
})()`

// TestBrowserWall: the console's video wall, in Chromium, plays two
// cameras side by side at their own sizes; tiles whose sessions the relay
// ends come back by themselves; a tile switched to another camera plays
// it and ends its first session; leaving the wall ends every session;
// coming back restores the wall as it was left.
func TestBrowserWall(t *testing.T) {
	ctx := browser(t)
	n := startNodeWithCameras(t, map[string]string{"market": "street-360p.h264", "gate": "gate-720p.h264"})
	if _, err := n.Auth().EnsureUser(context.Background(), auth.NewUser{Username: "admin", Password: "admin-password-1", Role: auth.Admin}); err != nil {
		t.Fatal(err)
	}
	if err := logIn(ctx, n.URL(), "#/wall?layout=2&cams=market,gate", "admin", "admin-password-1"); err != nil {
		t.Fatalf("log in: %v", err)
	}
	// evalJSON evaluates expr in the page (awaiting a promise) and
	// decodes the JSON text it gives into out.
	evalJSON := func(expr string, out any) {
		t.Helper()
		var s string
		if err := chromedp.Run(ctx, chromedp.Evaluate(expr, &s, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
			return p.WithAwaitPromise(true)
		})); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(s), out); err != nil {
			t.Fatal(err)
		}
	}
	tiles := func() (out []wallTile) { evalJSON(wallTilesJS, &out); return out }
	watching := func() (out map[string]int) { evalJSON(watchingJS, &out); return out }
	sessionIDs := func() (out []string) {
		evalJSON(`fetch('/api/v1/whep', { credentials: 'same-origin' })
		  .then((r) => r.json()).then((j) => JSON.stringify(j.sessions.map((x) => x.id)))`, &out)
		return out
	}
	// eventually polls check until it holds, or fails with a screenshot
	// and what check saw last.
	eventually := func(what string, within time.Duration, check func() (bool, any)) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			ok, saw := check()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				fullScreenshot(t, ctx, "wall-failed.png")
				t.Fatalf("%s: after %s, %+v", what, within, saw)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	wait := func(what string, want func([]wallTile) bool) {
		t.Helper()
		eventually(what, 45*time.Second, func() (bool, any) { got := tiles(); return want(got), got })
	}
	waitWatching := func(what string, want map[string]int) {
		t.Helper()
		eventually(what, 20*time.Second, func() (bool, any) { got := watching(); return fmt.Sprint(got) == fmt.Sprint(want), got })
	}
	playing := func(sizes ...string) func([]wallTile) bool {
		return func(got []wallTile) bool {
			if len(got) != 4 {
				return false
			}
			for i, size := range sizes {
				if fmt.Sprintf("%dx%d", got[i].Width, got[i].Height) != size || got[i].State != "live 直播" {
					return false
				}
			}
			return true
		}
	}
	wait("two cameras on a 2×2 wall", playing("640x360", "1280x720"))
	waitWatching("one viewer each", map[string]int{"market": 1, "gate": 1})
	fullScreenshot(t, ctx, "console-wall.png")

	// The relay ends both sessions (as when it restarts): each tile
	// notices and comes back with a session of its own.
	first := sessionIDs()
	if len(first) != 2 {
		t.Fatalf("relay sessions %v, want two", first)
	}
	if err := chromedp.Run(ctx, chromedp.Evaluate(`Promise.all(`+jsStrings(first)+`.map((id) =>
	  fetch('/api/v1/whep/' + id, { method: 'DELETE', credentials: 'same-origin' }).then((r) => r.status)))`, nil,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })); err != nil {
		t.Fatal(err)
	}
	eventually("new sessions after the relay ended "+fmt.Sprint(first), 60*time.Second, func() (bool, any) {
		now := sessionIDs()
		return len(now) == 2 && !slices.Contains(now, first[0]) && !slices.Contains(now, first[1]), now
	})
	wait("both tiles back", playing("640x360", "1280x720"))

	// The second tile switched to the first camera.
	err := chromedp.Run(ctx, chromedp.Evaluate(`(() => {
	  const s = document.querySelectorAll('#wall .wall-tile select')[1];
	  s.value = 'market';
	  s.dispatchEvent(new Event('change'));
	})()`, nil))
	if err != nil {
		t.Fatal(err)
	}
	wait("the second tile switched", playing("640x360", "640x360"))
	waitWatching("the gate's session ended", map[string]int{"market": 2, "gate": 0})

	// Leaving the wall ends every session; coming back restores it.
	if err := chromedp.Run(ctx, chromedp.Navigate(n.URL()+"/#/overview"), chromedp.WaitVisible(`#status .tile`)); err != nil {
		t.Fatal(err)
	}
	waitWatching("after leaving the wall", map[string]int{"market": 0, "gate": 0})
	if err := chromedp.Run(ctx, chromedp.Navigate(n.URL()+"/#/wall")); err != nil {
		t.Fatal(err)
	}
	wait("the wall as it was left", playing("640x360", "640x360"))
	if got := tiles(); got[2].Camera != "" || got[3].Camera != "" || got[2].Width != 0 {
		t.Errorf("empty tiles: %+v", got[2:])
	}
}

// jsStrings is a JavaScript array literal of ss.
func jsStrings(ss []string) string {
	b, _ := json.Marshal(ss)
	return string(b)
}

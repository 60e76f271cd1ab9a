package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"sharpeye/console/auth"
	"sharpeye/ingest"
	"sharpeye/ingest/stream/streamtest"
)

// TestBrowserClusterCameras: the camera list of a console on an ingest
// node of a cluster says, under each camera's state, whether this node
// pulls it from the camera or via which node it takes it.
func TestBrowserClusterCameras(t *testing.T) {
	ctx := browser(t)
	ids, sim, member := testCluster(t)
	a := startAt(t, []string{Ingest, Console}, member)
	b := startAt(t, []string{Ingest}, member)
	theirs := waitShared(t, ids, sim, a, b)
	hub, _, ok := a.ingest.Lookup(theirs)
	if !ok {
		t.Fatalf("camera %s unknown at a", theirs)
	}
	streamtest.Watch(t, hub, "a consumer at a") // a takes it from b
	if _, err := a.Auth().EnsureUser(context.Background(), auth.NewUser{Username: "admin", Password: "admin-password-1", Role: auth.Admin}); err != nil {
		t.Fatal(err)
	}
	via := "via " + strings.TrimPrefix(b.cfg.Ingest.Cluster.Advertise, "rtsp://")
	if err := logIn(ctx, a.URL(), "", "admin", "admin-password-1"); err != nil {
		t.Fatalf("log in: %v", err)
	}
	// The list is read when the page opens: open it until the hand-over's
	// grace is over everywhere.
	if err := chromedp.Run(ctx, chromedp.Navigate(a.URL()+"/#/cameras")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		// What each camera's row must say: a pulls it, or takes it via b.
		want := map[string]string{}
		for _, id := range ids {
			want[id] = via
			if st, _ := a.ingest.Status(id); st.Pulled == ingest.PulledCamera {
				want[id] = "pulled here"
			}
		}
		var rows map[string]string
		err := chromedp.Run(ctx,
			chromedp.Reload(),
			chromedp.WaitVisible(`#cameras tr .state-online`),
			chromedp.Evaluate(`Object.fromEntries([...document.querySelectorAll('#cameras tr')].map(r => [r.cells[0].lastChild.textContent, r.cells[2].innerText]))`, &rows),
		)
		if err != nil {
			t.Fatalf("camera list: %v", err)
		}
		problem := ""
		for _, id := range ids {
			if !strings.Contains(rows[id], want[id]) {
				problem += fmt.Sprintf(" %s: %q, want %q;", id, rows[id], want[id])
			}
		}
		if problem == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the camera list at a:%s", problem)
		}
		time.Sleep(500 * time.Millisecond)
	}
	screenshot(t, ctx, "console-cluster-cameras.png")
}

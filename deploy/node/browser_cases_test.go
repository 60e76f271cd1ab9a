package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"sharpeye/alerts/casedb"
	"sharpeye/console/auth"
)

// TestBrowserCases: a commander registers a case at the window form, lands
// on its page, assesses it red, and finds it in the queue; changes made
// elsewhere reach the queue live, and a stale action is refused with the
// case reloaded and what was typed kept.
func TestBrowserCases(t *testing.T) {
	ctx := browser(t)
	n := startNode(t, casedb.SQLite)
	for _, u := range []auth.NewUser{
		{Username: "zhang.wei", DisplayName: "张伟", Password: "duty-commander-1", Role: auth.Commander},
		{Username: "wang.fang", DisplayName: "王芳", Password: "duty-commander-2", Role: auth.Commander}, // the other desk
	} {
		if _, err := n.Auth().EnsureUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
	// text reads sel's text in one step in the page: the lists re-render
	// on live updates, so a node found first and read after may be gone.
	text := func(sel string) string {
		t.Helper()
		var s *string
		js := fmt.Sprintf(`(e => e && e.innerText)(document.querySelector(%q))`, sel)
		if err := chromedp.Run(ctx, chromedp.Evaluate(js, &s)); err != nil || s == nil {
			t.Fatalf("read %s: %v (found: %v)", sel, err, s != nil)
		}
		return *s
	}

	if err := logIn(ctx, n.URL(), "", "zhang.wei", "duty-commander-1"); err != nil {
		t.Fatalf("log in: %v", err)
	}
	err := chromedp.Run(ctx,
		chromedp.WaitVisible(`#status .tile`),
		chromedp.WaitVisible(`#case-counts .tile`),
	)
	if err != nil {
		t.Fatalf("log in: %v", err)
	}

	// Register a case at the window.
	const title = "菜市场东门两摊贩争执"
	form := `#case-new-form `
	err = chromedp.Run(ctx,
		chromedp.Click(`#nav a[data-view=cases]`),
		chromedp.WaitVisible(`#case-new-link`),
		chromedp.Click(`#case-new-link`),
		chromedp.WaitReady(form+`select[name=category] option[value=public_order]`),
		chromedp.SendKeys(form+`input[name=title]`, title),
		chromedp.SetValue(form+`select[name=category]`, "public_order"),
		chromedp.SetValue(form+`select[name=source]`, "hotline"),
		chromedp.SendKeys(form+`input[name=region]`, "lanxi/dongcheng"),
		chromedp.SendKeys(form+`input[name=grid]`, "g-031"),
		chromedp.SendKeys(form+`textarea[name=description]`, "两摊贩因摊位占道发生口角，围观群众约 20 人。"),
		chromedp.SendKeys(form+`input[name="elements.where"]`, "东城菜市场东门"),
		chromedp.SendKeys(form+`input[name="elements.who"]`, "摊贩王某、李某"),
		chromedp.SendKeys(form+`input[name="elements.what"]`, "占道争执"),
		chromedp.SendKeys(form+`input[name="elements.object"]`, "摊位"),
		chromedp.SendKeys(form+`input[name="reporter.name"]`, "赵女士"),
		chromedp.SendKeys(form+`input[name="reporter.phone"]`, "13800001234"),
		chromedp.Click(form+`button[type=submit]`),
		chromedp.WaitVisible(`#case-title`),
	)
	if err != nil {
		screenshot(t, ctx, "cases-new-failed.png")
		t.Fatalf("register a case: %v (%s)", err, text(`#case-new-error`))
	}
	var hash string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`location.hash`, &hash)); err != nil {
		t.Fatal(err)
	}
	id, ok := strings.CutPrefix(hash, "#/cases/")
	if !ok || id == "" {
		t.Fatalf("after registering, the page is %q, not the case's", hash)
	}
	if got := text(`#case-title`); got != title {
		t.Fatalf("case page shows title %q, want %q", got, title)
	}
	if got := text(`.case-head .badge.cstate`); !strings.Contains(got, "受理登记") {
		t.Fatalf("new case shows state %q, want 受理登记 registered", got)
	}
	if got := text(`.elements-list dd[data-element=where]`); got != "东城菜市场东门" {
		t.Fatalf("何地 shows %q", got)
	}
	if got := text(`.elements-list dd[data-element=cause]`); !strings.Contains(got, "missing") {
		t.Fatalf("an empty 何故 shows %q, not marked missing", got)
	}

	// Assess it: risk 85 is red.
	err = chromedp.Run(ctx,
		chromedp.Click(`.case-actions button[data-action=assess]`),
		chromedp.WaitVisible(`#case-form input[name=risk]`),
		chromedp.SendKeys(`#case-form input[name=risk]`, "85"),
		chromedp.Click(`#case-form button[type=submit]`),
		chromedp.WaitVisible(`.case-head .badge.colour-red`),
	)
	if err != nil {
		screenshot(t, ctx, "cases-assess-failed.png")
		t.Fatalf("assess: %v", err)
	}
	if got := text(`.case-head .badge.colour-red`); !strings.Contains(got, "红") || !strings.Contains(got, "red") {
		t.Fatalf("colour badge reads %q, want 红 red", got)
	}
	if got := text(`.case-head .badge.cstate`); !strings.Contains(got, "研判") {
		t.Fatalf("assessed case shows state %q", got)
	}
	if got := text(`.case-actions button.primary`); !strings.Contains(got, "dispatch") {
		t.Fatalf("after assessment the next step offered is %q, want dispatch", got)
	}
	screenshot(t, ctx, "cases-case.png")

	// The queue lists it, red.
	row := fmt.Sprintf(`#cases tr[data-id=%q]`, id)
	err = chromedp.Run(ctx,
		chromedp.Click(`#nav a[data-view=cases]`),
		chromedp.WaitVisible(row+` .badge.colour-red`),
	)
	if err != nil {
		t.Fatalf("queue: %v", err)
	}
	if got := text(row + ` .case-title`); got != title {
		t.Fatalf("queue row shows %q", got)
	}

	// Changes made at the other desk arrive live: a hotline case registered
	// red appears at the top with a toast, and a dispatch updates the row.
	c := newClient(t, n)
	if res, body := c.do("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"wang.fang","password":"duty-commander-2"}`)); res.StatusCode != 200 {
		t.Fatalf("login: %d %s", res.StatusCode, body)
	}
	res, body := c.do("POST", "/api/v1/cases", strings.NewReader(`{"title":"幸福小区 3 号楼楼道冒烟","category":"public_safety","source":"hotline",
		"region":"lanxi/dongcheng","risk":92,"elements":{"where":"3 号楼 2 单元","what":"楼道冒烟","object":"电动车"}}`))
	if res.StatusCode != 201 {
		t.Fatalf("register by API: %d %s", res.StatusCode, body)
	}
	var second struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &second); err != nil {
		t.Fatal(err)
	}
	err = chromedp.Run(ctx,
		chromedp.WaitVisible(fmt.Sprintf(`#cases tr:first-child[data-id=%q] .badge.colour-red`, second.ID)),
		chromedp.WaitVisible(`#toasts .toast.red`),
	)
	if err != nil {
		t.Fatalf("a red case registered elsewhere did not appear live: %v", err)
	}
	if got := text(`#toasts`); !strings.Contains(got, "楼道冒烟") || strings.Contains(got, title) {
		t.Fatalf("toasts read %q, want one for the other desk's red case only", got)
	}
	version := func(id string) int64 {
		t.Helper()
		res, body := c.do("GET", "/api/v1/cases/"+id, nil)
		var v struct {
			Version int64 `json:"version"`
		}
		if res.StatusCode != 200 || json.Unmarshal(body, &v) != nil {
			t.Fatalf("get case: %d %s", res.StatusCode, body)
		}
		return v.Version
	}
	// The case may change between reading its version and acting on it
	// (the other desk's case, registered just now, can be linked to it):
	// read it again, as the answer says to.
	for try := 0; ; try++ {
		res, body = c.do("POST", "/api/v1/cases/"+id+"/actions/dispatch", strings.NewReader(fmt.Sprintf(`{"version":%d}`, version(id))))
		if res.StatusCode != 412 || try == 4 {
			break
		}
	}
	if res.StatusCode != 200 {
		t.Fatalf("dispatch by API: %d %s", res.StatusCode, body)
	}
	if err := chromedp.Run(ctx, chromedp.WaitVisible(row+` .badge.cs-dispatched`)); err != nil {
		t.Fatalf("a dispatch made elsewhere did not reach the queue: %v", err)
	}
	if got := text(row + ` td:nth-child(7)`); !strings.Contains(got, "派出所") {
		t.Fatalf("dispatched row names department %q, want 派出所 (police)", got)
	}
	var rows int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll('#cases tr').length`, &rows)); err != nil || rows != 2 {
		t.Fatalf("queue has %d rows (%v), want 2", rows, err)
	}
	screenshot(t, ctx, "cases-queue.png")

	// A stale action: the page read the case, someone else commented, the
	// page's comment is refused; the case is reloaded and the note kept.
	err = chromedp.Run(ctx,
		chromedp.Click(row+` a`),
		chromedp.WaitVisible(`.case-head .badge.cs-dispatched`),
		chromedp.Click(`.case-actions button[data-action=comment]`),
		chromedp.WaitVisible(`#case-form textarea[name=note]`),
		chromedp.SendKeys(`#case-form textarea[name=note]`, "已电话联系派出所"),
	)
	if err != nil {
		t.Fatalf("open the comment form: %v", err)
	}
	res, body = c.do("POST", "/api/v1/cases/"+id+"/actions/comment", strings.NewReader(fmt.Sprintf(`{"version":%d,"note":"另一席位的备注"}`, version(id))))
	if res.StatusCode != 200 {
		t.Fatalf("comment by API: %d %s", res.StatusCode, body)
	}
	err = chromedp.Run(ctx,
		chromedp.Click(`#case-form button[type=submit]`),
		chromedp.WaitVisible(`#case-form .form-error`),
	)
	if err != nil {
		t.Fatalf("stale comment: %v", err)
	}
	if got := text(`#case-form .form-error`); !strings.Contains(got, "changed meanwhile") {
		t.Fatalf("stale action says %q", got)
	}
	var kept string
	if err := chromedp.Run(ctx, chromedp.Value(`#case-form textarea[name=note]`, &kept)); err != nil || kept != "已电话联系派出所" {
		t.Fatalf("the typed note was not kept: %q %v", kept, err)
	}
	if got := text(`.timeline`); !strings.Contains(got, "另一席位的备注") {
		t.Fatalf("the reloaded timeline lacks the other comment: %q", got)
	}
	err = chromedp.Run(ctx,
		chromedp.Click(`#case-form button[type=submit]`),
		chromedp.WaitVisible(`#case-note.ok`),
	)
	if err != nil {
		t.Fatalf("comment again: %v", err)
	}
	if got := text(`.timeline`); !strings.Contains(got, "已电话联系派出所") {
		t.Fatalf("the timeline lacks the comment: %q", got)
	}
	fullScreenshot(t, ctx, "cases-case-dispatched.png")
}

// fullScreenshot saves the whole page, below the fold too.
func fullScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

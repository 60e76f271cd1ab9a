package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/gen"
	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
	"sharpeye/console/auth"
	"sharpeye/deploy/testpeer"
)

// seedAnalytics fills a node's analytics store with a small county's
// history: the last 30 days up to now, with camera health for the last
// day. It returns the county.
func seedAnalytics(t *testing.T, n *Node) (gen.Config, *gen.Atlas) {
	t.Helper()
	cfg := gen.Defaults()
	loc := cfg.Location()
	now := time.Now()
	y, m, d := now.In(loc).Date()
	cfg.Start = time.Date(y, m, d-30, 0, 0, 0, 0, loc)
	cfg.Days, cfg.Cameras, cfg.Devices = 31, 120, 60
	cfg.EventsPerDay, cfg.CasesPerDay, cfg.HealthDays = 3000, 40, 1
	cfg.Regions.Townships = 4
	cfg.Batch = 20_000
	store := n.Analytics()
	// The history runs to the end of today; what lies after now has not
	// happened yet.
	err := gen.Generate(t.Context(), cfg, func(b *analytics.Batch) error {
		b.Events = slices.DeleteFunc(b.Events, func(r analytics.EventRow) bool { return r.Time.After(now) })
		b.Cases = slices.DeleteFunc(b.Cases, func(r analytics.CaseRow) bool { return r.Time.After(now) })
		b.Health = slices.DeleteFunc(b.Health, func(r analytics.HealthRow) bool { return r.Minute.After(now) })
		if b.Len() == 0 {
			return gen.ErrStop
		}
		_, err := store.Insert(t.Context(), b, false)
		return err
	})
	if err != nil {
		t.Fatalf("seed the analytics store: %v", err)
	}
	return cfg, gen.County(cfg)
}

// logIn logs in at the console (from the login form or after logging out).
func logIn(ctx context.Context, base, hash, username, password string) error {
	return chromedp.Run(ctx,
		// A query string makes it a new page load, not a jump within the page.
		chromedp.Navigate(base+"/?as="+username+hash),
		chromedp.WaitVisible(`#login-form`),
		chromedp.SendKeys(`#login-form input[name=username]`, username),
		chromedp.SendKeys(`#login-form input[name=password]`, password),
		chromedp.Click(`#login-form button[type=submit]`),
		chromedp.WaitVisible(`#who`),
	)
}

func logOut(ctx context.Context) error {
	return chromedp.Run(ctx, chromedp.Click(`#logout`), chromedp.WaitVisible(`#login-form`))
}

// analyticsPage is what the analytics view shows, read in the page.
type analyticsPage struct {
	Bars       int      `json:"bars"`
	Lines      int      `json:"lines"`
	Dots       int      `json:"dots"`
	Categories int      `json:"categories"`
	KPIs       []string `json:"kpis"`
	KPIClasses []string `json:"kpiClasses"`
	Depts      int      `json:"depts"`
	Fleet      []string `json:"fleet"`
	Worst      []string `json:"worst"`
	Hot        []string `json:"hot"`
	Rules      int      `json:"rules"`
	SQL        bool     `json:"sql"`
	Errors     []string `json:"errors"`
	Text       string   `json:"text"`
}

const readAnalyticsJS = `(() => {
  const all = (s) => [...document.querySelectorAll(s)];
  return {
    bars: all('#an-cases svg.chart rect.bar').length,
    lines: all('#an-events svg.chart polyline.line').length,
    dots: all('#an-events svg.chart circle.dot').length,
    categories: all('#an-categories svg.chart rect.bar').length,
    kpis: all('#an-kpis .tile.kpi').map((t) => t.querySelector('.name').textContent + ' = ' + t.querySelector('.state').textContent),
    kpiClasses: all('#an-kpis .tile.kpi').map((t) => t.className),
    depts: all('#an-performance tbody tr:not(.total)').length,
    fleet: all('#an-fleet tbody tr .region').map((s) => s.title),
    worst: all('#an-worst tbody tr .region').map((s) => s.title),
    hot: all('#an-hotspots tbody tr .region').map((s) => s.title),
    rules: all('#an-rules tbody tr').length,
    sql: !!document.querySelector('#an-sql'),
    errors: all('#view-analytics .error').map((e) => e.textContent).filter((s) => s.trim()),
    text: document.querySelector('#view-analytics').innerText,
  };
})()`

// waitAnalytics waits until every card of the view has its answer.
func waitAnalytics(ctx context.Context) (analyticsPage, error) {
	var p analyticsPage
	err := chromedp.Run(ctx,
		chromedp.WaitVisible(`#view-analytics`),
		chromedp.Poll(`document.querySelector('#an-cards .card') && !document.querySelector('#view-analytics .loading')`, nil,
			chromedp.WithPollingTimeout(3*time.Minute)),
		chromedp.Evaluate(readAnalyticsJS, &p),
	)
	return p, err
}

// TestBrowserAnalytics: an analyst opens 研判分析 on a county's month of
// history and sees the charts, the KPI tiles, the tables and a weekly
// report; an analyst limited to a township sees only its regions; a clerk
// is not offered the view.
func TestBrowserAnalytics(t *testing.T) {
	testpeer.Require(t, testpeer.Chromium)
	// CI runs this beside other packages' tests on two cores: the embedded
	// store's answers get the time they need.
	n := startNode(t, casedb.SQLite, func(c *Config) {
		c.Analytics.Query.Timeout = conf.Duration(2 * time.Minute)
		c.HTTP.RequestTimeout = conf.Duration(3 * time.Minute)
	})
	cfg, atlas := seedAnalytics(t, n)
	township := atlas.Townships[0].Region
	for _, u := range []auth.NewUser{
		{Username: "li.na", DisplayName: "李娜", Password: "analyst-password-1", Role: auth.Analyst},
		{Username: "zhou.jie", DisplayName: "周杰", Password: "analyst-password-2", Role: auth.Analyst, Region: township},
		{Username: "chen.li", DisplayName: "陈莉", Password: "clerk-password-1", Role: auth.Clerk},
	} {
		if _, err := n.Auth().EnsureUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
	ctx := browserFor(t, 8*time.Minute)
	// The dispatch room's browsers keep the centre's time: its days are the
	// analytics store's days.
	if err := chromedp.Run(ctx, emulation.SetTimezoneOverride(cfg.Timezone)); err != nil {
		t.Fatal(err)
	}

	if err := logIn(ctx, n.URL(), "", "li.na", "analyst-password-1"); err != nil {
		t.Fatalf("log in: %v", err)
	}
	var linkShown bool
	if err := chromedp.Run(ctx, chromedp.Evaluate(`!document.querySelector('#nav a[data-view=analytics]').hidden`, &linkShown)); err != nil || !linkShown {
		t.Fatalf("an analyst is not offered the analytics link (%v)", err)
	}
	if err := chromedp.Run(ctx, chromedp.Click(`#nav a[data-view=analytics]`)); err != nil {
		t.Fatal(err)
	}
	p, err := waitAnalytics(ctx)
	if err != nil {
		fullScreenshot(t, ctx, "analytics-failed.png")
		t.Fatalf("the analytics view did not finish loading: %v", err)
	}
	if len(p.Errors) > 0 {
		fullScreenshot(t, ctx, "analytics-failed.png")
		t.Fatalf("the analytics view shows errors: %q", p.Errors)
	}
	// 30 days of cases, one bar (or more, stacked) a day.
	if p.Bars < 30 {
		t.Errorf("the cases chart has %d bars, want one a day or more for 30 days", p.Bars)
	}
	// The five commonest event types and the rest, a point a day each.
	if p.Lines != 6 || p.Dots != 6*30 {
		t.Errorf("the events chart has %d lines and %d points, want 6 and %d", p.Lines, p.Dots, 6*30)
	}
	if p.Categories < 5 {
		t.Errorf("the category chart has %d bars", p.Categories)
	}
	number := regexp.MustCompile(`\d`)
	if len(p.KPIs) != 7 {
		t.Fatalf("%d KPI tiles, want 7: %q", len(p.KPIs), p.KPIs)
	}
	for _, k := range p.KPIs {
		if !number.MatchString(strings.SplitN(k, " = ", 2)[1]) || strings.Contains(k, "NaN") || strings.Contains(k, "undefined") {
			t.Errorf("KPI tile shows no number: %q", k)
		}
	}
	for _, c := range p.KPIClasses[len(p.KPIClasses)-2:] {
		if !strings.Contains(c, "ok") && !strings.Contains(c, "bad") {
			t.Errorf("a camera KPI tile is not held against its target: class %q", c)
		}
	}
	if p.Depts < 3 {
		t.Errorf("the department table has %d rows", p.Depts)
	}
	if len(p.Fleet) != len(atlas.Townships) {
		t.Errorf("the fleet table lists %d regions, want the %d townships: %q", len(p.Fleet), len(atlas.Townships), p.Fleet)
	}
	if len(p.Worst) != 10 || len(p.Hot) == 0 || p.Rules == 0 {
		t.Errorf("%d worst cameras (want 10), %d hot grids, %d rules", len(p.Worst), len(p.Hot), p.Rules)
	}
	if strings.Contains(p.Text, "NaN") || strings.Contains(p.Text, "undefined") {
		t.Errorf("the view shows NaN or undefined")
	}

	// A CSV link downloads with the session cookie.
	var csv string
	err = chromedp.Run(ctx, chromedp.Evaluate(`fetch(document.querySelector('#an-performance a.csv').href).then(async (r) =>
		r.headers.get('content-type') + '\n' + new TextDecoder('utf-8', {ignoreBOM: true}).decode(await r.arrayBuffer()))`, &csv, awaitPromise))
	if err != nil || !strings.HasPrefix(csv, "text/csv") || !strings.Contains(csv, "\ufeffdepartment,opened,") {
		t.Errorf("the department table's CSV link: %v %.200q", err, csv)
	}

	// Raw SQL on the embedded store: the API's refusal, shown as it says.
	err = chromedp.Run(ctx,
		chromedp.Click(`#an-sql button[type=submit]`),
		chromedp.WaitVisible(`#an-sql-result .error`),
	)
	if err != nil {
		t.Fatalf("run SQL: %v", err)
	}
	if got := textOf(t, ctx, `#an-sql-result .error`); !strings.Contains(got, "501") || !strings.Contains(got, "ClickHouse") {
		t.Errorf("SQL on SQLite shows %q, want the API's 501 message", got)
	}
	fullScreenshot(t, ctx, "analytics.png")

	// The weekly report, in sections.
	err = chromedp.Run(ctx,
		chromedp.Click(`button[data-report=weekly]`),
		chromedp.WaitVisible(`#an-report .section table`),
	)
	if err != nil {
		t.Fatalf("open the weekly report: %v", err)
	}
	var sections []string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`[...document.querySelectorAll('#an-report .section')].map((s) => s.dataset.section)`, &sections)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"performance_by_department", "hot_grids", "cameras_by_region", "compare_by_category"} {
		if !slices.Contains(sections, want) {
			t.Errorf("the weekly report lacks section %s: %q", want, sections)
		}
	}
	if got := textOf(t, ctx, `#an-report .report-head`); !strings.Contains(got, "周研判") {
		t.Errorf("report heading %q", got)
	}
	elementScreenshot(t, ctx, `#an-reports`, "analytics-report.png")

	// An analyst of one township sees its villages only, and no raw SQL.
	if err := logOut(ctx); err != nil {
		t.Fatal(err)
	}
	if err := logIn(ctx, n.URL(), "#/analytics?days=7", "zhou.jie", "analyst-password-2"); err != nil {
		t.Fatalf("log in (township): %v", err)
	}
	p, err = waitAnalytics(ctx)
	if err != nil || len(p.Errors) > 0 {
		fullScreenshot(t, ctx, "analytics-township-failed.png")
		t.Fatalf("the township's analytics: %v %q", err, p.Errors)
	}
	if len(p.Fleet) == 0 {
		t.Error("the township's fleet table is empty")
	}
	for _, r := range slices.Concat(p.Fleet, p.Worst, p.Hot) {
		if !strings.HasPrefix(r, township+"/") {
			t.Errorf("a region outside %s is shown to its analyst: %s", township, r)
		}
	}
	if p.SQL {
		t.Error("an analyst limited to a region is offered raw SQL")
	}
	if p.Bars < 7 {
		t.Errorf("the township's 7-day cases chart has %d bars", p.Bars)
	}
	fullScreenshot(t, ctx, "analytics-township.png")

	// A clerk is not offered the view; opened by address, it says why.
	if err := logOut(ctx); err != nil {
		t.Fatal(err)
	}
	if err := logIn(ctx, n.URL(), "#/analytics", "chen.li", "clerk-password-1"); err != nil {
		t.Fatalf("log in (clerk): %v", err)
	}
	if err := chromedp.Run(ctx, chromedp.Evaluate(`!document.querySelector('#nav a[data-view=analytics]').hidden`, &linkShown)); err != nil || linkShown {
		t.Fatalf("a clerk is offered the analytics link (%v)", err)
	}
	p, err = waitAnalytics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Errors) == 0 || !strings.Contains(p.Errors[0], "403") {
		t.Errorf("a clerk opening the view sees %q, want the API's refusal", p.Errors)
	}
}

// elementScreenshot saves one element, all of it.
func elementScreenshot(t *testing.T, ctx context.Context, sel, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.Screenshot(sel, &png, chromedp.ByQuery)); err != nil {
		t.Fatalf("screenshot %s: %v", sel, err)
	}
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

func awaitPromise(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }

// textOf is the text of the element sel selects.
func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	var s string
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.Text(sel, &s, chromedp.ByQuery)); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("no %s", sel)
		}
		t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

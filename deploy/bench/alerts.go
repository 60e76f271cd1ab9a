package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"sharpeye/alerts/cases"
)

// AlertsReport is what `bench alerts` prints (--json: this document).
type AlertsReport struct {
	Machine Machine       `json:"machine"`
	Alerts  *AlertsResult `json:"alerts,omitempty"`
	Errors  []string      `json:"errors,omitempty"`
}

// AlertsResult is the end-to-end figure of the alerts role: from an event
// published on the bus to the case it opens being visible through the API.
type AlertsResult struct {
	Rules    int     `json:"rules"`
	RulesSrc string  `json:"rules_source"`
	Rate     int     `json:"target_rate"`
	Window   float64 `json:"window_seconds"`
	// Published is the events published in the window; Achieved their
	// rate (lower than the target when the bus held the publisher back
	// because the alerts role fell behind).
	Published int64   `json:"published"`
	Achieved  float64 `json:"achieved_rate"`
	// PublishWait is the share of the window the publisher spent in
	// Publish (durable writes, and back-pressure).
	PublishWait float64 `json:"publish_wait_share"`
	// ConsumedInWindow is what the alerts role had handled at the end of
	// the window; Drained says it then handled everything, DrainSeconds
	// how long after the window that took.
	ConsumedInWindow int64   `json:"consumed_in_window"`
	Drained          bool    `json:"drained"`
	DrainSeconds     float64 `json:"drain_seconds"`
	// Outcomes counts the firings the case workflow took, by outcome.
	Outcomes map[string]int64 `json:"outcomes"`
	// Opened is the cases seen opened on the live stream; Matched those
	// whose evidence named the events, the latency samples.
	Opened  int `json:"cases_opened"`
	Matched int `json:"cases_matched"`
	// Latency of each case opened: from the publishing of its last
	// triggering event to the case's arrival on the live stream
	// (GET /api/v1/cases/stream), in milliseconds.
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	// Node is the node's process (alerts and console roles, bus, case
	// database, and the publisher standing in for the ingest role) over
	// the window.
	Node    Process       `json:"node"`
	Targets []TargetCheck `json:"targets"`
}

const alertsUsage = `sharpeye bench alerts: event on the bus to case visible through the API.

Usage:
  sharpeye bench alerts [--rate 5000] [--duration 60s] [--rules FILE] [--drain-timeout 2m] [--profile FILE]
                        [--postgres URL] [--json] [--quick] [--log-level LEVEL]

A node with the alerts and console roles (embedded bus, SQLite case database in a
temporary directory, or PostgreSQL at --postgres: use a scratch database) runs in a child process with the county's sensors publishing
onto its bus at --rate for --duration; this process watches the live case stream
(GET /api/v1/cases/stream, with an API token) and times every case opened from the
publishing of its last triggering event. --rules is a YAML list of rules (such as
deploy/node/demo/alerts.yml); the default is the bench's own, modelled on the demo's.
--quick: 500 events/s for 5s.
`

// alertsOptions are the flags of `bench alerts`.
type alertsOptions struct {
	rate     int
	duration time.Duration
	rules    string
	drain    time.Duration
	json     bool
	quick    bool
	logLevel string
	// profile is a file for a CPU profile of the node over the window.
	profile string
	// postgres is the case database's URL; "" is SQLite in a temporary
	// directory.
	postgres string
}

func (o *alertsOptions) register(fs *flag.FlagSet) {
	*o = alertsOptions{rate: 5000, duration: time.Minute, drain: 2 * time.Minute, logLevel: "warn"}
	fs.IntVar(&o.rate, "rate", o.rate, "events published per second")
	fs.DurationVar(&o.duration, "duration", o.duration, "publishing window")
	fs.StringVar(&o.rules, "rules", "", "rules file, a YAML list of rules (default: the bench's own)")
	fs.DurationVar(&o.drain, "drain-timeout", o.drain, "longest wait after the window for the alerts role to handle every event")
	fs.BoolVar(&o.json, "json", false, "print one JSON document instead of tables")
	fs.BoolVar(&o.quick, "quick", false, "a smoke run: 500 events/s for 5s")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "log level of the node under test")
	fs.StringVar(&o.profile, "profile", "", "write a CPU profile of the node over the window to this file")
	fs.StringVar(&o.postgres, "postgres", "", "case database on PostgreSQL at this URL (its tables are reused; use a scratch database), instead of SQLite")
}

func (o *alertsOptions) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["rate"] {
			o.rate = 500
		}
		if !set["duration"] {
			o.duration = 5 * time.Second
		}
	}
	switch {
	case o.rate < 1 || o.rate > 1_000_000:
		return errors.New("--rate: must be 1 to 1000000")
	case o.duration < time.Second || o.duration > time.Hour:
		return errors.New("--duration: must be 1s to 1h")
	case o.drain < time.Second:
		return errors.New("--drain-timeout: must be at least 1s")
	}
	for _, f := range []struct {
		name string
		path *string
	}{{"rules", &o.rules}, {"profile", &o.profile}} {
		if *f.path == "" {
			continue
		}
		abs, err := filepath.Abs(*f.path)
		if err != nil {
			return fmt.Errorf("--%s: %w", f.name, err)
		}
		*f.path = abs
	}
	if _, err := alertsConfig(o.rules); err != nil {
		return err
	}
	_, err := newLogger(io.Discard, o.logLevel)
	return err
}

// runAlertsBench is `sharpeye bench alerts [flags]`.
func runAlertsBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stdout, alertsUsage)
		return nil
	}
	fs := newFlagSet("alerts", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, alertsUsage) }
	var o alertsOptions
	o.register(fs)
	if err := o.parse(fs, args); err != nil {
		return err
	}
	log, _ := newLogger(stderr, o.logLevel)
	rep := &AlertsReport{Machine: describeMachine()}
	var err error
	rep.Alerts, err = runAlerts(ctx, &o, stderr, log)
	if err != nil {
		rep.Errors = append(rep.Errors, "alerts: "+err.Error())
		err = fmt.Errorf("alerts: %w", err)
	}
	rep.Machine.LoadEnd = loadAverage()
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(rep); werr != nil {
			return werr
		}
	} else {
		writeAlertsReport(stdout, rep)
	}
	return err
}

// runAlerts starts the node, watches its case stream while it publishes,
// and times each case opened.
func runAlerts(ctx context.Context, o *alertsOptions, progress io.Writer, log *slog.Logger) (*AlertsResult, error) {
	args := []string{"alerts-node", "--rate", fmt.Sprint(o.rate), "--duration", o.duration.String(),
		"--drain-timeout", o.drain.String(), "--log-level", o.logLevel}
	if o.rules != "" {
		args = append(args, "--rules", o.rules)
	}
	if o.profile != "" {
		args = append(args, "--profile", o.profile)
	}
	if o.postgres != "" {
		args = append(args, "--postgres", o.postgres)
	}
	node, err := startChild(ctx, progress, args...)
	if err != nil {
		return nil, err
	}
	defer node.close()
	var info alertsNodeInfo
	if err := node.recv(ctx, &info, time.Minute); err != nil {
		return nil, err
	}
	res := &AlertsResult{Rules: info.Rules, RulesSrc: cmp.Or(o.rules, "built in"), Rate: o.rate}
	res.Targets = []TargetCheck{{What: "event on the bus to case visible through the API: p99 under 1 s at 5,000 events/s"}}

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w := &caseWatcher{base: info.URL, token: info.Token, client: &http.Client{}}
	connected := make(chan error, 1)
	watched := make(chan error, 1)
	go func() { watched <- w.watch(wctx, connected) }()
	select {
	case err := <-connected:
		if err != nil {
			return nil, err
		}
	case <-time.After(30 * time.Second):
		return nil, errors.New("case stream: not connected within 30s")
	}

	fmt.Fprintf(progress, "bench alerts: publishing %d events/s for %v onto the node's bus\n", o.rate, o.duration)
	if err := node.send("start"); err != nil {
		return res, err
	}
	var win alertsNodeWindow
	if err := node.recv(ctx, &win, o.duration+time.Minute); err != nil {
		return res, err
	}
	res.Window, res.Published, res.Node, res.ConsumedInWindow = win.Seconds, win.Published, win.Process, win.Consumed
	if win.Seconds > 0 {
		res.Achieved = float64(win.Published) / win.Seconds
		res.PublishWait = win.PublishWait / win.Seconds
	}
	var dr alertsNodeDrained
	if err := node.recv(ctx, &dr, o.drain+time.Minute); err != nil {
		return res, err
	}
	res.Drained, res.DrainSeconds, res.Outcomes = dr.Drained, dr.After, dr.Outcomes
	// A node that fell behind still has its figures for what it did
	// handle: they are printed with the failure.
	var failure error
	if !dr.Drained {
		failure = fmt.Errorf("%w: %d of %d events after %v", errNotDrained, dr.Consumed, win.Published, o.drain)
	} else {
		// Every case opened is on the stream a moment after its commit.
		opened := int(dr.Outcomes[string(cases.Opened)])
		if err := waitUntil(ctx, 30*time.Second, 10*time.Millisecond, func() bool { return w.count() >= opened }); err != nil {
			failure = fmt.Errorf("case stream: %d of %d cases opened seen: %w", w.count(), opened, err)
		}
	}
	stopWatch()
	if err := <-watched; err != nil {
		return res, err
	}

	seen := w.opened()
	res.Opened = len(seen)
	fmt.Fprintf(progress, "bench alerts: reading the evidence of %d cases\n", len(seen))
	lat, err := w.latencies(ctx, seen)
	if err != nil {
		return res, err
	}
	res.Matched = len(lat)
	if len(lat) == 0 {
		return res, cmp.Or(failure, errors.New("no case was opened: no latency to report"))
	}
	slices.Sort(lat)
	res.P50, res.P95, res.P99, res.Max = ms(percentile(lat, 0.5)), ms(percentile(lat, 0.95)), ms(percentile(lat, 0.99)), ms(lat[len(lat)-1])
	if o.rate >= 5000 && o.duration >= 30*time.Second {
		res.Targets[0].check(res.P99 < 1000 && res.Achieved >= 0.98*float64(o.rate), "p99 %.0f ms at %.0f events/s", res.P99, res.Achieved)
	} else {
		res.Targets[0].Measured = fmt.Sprintf("not measured (needs --rate 5000 --duration 30s or more); p99 %.0f ms at %.0f events/s", res.P99, res.Achieved)
	}
	if failure != nil {
		res.Targets[0].check(false, "%v", failure)
	}
	log.Debug("alerts bench done", "opened", res.Opened, "matched", res.Matched)
	return res, failure
}

// caseWatcher follows the node's live case stream as a console does.
type caseWatcher struct {
	base, token string
	client      *http.Client

	mu   sync.Mutex
	seen map[string]time.Time // case id → when its registration arrived
}

func (w *caseWatcher) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+w.token)
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return resp, nil
}

// watch reads the stream until ctx ends, noting when each case's
// registration arrives; connected is told once the stream is open.
func (w *caseWatcher) watch(ctx context.Context, connected chan<- error) error {
	w.mu.Lock()
	w.seen = map[string]time.Time{}
	w.mu.Unlock()
	resp, err := w.get(ctx, "/api/v1/cases/stream")
	if err != nil {
		connected <- fmt.Errorf("case stream: %w", err)
		return nil
	}
	defer resp.Body.Close()
	connected <- nil
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var typ string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			typ = ""
		case strings.HasPrefix(line, "event: "):
			typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && typ == "case":
			at := time.Now()
			var u cases.Update
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &u); err != nil {
				return fmt.Errorf("case stream: unreadable update %.200q: %w", line, err)
			}
			if u.Action != "registered" {
				continue
			}
			w.mu.Lock()
			if _, ok := w.seen[u.ID]; !ok {
				w.seen[u.ID] = at
			}
			w.mu.Unlock()
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	// The hub cuts off a client that falls behind: cases would be missed.
	return fmt.Errorf("case stream ended before the bench did (too slow a reader?): %v", sc.Err())
}

func (w *caseWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

func (w *caseWatcher) opened() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.seen)
}

// latencies reads each case (GET /api/v1/cases/{id}) and returns, for
// those whose evidence holds events, the time from the latest of them
// (the event that completed the firing, timed when it was published) to
// the case's arrival on the stream. Four requests at a time, after the
// window: they do not load the node while it is measured.
func (w *caseWatcher) latencies(ctx context.Context, seen map[string]time.Time) ([]time.Duration, error) {
	ids := make(chan string)
	var (
		mu   sync.Mutex
		out  []time.Duration
		errs []error
		wg   sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for id := range ids {
				last, err := w.lastEvent(ctx, id)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case !last.IsZero():
					out = append(out, seen[id].Sub(last))
				}
				mu.Unlock()
			}
		})
	}
	for id := range seen {
		select {
		case ids <- id:
		case <-ctx.Done():
		}
	}
	close(ids)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%d cases unreadable, the first: %w", len(errs), errs[0])
	}
	return out, nil
}

// lastEvent returns the time of the newest event in a case's evidence.
func (w *caseWatcher) lastEvent(ctx context.Context, id string) (time.Time, error) {
	resp, err := w.get(ctx, "/api/v1/cases/"+id)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	var d struct {
		Evidence []cases.Evidence `json:"evidence"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return time.Time{}, fmt.Errorf("case %s: %w", id, err)
	}
	var last time.Time
	for _, e := range d.Evidence {
		if e.Kind == "event" && e.EventID != "" && e.Captured.After(last) {
			last = e.Captured
		}
	}
	return last, nil
}

func writeAlertsReport(w io.Writer, r *AlertsReport) {
	writeText(w, &Report{Machine: r.Machine})
	if a := r.Alerts; a != nil {
		fmt.Fprintf(w, "\nAlerts: event published on the bus to the case it opens on the live case stream (authenticated API)\n")
		fmt.Fprintf(w, "(%d rules, %s; node with the alerts and console roles, embedded bus, SQLite case database; %.0fs window)\n\n", a.Rules, a.RulesSrc, a.Window)
		tw := table(w)
		fmt.Fprintln(tw, "target rate\tachieved\tin Publish\tcases opened\ttimed\tp50\tp95\tp99\tmax\tnode cores\tRSS\tRSS peak\tdrained after\t")
		fmt.Fprintf(tw, "%d/s\t%.0f/s\t%.0f%%\t%d\t%d\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f ms\t%.2f\t%s\t%s\t%.1f s\t\n",
			a.Rate, a.Achieved, 100*a.PublishWait, a.Opened, a.Matched, a.P50, a.P95, a.P99, a.Max,
			a.Node.Cores, mib(a.Node.RSS), mib(a.Node.RSSPeak), a.DrainSeconds)
		tw.Flush()
		keys := make([]string, 0, len(a.Outcomes))
		for k := range a.Outcomes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, a.Outcomes[k]))
		}
		fmt.Fprintf(w, "  %d events published; firings taken by the case workflow: %s\n", a.Published, strings.Join(parts, ", "))
		writeTargets(w, a.Targets)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nFAILED: %s\n", e)
	}
}

package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"sharpeye/alerts/analytics"
)

// QueryResult is `bench analytics query`: each analytics question asked
// over a filled store.
type QueryResult struct {
	Driver string `json:"driver"`
	Store  string `json:"store"`
	// From and To are the days the store's events cover; the questions
	// ask about the last of them.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Rows in the store's tables.
	Events     int64 `json:"events"`
	CaseEvents int64 `json:"case_events"`
	Health     int64 `json:"camera_health"`
	// Runs is how many times each question was timed, after one warm-up.
	Runs      int           `json:"runs"`
	Questions []QueryTiming `json:"questions"`
}

// QueryTiming is one question's latency.
type QueryTiming struct {
	Name     string  `json:"name"`
	Question string  `json:"question"`
	Median   float64 `json:"median_ms"`
	P90      float64 `json:"p90_ms"`
	Min      float64 `json:"min_ms"`
	Max      float64 `json:"max_ms"`
	// Rows is the size of the answer (rows of every section for a
	// report).
	Rows  int    `json:"rows"`
	Error string `json:"error,omitempty"`
}

// question is one analytics question of the bench.
type question struct {
	name, what string
	ask        func(ctx context.Context) (rows int, err error)
}

// questions lists what the bench asks: the analysts' questions
// (DOMAIN.md) over the last day, week, month and quarter of the data
// ending at end, with whole days in the store's zone.
func questions(q *analytics.Questions, end time.Time, township string, healthFrom time.Time) []question {
	loc := q.Location()
	y, m, d := end.In(loc).Date()
	to := time.Date(y, m, d, 0, 0, 0, 0, loc).AddDate(0, 0, 1)
	days := func(n int) analytics.Range { return analytics.Range{From: to.AddDate(0, 0, -n), To: to} }
	health := analytics.Range{From: healthFrom, To: to}
	series := func(p analytics.SeriesParams) func(context.Context) (int, error) {
		return func(ctx context.Context) (int, error) {
			t, err := q.Series(ctx, p, "")
			return len(t.Rows), err
		}
	}
	table := func(f func(context.Context) (analytics.Table, error)) func(context.Context) (int, error) {
		return func(ctx context.Context) (int, error) {
			t, err := f(ctx)
			return len(t.Rows), err
		}
	}
	report := func(kind string) func(context.Context) (int, error) {
		return func(ctx context.Context) (int, error) {
			r, err := q.Report(ctx, kind, to.AddDate(0, 0, -1), "")
			n := 0
			for _, s := range r.Sections {
				n += len(s.Rows)
			}
			return n, err
		}
	}
	return []question{
		{"events-by-type-daily", "events per day by type, 90 days (rollup)",
			series(analytics.SeriesParams{Subject: analytics.Events, Bucket: analytics.Day, Range: days(90), By: "type"})},
		{"events-by-type-daily-raw", "the same from the raw events table",
			series(analytics.SeriesParams{Subject: analytics.Events, Bucket: analytics.Day, Range: days(90), By: "type", Path: analytics.PathRaw})},
		{"events-by-township-hourly", "events per hour by township, 7 days",
			series(analytics.SeriesParams{Subject: analytics.Events, Bucket: analytics.Hour, Range: days(7), By: "region", RegionDepth: 2})},
		{"offline-by-camera", "camera.offline per day, top 20 cameras, 30 days",
			series(analytics.SeriesParams{Subject: analytics.Events, Bucket: analytics.Day, Range: days(30), By: "camera",
				Filters: map[string][]string{"type": {"camera.offline"}}, Limit: 20})},
		{"events-by-grid-township", "one township's events per day by grid, top 20, 30 days (raw)",
			series(analytics.SeriesParams{Subject: analytics.Events, Bucket: analytics.Day, Range: days(30), By: "grid",
				Filters: map[string][]string{"region": {township}}, Limit: 20})},
		{"cases-by-category-weekly", "cases opened per week by category, 90 days",
			series(analytics.SeriesParams{Subject: analytics.Cases, Bucket: analytics.Week, Range: days(90), By: "category"})},
		{"cases-by-state-daily", "cases opened per day by their state now, 30 days",
			series(analytics.SeriesParams{Subject: analytics.Cases, Bucket: analytics.Day, Range: days(30), By: "state"})},
		{"cases-by-colour-monthly", "cases opened per month by risk colour, 90 days",
			series(analytics.SeriesParams{Subject: analytics.Cases, Bucket: analytics.Month, Range: days(90), By: "colour"})},
		{"performance-by-department", "on-time rate, times to dispatch/accept/resolve, urges, satisfaction by department, 30 days",
			table(func(ctx context.Context) (analytics.Table, error) {
				return q.Performance(ctx, analytics.PerformanceParams{Range: days(30), By: "department"}, "")
			})},
		{"performance-by-category", "the same by category, 90 days",
			table(func(ctx context.Context) (analytics.Table, error) {
				return q.Performance(ctx, analytics.PerformanceParams{Range: days(90), By: "category"}, "")
			})},
		{"rules", "alerts, cases and false alerts per rule, 90 days",
			table(func(ctx context.Context) (analytics.Table, error) {
				return q.Rules(ctx, analytics.RulesParams{Range: days(90)}, "")
			})},
		{"cameras-by-township", "online and intact rate by township, camera health days",
			table(func(ctx context.Context) (analytics.Table, error) {
				return q.Cameras(ctx, analytics.CamerasParams{Range: health, By: "region", RegionDepth: 2}, "")
			})},
		{"cameras-by-vendor", "online and intact rate by vendor, camera health days",
			table(func(ctx context.Context) (analytics.Table, error) {
				return q.Cameras(ctx, analytics.CamerasParams{Range: health, By: "vendor"}, "")
			})},
		{"worst-cameras", "the 10 cameras with the lowest online rate, camera health days",
			table(func(ctx context.Context) (analytics.Table, error) {
				return q.WorstCameras(ctx, analytics.WorstParams{Range: health, Limit: 10}, "")
			})},
		{"devices", "devices silent or flapping, 30 days",
			table(func(ctx context.Context) (analytics.Table, error) {
				return q.Devices(ctx, analytics.DevicesParams{Range: days(30)}, "")
			})},
		{"hotspots-events", "grids whose events rose most, last week against the one before",
			table(func(ctx context.Context) (analytics.Table, error) {
				return q.Hotspots(ctx, analytics.HotspotsParams{Subject: analytics.Events, To: to}, "")
			})},
		{"hotspots-cases", "grids whose cases rose most, last week against the one before",
			table(func(ctx context.Context) (analytics.Table, error) {
				return q.Hotspots(ctx, analytics.HotspotsParams{Subject: analytics.Cases, To: to}, "")
			})},
		{"report-daily", "the daily summary (日汇总) of the last day", report(analytics.Daily)},
		{"report-weekly", "the weekly summary (周研判) of the last week", report(analytics.Weekly)},
		{"report-monthly", "the monthly summary (月通报) of the last month", report(analytics.Monthly)},
	}
}

func runQueryBench(ctx context.Context, o *analyticsOptions, progress io.Writer, log *slog.Logger) (*QueryResult, error) {
	cfg, err := o.storeConfig(o.driver)
	if err != nil {
		return nil, err
	}
	res := &QueryResult{Driver: cfg.Driver, Store: where(cfg), Runs: o.runs}
	store, err := openStore(ctx, cfg, log)
	if err != nil {
		return res, err
	}
	defer store.Close()
	for _, t := range []struct {
		name string
		n    *int64
	}{{"events", &res.Events}, {"case_events", &res.CaseEvents}, {"camera_health", &res.Health}} {
		if *t.n, err = count(ctx, store, t.name); err != nil {
			return res, err
		}
	}
	if res.Events == 0 {
		return res, fmt.Errorf("%s holds no events: fill it first (sharpeye bench analytics generate)", where(cfg))
	}
	first, last, err := span(ctx, store.DB(), "events", "time")
	if err != nil {
		return res, err
	}
	res.From, res.To = first, last
	healthFrom := last.AddDate(0, 0, -1)
	if res.Health > 0 {
		if healthFrom, _, err = span(ctx, store.DB(), "camera_health", "minute"); err != nil {
			return res, err
		}
	}
	var township string
	if err := store.DB().QueryRowContext(ctx, "SELECT region FROM events WHERE region != '' LIMIT 1").Scan(&township); err != nil {
		return res, err
	}
	if parts := strings.Split(township, "/"); len(parts) > 2 {
		township = strings.Join(parts[:2], "/")
	}
	q := analytics.NewQuestions(cfg, store, nil)
	loc := q.Location()
	y, m, d := healthFrom.In(loc).Date()
	healthFrom = time.Date(y, m, d, 0, 0, 0, 0, loc)
	fmt.Fprintf(progress, "bench analytics query: %d events, %d case events, %d health rows in %s; %d runs per question\n",
		res.Events, res.CaseEvents, res.Health, where(cfg), o.runs)
	for _, qq := range questions(q, last, township, healthFrom) {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		qt := QueryTiming{Name: qq.name, Question: qq.what}
		var times []time.Duration
		for i := range o.runs + 1 {
			start := time.Now()
			n, err := qq.ask(ctx)
			took := time.Since(start)
			if err != nil {
				qt.Error = err.Error()
				break
			}
			qt.Rows = n
			if i > 0 { // the first run warms the caches
				times = append(times, took)
			}
		}
		if len(times) > 0 {
			slices.Sort(times)
			qt.Median, qt.P90 = ms(percentile(times, 0.5)), ms(percentile(times, 0.9))
			qt.Min, qt.Max = ms(times[0]), ms(times[len(times)-1])
		}
		if qt.Error != "" {
			fmt.Fprintf(progress, "  %-28s failed: %s\n", qq.name, qt.Error)
		} else {
			fmt.Fprintf(progress, "  %-28s median %8.1f ms, p90 %8.1f ms, %d rows\n", qq.name, qt.Median, qt.P90, qt.Rows)
		}
		res.Questions = append(res.Questions, qt)
	}
	var failed []string
	for _, qt := range res.Questions {
		if qt.Error != "" {
			failed = append(failed, qt.Name)
		}
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("%d questions failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return res, nil
}

// span is the first and last time of a table's time column.
func span(ctx context.Context, db *sql.DB, table, col string) (time.Time, time.Time, error) {
	var lo, hi any
	if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT min(%s), max(%s) FROM %s", col, col, table)).Scan(&lo, &hi); err != nil {
		return time.Time{}, time.Time{}, err
	}
	conv := func(v any) (time.Time, error) {
		switch t := v.(type) {
		case time.Time:
			return t, nil
		case int64:
			return time.Unix(t, 0), nil
		}
		return time.Time{}, errors.New("unexpected time value")
	}
	a, err := conv(lo)
	if err != nil {
		return a, a, fmt.Errorf("%s.%s: %T %w", table, col, lo, err)
	}
	b, err := conv(hi)
	if err != nil {
		return a, b, fmt.Errorf("%s.%s: %T %w", table, col, hi, err)
	}
	return a, b, nil
}

func writeQuery(w io.Writer, r *QueryResult) {
	fmt.Fprintf(w, "\nAnalytics questions over %s (%s): %d events, %d case events, %d camera health rows, %s to %s\n",
		r.Driver, r.Store, r.Events, r.CaseEvents, r.Health, r.From.Format("2006-01-02"), r.To.Format("2006-01-02"))
	fmt.Fprintf(w, "(each question asked %d times after a warm-up; latency of the whole answer)\n\n", r.Runs)
	tw := table(w)
	fmt.Fprintln(tw, "question\tmedian\tp90\tmin\tmax\trows\t")
	for _, q := range r.Questions {
		if q.Error != "" {
			fmt.Fprintf(tw, "%s\tfailed\t\t\t\t\t\n", q.Name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%d\t\n", q.Name, q.Median, q.P90, q.Min, q.Max, q.Rows)
	}
	tw.Flush()
	for _, q := range r.Questions {
		fmt.Fprintf(w, "  %s: %s", q.Name, q.Question)
		if q.Error != "" {
			fmt.Fprintf(w, ": FAILED: %s", q.Error)
		}
		fmt.Fprintln(w)
	}
}

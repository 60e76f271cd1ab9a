package analytics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/console/auth"
)

// Table is every answer: named columns and rows of JSON-friendly values
// (int64, float64, string, bool, nil, and time.Time in the configured zone,
// which JSON writes as RFC 3339).
type Table struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	// Truncated is set when rows were cut at query.max_rows.
	Truncated bool `json:"truncated,omitempty"`
}

// Errors the questions return; the API turns them into answers.
var (
	// ErrForbidden: a region asked for lies outside the caller's scope.
	ErrForbidden = errors.New("analytics: the region asked for is outside your region")
	// ErrNoSQL: raw SQL runs on ClickHouse's read-only user only.
	ErrNoSQL = errors.New("analytics: raw SQL needs the ClickHouse store with a read-only user (clickhouse.sql_username)")
	// ErrScopedSQL: raw SQL cannot be limited to a region.
	ErrScopedSQL = errors.New("analytics: raw SQL reads every region, so it is not open to users limited to a region")
)

// ParamError is a parameter the question cannot take.
type ParamError struct {
	Param string
	Msg   string
}

func (e *ParamError) Error() string { return e.Param + ": " + e.Msg }

func paramErr(param, format string, args ...any) error {
	return &ParamError{Param: param, Msg: fmt.Sprintf(format, args...)}
}

// Questions answers what analysts ask (DOMAIN.md) from either store, with
// the same numbers on both: each question's SQL is shared, and the few
// places where ClickHouse and SQLite differ are in dialect.
type Questions struct {
	cfg   Config
	store Store
	d     dialect
	loc   *time.Location
	m     *queryMetrics
	now   func() time.Time
}

// NewQuestions answers from store; reg (may be nil) gets the query metrics.
func NewQuestions(cfg Config, store Store, reg prometheus.Registerer) *Questions {
	loc := cfg.Location()
	return &Questions{
		cfg: cfg, store: store, loc: loc, now: time.Now,
		d: dialect{ch: store.Driver() == ClickHouse, tz: cfg.Timezone},
		m: newQueryMetrics(reg),
	}
}

// Location is the zone days, weeks and months begin in.
func (q *Questions) Location() *time.Location { return q.loc }

// Question names, the label of the query metrics.
const (
	qSeries      = "series"
	qPerformance = "performance"
	qReport      = "report"
	qCameras     = "cameras"
	qWorst       = "worst_cameras"
	qDevices     = "devices"
	qHotspots    = "hotspots"
	qRules       = "rules"
	qSQL         = "sql"
)

type queryMetrics struct {
	seconds *prometheus.HistogramVec
	errors  *prometheus.CounterVec
}

func newQueryMetrics(reg prometheus.Registerer) *queryMetrics {
	m := &queryMetrics{
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sharpeye_analytics_query_seconds", Help: "Time to answer one analytics question, by question.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2.5, 12),
		}, []string{"question"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_analytics_query_errors_total", Help: "Analytics questions that failed (bad parameters excepted), by question.",
		}, []string{"question"}),
	}
	if reg != nil {
		reg.MustRegister(m.seconds, m.errors)
	}
	return m
}

// observe records one answer; call as defer q.observe(name, time.Now(), &err).
func (q *Questions) observe(question string, start time.Time, err *error) {
	q.m.seconds.WithLabelValues(question).Observe(time.Since(start).Seconds())
	if *err != nil && !callerError(*err) {
		q.m.errors.WithLabelValues(question).Inc()
	}
}

// callerError reports whether err is the caller's doing (a bad
// parameter, a region or statement not allowed, a query the server
// could not run) rather than a failure to answer.
func callerError(err error) bool {
	var (
		pe *ParamError
		se *SQLError
	)
	if errors.As(err, &se) {
		return se.Code != chTimeout && se.Code != chMemoryLimit
	}
	return errors.As(err, &pe) || errors.Is(err, ErrForbidden) || errors.Is(err, ErrScopedSQL) ||
		errors.Is(err, ErrNoSQL) || errors.Is(err, ErrReadOnly)
}

// narrow returns the scope a question runs in: the caller's scope, or the
// region asked for when it lies inside it.
func narrow(scope, region string) (string, error) {
	if region == "" {
		return scope, nil
	}
	if err := auth.CheckRegion(region); err != nil {
		return "", paramErr("region", "%v", err)
	}
	if !auth.InRegion(region, scope) {
		return "", ErrForbidden
	}
	return region, nil
}

// Range is the half-open period [From, To) a question covers.
type Range struct {
	From, To time.Time
}

// check bounds a range: To after From, at most max long.
func (r Range) check(max time.Duration) error {
	if r.From.IsZero() {
		return paramErr("from", "is required")
	}
	if r.To.IsZero() {
		return paramErr("to", "is required")
	}
	if !r.To.After(r.From) {
		return paramErr("to", "must be after from")
	}
	if r.To.Sub(r.From) > max {
		return paramErr("from", "the range is %s long; at most %s", r.To.Sub(r.From).Round(time.Second), fmtDays(max))
	}
	if r.From.Year() < 1971 || r.To.Year() > 2105 {
		return paramErr("from", "out of range (1971 to 2105)")
	}
	return nil
}

func fmtDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

// whole truncates a range to whole seconds (the stores keep seconds).
func (r Range) whole() Range {
	return Range{r.From.Truncate(time.Second), r.To.Truncate(time.Second)}
}

// maxRange bounds the questions that take no bucket.
const maxRange = 400 * 24 * time.Hour

// sqlb builds one query: its text and positional arguments.
type sqlb struct {
	strings.Builder
	args []any
}

func (b *sqlb) f(format string, args ...any) *sqlb {
	fmt.Fprintf(&b.Builder, format, args...)
	return b
}

// conds is an AND list of conditions with their arguments.
type conds struct {
	parts []string
	args  []any
}

func (c *conds) add(cond string, args ...any) {
	c.parts = append(c.parts, cond)
	c.args = append(c.args, args...)
}

// in adds col IN (values).
func (c *conds) in(col string, values []string) {
	if len(values) == 0 {
		return
	}
	c.add(col+" IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(values)), ", ")+")", toAny(values)...)
}

// subtree adds: col is one of the regions or below one of them.
func (c *conds) subtree(d dialect, col string, regions ...string) {
	var ors []string
	var args []any
	for _, r := range regions {
		if r == "" {
			return // the root: everything
		}
		if d.ch {
			ors = append(ors, "("+col+" = ? OR "+d.hasPrefix(col)+")")
			args = append(args, r, r+"/")
			continue
		}
		// SQLite compares text byte by byte: the paths under r are those
		// between r+"/" and r+"0" ('0' follows '/'), which an index can use.
		ors = append(ors, "("+col+" = ? OR ("+col+" > ? AND "+col+" < ?))")
		args = append(args, r, r+"/", r+"0")
	}
	if len(ors) > 0 {
		c.add("("+strings.Join(ors, " OR ")+")", args...)
	}
}

// where is " WHERE a AND b", or "" for none.
func (c *conds) where() string {
	if len(c.parts) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(c.parts, " AND ")
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// rows runs one query under the limits and returns its rows with every
// value normalised (integers as int64, floats as float64, text as string),
// and whether they were cut at query.max_rows.
func (q *Questions) rows(ctx context.Context, query string, args ...any) ([][]any, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, q.cfg.Query.Timeout.D())
	defer cancel()
	if q.d.ch {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
			"max_execution_time": int(math.Ceil(q.cfg.Query.Timeout.D().Seconds())),
			"max_memory_usage":   int(q.cfg.Query.MaxMemory),
		}))
	}
	res, err := q.store.DB().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, false, fmt.Errorf("analytics query: %w", err)
	}
	defer res.Close()
	cols, err := res.Columns()
	if err != nil {
		return nil, false, err
	}
	var out [][]any
	truncated := false
	for res.Next() {
		if len(out) == q.cfg.Query.MaxRows {
			truncated = true
			break
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := res.Scan(ptrs...); err != nil {
			return nil, false, fmt.Errorf("analytics query: %w", err)
		}
		for i, v := range vals {
			vals[i] = norm(v)
		}
		out = append(out, vals)
	}
	if err := res.Err(); err != nil {
		return nil, false, fmt.Errorf("analytics query: %w", err)
	}
	return out, truncated, nil
}

// norm maps a driver's value to the few types answers hold.
func norm(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint:
		return int64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return x
	case float32:
		return float64(x)
	case []byte:
		return string(x)
	}
	return v
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	case uint64:
		return int64(x)
	}
	return 0
}

func asFloat(v any) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case float64:
		return x
	case uint64:
		return float64(x)
	}
	return 0
}

func asString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// intOrNil is v as int64, or nil for SQL NULL.
func intOrNil(v any) any {
	if v == nil {
		return nil
	}
	return asInt(v)
}

// ratio is a/b, or nil when b is 0.
func ratio(a, b float64) any {
	if b == 0 {
		return nil
	}
	return a / b
}

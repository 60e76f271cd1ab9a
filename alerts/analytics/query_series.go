package analytics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"sharpeye/console/auth"
)

// Bucket is the width of a series' steps.
type Bucket string

// Buckets: minutes and hours are whole Unix minutes and hours; days, weeks
// (from Monday) and months begin in the configured zone.
const (
	Minute Bucket = "minute"
	Hour   Bucket = "hour"
	Day    Bucket = "day"
	Week   Bucket = "week"
	Month  Bucket = "month"
)

// Buckets lists the bucket widths, finest first.
var Buckets = []Bucket{Minute, Hour, Day, Week, Month}

// MaxSpan is the longest range a series of b may cover.
func (b Bucket) MaxSpan() time.Duration {
	switch b {
	case Minute:
		return 2 * 24 * time.Hour
	case Hour:
		return 90 * 24 * time.Hour
	case Day:
		return 400 * 24 * time.Hour
	case Week:
		return 800 * 24 * time.Hour
	}
	return 3700 * 24 * time.Hour
}

// Subjects a series or hot spot counts.
const (
	Events = "events"
	Cases  = "cases"
)

// Paths a series may be answered by.
const (
	PathAuto   = ""       // the rollups when they answer exactly, else the raw tables
	PathRollup = "rollup" // the hourly rollups (an error when they cannot answer)
	PathRaw    = "raw"    // the raw tables
)

// dim is a dimension a series may split or filter by.
type dim struct {
	name string
	// col is the column in the raw table and the rollups; view the column
	// of caseView.
	col, view string
	// latest: a case's latest row decides (its state and department
	// change); else the row it was opened with.
	latest bool
}

var eventDims = []dim{
	{name: "type", col: "type"},
	{name: "severity", col: "severity"},
	{name: "source", col: "source_kind"},
	{name: "source_id", col: "source_id"},
	{name: "camera", col: "camera"},
	{name: "region", col: "region"},
	{name: "grid", col: "grid"},
}

var caseDims = []dim{
	{name: "category", col: "category", view: "c_category"},
	{name: "colour", col: "colour", view: "c_colour", latest: true},
	{name: "region", col: "region", view: "c_region"},
	{name: "source", col: "source", view: "c_source"},
	{name: "department", col: "department", view: "c_department", latest: true},
	{name: "rule", col: "rule", view: "c_rule"},
	{name: "grid", col: "grid", view: "c_grid"},
	{name: "state", col: "state", view: "c_state", latest: true},
}

// rollup is an hourly rollup table and the dimensions it keeps.
type rollup struct {
	table, count string
	dims         []string
	// needs lists dimensions that must be used for the rollup to hold
	// every row counted (camera_events_hourly holds camera events only).
	needs []string
}

var eventRollups = []rollup{
	{table: "events_hourly", count: "sum(n)", dims: []string{"type", "region", "source", "severity"}},
	{table: "camera_events_hourly", count: "sum(n)", dims: []string{"camera", "type", "region"}, needs: []string{"camera"}},
}

var caseRollups = []rollup{
	{table: "cases_hourly", count: "sum(opened)", dims: []string{"category", "region", "source"}},
}

// Dims lists the dimensions of a subject (events or cases).
func Dims(subject string) []string {
	var out []string
	for _, d := range dimsOf(subject) {
		out = append(out, d.name)
	}
	return out
}

func dimsOf(subject string) []dim {
	if subject == Cases {
		return caseDims
	}
	return eventDims
}

func findDim(subject, name string) (dim, bool) {
	for _, d := range dimsOf(subject) {
		if d.name == name {
			return d, true
		}
	}
	return dim{}, false
}

// SeriesParams is a series question: counts of events or cases per
// bucket in [From, To), split by at most one dimension, filtered by any.
type SeriesParams struct {
	// Subject is Events or Cases. Cases are counted when they were opened
	// (their seq = 1 row), with the dimensions they were opened with,
	// except state, colour and department, which are the case's latest.
	Subject string
	Bucket  Bucket
	Range
	// By splits the counts by one dimension ("" for none).
	By string
	// RegionDepth cuts the region split to that many segments (0: whole
	// paths); only with By "region".
	RegionDepth int
	// Filters keep rows whose dimension has one of the values; region
	// values are subtrees and must lie within the scope.
	Filters map[string][]string
	// Limit keeps the top keys by total; the rest are summed into key
	// "other" (0: every key).
	Limit int
	// Path forces the rollups or the raw tables (tests compare them).
	Path string
}

// OtherKey is the key a series' limited-out keys are summed into.
const OtherKey = "other"

// countQuery counts a subject's rows per bucket (optional) and per
// dimensions.
type countQuery struct {
	subject string
	bucket  Bucket // "" for the whole range
	by      []string
	depth   int // region depth of a "region" dimension in by
	filters map[string][]string
	rng     Range
	scope   string
	path    string
}

type countRow struct {
	bucket int64
	keys   []string
	n      int64
}

func (p *SeriesParams) check(scope string) error {
	if p.Subject != Events && p.Subject != Cases {
		return paramErr("subject", "must be events or cases, not %q", p.Subject)
	}
	if !slices.Contains(Buckets, p.Bucket) {
		return paramErr("bucket", "must be minute, hour, day, week or month, not %q", p.Bucket)
	}
	if err := p.Range.check(p.Bucket.MaxSpan()); err != nil {
		var pe *ParamError
		if errors.As(err, &pe) && strings.Contains(pe.Msg, "at most") {
			pe.Msg += " for " + string(p.Bucket) + " buckets"
		}
		return err
	}
	if p.By != "" {
		if _, ok := findDim(p.Subject, p.By); !ok {
			return paramErr("by", "%s cannot be split by %q (one of %s)", p.Subject, p.By, strings.Join(Dims(p.Subject), ", "))
		}
	}
	if p.RegionDepth != 0 {
		if p.By != "region" {
			return paramErr("region_depth", "only applies with by=region")
		}
		if p.RegionDepth < 1 || p.RegionDepth > auth.MaxRegionDepth {
			return paramErr("region_depth", "must be 1 to %d", auth.MaxRegionDepth)
		}
	}
	if p.Limit < 0 || p.Limit > 1000 {
		return paramErr("limit", "must be 1 to 1000")
	}
	if p.Limit > 0 && p.By == "" {
		return paramErr("limit", "only applies with by")
	}
	if err := checkFilters(p.Subject, p.Filters, scope); err != nil {
		return err
	}
	switch p.Path {
	case PathAuto, PathRollup, PathRaw:
	default:
		return paramErr("path", "must be rollup or raw, not %q", p.Path)
	}
	return nil
}

func checkFilters(subject string, filters map[string][]string, scope string) error {
	for name, vals := range filters {
		if _, ok := findDim(subject, name); !ok {
			return paramErr(name, "%s have no dimension %q (one of %s)", subject, name, strings.Join(Dims(subject), ", "))
		}
		for _, v := range vals {
			if v == "" {
				return paramErr(name, "must not be empty")
			}
			if name == "region" {
				if err := auth.CheckRegion(v); err != nil {
					return paramErr("region", "%v", err)
				}
				if !auth.InRegion(v, scope) {
					return ErrForbidden
				}
			}
		}
	}
	return nil
}

// Series answers a series question within scope: columns bucket, the
// split dimension (when By is set) and count; ordered by bucket then key
// (the "other" key last); empty buckets are left out.
func (q *Questions) Series(ctx context.Context, p SeriesParams, scope string) (t Table, err error) {
	defer q.observe(qSeries, time.Now(), &err)
	p.Range = p.Range.whole()
	if err := p.check(scope); err != nil {
		return Table{}, err
	}
	cq := countQuery{subject: p.Subject, bucket: p.Bucket, filters: p.Filters, rng: p.Range, scope: scope, path: p.Path, depth: p.RegionDepth}
	if p.By != "" {
		cq.by = []string{p.By}
	}
	rows, truncated, err := q.counts(ctx, cq)
	if err != nil {
		return Table{}, err
	}
	t.Truncated = truncated
	t.Columns = []string{"bucket"}
	if p.By != "" {
		t.Columns = append(t.Columns, p.By)
	}
	t.Columns = append(t.Columns, "count")
	if p.By != "" && p.Limit > 0 {
		rows = keepTop(rows, p.Limit)
	}
	t.Rows = [][]any{}
	for _, r := range rows {
		row := []any{bucketTime(p.Bucket, r.bucket, q.loc)}
		if p.By != "" {
			row = append(row, r.keys[0])
		}
		t.Rows = append(t.Rows, append(row, r.n))
	}
	return t, nil
}

// keepTop keeps the limit keys with the greatest totals (ties: by key)
// and sums the others per bucket into OtherKey.
func keepTop(rows []countRow, limit int) []countRow {
	totals := map[string]int64{}
	for _, r := range rows {
		totals[r.keys[0]] += r.n
	}
	if len(totals) <= limit {
		return rows
	}
	keys := make([]string, 0, len(totals))
	for k := range totals {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(totals[b], totals[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	keep := map[string]bool{}
	for _, k := range keys[:limit] {
		keep[k] = true
	}
	var out []countRow
	other := map[int64]int64{}
	var buckets []int64
	for _, r := range rows {
		if keep[r.keys[0]] {
			out = append(out, r)
			continue
		}
		if _, ok := other[r.bucket]; !ok {
			buckets = append(buckets, r.bucket)
		}
		other[r.bucket] += r.n
	}
	for _, b := range buckets {
		out = append(out, countRow{bucket: b, keys: []string{OtherKey}, n: other[b]})
	}
	slices.SortStableFunc(out, func(a, b countRow) int {
		if c := cmp.Compare(a.bucket, b.bucket); c != 0 {
			return c
		}
		ao, bo := a.keys[0] == OtherKey && !keep[OtherKey], b.keys[0] == OtherKey && !keep[OtherKey]
		if ao != bo {
			if ao {
				return 1
			}
			return -1
		}
		return strings.Compare(a.keys[0], b.keys[0])
	})
	return out
}

// onTheHour reports whether the hourly rollups answer rng exactly: its
// bounds are on the hour, and days in the zone begin on the hour.
func (q *Questions) onTheHour(rng Range) bool {
	if rng.From.Unix()%3600 != 0 || rng.To.Unix()%3600 != 0 {
		return false
	}
	for _, t := range []time.Time{rng.From, rng.To} {
		if _, off := t.In(q.loc).Zone(); off%3600 != 0 {
			return false
		}
	}
	return true
}

// rollupFor is the rollup that answers cq exactly, if any.
func (q *Questions) rollupFor(cq countQuery) (rollup, bool) {
	if cq.bucket == Minute {
		return rollup{}, false
	}
	if !q.onTheHour(cq.rng) {
		return rollup{}, false
	}
	used := slices.Clone(cq.by)
	for name := range cq.filters {
		used = append(used, name)
	}
	rollups := eventRollups
	if cq.subject == Cases {
		rollups = caseRollups
	}
next:
	for _, r := range rollups {
		for _, u := range used {
			if !slices.Contains(r.dims, u) {
				continue next
			}
		}
		for _, n := range r.needs {
			if !slices.Contains(used, n) {
				continue next
			}
		}
		return r, true
	}
	return rollup{}, false
}

// counts answers a countQuery from a rollup or the raw table.
func (q *Questions) counts(ctx context.Context, cq countQuery) ([]countRow, bool, error) {
	d := q.d
	r, useRollup := q.rollupFor(cq)
	switch cq.path {
	case PathRollup:
		if !useRollup {
			return nil, false, paramErr("path", "no rollup answers this exactly (bucket, bounds on the hour, dimensions)")
		}
	case PathRaw:
		useRollup = false
	}
	usesCamera := slices.Contains(cq.by, "camera") || len(cq.filters["camera"]) > 0
	latest := false
	for _, name := range cq.by {
		dm, _ := findDim(cq.subject, name)
		latest = latest || dm.latest
	}
	for name := range cq.filters {
		dm, _ := findDim(cq.subject, name)
		latest = latest || dm.latest
	}

	// Where the rows come from: the table, its time column, the count, and
	// whether dimensions are read from caseView.
	var (
		table, timeCol, count string
		view                  bool
		inner, outer          conds
	)
	switch {
	case useRollup:
		table, timeCol, count = r.table, "hour", r.count
	case cq.subject == Events:
		table, timeCol, count = "events", "time", "count()"
	case latest:
		timeCol, count, view = "c_opened", "count()", true
	default:
		table, _ = d.opened()
		timeCol, count = "time", "count()"
	}
	// inner: on the raw or rollup rows (for caseView and the raw cases, on
	// the opened table's rows choosing the cases); outer: on caseView's
	// latest columns.
	tcol := timeCol
	if view {
		tcol = "time"
	}
	if cq.subject == Cases && !useRollup {
		inner = d.openedConds()
	}
	inner.add(tcol + " >= " + d.ts(cq.rng.From))
	inner.add(tcol + " < " + d.ts(cq.rng.To))
	inner.subtree(d, "region", cq.scope)
	if usesCamera && cq.subject == Events {
		inner.add("camera != ''")
	}
	names := make([]string, 0, len(cq.filters))
	for name := range cq.filters {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		dm, _ := findDim(cq.subject, name)
		vals := cq.filters[name]
		target := &inner
		col := dm.col
		if view && dm.latest {
			target, col = &outer, dm.view
		}
		if name == "region" {
			target.subtree(d, col, vals...)
		} else {
			target.in(col, vals)
		}
	}

	var b sqlb
	b.f("SELECT ")
	if cq.bucket != "" {
		b.f("%s AS b_, ", d.bucket(cq.bucket, timeCol))
	} else {
		b.f("0 AS b_, ")
	}
	var group []string
	if cq.bucket != "" {
		group = append(group, "b_")
	}
	// The raw events are grouped by type_hash rather than type on
	// ClickHouse, and the hashes named afterwards (eventTypesDDL).
	byHash := -1
	for i, name := range cq.by {
		dm, _ := findDim(cq.subject, name)
		col := dm.col
		if view {
			col = dm.view
		}
		if name == "region" {
			col = d.region(col, cq.depth)
		}
		key := fmt.Sprintf("k%d_", i)
		if name == "type" && d.ch && cq.subject == Events && !useRollup {
			byHash, col, key = i, "type_hash", "h_"
		}
		b.f("%s AS %s, ", col, key)
		group = append(group, key)
	}
	b.f("%s AS cnt_ FROM ", count)
	if view {
		// The columns read: the opening time, the split, the latest
		// dimensions filtered on (the others are filtered in where).
		cols := []string{"c_opened"}
		for _, name := range append(slices.Clone(cq.by), names...) {
			dm, _ := findDim(cq.subject, name)
			if (dm.latest || slices.Contains(cq.by, name)) && !slices.Contains(cols, dm.view) {
				cols = append(cols, dm.view)
			}
		}
		v, args := d.caseView(inner, cols...)
		b.f("(%s)%s", v, outer.where())
		b.args = append(b.args, args...)
		b.args = append(b.args, outer.args...)
	} else {
		b.f("%s%s", table, inner.where())
		b.args = append(b.args, inner.args...)
	}
	if len(group) > 0 {
		// cases_hourly also holds hours where cases only closed.
		b.f(" GROUP BY %s HAVING cnt_ > 0", strings.Join(group, ", "))
	}
	if byHash >= 0 {
		cols := []string{"b_"}
		for i := range cq.by {
			if i == byHash {
				cols = append(cols, "n_ AS k"+strconv.Itoa(i)+"_")
			} else {
				cols = append(cols, "k"+strconv.Itoa(i)+"_")
			}
		}
		cols = append(cols, "cnt_")
		named := "SELECT " + strings.Join(cols, ", ") + " FROM (" + b.String() +
			") ANY LEFT JOIN (SELECT type_hash AS h_, any(type) AS n_ FROM event_types GROUP BY h_) USING h_"
		b.Reset()
		b.f("%s", named)
		group[slices.Index(group, "h_")] = "k" + strconv.Itoa(byHash) + "_"
	}
	if len(group) > 0 {
		b.f(" ORDER BY %s", strings.Join(group, ", "))
	}
	res, truncated, err := q.rows(ctx, b.String(), b.args...)
	if err != nil {
		return nil, false, err
	}
	out := make([]countRow, 0, len(res))
	for _, row := range res {
		cr := countRow{bucket: asInt(row[0]), n: asInt(row[len(row)-1])}
		if cr.n == 0 {
			continue
		}
		for i := range cq.by {
			cr.keys = append(cr.keys, asString(row[1+i]))
		}
		out = append(out, cr)
	}
	return out, truncated, nil
}

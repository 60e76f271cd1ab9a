package analytics

import (
	"cmp"
	"database/sql/driver"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
)

// dialect is every place where the questions' SQL differs between
// ClickHouse 18.16 and SQLite; everything else is shared.
//
//   - Times: DateTime columns on ClickHouse, Unix seconds on SQLite.
//   - Buckets: minutes and hours are Unix arithmetic on both (so hours
//     are the rollups' hours); days, weeks (from Monday) and months are in
//     the configured zone, as an integer key yyyymmdd: toYYYYMMDD,
//     toMonday and toYYYYMM on ClickHouse, sharpeye_bucket (Go, with the
//     zone database) on SQLite.
//   - Prefixes: startsWith on ClickHouse, sharpeye_starts_with on SQLite
//     (LIKE would be case-insensitive and need escaping).
//   - Region depth: splitByChar and arraySlice on ClickHouse,
//     sharpeye_region on SQLite.
//   - Quantiles are nearest-rank on both: the value at rank
//     ceil(p·n/100) of the sorted values, NULL when there are none:
//     quantilesExactIf at levels just under p/100 on ClickHouse (see
//     quantiles), sharpeye_quantile on SQLite.
//   - A case as opened and as it stands (caseView): the live row of
//     cases_flat on ClickHouse, the row of cases_current on SQLite.
//   - Arrays (camera faults): Array(String) on ClickHouse, JSON text on
//     SQLite.
//
// The SQLite functions are Go functions registered with the driver.
type dialect struct {
	ch bool
	tz string
}

// ts is a time literal comparable with a time column.
func (d dialect) ts(t time.Time) string {
	if d.ch {
		return fmt.Sprintf("toDateTime(%d)", t.Unix())
	}
	return fmt.Sprintf("%d", t.Unix())
}

// unix is a time column as Unix seconds.
func (d dialect) unix(col string) string {
	if d.ch {
		return "toUInt32(" + col + ")"
	}
	return col
}

// str is a string literal (only for values the code chooses, such as the
// zone name: everything from outside is an argument).
func (d dialect) str(s string) string {
	if d.ch {
		return quote(s)
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// bucket is the integer key of the bucket holding the time in col.
func (d dialect) bucket(b Bucket, col string) string {
	switch b {
	case Minute:
		if d.ch {
			return "intDiv(toUInt32(" + col + "), 60) * 60"
		}
		return "(" + col + " - " + col + " % 60)"
	case Hour:
		if d.ch {
			return "intDiv(toUInt32(" + col + "), 3600) * 3600"
		}
		return "(" + col + " - " + col + " % 3600)"
	}
	if !d.ch {
		return fmt.Sprintf("sharpeye_bucket(%s, %s, %s)", col, d.str(string(b)), d.str(d.tz))
	}
	tz := d.str(d.tz)
	switch b {
	case Week:
		return fmt.Sprintf("toYYYYMMDD(toMonday(%s, %s))", col, tz)
	case Month:
		return fmt.Sprintf("(toYYYYMM(%s, %s) * 100 + 1)", col, tz)
	}
	return fmt.Sprintf("toYYYYMMDD(%s, %s)", col, tz)
}

// bucketTime is the start of the bucket a key names.
func bucketTime(b Bucket, key int64, loc *time.Location) time.Time {
	switch b {
	case Minute, Hour:
		return time.Unix(key, 0).In(loc)
	}
	return time.Date(int(key/10000), time.Month(key/100%100), int(key%100), 0, 0, 0, 0, loc)
}

// bucketKey is sharpeye_bucket: what the ClickHouse expressions of bucket
// compute.
func bucketKey(t int64, b Bucket, loc *time.Location) int64 {
	switch b {
	case Minute:
		return t - mod(t, 60)
	case Hour:
		return t - mod(t, 3600)
	}
	lt := time.Unix(t, 0).In(loc)
	y, m, day := lt.Date()
	switch b {
	case Week:
		back := (int(lt.Weekday()) + 6) % 7
		y, m, day = time.Date(y, m, day-back, 12, 0, 0, 0, time.UTC).Date()
	case Month:
		day = 1
	}
	return int64(y)*10000 + int64(m)*100 + int64(day)
}

func mod(a, b int64) int64 {
	r := a % b
	if r < 0 {
		r += b
	}
	return r
}

// hasPrefix is: col starts with the next argument.
func (d dialect) hasPrefix(col string) string {
	if d.ch {
		return "startsWith(" + col + ", ?)"
	}
	return "sharpeye_starts_with(" + col + ", ?)"
}

// region is the region in col cut to depth segments (0: whole).
func (d dialect) region(col string, depth int) string {
	if depth <= 0 {
		return col
	}
	if d.ch {
		return fmt.Sprintf("arrayStringConcat(arraySlice(splitByChar('/', %s), 1, %d), '/')", col, depth)
	}
	return fmt.Sprintf("sharpeye_region(%s, %d)", col, depth)
}

// truncRegion is sharpeye_region.
func truncRegion(r string, depth int) string {
	i := 0
	for range depth {
		j := strings.IndexByte(r[i:], '/')
		if j < 0 {
			return r
		}
		i += j + 1
	}
	return r[:i-1]
}

// quantiles are the nearest-rank pct-th percentiles (1..100) of x over the
// rows where cond holds, NULL when there are none. On ClickHouse one
// quantilesExactIf collects the values for all of them: it takes the value
// at index floor(level·n) of the sorted values, which for level
// pct/100 - 1e-10 is the nearest rank's ceil(pct·n/100) - 1 (pct·n/100 is
// a whole number of hundredths, so the shift of n·1e-10 moves it below the
// next whole number and not below the one before, for n under 10^8).
func (d dialect) quantiles(x, cond string, pcts ...int) []string {
	out := make([]string, len(pcts))
	if d.ch {
		all := fmt.Sprintf("quantilesExactIf(%s)(%s, %s)", chLevels(pcts...), x, cond)
		for i := range pcts {
			out[i] = fmt.Sprintf("if(countIf(%s) = 0, NULL, arrayElement(%s, %d))", cond, all, i+1)
		}
		return out
	}
	for i, p := range pcts {
		out[i] = fmt.Sprintf("sharpeye_quantile(CASE WHEN %s THEN %s END, %d)", cond, x, p)
	}
	return out
}

// chLevels are the levels of quantilesExact that give the nearest-rank
// pct-th percentiles (see quantiles).
func chLevels(pcts ...int) string {
	levels := make([]string, len(pcts))
	for i, p := range pcts {
		levels[i] = strconv.FormatFloat(float64(p)/100-1e-10, 'f', 10, 64)
	}
	return strings.Join(levels, ", ")
}

// nearestRank is sharpeye_quantile on sorted values.
func nearestRank[T any](sorted []T, pct int) T {
	rank := (len(sorted)*pct + 99) / 100
	return sorted[max(rank, 1)-1]
}

// argMax is x on the row where key is greatest.
func (d dialect) argMax(x, key string) string {
	if d.ch {
		return "argMax(" + x + ", " + key + ")"
	}
	return "sharpeye_argmax(" + x + ", " + key + ")"
}

// msKey orders events by time to the millisecond.
func (d dialect) msKey() string {
	if d.ch {
		return "(toUInt64(toUInt32(time)) * 1000 + ms)"
	}
	return "(time * 1000 + ms)"
}

// noFaults is: the camera_health row lists no fault.
func (d dialect) noFaults() string {
	if d.ch {
		return "empty(faults)"
	}
	return "faults = '[]'"
}

// faultRows is a FROM clause giving camera_health one row per fault, and
// the fault's expression.
func (d dialect) faultRows() (from, fault string) {
	if d.ch {
		return "camera_health ARRAY JOIN faults AS fault_", "fault_"
	}
	return "camera_health, json_each(camera_health.faults) AS fault_", "fault_.value"
}

// opened is where the case questions choose their cases: one row per case
// as it was opened (time, category, region, source, rule, grid: its
// seq = 1 row), and the condition that keeps only cases whose opening row
// is stored. ClickHouse keeps those rows in cases_opened; SQLite in
// cases_current, whose first row may be a later one until seq 1 arrives.
func (d dialect) opened() (table, cond string) {
	if d.ch {
		return "cases_opened", ""
	}
	return "cases_current", "first_seq = 1"
}

// openedConds starts the conditions on d.opened's table.
func (d dialect) openedConds() conds {
	var c conds
	if _, cond := d.opened(); cond != "" {
		c.add(cond)
	}
	return c
}

// caseView is one row per case that the conditions c (on the opened
// columns: time, category, region, source, rule, grid; started with
// openedConds) select, with the columns cols of:
//
//   - the case as it was opened: c_opened, c_category, c_region,
//     c_source, c_rule, c_grid;
//   - the case as it stands (its latest row): c_state, c_colour (cases
//     registered by people get theirs when assessed), c_department,
//     c_created, c_dispatched, c_accepted, c_resolved, c_urges,
//     c_escalations, c_alerts, c_satisfaction, c_outcome;
//   - its history: resolve actions on time and late (c_on_time, c_late)
//     and follow-ups by satisfaction (c_satisfied, c_basically,
//     c_dissatisfied: every 回访 counts, also one that was dissatisfied and
//     re-opened the case).
//
// The store keeps all of it as case events arrive, one row per case, so
// nothing is rebuilt from the case's history here: SQLite's cases_current
// and ClickHouse's cases_flat, whose live rows are those not cancelled
// (sign 1 and a row_id no cancel in the same range names). It returns the
// query and its arguments.
func (d dialect) caseView(c conds, cols ...string) (string, []any) {
	sel := []string{"case_id"}
	for _, col := range cols {
		sel = append(sel, caseCols[col]+" AS "+col)
	}
	if !d.ch {
		return "SELECT " + strings.Join(sel, ", ") + " FROM cases_current" + c.where(), slices.Clone(c.args)
	}
	live, cancels := c, c
	live.parts = append(slices.Clone(c.parts), "sign = 1")
	cancels.parts = append(slices.Clone(c.parts), "sign = -1")
	return "SELECT " + strings.Join(sel, ", ") + " FROM cases_flat" + live.where() +
			" AND row_id NOT IN (SELECT row_id FROM cases_flat" + cancels.where() + ")",
		append(slices.Clone(c.args), c.args...)
}

// caseCols are the columns of caseView in SQLite's cases_current and
// ClickHouse's cases_flat (which have the same names).
var caseCols = map[string]string{
	"c_opened":       "time",
	"c_category":     "category",
	"c_region":       "region",
	"c_source":       "source",
	"c_rule":         "rule",
	"c_grid":         "grid",
	"c_state":        "state",
	"c_colour":       "colour",
	"c_department":   "department",
	"c_created":      "created",
	"c_dispatched":   "dispatched",
	"c_accepted":     "accepted",
	"c_resolved":     "resolved",
	"c_urges":        "urge_count",
	"c_escalations":  "escalations",
	"c_alerts":       "alert_count",
	"c_satisfaction": "satisfaction",
	"c_outcome":      "outcome",
	"c_on_time":      "on_time",
	"c_late":         "late",
	"c_satisfied":    "satisfied",
	"c_basically":    "basically",
	"c_dissatisfied": "dissatisfied",
}

// twice follows a FROM clause: every row comes twice, with t_ = 0 and 1.
func (d dialect) twice() string {
	if d.ch {
		return " ARRAY JOIN [0, 1] AS t_"
	}
	return " CROSS JOIN (SELECT 0 AS t_ UNION ALL SELECT 1) AS twice_"
}

// The SQLite side of the dialect, registered once for every connection
// the driver opens.
func init() {
	sqlite.MustRegisterDeterministicScalarFunction("sharpeye_starts_with", 2, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		s, _ := args[0].(string)
		p, _ := args[1].(string)
		if strings.HasPrefix(s, p) {
			return int64(1), nil
		}
		return int64(0), nil
	})
	sqlite.MustRegisterDeterministicScalarFunction("sharpeye_region", 2, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		s, _ := args[0].(string)
		n, _ := args[1].(int64)
		return truncRegion(s, int(n)), nil
	})
	sqlite.MustRegisterDeterministicScalarFunction("sharpeye_bucket", 3, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		t, ok := args[0].(int64)
		if !ok {
			return nil, nil
		}
		unit, _ := args[1].(string)
		tz, _ := args[2].(string)
		loc, err := zone(tz)
		if err != nil {
			return nil, err
		}
		return bucketKey(t, Bucket(unit), loc), nil
	})
	sqlite.MustRegisterFunction("sharpeye_quantile", &sqlite.FunctionImpl{NArgs: 2, Deterministic: true,
		MakeAggregate: func(sqlite.FunctionContext) (sqlite.AggregateFunction, error) { return &quantileAgg{}, nil }})
	sqlite.MustRegisterFunction("sharpeye_argmax", &sqlite.FunctionImpl{NArgs: 2, Deterministic: true,
		MakeAggregate: func(sqlite.FunctionContext) (sqlite.AggregateFunction, error) { return &argMaxAgg{}, nil }})
}

var zones sync.Map // name → *time.Location

func zone(name string) (*time.Location, error) {
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, l)
	return l, nil
}

// quantileAgg is sharpeye_quantile(x, pct): nearest rank, NULLs skipped.
type quantileAgg struct {
	ints   []int64
	floats []float64
	pct    int64
}

func (a *quantileAgg) Step(_ *sqlite.FunctionContext, args []driver.Value) error {
	a.pct, _ = args[1].(int64)
	switch v := args[0].(type) {
	case int64:
		a.ints = append(a.ints, v)
	case float64:
		a.floats = append(a.floats, v)
	}
	return nil
}

func (a *quantileAgg) WindowInverse(*sqlite.FunctionContext, []driver.Value) error {
	return fmt.Errorf("sharpeye_quantile is not a window function")
}

func (a *quantileAgg) WindowValue(*sqlite.FunctionContext) (driver.Value, error) {
	switch {
	case len(a.floats) > 0:
		all := a.floats
		for _, v := range a.ints {
			all = append(all, float64(v))
		}
		slices.Sort(all)
		return nearestRank(all, int(a.pct)), nil
	case len(a.ints) > 0:
		slices.Sort(a.ints)
		return nearestRank(a.ints, int(a.pct)), nil
	}
	return nil, nil
}

func (a *quantileAgg) Final(*sqlite.FunctionContext) {}

// argMaxAgg is sharpeye_argmax(x, key): x on the row of the greatest key
// (the first such row on ties), as ClickHouse's argMax.
type argMaxAgg struct {
	x   driver.Value
	key driver.Value
	set bool
}

func (a *argMaxAgg) Step(_ *sqlite.FunctionContext, args []driver.Value) error {
	if args[1] == nil {
		return nil
	}
	if !a.set || compareValues(args[1], a.key) > 0 {
		a.x, a.key, a.set = args[0], args[1], true
	}
	return nil
}

func (a *argMaxAgg) WindowInverse(*sqlite.FunctionContext, []driver.Value) error {
	return fmt.Errorf("sharpeye_argmax is not a window function")
}

func (a *argMaxAgg) WindowValue(*sqlite.FunctionContext) (driver.Value, error) { return a.x, nil }

func (a *argMaxAgg) Final(*sqlite.FunctionContext) {}

func compareValues(a, b driver.Value) int {
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			return cmp.Compare(x, y)
		case float64:
			return cmp.Compare(float64(x), y)
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return cmp.Compare(x, float64(y))
		case float64:
			return cmp.Compare(x, y)
		}
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y)
		}
	}
	return 0
}

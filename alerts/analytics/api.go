package analytics

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"sharpeye/console/api"
	"sharpeye/console/auth"
)

// API is the analytics API; every answer is JSON ({"columns", "rows"}) or,
// with ?format=csv or Accept: text/csv, CSV (UTF-8 with a BOM, for Excel):
//
//	GET  /api/v1/analytics/series             counts of events or cases per bucket, split and filtered by dimensions
//	GET  /api/v1/analytics/performance        how cases were handled, per department, region or category
//	GET  /api/v1/analytics/reports/{kind}     the daily, weekly or monthly report
//	GET  /api/v1/analytics/cameras            camera online and intact rates per region, vendor, grid or day
//	GET  /api/v1/analytics/cameras/worst      the cameras with the lowest rates
//	GET  /api/v1/analytics/devices            devices silent or flapping
//	GET  /api/v1/analytics/hotspots           grids rising week over week
//	GET  /api/v1/analytics/rules              cases, alerts and false alerts per rule
//	POST /api/v1/analytics/sql                raw SQL (ClickHouse, admins and analysts without a region)
//
// Everything is limited to the caller's region.
type API struct {
	q   *Questions
	log *slog.Logger
}

// NewAPI serves q.
func NewAPI(q *Questions, log *slog.Logger) *API { return &API{q: q, log: log} }

// readers may ask the questions.
var readers = []auth.Role{auth.Admin, auth.Analyst, auth.Leader, auth.Commander, auth.Supervisor}

// Routes registers the analytics API.
func (a *API) Routes(rt *api.Router) {
	rt.Handle("GET", "/api/v1/analytics/series", auth.Require(a.handleSeries, readers...))
	rt.Handle("GET", "/api/v1/analytics/performance", auth.Require(a.handlePerformance, readers...))
	rt.Handle("GET", "/api/v1/analytics/reports/{kind}", auth.Require(a.handleReport, readers...))
	rt.Handle("GET", "/api/v1/analytics/cameras", auth.Require(a.handleCameras, readers...))
	rt.Handle("GET", "/api/v1/analytics/cameras/worst", auth.Require(a.handleWorst, readers...))
	rt.Handle("GET", "/api/v1/analytics/devices", auth.Require(a.handleDevices, readers...))
	rt.Handle("GET", "/api/v1/analytics/hotspots", auth.Require(a.handleHotspots, readers...))
	rt.Handle("GET", "/api/v1/analytics/rules", auth.Require(a.handleRules, readers...))
	rt.Handle("POST", "/api/v1/analytics/sql", auth.Require(a.handleSQL, auth.Admin, auth.Analyst),
		api.MaxBody(int64(a.q.cfg.Query.MaxSQLBytes)+4096))
}

// apiError turns the questions' errors into answers.
func apiError(err error) error {
	var (
		pe *ParamError
		se *SQLError
	)
	switch {
	case errors.As(err, &pe):
		return api.BadRequest(pe.Param, "%s", pe.Msg)
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrScopedSQL), errors.Is(err, ErrReadOnly):
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "%s", strings.TrimPrefix(err.Error(), "analytics: "))
	case errors.Is(err, ErrNoSQL):
		return api.Errorf(http.StatusNotImplemented, api.CodeUnavailable, "%s", strings.TrimPrefix(err.Error(), "analytics: "))
	case errors.As(err, &se):
		if se.Code == chTimeout {
			return api.Errorf(http.StatusGatewayTimeout, api.CodeTimeout, "%s", se.Msg)
		}
		return api.BadRequest("query", "%s", se.Msg)
	case errors.Is(err, context.DeadlineExceeded):
		return api.Errorf(http.StatusGatewayTimeout, api.CodeTimeout, "the question took longer than query.timeout; narrow it")
	}
	return err
}

// params reads a request's query parameters, remembering which were read
// so that the rest can be refused.
type params struct {
	v    url.Values
	loc  *time.Location
	now  time.Time
	seen map[string]bool
}

func (a *API) params(r *http.Request) *params {
	return &params{v: r.URL.Query(), loc: a.q.loc, now: a.q.now(), seen: map[string]bool{"format": true}}
}

func (p *params) str(name string) string {
	p.seen[name] = true
	vs := p.v[name]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

func (p *params) int(name string) (int, error) {
	s := p.str(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, api.BadRequest(name, "must be a positive integer, not %q", s)
	}
	return n, nil
}

// time reads an RFC 3339 time or a date (its midnight in the zone).
func (p *params) time(name string) (time.Time, error) {
	s := p.str(name)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, p.loc); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil && strings.Contains(s, " ") {
		// A "+" of the offset not escaped in the URL arrives as a space.
		t, err = time.Parse(time.RFC3339, strings.ReplaceAll(s, " ", "+"))
	}
	if err != nil {
		return time.Time{}, api.BadRequest(name, "must be an RFC 3339 time such as 2026-11-21T08:00:00+08:00 or a date such as 2026-11-21, not %q", s)
	}
	return t.In(p.loc), nil
}

// rng reads from and to; by default the seven days up to the end of today.
func (p *params) rng() (Range, error) {
	from, err := p.time("from")
	if err != nil {
		return Range{}, err
	}
	to, err := p.time("to")
	if err != nil {
		return Range{}, err
	}
	if to.IsZero() {
		y, m, d := p.now.In(p.loc).Date()
		to = time.Date(y, m, d+1, 0, 0, 0, 0, p.loc)
		if !from.IsZero() && !to.After(from) {
			to = from.AddDate(0, 0, 7)
		}
	}
	if from.IsZero() {
		from = to.AddDate(0, 0, -7)
	}
	return Range{From: from, To: to}, nil
}

// done refuses parameters not read, and a format that is not json or csv.
func (p *params) done() error {
	if f := p.v.Get("format"); f != "" && f != "json" && f != "csv" {
		return api.BadRequest("format", "must be json or csv, not %q", f)
	}
	var unknown []string
	for k := range p.v {
		if !p.seen[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	// Every parameter the question looked for was marked seen: those are
	// the ones it takes.
	known := slices.Sorted(maps.Keys(p.seen))
	return api.BadRequest(unknown[0], "unknown parameter (%s); this question takes %s",
		strings.Join(unknown, ", "), strings.Join(known, ", "))
}

func scopeOf(r *http.Request) string {
	p, _ := auth.FromContext(r.Context())
	return p.Scope().Region
}

func (a *API) handleSeries(w http.ResponseWriter, r *http.Request) error {
	p := a.params(r)
	sp := SeriesParams{Subject: p.str("subject"), Bucket: Bucket(p.str("bucket")), By: p.str("by")}
	if sp.Subject == "" {
		sp.Subject = Events
	}
	if sp.Subject != Events && sp.Subject != Cases {
		return api.BadRequest("subject", "must be events or cases, not %q", sp.Subject)
	}
	if sp.Bucket == "" {
		sp.Bucket = Day
	}
	var err error
	if sp.Range, err = p.rng(); err != nil {
		return err
	}
	if sp.RegionDepth, err = p.int("region_depth"); err != nil {
		return err
	}
	if sp.Limit, err = p.int("limit"); err != nil {
		return err
	}
	for _, name := range Dims(sp.Subject) {
		p.seen[name] = true
		for _, v := range p.v[name] {
			for _, s := range strings.Split(v, ",") {
				if sp.Filters == nil {
					sp.Filters = map[string][]string{}
				}
				sp.Filters[name] = append(sp.Filters[name], strings.TrimSpace(s))
			}
		}
	}
	if err := p.done(); err != nil {
		return err
	}
	t, err := a.q.Series(r.Context(), sp, scopeOf(r))
	if err != nil {
		return apiError(err)
	}
	return a.write(w, r, t, fileName("series-"+sp.Subject+"-"+string(sp.Bucket), sp.Range))
}

func (a *API) handlePerformance(w http.ResponseWriter, r *http.Request) error {
	p := a.params(r)
	pp := PerformanceParams{By: p.str("by"), Region: p.str("region")}
	if pp.By == "" {
		pp.By = "department"
	}
	var err error
	if pp.Range, err = p.rng(); err != nil {
		return err
	}
	if pp.RegionDepth, err = p.int("region_depth"); err != nil {
		return err
	}
	if err := p.done(); err != nil {
		return err
	}
	t, err := a.q.Performance(r.Context(), pp, scopeOf(r))
	if err != nil {
		return apiError(err)
	}
	return a.write(w, r, t, fileName("performance-"+pp.By, pp.Range))
}

func (a *API) handleReport(w http.ResponseWriter, r *http.Request) error {
	p := a.params(r)
	kind := r.PathValue("kind")
	if kind != Daily && kind != Weekly && kind != Monthly {
		return api.NotFound("no report %q: daily, weekly or monthly", kind)
	}
	date := p.now.In(p.loc)
	if s := p.str("date"); s != "" {
		d, err := time.ParseInLocation("2006-01-02", s, p.loc)
		if err != nil {
			return api.BadRequest("date", "must be a date such as 2026-11-21, not %q", s)
		}
		date = d
	}
	region := p.str("region")
	if err := p.done(); err != nil {
		return err
	}
	scope, err := narrow(scopeOf(r), region)
	if err != nil {
		return apiError(err)
	}
	rep, err := a.q.Report(r.Context(), kind, date, scope)
	if err != nil {
		return apiError(err)
	}
	if !wantsCSV(r) {
		api.WriteJSON(w, http.StatusOK, rep)
		return nil
	}
	return writeCSV(w, fileName("report-"+kind, Range{rep.From, rep.To}), a.q.loc, func(cw *csv.Writer) error {
		for i, s := range rep.Sections {
			if i > 0 {
				if err := cw.Write(nil); err != nil {
					return err
				}
			}
			if err := cw.Write([]string{s.Name}); err != nil {
				return err
			}
			if err := tableCSV(cw, s.Table, a.q.loc); err != nil {
				return err
			}
		}
		return nil
	})
}

func (a *API) handleCameras(w http.ResponseWriter, r *http.Request) error {
	p := a.params(r)
	cp := CamerasParams{By: p.str("by"), Region: p.str("region")}
	if cp.By == "" {
		cp.By = "region"
	}
	var err error
	if cp.Range, err = p.rng(); err != nil {
		return err
	}
	if cp.RegionDepth, err = p.int("region_depth"); err != nil {
		return err
	}
	if err := p.done(); err != nil {
		return err
	}
	t, err := a.q.Cameras(r.Context(), cp, scopeOf(r))
	if err != nil {
		return apiError(err)
	}
	return a.write(w, r, t, fileName("cameras-"+cp.By, cp.Range))
}

func (a *API) handleWorst(w http.ResponseWriter, r *http.Request) error {
	p := a.params(r)
	wp := WorstParams{Region: p.str("region")}
	var err error
	if wp.Range, err = p.rng(); err != nil {
		return err
	}
	if wp.Limit, err = p.int("limit"); err != nil {
		return err
	}
	if err := p.done(); err != nil {
		return err
	}
	t, err := a.q.WorstCameras(r.Context(), wp, scopeOf(r))
	if err != nil {
		return apiError(err)
	}
	return a.write(w, r, t, fileName("cameras-worst", wp.Range))
}

func (a *API) handleDevices(w http.ResponseWriter, r *http.Request) error {
	p := a.params(r)
	dp := DevicesParams{Region: p.str("region")}
	var err error
	if dp.Range, err = p.rng(); err != nil {
		return err
	}
	if dp.Flapping, err = p.int("flapping"); err != nil {
		return err
	}
	if err := p.done(); err != nil {
		return err
	}
	t, err := a.q.Devices(r.Context(), dp, scopeOf(r))
	if err != nil {
		return apiError(err)
	}
	return a.write(w, r, t, fileName("devices", dp.Range))
}

func (a *API) handleHotspots(w http.ResponseWriter, r *http.Request) error {
	p := a.params(r)
	hp := HotspotsParams{Subject: p.str("subject"), Region: p.str("region")}
	if hp.Subject == "" {
		hp.Subject = Events
	}
	var err error
	if hp.To, err = p.time("to"); err != nil {
		return err
	}
	if hp.To.IsZero() {
		y, m, d := p.now.In(p.loc).Date()
		hp.To = time.Date(y, m, d+1, 0, 0, 0, 0, p.loc)
	}
	if hp.Limit, err = p.int("limit"); err != nil {
		return err
	}
	if err := p.done(); err != nil {
		return err
	}
	t, err := a.q.Hotspots(r.Context(), hp, scopeOf(r))
	if err != nil {
		return apiError(err)
	}
	return a.write(w, r, t, fileName("hotspots-"+hp.Subject, Range{hp.To.AddDate(0, 0, -14), hp.To}))
}

func (a *API) handleRules(w http.ResponseWriter, r *http.Request) error {
	p := a.params(r)
	rp := RulesParams{Region: p.str("region")}
	var err error
	if rp.Range, err = p.rng(); err != nil {
		return err
	}
	if err := p.done(); err != nil {
		return err
	}
	t, err := a.q.Rules(r.Context(), rp, scopeOf(r))
	if err != nil {
		return apiError(err)
	}
	return a.write(w, r, t, fileName("rules", rp.Range))
}

// sqlRequest is the body of POST /api/v1/analytics/sql.
type sqlRequest struct {
	Query string `json:"query"`
}

func (a *API) handleSQL(w http.ResponseWriter, r *http.Request) error {
	p := a.params(r)
	if err := p.done(); err != nil {
		return err
	}
	pr, _ := auth.FromContext(r.Context())
	// Refuse before reading anything when the answer cannot change.
	if a.q.store.ReadOnly() == nil {
		return apiError(ErrNoSQL)
	}
	if pr.Scope().Region != "" {
		return apiError(ErrScopedSQL)
	}
	var req sqlRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	start := time.Now()
	t, err := a.q.SQL(r.Context(), req.Query, pr.Scope().Region)
	shown := req.Query
	if len(shown) > 500 {
		shown = strings.ToValidUTF8(shown[:500], "") + "…"
	}
	a.log.Info("analytics raw SQL", "user", pr.Username, "role", pr.Role, "query", shown, "rows", len(t.Rows),
		"truncated", t.Truncated, "took", time.Since(start).Round(time.Millisecond), "err", err)
	if err != nil {
		return apiError(err)
	}
	return a.write(w, r, t, "sql-"+time.Now().In(a.q.loc).Format("20060102-150405")+".csv")
}

// write answers t as JSON or CSV.
func (a *API) write(w http.ResponseWriter, r *http.Request, t Table, name string) error {
	if !wantsCSV(r) {
		api.WriteJSON(w, http.StatusOK, t)
		return nil
	}
	if t.Truncated {
		w.Header().Set("X-Sharpeye-Truncated", "true")
	}
	return writeCSV(w, name, a.q.loc, func(cw *csv.Writer) error { return tableCSV(cw, t, a.q.loc) })
}

func wantsCSV(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "csv":
		return true
	case "json":
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/csv")
}

func fileName(what string, rng Range) string {
	return fmt.Sprintf("%s-%s-%s.csv", what, rng.From.Format("20060102"), rng.To.Format("20060102"))
}

// writeCSV answers a CSV attachment: UTF-8 with a byte order mark (so
// that Excel reads Chinese text), RFC 4180 quoting and line ends.
func writeCSV(w http.ResponseWriter, name string, loc *time.Location, body func(*csv.Writer) error) error {
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	bw.WriteString("\uFEFF")
	cw := csv.NewWriter(bw)
	cw.UseCRLF = true
	if err := body(cw); err != nil {
		return err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

func tableCSV(cw *csv.Writer, t Table, loc *time.Location) error {
	if err := cw.Write(t.Columns); err != nil {
		return err
	}
	rec := make([]string, len(t.Columns))
	for _, row := range t.Rows {
		for i, v := range row {
			rec[i] = csvCell(v, loc)
		}
		if err := cw.Write(rec[:len(row)]); err != nil {
			return err
		}
	}
	return nil
}

// csvCell is a value as CSV writes it: numbers in decimal, times in RFC
// 3339 in loc, null as empty, anything else as JSON.
func csvCell(v any, loc *time.Location) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.In(loc).Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

package analytics_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/analyticstest"
	"sharpeye/console/api"
	"sharpeye/console/api/apitest"
	"sharpeye/console/auth"
)

var analysts = apitest.Principals{
	"admin":   {Username: "admin", Role: auth.Admin},
	"analyst": {Username: "wang", Role: auth.Analyst},
	"scoped":  {Username: "li", Role: auth.Analyst, Region: township},
	"leader":  {Username: "zhao", Role: auth.Leader},
	"clerk":   {Username: "chen", Role: auth.Clerk},
}

func newAnalyticsAPI(t *testing.T, driver string, f fixture) (*httptest.Server, *prometheus.Registry) {
	t.Helper()
	cfg := analyticstest.Config(t, driver)
	s := analyticstest.OpenConfig(t, cfg)
	f.insert(t, s)
	reg := prometheus.NewRegistry()
	rt := api.NewRouter(1<<20, 30*time.Second)
	rt.SetAuthenticator(analysts)
	analytics.NewAPI(analytics.NewQuestions(cfg, s, reg), slog.New(slog.DiscardHandler)).Routes(rt)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return srv, reg
}

// jsonTable is a table as the API writes it, numbers kept as written.
type jsonTable struct {
	Columns   []string `json:"columns"`
	Rows      [][]any  `json:"rows"`
	Truncated bool     `json:"truncated"`
}

func decodeTable(t *testing.T, body string) jsonTable {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var jt jsonTable
	if err := dec.Decode(&jt); err != nil {
		t.Fatalf("decode %.300s: %v", body, err)
	}
	return jt
}

func get(t *testing.T, srv *httptest.Server, user, path string, want int) (http.Header, string) {
	t.Helper()
	code, hdr, body := apitest.Call(t, srv, user, "GET", path, "")
	if code != want {
		t.Fatalf("GET %s as %s: %d %.400s, want %d", path, user, code, body, want)
	}
	return hdr, body
}

func path(p string, kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return p + "?" + v.Encode()
}

const fromDate, toDate = "2026-11-09", "2026-11-23"

func TestAPIScope(t *testing.T) {
	f := buildFixture()
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			srv, reg := newAnalyticsAPI(t, driver, f)
			series := path("/api/v1/analytics/series", "subject", "events", "bucket", "week", "by", "region", "from", fromDate, "to", toDate)
			total := func(user string) (int64, []string) {
				_, body := get(t, srv, user, series, http.StatusOK)
				jt := decodeTable(t, body)
				var n int64
				var regions []string
				for _, r := range jt.Rows {
					k, _ := r[2].(json.Number).Int64()
					n += k
					if !slices.Contains(regions, r[1].(string)) {
						regions = append(regions, r[1].(string))
					}
				}
				return n, regions
			}
			var inTownship int64
			for _, e := range f.batch.Events {
				if auth.InRegion(e.Region, township) {
					inTownship++
				}
			}
			if n, regions := total("scoped"); n != inTownship || slices.ContainsFunc(regions, func(r string) bool { return !auth.InRegion(r, township) }) {
				t.Errorf("the scoped analyst sees %d events in %v, want %d in %s only", n, regions, inTownship, township)
			}
			if n, _ := total("analyst"); n != int64(len(f.batch.Events)) {
				t.Errorf("the analyst sees %d events, want all %d", n, len(f.batch.Events))
			}
			// Another region, or one that only shares the bytes: forbidden.
			for _, p := range []string{
				path("/api/v1/analytics/series", "by", "type", "region", jiangan, "from", fromDate, "to", toDate),
				path("/api/v1/analytics/series", "region", trap, "from", fromDate, "to", toDate),
				path("/api/v1/analytics/performance", "region", jiangan, "from", fromDate, "to", toDate),
				path("/api/v1/analytics/cameras", "region", "江岸区", "from", fromDate, "to", toDate),
				path("/api/v1/analytics/reports/weekly", "region", jiangan, "date", "2026-11-16"),
				path("/api/v1/analytics/hotspots", "region", "江岸区", "to", toDate),
			} {
				get(t, srv, "scoped", p, http.StatusForbidden)
			}
			// A region inside the scope narrows it.
			_, body := get(t, srv, "scoped", path("/api/v1/analytics/cameras/worst", "region", hongqi, "from", "2026-11-16", "to", "2026-11-19"), http.StatusOK)
			if jt := decodeTable(t, body); len(jt.Rows) != 1 || jt.Rows[0][0] != "cam-3" {
				t.Errorf("worst cameras of %s: %v, want cam-3 alone", hongqi, jt.Rows)
			}
			// Hot spots of the scoped analyst are within the township.
			_, body = get(t, srv, "scoped", path("/api/v1/analytics/hotspots", "to", toDate), http.StatusOK)
			for _, r := range decodeTable(t, body).Rows {
				if !auth.InRegion(r[1].(string), township) {
					t.Errorf("the scoped analyst sees hot spot %v", r)
				}
			}
			// Roles: a clerk may not ask, a leader may.
			get(t, srv, "clerk", series, http.StatusForbidden)
			get(t, srv, "leader", path("/api/v1/analytics/rules", "from", fromDate, "to", toDate), http.StatusOK)

			// The questions were timed.
			if apitest.Metric(t, reg, "sharpeye_analytics_query_seconds", "question", "series") < 2 {
				t.Error("sharpeye_analytics_query_seconds{question=\"series\"} has not counted the series asked")
			}
		})
	}
}

// readCSV checks a CSV answer's headers and BOM and returns its records.
func readCSV(t *testing.T, hdr http.Header, body string) [][]string {
	t.Helper()
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("Content-Type %q", ct)
	}
	if cd := hdr.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="`) || !strings.HasSuffix(cd, `.csv"`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	rest, ok := strings.CutPrefix(body, "\uFEFF")
	if !ok {
		t.Fatalf("no byte order mark: %.40q", body)
	}
	if !strings.Contains(rest, "\r\n") {
		t.Error("CSV lines do not end in CRLF (RFC 4180)")
	}
	r := csv.NewReader(strings.NewReader(rest))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatalf("parse CSV: %v", err)
	}
	return recs
}

// sameAsJSON compares CSV records (header first) with a JSON table.
func sameAsJSON(t *testing.T, what string, recs [][]string, jt jsonTable) {
	t.Helper()
	if len(recs) != len(jt.Rows)+1 || !slices.Equal(recs[0], jt.Columns) {
		t.Fatalf("%s: CSV has %d records with header %v; JSON %d rows with %v", what, len(recs), recs[0], len(jt.Rows), jt.Columns)
	}
	for i, row := range jt.Rows {
		for j, v := range row {
			c := recs[i+1][j]
			var ok bool
			switch x := v.(type) {
			case nil:
				ok = c == ""
			case json.Number:
				a, err1 := strconv.ParseFloat(x.String(), 64)
				b, err2 := strconv.ParseFloat(c, 64)
				ok = err1 == nil && err2 == nil && a == b
			case bool:
				ok = c == strconv.FormatBool(x)
			case string:
				ok = c == x
			default:
				b, _ := json.Marshal(x)
				ok = c == string(b)
			}
			if !ok {
				t.Errorf("%s row %d column %s: CSV %q, JSON %v", what, i, jt.Columns[j], c, v)
			}
		}
	}
}

func TestAPICSV(t *testing.T) {
	f := buildFixture()
	srv, _ := newAnalyticsAPI(t, analytics.SQLite, f)
	for i, p := range []string{
		path("/api/v1/analytics/series", "subject", "cases", "bucket", "day", "by", "region", "from", fromDate, "to", toDate),
		path("/api/v1/analytics/series", "subject", "events", "bucket", "hour", "by", "type", "severity", "major", "from", "2026-11-17T00:00:00+08:00", "to", "2026-11-18T00:00:00+08:00"),
		path("/api/v1/analytics/performance", "by", "category", "from", fromDate, "to", toDate),
		path("/api/v1/analytics/cameras", "by", "day", "from", "2026-11-16", "to", "2026-11-19"),
		path("/api/v1/analytics/cameras/worst", "from", "2026-11-16", "to", "2026-11-19", "limit", "3"),
		path("/api/v1/analytics/devices", "from", fromDate, "to", toDate, "flapping", "2"),
		path("/api/v1/analytics/hotspots", "subject", "events", "to", toDate),
		path("/api/v1/analytics/rules", "from", fromDate, "to", toDate),
	} {
		_, body := get(t, srv, "analyst", p, http.StatusOK)
		jt := decodeTable(t, body)
		if len(jt.Rows) == 0 {
			t.Errorf("%s: no rows; a weak test", p)
		}
		hdr, csvBody := get(t, srv, "analyst", p+"&format=csv", http.StatusOK)
		sameAsJSON(t, p, readCSV(t, hdr, csvBody), jt)
		if i == 0 {
			code, hdr, csvBody := apitest.Call(t, srv, "analyst", "GET", p, "", "Accept", "text/csv")
			if code != http.StatusOK {
				t.Fatalf("%s with Accept: text/csv: %d", p, code)
			}
			sameAsJSON(t, p+" (Accept)", readCSV(t, hdr, csvBody), jt)
		}
	}
	// Chinese text survives.
	_, csvBody := get(t, srv, "analyst", path("/api/v1/analytics/performance", "by", "region", "from", fromDate, "to", toDate, "format", "csv"), http.StatusOK)
	if !strings.Contains(csvBody, xinzhuang) {
		t.Errorf("the CSV lacks %s: %.300s", xinzhuang, csvBody)
	}

	// A report: each section's name, then its table.
	p := path("/api/v1/analytics/reports/weekly", "date", "2026-11-18")
	_, body := get(t, srv, "analyst", p, http.StatusOK)
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var rep struct {
		Kind     string `json:"kind"`
		From     string `json:"from"`
		To       string `json:"to"`
		Sections []struct {
			Name string `json:"name"`
			jsonTable
		} `json:"sections"`
	}
	if err := dec.Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if rep.Kind != "weekly" || rep.From != "2026-11-16T00:00:00+08:00" || rep.To != "2026-11-23T00:00:00+08:00" {
		t.Errorf("report %s from %s to %s, want the week of 2026-11-16 in +08:00", rep.Kind, rep.From, rep.To)
	}
	hdr, csvBody := get(t, srv, "analyst", p+"&format=csv", http.StatusOK)
	recs := readCSV(t, hdr, csvBody)
	at := 0
	for _, s := range rep.Sections {
		if at >= len(recs) || len(recs[at]) != 1 || recs[at][0] != s.Name {
			t.Fatalf("CSV record %d is %v, want the section name %s", at, recs[min(at, len(recs)-1)], s.Name)
		}
		n := len(s.Rows) + 1
		sameAsJSON(t, s.Name, recs[at+1:at+1+n], s.jsonTable)
		at += 1 + n
	}
	if at != len(recs) || len(rep.Sections) != 9 {
		t.Errorf("%d sections, %d of %d CSV records read", len(rep.Sections), at, len(recs))
	}
}

func TestAPIBadParameters(t *testing.T) {
	srv, _ := newAnalyticsAPI(t, analytics.SQLite, fixture{})
	for _, c := range []struct {
		path, field string
	}{
		{path("/api/v1/analytics/series", "bucket", "fortnight"), "bucket"},
		{path("/api/v1/analytics/series", "subject", "alarms"), "subject"},
		{path("/api/v1/analytics/series", "from", "yesterday"), "from"},
		{path("/api/v1/analytics/series", "to", "2026-13-01"), "to"},
		{path("/api/v1/analytics/series", "from", "2026-11-10", "to", "2026-11-09"), "to"},
		{path("/api/v1/analytics/series", "bucket", "minute", "from", "2026-11-09", "to", "2026-11-16"), "from"},
		{path("/api/v1/analytics/series", "bucket", "hour", "from", "2026-01-01", "to", "2026-11-16"), "from"},
		{path("/api/v1/analytics/series", "from", "2024-01-01", "to", "2026-11-16"), "from"},
		{path("/api/v1/analytics/series", "by", "colour"), "by"},
		{path("/api/v1/analytics/series", "subject", "cases", "by", "camera"), "by"},
		{path("/api/v1/analytics/series", "region_depth", "2", "by", "type"), "region_depth"},
		{path("/api/v1/analytics/series", "region_depth", "two", "by", "region"), "region_depth"},
		{path("/api/v1/analytics/series", "limit", "0", "by", "type"), "limit"},
		{path("/api/v1/analytics/series", "department", "police"), "department"},
		{path("/api/v1/analytics/series", "foo", "1", "bar", "2"), "bar"},
		{path("/api/v1/analytics/series", "region", "a//b"), "region"},
		{path("/api/v1/analytics/performance", "by", "colour"), "by"},
		{path("/api/v1/analytics/performance", "bucket", "day"), "bucket"},
		{path("/api/v1/analytics/cameras", "by", "camera"), "by"},
		{path("/api/v1/analytics/cameras/worst", "limit", "-1"), "limit"},
		{path("/api/v1/analytics/devices", "flapping", "x"), "flapping"},
		{path("/api/v1/analytics/hotspots", "subject", "rules"), "subject"},
		{path("/api/v1/analytics/hotspots", "from", fromDate), "from"},
		{path("/api/v1/analytics/reports/daily", "date", "11/18/2026"), "date"},
		{path("/api/v1/analytics/rules", "to", "noon"), "to"},
		{path("/api/v1/analytics/rules", "format", "xml"), "format"},
	} {
		code, _, body := apitest.Call(t, srv, "analyst", "GET", c.path, "")
		var e struct {
			Error api.Error `json:"error"`
		}
		if code != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || e.Error.Field != c.field || !strings.Contains(e.Error.Message, c.field) {
			t.Errorf("GET %s: %d %s, want 400 naming %s", c.path, code, body, c.field)
		}
	}
	// An unknown parameter's answer lists those the question takes.
	if _, _, body := apitest.Call(t, srv, "analyst", "GET", path("/api/v1/analytics/series", "measure", "events"), ""); !strings.Contains(body, "takes") ||
		!strings.Contains(body, "subject") || !strings.Contains(body, "bucket") || strings.Contains(body, "measure,") {
		t.Errorf("unknown parameter: %s, want the parameters series takes", body)
	}
	if code, _, _ := apitest.Call(t, srv, "analyst", "GET", "/api/v1/analytics/reports/yearly", ""); code != http.StatusNotFound {
		t.Errorf("a yearly report: %d, want 404", code)
	}
	// Defaults: the last seven days, days, events.
	_, body := get(t, srv, "analyst", "/api/v1/analytics/series", http.StatusOK)
	if jt := decodeTable(t, body); !slices.Equal(jt.Columns, []string{"bucket", "count"}) {
		t.Errorf("default series columns %v", jt.Columns)
	}
}

func TestAPIRawSQL(t *testing.T) {
	f := buildFixture()
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			srv, _ := newAnalyticsAPI(t, driver, f)
			post := func(user, query string, hdr ...string) (int, http.Header, string) {
				b, _ := json.Marshal(map[string]string{"query": query})
				return apitest.Call(t, srv, user, "POST", "/api/v1/analytics/sql", string(b), hdr...)
			}
			if driver == analytics.SQLite {
				if code, _, body := post("admin", "SELECT 1"); code != http.StatusNotImplemented || !strings.Contains(body, "ClickHouse") {
					t.Errorf("raw SQL on SQLite: %d %s, want 501 naming ClickHouse", code, body)
				}
				return
			}
			count := func() string {
				code, _, body := post("analyst", "SELECT (SELECT count() FROM events) AS events, (SELECT count() FROM case_events) AS cases")
				if code != http.StatusOK {
					t.Fatalf("count: %d %s", code, body)
				}
				return body
			}
			before := count()
			if want := `"rows":[[` + strconv.Itoa(len(f.batch.Events)) + `,` + strconv.Itoa(len(f.batch.Cases)) + `]]`; !strings.Contains(before, want) {
				t.Fatalf("counts %s, want %s", before, want)
			}
			for _, q := range []string{
				"INSERT INTO events (id, type) VALUES ('x', 'y')",
				"ALTER TABLE events DELETE WHERE 1",
				"DROP TABLE events",
				"CREATE TABLE x (a UInt8) ENGINE = Memory",
				"SELECT 1; DROP TABLE events",
				"SELECT * FROM events INTO OUTFILE '/tmp/events.tsv'",
				"SELECT 1 SETTINGS max_result_rows = 0",
				"SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String')",
			} {
				code, _, body := post("admin", q)
				if code != http.StatusBadRequest && code != http.StatusForbidden {
					t.Errorf("%q: %d %s, want 400 or 403", q, code, body)
				}
			}
			if after := count(); after != before {
				t.Errorf("the data changed: %s, then %s", before, after)
			}
			// Refused to a scoped analyst and to a leader.
			if code, _, _ := post("scoped", "SELECT 1"); code != http.StatusForbidden {
				t.Errorf("a scoped analyst: %d, want 403", code)
			}
			if code, _, _ := post("leader", "SELECT 1"); code != http.StatusForbidden {
				t.Errorf("a leader: %d, want 403", code)
			}
			// A query the server cannot run: 400 with its message.
			if code, _, body := post("analyst", "SELECT nosuch FROM events"); code != http.StatusBadRequest || !strings.Contains(body, "nosuch") {
				t.Errorf("a bad column: %d %s", code, body)
			}
			// Too long.
			if code, _, _ := post("analyst", "SELECT 1 -- "+strings.Repeat("x", 70<<10)); code != http.StatusRequestEntityTooLarge && code != http.StatusBadRequest {
				t.Errorf("a query over max_sql_bytes: %d, want 413 or 400", code)
			}
			// CSV.
			code, hdr, body := post("analyst", "SELECT type, count() AS n FROM events GROUP BY type ORDER BY type", "Accept", "text/csv")
			if code != http.StatusOK {
				t.Fatalf("CSV: %d %s", code, body)
			}
			recs := readCSV(t, hdr, body)
			if len(recs) != 7 || !slices.Equal(recs[0], []string{"type", "n"}) || recs[2][0] != "detection.person" {
				t.Errorf("CSV %v", recs)
			}
		})
	}
}

// The API's JSON numbers are numbers, times RFC 3339 in the zone.
func TestAPIJSONValues(t *testing.T) {
	srv, _ := newAnalyticsAPI(t, analytics.SQLite, buildFixture())
	_, body := get(t, srv, "analyst", path("/api/v1/analytics/series", "subject", "events", "bucket", "week", "from", fromDate, "to", toDate), http.StatusOK)
	if !bytes.Contains([]byte(body), []byte(`["2026-11-09T00:00:00+08:00",`)) {
		t.Errorf("series %s: want buckets as RFC 3339 times in +08:00 and counts as numbers", body)
	}
}

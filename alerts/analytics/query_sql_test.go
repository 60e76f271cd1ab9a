package analytics_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/analyticstest"
	"sharpeye/deploy/testpeer"
)

var allowedSQL = []string{
	"SELECT count() FROM events",
	"  select type, count() from events group by type order by 2 desc limit 10;",
	"WITH 3 AS n SELECT number FROM numbers(n)",
	"SHOW TABLES",
	"DESCRIBE TABLE case_events",
	"desc events",
	"EXPLAIN SELECT 1",
	"-- how many\nSELECT count() FROM events -- all of them",
	"/* count */ SELECT 'a;b', \"weird;name\", `settings` FROM system.one",
	"SELECT 'it''s; DROP TABLE events', 'back\\'slash; INTO OUTFILE' FROM system.one",
	"SELECT * FROM system.tables WHERE name LIKE '%settings%'",
	"(SELECT 1) UNION ALL (SELECT 2)",
	"SELECT 1;;  ",
}

var refusedSQL = []string{
	"",
	"   -- nothing\n",
	"INSERT INTO events (id) VALUES ('x')",
	"insert into events select * from events",
	"ALTER TABLE events DELETE WHERE 1",
	"DROP TABLE events",
	"CREATE TABLE x (a UInt8) ENGINE = Memory",
	"TRUNCATE TABLE events",
	"RENAME TABLE events TO e2",
	"OPTIMIZE TABLE events FINAL",
	"KILL QUERY WHERE 1",
	"SET readonly = 0",
	"SYSTEM SHUTDOWN",
	"SELECT 1; DROP TABLE events",
	"SELECT 1; SELECT 2",
	"SELECT 1 /* ; */; DROP TABLE events",
	"SELECT 1 -- ;\n; DROP TABLE events",
	"SELECT 1 /* nested /* */ ; DROP TABLE events; /* */",
	"SELECT * FROM events INTO OUTFILE '/tmp/x'",
	"SELECT * FROM events into\n  outfile '/tmp/x'",
	"SELECT count() FROM events SETTINGS max_result_rows = 1000000000",
	"SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String')",
	"SELECT * FROM remote('10.0.0.1', system.one)",
	"SELECT * FROM file ('/etc/passwd', CSV, 'a String')",
	"SELECT 'unclosed",
	"SELECT 1 /* unclosed",
	"SELECT \"unclosed",
	"SELECT 1\x00; DROP TABLE events",
	"/* SELECT */ DROP TABLE events",
	"SELECT 1 /* /* */ ' */ ; DROP TABLE events; -- '",
	"SELECT 1 # '\n; DROP TABLE events; -- '",
	"SELECT $$ ' $$; DROP TABLE events; -- '",
}

func TestCheckSQL(t *testing.T) {
	for _, q := range allowedSQL {
		if err := analytics.CheckSQL(q); err != nil {
			t.Errorf("%q refused: %v", q, err)
		}
	}
	for _, q := range refusedSQL {
		err := analytics.CheckSQL(q)
		var pe *analytics.ParamError
		if !errors.As(err, &pe) || pe.Param != "query" {
			t.Errorf("%q: %v, want refused naming query", q, err)
		}
	}
}

// FuzzCheckSQL: whatever CheckSQL accepts, a statement appended after it
// is refused (no text leaves a comment or literal open that would hide it).
func FuzzCheckSQL(f *testing.F) {
	for _, q := range append(allowedSQL, refusedSQL...) {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if analytics.CheckSQL(q) != nil {
			return
		}
		for _, tail := range []string{"\n; DROP TABLE events", "\nINTO OUTFILE '/tmp/x'", "\nSETTINGS readonly = 0"} {
			if analytics.CheckSQL(q+tail) == nil {
				t.Fatalf("%q accepted, and so is it followed by %q", q, tail)
			}
		}
	})
}

// TestRawSQL runs analysts' SQL on ClickHouse's read-only user: reads
// answer, rows are cut at the limit, and writes fail both at the checker
// and, smuggled past it, at the server; the data is unchanged.
func TestRawSQL(t *testing.T) {
	ctx := context.Background()
	f := buildFixture()
	// SQLite: not available.
	lite := load(t, analytics.SQLite, f)
	if _, err := lite.SQL(ctx, "SELECT 1", ""); !errors.Is(err, analytics.ErrNoSQL) {
		t.Errorf("raw SQL on SQLite: %v, want ErrNoSQL", err)
	}
	testpeer.Require(t, testpeer.ClickHouse)

	cfg := analyticstest.Config(t, analytics.ClickHouse)
	cfg.Query.MaxRows = 5
	s := analyticstest.OpenConfig(t, cfg)
	if _, err := s.Insert(ctx, &analytics.Batch{Events: f.batch.Events[:20], Cases: f.batch.Cases[:10]}, false); err != nil {
		t.Fatal(err)
	}
	q := analytics.NewQuestions(cfg, s, prometheus.NewRegistry())

	got, err := q.SQL(ctx, "SELECT type, count() AS n FROM events GROUP BY type ORDER BY type", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Columns) != 2 || got.Columns[1] != "n" || len(got.Rows) == 0 || got.Truncated {
		t.Fatalf("answer %+v", got)
	}
	var total int64
	for _, r := range got.Rows {
		total += r[1].(int64)
	}
	if total != 20 {
		t.Errorf("counted %d events, want 20", total)
	}
	// Arrays, NULL, NaN and times come back as JSON can hold them.
	got, err = q.SQL(ctx, "SELECT [1, 2] AS a, NULL AS z, 0/0 AS nan, toDateTime(0) AS t", "")
	if err != nil {
		t.Fatal(err)
	}
	if r := got.Rows[0]; r[1] != nil || r[2] != "nan" {
		t.Errorf("row %v", r)
	}

	// Six rows: five and the flag; many more: an error asking for a LIMIT.
	if got, err = q.SQL(ctx, "SELECT number FROM system.numbers LIMIT 6", ""); err != nil || len(got.Rows) != 5 || !got.Truncated {
		t.Errorf("six rows with max_rows 5: %d rows, truncated %v, %v", len(got.Rows), got.Truncated, err)
	}
	var se *analytics.SQLError
	if _, err = q.SQL(ctx, "SELECT number FROM system.numbers LIMIT 100", ""); !errors.As(err, &se) {
		t.Errorf("100 rows with max_rows 5: %v, want an SQLError", err)
	}
	if _, err = q.SQL(ctx, "SELECT nosuchcolumn FROM events", ""); !errors.As(err, &se) {
		t.Errorf("a bad query: %v, want an SQLError", err)
	}

	// Scoped callers are refused whatever the query.
	if _, err := q.SQL(ctx, "SELECT 1", "黄陂区"); !errors.Is(err, analytics.ErrScopedSQL) {
		t.Errorf("a scoped caller: %v, want ErrScopedSQL", err)
	}

	before := countRows(t, q)
	for _, w := range []string{
		"INSERT INTO events (id, type) VALUES ('smuggled', 'x')",
		"ALTER TABLE events DELETE WHERE 1",
		"DROP TABLE events",
		"CREATE TABLE smuggled (a UInt8) ENGINE = Memory",
		"TRUNCATE TABLE case_events",
		"RENAME TABLE events TO events2",
	} {
		// The checker refuses it.
		var pe *analytics.ParamError
		if _, err := q.SQL(ctx, w, ""); !errors.As(err, &pe) {
			t.Errorf("%q through SQL: %v, want refused by the checker", w, err)
		}
		// Past the checker, the server refuses it.
		if _, err := q.ExecSQL(ctx, w); !errors.Is(err, analytics.ErrReadOnly) {
			t.Errorf("%q past the checker: %v, want refused by the server (read-only)", w, err)
		}
	}
	// The per-query readonly cannot be lowered from inside the query.
	if _, err := q.ExecSQL(ctx, "SELECT 1 SETTINGS readonly = 0"); err == nil {
		t.Error("SETTINGS readonly = 0 past the checker ran")
	}
	if after := countRows(t, q); after != before {
		t.Errorf("rows changed: %v before, %v after", before, after)
	}
}

func countRows(t *testing.T, q *analytics.Questions) [2]int64 {
	t.Helper()
	got, err := q.ExecSQL(context.Background(), "SELECT (SELECT count() FROM events), (SELECT count() FROM case_events)")
	if err != nil {
		t.Fatal(err)
	}
	return [2]int64{got.Rows[0][0].(int64), got.Rows[0][1].(int64)}
}

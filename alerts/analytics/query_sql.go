package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// ErrReadOnly: the server refused a write (the read-only user).
var ErrReadOnly = errors.New("analytics: the database refused the statement: raw SQL is read-only")

// SQLError is the server's answer to a query it could not run: a syntax
// error, an unknown table, a limit exceeded.
type SQLError struct {
	Code int32
	Msg  string
}

func (e *SQLError) Error() string { return e.Msg }

// ClickHouse error codes the answers tell apart.
const (
	chTimeout     = 159 // TIMEOUT_EXCEEDED
	chReadOnly    = 164 // READONLY
	chMemoryLimit = 241 // MEMORY_LIMIT_EXCEEDED
	chTooManyRows = 396 // TOO_MANY_ROWS_OR_BYTES
)

// SQL runs an analyst's query on ClickHouse as the read-only user, under
// the query limits: a single SELECT (or WITH … SELECT, SHOW, DESCRIBE,
// EXPLAIN), checked by CheckSQL first; the user is read-only at the server
// too. Rows beyond query.max_rows are cut (Truncated); a result much
// larger is an error asking for a LIMIT. Callers limited to a region are
// refused (ErrScopedSQL): raw SQL cannot be scoped.
func (q *Questions) SQL(ctx context.Context, query, scope string) (t Table, err error) {
	defer q.observe(qSQL, time.Now(), &err)
	if q.store.ReadOnly() == nil {
		return Table{}, ErrNoSQL
	}
	if scope != "" {
		return Table{}, ErrScopedSQL
	}
	if len(query) > q.cfg.Query.MaxSQLBytes {
		return Table{}, paramErr("query", "%d bytes; at most %d (query.max_sql_bytes)", len(query), q.cfg.Query.MaxSQLBytes)
	}
	if err := CheckSQL(query); err != nil {
		return Table{}, err
	}
	return q.execSQL(ctx, query)
}

// execSQL runs query on the read-only connection, unchecked.
func (q *Questions) execSQL(ctx context.Context, query string) (Table, error) {
	ro := q.store.ReadOnly()
	if ro == nil {
		return Table{}, ErrNoSQL
	}
	lim := q.cfg.Query
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout.D())
	defer cancel()
	// result_overflow_mode stays at its default, throw: clickhouse-go
	// sends settings to 18.16 as integers only, and that one is a name.
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		// The user's profile is readonly = 2 already; asking again keeps a
		// misconfigured user read-only too.
		"readonly":           2,
		"max_execution_time": int(math.Ceil(lim.Timeout.D().Seconds())),
		"max_result_rows":    lim.MaxRows + 1,
		"max_memory_usage":   int(lim.MaxMemory),
	}))
	rows, err := ro.QueryContext(ctx, query)
	if err != nil {
		return Table{}, q.sqlError(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return Table{}, q.sqlError(err)
	}
	t := Table{Columns: cols, Rows: [][]any{}}
	for rows.Next() {
		if len(t.Rows) == lim.MaxRows {
			t.Truncated = true
			break
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return Table{}, q.sqlError(err)
		}
		for i, v := range vals {
			vals[i] = q.sqlValue(norm(v))
		}
		t.Rows = append(t.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return Table{}, q.sqlError(err)
	}
	return t, nil
}

// sqlValue makes a result value fit JSON: times in the zone, NaN and
// infinities as ClickHouse writes them, other types that JSON cannot hold
// as text.
func (q *Questions) sqlValue(v any) any {
	switch x := v.(type) {
	case nil, string, int64, uint64, bool:
		return v
	case time.Time:
		return x.In(q.loc)
	case float64:
		switch {
		case math.IsNaN(x):
			return "nan"
		case math.IsInf(x, 1):
			return "inf"
		case math.IsInf(x, -1):
			return "-inf"
		}
		return x
	}
	if _, err := json.Marshal(v); err != nil {
		return fmt.Sprint(v)
	}
	return v
}

func (q *Questions) sqlError(err error) error {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return fmt.Errorf("raw SQL: %w", err)
	}
	switch ex.Code {
	case chReadOnly:
		return fmt.Errorf("%w (%s)", ErrReadOnly, ex.Message)
	case chTooManyRows:
		return &SQLError{Code: ex.Code, Msg: fmt.Sprintf("the result has more than %d rows (query.max_rows): add a LIMIT or aggregate", q.cfg.Query.MaxRows)}
	case chMemoryLimit:
		return &SQLError{Code: ex.Code, Msg: fmt.Sprintf("the query needs more than %d bytes of memory (query.max_memory): narrow it", q.cfg.Query.MaxMemory)}
	case chTimeout:
		return &SQLError{Code: ex.Code, Msg: fmt.Sprintf("the query ran longer than %s (query.timeout): narrow it", q.cfg.Query.Timeout.D())}
	}
	return &SQLError{Code: ex.Code, Msg: ex.Message}
}

// sqlStarts are the statements raw SQL may be.
var sqlStarts = map[string]bool{"select": true, "with": true, "show": true, "describe": true, "desc": true, "explain": true}

// sqlTableFunctions reach outside the database (other servers, files,
// URLs): refused even though the user is read-only.
var sqlTableFunctions = map[string]bool{
	"url": true, "urlcluster": true, "remote": true, "remotesecure": true, "cluster": true, "clusterallreplicas": true,
	"mysql": true, "postgresql": true, "jdbc": true, "odbc": true, "hdfs": true, "hdfscluster": true, "s3": true,
	"s3cluster": true, "gcs": true, "azureblobstorage": true, "file": true, "input": true, "executable": true,
	"mongodb": true, "redis": true, "sqlite": true, "dictionary": true, "generaterandom": true,
}

// CheckSQL refuses what raw SQL may not be, as a *ParamError naming
// "query": anything but a single SELECT, WITH … SELECT, SHOW, DESCRIBE or
// EXPLAIN once comments are stripped; a second statement after ";"; INTO
// OUTFILE; a SETTINGS clause (it could raise the limits); table functions
// reaching outside the database. Where it and a server of any version
// could read a text differently it refuses: a comment inside a block
// comment, # and $ outside quotes.
func CheckSQL(query string) error {
	code, err := stripSQL(query)
	if err != nil {
		return paramErr("query", "%v", err)
	}
	if i := strings.IndexByte(code, ';'); i >= 0 {
		if strings.TrimSpace(strings.TrimRight(strings.TrimSpace(code[i:]), ";")) != "" {
			return paramErr("query", "one statement only: nothing may follow ';'")
		}
		code = code[:i]
	}
	words := sqlWords(code)
	if len(words) == 0 {
		return paramErr("query", "is empty")
	}
	if !sqlStarts[words[0].w] {
		return paramErr("query", "only SELECT, WITH … SELECT, SHOW, DESCRIBE and EXPLAIN may run, not %s", strings.ToUpper(words[0].w))
	}
	for i, w := range words {
		switch {
		case w.w == "into" && i+1 < len(words) && words[i+1].w == "outfile":
			return paramErr("query", "INTO OUTFILE is not allowed")
		case w.w == "settings":
			return paramErr("query", "SETTINGS is not allowed: the query limits are fixed")
		case w.call && sqlTableFunctions[w.w]:
			return paramErr("query", "the table function %s is not allowed", w.w)
		}
	}
	return nil
}

type sqlWord struct {
	w string // lower case
	// call: the word is followed by "(".
	call bool
}

// sqlWords lists the identifiers and keywords of stripped code.
func sqlWords(code string) []sqlWord {
	var out []sqlWord
	for i := 0; i < len(code); {
		c := code[i]
		if !isWordByte(c) {
			i++
			continue
		}
		j := i
		for j < len(code) && isWordByte(code[j]) {
			j++
		}
		k := j
		for k < len(code) && (code[k] == ' ' || code[k] == '\t' || code[k] == '\n' || code[k] == '\r' || code[k] == '\f' || code[k] == '\v') {
			k++
		}
		out = append(out, sqlWord{w: strings.ToLower(code[i:j]), call: k < len(code) && code[k] == '('})
		i = j
	}
	return out
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// stripSQL replaces comments by a space and string literals and quoted
// identifiers by a placeholder (an empty literal or the word q_), so that only code
// remains.
func stripSQL(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == 0:
			return "", errors.New("a NUL byte is not allowed")
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				i = len(s)
			} else {
				i += j
			}
			b.WriteByte(' ')
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return "", errors.New("a /* comment is not closed")
			}
			// Newer servers nest block comments, 18.16 does not.
			if strings.Contains(s[i+2:i+2+j], "/*") {
				return "", errors.New("a /* comment inside a comment is not allowed")
			}
			i += 2 + j + 2
			b.WriteByte(' ')
		case c == '#' || c == '$':
			// Comments (#) and heredoc strings ($$) on newer servers.
			return "", fmt.Errorf("%c is not allowed outside quotes", c)
		case c == '\'' || c == '"' || c == '`':
			j, err := quotedEnd(s, i)
			if err != nil {
				return "", err
			}
			if c == '\'' {
				b.WriteString("''")
			} else {
				b.WriteString("q_")
			}
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), nil
}

// quotedEnd is the index after the quoted text starting at s[i]: a
// backslash escapes the next byte, a doubled quote is one quote.
func quotedEnd(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case 0:
			return 0, errors.New("a NUL byte is not allowed")
		case '\\':
			j++
		case q:
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("a %c quote is not closed", q)
}

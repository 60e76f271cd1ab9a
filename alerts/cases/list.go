package cases

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/console/auth"
)

// Filter selects cases for the list.
type Filter struct {
	States     []State
	Colours    []Colour
	Categories []string
	Sources    []Source
	// Region narrows to a subtree (within the caller's own scope).
	Region     string
	Department string
	Grid       string
	Rule       string
	Overdue    bool
	// Text searches titles and numbers.
	Text string
	// Since and Until bound the creation time.
	Since, Until time.Time
	Limit        int
	// Cursor continues a previous page.
	Cursor string
}

// Page is one page of the list, newest first.
type Page struct {
	Cases []*Case `json:"cases"`
	// Next is the cursor of the next page; empty on the last.
	Next string `json:"next,omitempty"`
}

// scopeSQL limits rows to what p sees: cases in p's region, and cases
// whose lead, co- or task department is p's.
func scopeSQL(p *auth.Principal) (string, []any) {
	cond, args := auth.Scope{Region: p.Region}.SQL("region", "")
	if p.Region != "" && p.Department != "" {
		c, a := departmentSQL(p.Department)
		cond = "(" + cond + " OR " + c + ")"
		args = append(args, a...)
	}
	return cond, args
}

// departmentSQL matches cases a department leads, helps or holds a task of.
func departmentSQL(d string) (string, []any) {
	d = escapeLike(d)
	return `(departments LIKE ? ESCAPE '\' OR departments LIKE ? ESCAPE '\')`, []any{"%|" + d + "|%", "%|+" + d + "|%"}
}

func inList[T ~string](col string, vals []T) (string, []any) {
	ph := make([]string, len(vals))
	args := make([]any, len(vals))
	for i, v := range vals {
		ph[i], args[i] = "?", string(v)
	}
	return col + " IN (" + strings.Join(ph, ",") + ")", args
}

// List returns the cases p may see that match f, newest first.
func (s *Service) List(ctx context.Context, p *auth.Principal, f Filter) (*Page, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = s.cfg.PageSize
	}
	limit = min(limit, s.cfg.MaxPageSize)
	where, args := scopeSQL(p)
	conds := []string{where}
	add := func(c string, a ...any) { conds = append(conds, c); args = append(args, a...) }
	if len(f.States) > 0 {
		c, a := inList("state", f.States)
		add(c, a...)
	}
	if len(f.Colours) > 0 {
		c, a := inList("colour", f.Colours)
		add(c, a...)
	}
	if len(f.Categories) > 0 {
		c, a := inList("category", f.Categories)
		add(c, a...)
	}
	if len(f.Sources) > 0 {
		c, a := inList("source", f.Sources)
		add(c, a...)
	}
	if f.Region != "" {
		c, a := auth.Scope{Region: f.Region}.SQL("region", "")
		add(c, a...)
	}
	if f.Department != "" {
		c, a := departmentSQL(f.Department)
		add(c, a...)
	}
	if f.Grid != "" {
		add("grid = ?", f.Grid)
	}
	if f.Rule != "" {
		add("rule_id = ?", f.Rule)
	}
	if f.Overdue {
		add("state <> ? AND deadline_at > 0 AND deadline_at < ?", Closed, casedb.Millis(s.now()))
	}
	if f.Text != "" {
		like := "%" + escapeLike(f.Text) + "%"
		add(`(title LIKE ? ESCAPE '\' OR number LIKE ? ESCAPE '\')`, like, like)
	}
	if !f.Since.IsZero() {
		add("created_at >= ?", casedb.Millis(f.Since))
	}
	if !f.Until.IsZero() {
		add("created_at < ?", casedb.Millis(f.Until))
	}
	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, fieldErr("cursor", "%v", err)
		}
		add("(created_at < ? OR (created_at = ? AND id < ?))", at, at, id)
	}
	q := "SELECT " + caseColumns + " FROM cases WHERE " + strings.Join(conds, " AND ") +
		" ORDER BY created_at DESC, id DESC LIMIT " + strconv.Itoa(limit+1)
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list cases: %w", err)
	}
	defer rows.Close()
	page := &Page{Cases: []*Case{}}
	for rows.Next() {
		c, err := scanCase(rows)
		if err != nil {
			return nil, err
		}
		page.Cases = append(page.Cases, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(page.Cases) > limit {
		page.Cases = page.Cases[:limit]
		last := page.Cases[limit-1]
		page.Next = encodeCursor(casedb.Millis(last.Created), last.ID)
	}
	return page, nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func encodeCursor(at int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at, 10) + "|" + id))
}

func decodeCursor(s string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, "", fmt.Errorf("not a cursor this API gave out")
	}
	at, id, ok := strings.Cut(string(b), "|")
	n, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" {
		return 0, "", fmt.Errorf("not a cursor this API gave out")
	}
	return n, id, nil
}

// candidates finds open cases that may be the same matter as c: the same
// category, created within the merge window, in the same grid or within
// the merge distance. p, when not nil, limits them to what p sees.
func (s *Service) candidates(ctx context.Context, p *auth.Principal, c *Case) ([]Candidate, error) {
	if !c.State.Open() || c.MergedInto != "" || s.cfg.Merge.Window <= 0 {
		return []Candidate{}, nil
	}
	w := s.cfg.Merge.Window.D()
	conds := "category = ? AND id <> ? AND state <> ? AND created_at >= ? AND created_at <= ?"
	args := []any{c.Category, c.ID, Closed, casedb.Millis(c.Created.Add(-w)), casedb.Millis(c.Created.Add(w))}
	if c.Lat == nil || s.cfg.Merge.Distance <= 0 {
		// Only the same grid can match: let the grid index find them.
		if c.Grid == "" {
			return []Candidate{}, nil
		}
		conds += " AND grid = ?"
		args = append(args, c.Grid)
	}
	if p != nil {
		sc, sa := scopeSQL(p)
		conds += " AND " + sc
		args = append(args, sa...)
	}
	rows, err := s.db.Query(ctx, "SELECT "+caseColumns+" FROM cases WHERE "+conds+" ORDER BY created_at DESC LIMIT 100", args...)
	if err != nil {
		return nil, fmt.Errorf("merge candidates: %w", err)
	}
	defer rows.Close()
	out := []Candidate{}
	for rows.Next() {
		o, err := scanCase(rows)
		if err != nil {
			return nil, err
		}
		k := Candidate{ID: o.ID, Number: o.Number, Title: o.Title, State: o.State, Grid: o.Grid, Created: o.Created}
		switch {
		case c.Grid != "" && o.Grid == c.Grid:
			k.Why = "same grid and category within " + w.String()
		case c.Lat != nil && o.Lat != nil && s.cfg.Merge.Distance > 0:
			d := distance(*c.Lat, *c.Lon, *o.Lat, *o.Lon)
			if d > s.cfg.Merge.Distance {
				continue
			}
			d = math.Round(d)
			k.Distance = &d
			k.Why = fmt.Sprintf("same category %.0f m away within %s", d, w)
		default:
			continue
		}
		out = append(out, k)
		if len(out) == 10 {
			break
		}
	}
	return out, rows.Err()
}

// distance is the great-circle distance in metres.
func distance(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371000
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}

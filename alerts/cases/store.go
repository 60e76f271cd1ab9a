package cases

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/ingest/event"
)

// Errors callers test for.
var (
	ErrNotFound = errors.New("case not found")
	ErrStale    = errors.New("the case changed since it was read")
	// ErrUnknownCategory is an alert whose category has no playbook.
	ErrUnknownCategory = errors.New("unknown case category")
)

// txn is one database transaction with "?" placeholders rebound.
type txn struct {
	tx *sql.Tx
	db *casedb.DB
	// also collects the changes of other cases than the one acted on
	// (the target of a merge), published with the transaction's own.
	also *[]Change
}

// publish adds the change of another case to those the transaction
// publishes.
func (t txn) publish(ch Change) { *t.also = append(*t.also, ch) }

func (t txn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.db.Rebind(q), args...)
}

func (t txn) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.db.Rebind(q), args...)
}

func (t txn) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.db.Rebind(q), args...)
}

// querier is what reads need: the database or a transaction.
type querier interface {
	query(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	queryRow(ctx context.Context, q string, args ...any) *sql.Row
}

// dbq reads outside a transaction.
type dbq struct{ db *casedb.DB }

func (d dbq) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return d.db.Query(ctx, q, args...)
}

func (d dbq) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return d.db.QueryRow(ctx, q, args...)
}

// inTx runs f in a transaction, committed when f returns nil.
func inTx(ctx context.Context, db *casedb.DB, f func(t txn) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := f(txn{tx: tx, db: db, also: new([]Change)}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

const caseColumns = `id, number, state, title, description, category, colour, risk, source, rule_id,
	group_key, region, grid, level, department, departments, data, alert_count, urge_count,
	escalations, merged_into, deadline_at, created_at, updated_at, dispatched_at, accepted_at,
	resolved_at, closed_at, version`

type scanner interface{ Scan(dest ...any) error }

func scanCase(r scanner) (*Case, error) {
	var (
		c                                                              Case
		data, depts                                                    string
		deadline, created, updated, dispatched, accepted, resolved, cl int64
	)
	err := r.Scan(&c.ID, &c.Number, &c.State, &c.Title, &c.Description, &c.Category, &c.Colour, &c.Risk,
		&c.Source, &c.Rule, &c.GroupKey, &c.Region, &c.Grid, &c.Level, &c.Department, &depts, &data,
		&c.AlertCount, &c.UrgeCount, &c.Escalations, &c.MergedInto, &deadline, &created, &updated,
		&dispatched, &accepted, &resolved, &cl, &c.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(data), &c.Details); err != nil {
		return nil, fmt.Errorf("case %s: corrupt data column: %w", c.ID, err)
	}
	c.CoDepartments = coDepartments(depts, c.Department)
	c.Deadline, c.Created, c.Updated = casedb.FromMillis(deadline), casedb.FromMillis(created), casedb.FromMillis(updated)
	c.Dispatched, c.AcceptedAt = casedb.FromMillis(dispatched), casedb.FromMillis(accepted)
	c.ResolvedAt, c.ClosedAt = casedb.FromMillis(resolved), casedb.FromMillis(cl)
	return &c, nil
}

// The departments column lists every department involved as
// "|lead|co1|co2|task-dept|", so that a department's scope is one LIKE.
// Co-departments are kept in it in order after the lead; task departments
// are added with a "+" prefix.
func departmentsColumn(c *Case, tasks []Task) string {
	var b strings.Builder
	b.WriteByte('|')
	if c.Department != "" {
		b.WriteString(c.Department + "|")
	}
	for _, d := range c.CoDepartments {
		b.WriteString(d + "|")
	}
	for _, t := range tasks {
		b.WriteString("+" + t.Department + "|")
	}
	return b.String()
}

func coDepartments(col, lead string) []string {
	var out []string
	for i, d := range strings.Split(strings.Trim(col, "|"), "|") {
		if d == "" || strings.HasPrefix(d, "+") || (i == 0 && d == lead) {
			continue
		}
		out = append(out, d)
	}
	return out
}

func getCase(ctx context.Context, q querier, id string) (*Case, error) {
	return scanCase(q.queryRow(ctx, "SELECT "+caseColumns+" FROM cases WHERE id = ?", id))
}

// lockCase reads a case for update: on PostgreSQL the row stays locked
// until the transaction ends; SQLite's transactions are already exclusive.
func lockCase(ctx context.Context, t txn, id string) (*Case, error) {
	q := "SELECT " + caseColumns + " FROM cases WHERE id = ?"
	if t.db.Driver() == casedb.Postgres {
		q += " FOR UPDATE"
	}
	return scanCase(t.queryRow(ctx, q, id))
}

func insertCase(ctx context.Context, t txn, c *Case) error {
	data, err := json.Marshal(c.Details)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO cases (`+caseColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		c.ID, c.Number, c.State, c.Title, c.Description, c.Category, c.Colour, c.Risk, c.Source, c.Rule,
		c.GroupKey, c.Region, c.Grid, c.Level, c.Department, departmentsColumn(c, nil), string(data),
		c.AlertCount, c.UrgeCount, c.Escalations, c.MergedInto, casedb.Millis(c.Deadline),
		casedb.Millis(c.Created), casedb.Millis(c.Updated), casedb.Millis(c.Dispatched),
		casedb.Millis(c.AcceptedAt), casedb.Millis(c.ResolvedAt), casedb.Millis(c.ClosedAt), c.Version)
	if err != nil {
		return fmt.Errorf("insert case: %w", err)
	}
	return nil
}

// updateCase writes c if its stored version is still c.Version, and bumps it.
func updateCase(ctx context.Context, t txn, c *Case, ts []Task) error {
	if ts == nil {
		var err error
		if ts, err = tasks(ctx, t, c.ID); err != nil {
			return err
		}
	}
	data, err := json.Marshal(c.Details)
	if err != nil {
		return err
	}
	res, err := t.exec(ctx, `UPDATE cases SET state=?, title=?, description=?, category=?, colour=?, risk=?,
		level=?, department=?, departments=?, data=?, alert_count=?, urge_count=?, escalations=?, merged_into=?,
		deadline_at=?, updated_at=?, dispatched_at=?, accepted_at=?, resolved_at=?, closed_at=?, version=version+1
		WHERE id=? AND version=?`,
		c.State, c.Title, c.Description, c.Category, c.Colour, c.Risk, c.Level, c.Department,
		departmentsColumn(c, ts), string(data), c.AlertCount, c.UrgeCount, c.Escalations, c.MergedInto,
		casedb.Millis(c.Deadline), casedb.Millis(c.Updated), casedb.Millis(c.Dispatched),
		casedb.Millis(c.AcceptedAt), casedb.Millis(c.ResolvedAt), casedb.Millis(c.ClosedAt), c.ID, c.Version)
	if err != nil {
		return fmt.Errorf("update case: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrStale
	}
	c.Version++
	return nil
}

func appendHistory(ctx context.Context, t txn, caseID string, h *HistoryEntry) error {
	if err := t.queryRow(ctx, "SELECT COALESCE(MAX(seq), 0) + 1 FROM case_history WHERE case_id = ?", caseID).Scan(&h.Seq); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	var data string
	if len(h.Data) > 0 {
		b, err := json.Marshal(h.Data)
		if err != nil {
			return err
		}
		data = string(b)
	}
	_, err := t.exec(ctx, `INSERT INTO case_history (case_id, seq, at, actor, role, action, from_state, to_state, note, data)
		VALUES (?,?,?,?,?,?,?,?,?,?)`, caseID, h.Seq, casedb.Millis(h.At), h.Actor, h.Role, h.Action, h.From, h.To, h.Note, data)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

func history(ctx context.Context, q querier, caseID string) ([]HistoryEntry, error) {
	rows, err := q.query(ctx, `SELECT seq, at, actor, role, action, from_state, to_state, note, data
		FROM case_history WHERE case_id = ? ORDER BY seq`, caseID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []HistoryEntry{}
	for rows.Next() {
		var (
			h    HistoryEntry
			at   int64
			data string
		)
		if err := rows.Scan(&h.Seq, &at, &h.Actor, &h.Role, &h.Action, &h.From, &h.To, &h.Note, &data); err != nil {
			return nil, err
		}
		h.At = casedb.FromMillis(at)
		if data != "" {
			json.Unmarshal([]byte(data), &h.Data)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// addEvidence attaches e unless the same evidence is already attached; it
// reports whether it was new.
func addEvidence(ctx context.Context, t txn, caseID string, e *Evidence) (bool, error) {
	var n int
	if err := t.queryRow(ctx, `SELECT COUNT(*) FROM case_evidence WHERE case_id=? AND event_id=? AND kind=? AND ref=?`,
		caseID, e.EventID, e.Kind, e.Ref).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if err := t.queryRow(ctx, "SELECT COALESCE(MAX(seq), 0) + 1 FROM case_evidence WHERE case_id = ?", caseID).Scan(&e.Seq); err != nil {
		return false, err
	}
	var data string
	if len(e.Data) > 0 {
		b, err := json.Marshal(e.Data)
		if err != nil {
			return false, err
		}
		data = string(b)
	}
	_, err := t.exec(ctx, `INSERT INTO case_evidence (case_id, seq, kind, ref, content_type, sha256, event_id, captured_at, attached_at, attached_by, data)
		VALUES (?,?,?,?,?,?,?,?,?,?,?)`, caseID, e.Seq, e.Kind, e.Ref, e.ContentType, e.SHA256, e.EventID,
		casedb.Millis(e.Captured), casedb.Millis(e.Attached), e.AttachedBy, data)
	if err != nil {
		return false, fmt.Errorf("attach evidence: %w", err)
	}
	return true, nil
}

func evidence(ctx context.Context, q querier, caseID string) ([]Evidence, error) {
	rows, err := q.query(ctx, `SELECT seq, kind, ref, content_type, sha256, event_id, captured_at, attached_at, attached_by, data
		FROM case_evidence WHERE case_id = ? ORDER BY seq`, caseID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Evidence{}
	for rows.Next() {
		var (
			e                  Evidence
			captured, attached int64
			data               string
		)
		if err := rows.Scan(&e.Seq, &e.Kind, &e.Ref, &e.ContentType, &e.SHA256, &e.EventID, &captured, &attached, &e.AttachedBy, &data); err != nil {
			return nil, err
		}
		e.Captured, e.Attached = casedb.FromMillis(captured), casedb.FromMillis(attached)
		if data != "" {
			json.Unmarshal([]byte(data), &e.Data)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func insertTask(ctx context.Context, t txn, caseID string, k *Task) error {
	_, err := t.exec(ctx, `INSERT INTO case_tasks (case_id, id, department, title, state, deadline_at, outcome, created_at, accepted_at, done_at)
		VALUES (?,?,?,?,?,?,?,?,?,?)`, caseID, k.ID, k.Department, k.Title, k.State, casedb.Millis(k.Deadline), k.Outcome,
		casedb.Millis(k.Created), casedb.Millis(k.AcceptedAt), casedb.Millis(k.DoneAt))
	if err != nil {
		return fmt.Errorf("insert task: %w", err)
	}
	return nil
}

func updateTask(ctx context.Context, t txn, caseID string, k *Task) error {
	_, err := t.exec(ctx, `UPDATE case_tasks SET state=?, outcome=?, accepted_at=?, done_at=? WHERE case_id=? AND id=?`,
		k.State, k.Outcome, casedb.Millis(k.AcceptedAt), casedb.Millis(k.DoneAt), caseID, k.ID)
	return err
}

func tasks(ctx context.Context, q querier, caseID string) ([]Task, error) {
	rows, err := q.query(ctx, `SELECT id, department, title, state, deadline_at, outcome, created_at, accepted_at, done_at
		FROM case_tasks WHERE case_id = ? ORDER BY created_at, id`, caseID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Task{}
	for rows.Next() {
		var (
			k                                 Task
			deadline, created, accepted, done int64
		)
		if err := rows.Scan(&k.ID, &k.Department, &k.Title, &k.State, &deadline, &k.Outcome, &created, &accepted, &done); err != nil {
			return nil, err
		}
		k.Deadline, k.Created = casedb.FromMillis(deadline), casedb.FromMillis(created)
		k.AcceptedAt, k.DoneAt = casedb.FromMillis(accepted), casedb.FromMillis(done)
		out = append(out, k)
	}
	return out, rows.Err()
}

func insertTimer(ctx context.Context, t txn, caseID string, tm Timer) error {
	_, err := t.exec(ctx, `INSERT INTO case_timers (id, case_id, task_id, stage, kind, step, due_at) VALUES (?,?,?,?,?,?,?)`,
		event.NewID().String(), caseID, tm.Task, tm.Stage, tm.Kind, tm.Step, casedb.Millis(tm.Due))
	if err != nil {
		return fmt.Errorf("insert timer: %w", err)
	}
	return nil
}

// cancelTimers cancels the case's timers that have not fired, those of one
// task when task is not empty, else those of the case's stages.
func cancelTimers(ctx context.Context, t txn, caseID, task string) error {
	_, err := t.exec(ctx, `UPDATE case_timers SET cancelled = 1 WHERE case_id = ? AND task_id = ? AND fired_at = 0 AND cancelled = 0`, caseID, task)
	return err
}

// cancelAllTimers cancels every waiting timer of the case but the
// gathering of its evidence (readings), which is about the event whatever
// becomes of the case.
func cancelAllTimers(ctx context.Context, t txn, caseID string) error {
	_, err := t.exec(ctx, `UPDATE case_timers SET cancelled = 1 WHERE case_id = ? AND kind <> ? AND fired_at = 0 AND cancelled = 0`, caseID, TimerReadings)
	return err
}

func timers(ctx context.Context, q querier, caseID string) ([]Timer, error) {
	rows, err := q.query(ctx, `SELECT id, task_id, stage, kind, step, due_at, fired_at, cancelled
		FROM case_timers WHERE case_id = ? ORDER BY due_at, id`, caseID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Timer{}
	for rows.Next() {
		var (
			tm         Timer
			due, fired int64
			cancelled  int
		)
		if err := rows.Scan(&tm.ID, &tm.Task, &tm.Stage, &tm.Kind, &tm.Step, &due, &fired, &cancelled); err != nil {
			return nil, err
		}
		tm.Due, tm.Fired, tm.Cancelled = casedb.FromMillis(due), casedb.FromMillis(fired), cancelled != 0
		out = append(out, tm)
	}
	return out, rows.Err()
}

// nextNumber allocates the case number: the year and a sequence within it,
// such as 2026-000123.
func nextNumber(ctx context.Context, t txn, now time.Time) (string, error) {
	year := strconv.Itoa(now.In(shanghai).Year())
	name := "case_number/" + year
	if _, err := t.exec(ctx, "INSERT INTO counters (name, value) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", name); err != nil {
		return "", fmt.Errorf("case number: %w", err)
	}
	if _, err := t.exec(ctx, "UPDATE counters SET value = value + 1 WHERE name = ?", name); err != nil {
		return "", fmt.Errorf("case number: %w", err)
	}
	var v int64
	if err := t.queryRow(ctx, "SELECT value FROM counters WHERE name = ?", name).Scan(&v); err != nil {
		return "", fmt.Errorf("case number: %w", err)
	}
	return fmt.Sprintf("%s-%06d", year, v), nil
}

// openByGroup finds and locks (see lockCase) the open case of an alert group.
func openByGroup(ctx context.Context, t txn, key string) (*Case, error) {
	q := "SELECT " + caseColumns + " FROM cases WHERE group_key = ? AND state <> ? ORDER BY created_at DESC LIMIT 1"
	if t.db.Driver() == casedb.Postgres {
		q += " FOR UPDATE"
	}
	return scanCase(t.queryRow(ctx, q, key, Closed))
}

package outbox

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"sharpeye/alerts/casedb"
)

// DeadLetter is a record a webhook subscriber refused for good, as the API
// shows it. It carries no secret and no URL: only the subscriber's name.
type DeadLetter struct {
	// ID names the dead letter in the API.
	ID string `json:"id"`
	// Sink is the subscriber's name (alerts.outbox.webhooks[].name).
	Sink string `json:"sink"`
	// SinkConfigured is false once the subscriber has left this node's
	// configuration: the dead letter can then only be discarded.
	SinkConfigured bool `json:"sink_configured"`
	// OutboxID is the record's position in the outbox (the body's seq).
	OutboxID int64 `json:"outbox_id"`
	// UID is the record's unique id, its Idempotency-Key.
	UID  string `json:"uid"`
	Type string `json:"type"`
	// Key is the case id.
	Key string `json:"key"`
	// Status and Response are the refusal's: the HTTP status and the
	// first KiB of the answer.
	Status   int    `json:"status"`
	Response string `json:"response"`
	// At is when the subscriber last refused it.
	At time.Time `json:"at"`
	// RecordedAt is when the change was recorded (the body's time).
	RecordedAt time.Time `json:"recorded_at,omitzero"`
	// Value is the record's value: the case change.
	Value json.RawMessage `json:"value"`
	// RetryRequestedAt and RetryRequestedBy are set while a retry asked
	// for is pending.
	RetryRequestedAt *time.Time `json:"retry_requested_at,omitempty"`
	RetryRequestedBy string     `json:"retry_requested_by,omitempty"`
}

// deadLetterFilter selects dead letters for the list.
type deadLetterFilter struct {
	sinks []string // sink names ("webhook:<name>"); any when empty
	types []string // any when empty
	limit int
	// before is the cursor of the previous page: its last item's at and id.
	before *deadLetterCursor
}

type deadLetterCursor struct {
	at int64
	id string
}

func (c deadLetterCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.at, 10) + "|" + c.id))
}

var errBadCursor = errors.New("not a cursor this API gave out")

func parseDeadLetterCursor(s string) (deadLetterCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return deadLetterCursor{}, errBadCursor
	}
	at, id, ok := strings.Cut(string(b), "|")
	n, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" {
		return deadLetterCursor{}, errBadCursor
	}
	return deadLetterCursor{at: n, id: id}, nil
}

const deadLetterColumns = "id, sink, outbox_id, uid, type, msg_key, status, response, at, created_at, value, retry_at, retry_by"

func scanDeadLetter(sc interface{ Scan(...any) error }) (*DeadLetter, error) {
	var (
		dl                 DeadLetter
		at, created, retry int64
		value              string
	)
	if err := sc.Scan(&dl.ID, &dl.Sink, &dl.OutboxID, &dl.UID, &dl.Type, &dl.Key, &dl.Status, &dl.Response, &at, &created, &value, &retry, &dl.RetryRequestedBy); err != nil {
		return nil, err
	}
	dl.Sink = strings.TrimPrefix(dl.Sink, "webhook:")
	dl.At = casedb.FromMillis(at)
	dl.RecordedAt = casedb.FromMillis(created)
	if retry > 0 {
		t := casedb.FromMillis(retry)
		dl.RetryRequestedAt = &t
	}
	if json.Valid([]byte(value)) {
		dl.Value = json.RawMessage(value)
	} else {
		// Enqueue checked it is JSON: only a hand edit gets here.
		dl.Value, _ = json.Marshal(value)
	}
	return &dl, nil
}

// listDeadLetters returns a page of dead letters matching f, newest first,
// and the cursor of the next page ("" on the last).
func (s store) listDeadLetters(ctx context.Context, f deadLetterFilter) ([]*DeadLetter, string, error) {
	var (
		conds []string
		args  []any
	)
	in := func(col string, vals []string) {
		conds = append(conds, col+" IN ("+strings.Repeat("?, ", len(vals)-1)+"?)")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	if len(f.sinks) > 0 {
		in("sink", f.sinks)
	}
	if len(f.types) > 0 {
		in("type", f.types)
	}
	if c := f.before; c != nil {
		conds = append(conds, "(at < ? OR (at = ? AND id < ?))")
		args = append(args, c.at, c.at, c.id)
	}
	q := "SELECT " + deadLetterColumns + " FROM outbox_dead_letters"
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	q += " ORDER BY at DESC, id DESC LIMIT " + strconv.Itoa(f.limit+1)
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	out := []*DeadLetter{}
	for rows.Next() {
		dl, err := scanDeadLetter(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list dead letters: %w", err)
		}
		out = append(out, dl)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list dead letters: %w", err)
	}
	next := ""
	if len(out) > f.limit {
		out = out[:f.limit]
		last := out[len(out)-1]
		next = deadLetterCursor{at: casedb.Millis(last.At), id: last.ID}.String()
	}
	return out, next, nil
}

// errNoDeadLetter: no dead letter has the id asked for.
var errNoDeadLetter = errors.New("no such dead letter")

// getDeadLetter returns the dead letter id, or errNoDeadLetter.
func (s store) getDeadLetter(ctx context.Context, id string) (*DeadLetter, error) {
	dl, err := scanDeadLetter(s.db.QueryRow(ctx, "SELECT "+deadLetterColumns+" FROM outbox_dead_letters WHERE id = ?", id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, errNoDeadLetter
	case err != nil:
		return nil, fmt.Errorf("read dead letter %s: %w", id, err)
	}
	return dl, nil
}

// requestRetry asks for the dead letter id to be sent again; it returns
// errNoDeadLetter when there is none.
func (s store) requestRetry(ctx context.Context, id, by string, now time.Time) error {
	res, err := s.db.Exec(ctx, "UPDATE outbox_dead_letters SET retry_at = ?, retry_by = ? WHERE id = ?", casedb.Millis(now), by, id)
	if err != nil {
		return fmt.Errorf("request retry of dead letter %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("request retry of dead letter %s: %w", id, err)
	} else if n == 0 {
		return errNoDeadLetter
	}
	return nil
}

// discard deletes the dead letter id and returns it as it was, or
// errNoDeadLetter.
func (s store) discard(ctx context.Context, id string) (*DeadLetter, error) {
	dl, err := scanDeadLetter(s.db.QueryRow(ctx, "DELETE FROM outbox_dead_letters WHERE id = ? RETURNING "+deadLetterColumns, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, errNoDeadLetter
	case err != nil:
		return nil, fmt.Errorf("delete dead letter %s: %w", id, err)
	}
	return dl, nil
}

// deadLetterCounts returns how many dead letters each sink holds.
func (s store) deadLetterCounts(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.Query(ctx, "SELECT sink, COUNT(*) FROM outbox_dead_letters GROUP BY sink")
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var (
			sink string
			n    int64
		)
		if err := rows.Scan(&sink, &n); err != nil {
			return nil, fmt.Errorf("count dead letters: %w", err)
		}
		out[sink] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	return out, nil
}

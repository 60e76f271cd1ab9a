package outbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"sharpeye/alerts/casedb"
)

// MaxValueBytes bounds a record's value.
const MaxValueBytes = 256 << 10

// Errors of Enqueue, for errors.Is.
var (
	ErrInvalidRecord = errors.New("invalid outbox record")
	ErrTooLarge      = errors.New("outbox record value too large")
)

// Record is one change leaving the platform: a message for the bus and,
// when its type matches, a webhook request to each subscriber.
type Record struct {
	// Topic is the bus topic, normally bus.TopicCases.
	Topic string
	// Key is the bus key: the case id, so that a case's changes keep their
	// order.
	Key string
	// Type names the change, such as "case.created"; webhook subscribers
	// filter on it.
	Type string
	// Value is the JSON payload, at most MaxValueBytes.
	Value []byte
	// Headers go with the bus message (not the webhook request).
	Headers map[string]string
}

// Bus message headers added to every record's own.
const (
	// HeaderID is the record's unique id, the same as the webhook
	// Idempotency-Key: consumers drop a message they have seen.
	HeaderID = "outbox-id"
	// HeaderType is the record's Type.
	HeaderType = "type"
)

func (r *Record) check() error {
	switch {
	case r.Topic == "":
		return fmt.Errorf("%w: no topic", ErrInvalidRecord)
	case r.Type == "":
		return fmt.Errorf("%w: no type (topic %s, key %q)", ErrInvalidRecord, r.Topic, r.Key)
	case len(r.Value) > MaxValueBytes:
		return fmt.Errorf("%w: %s %q is %d bytes, over %d", ErrTooLarge, r.Type, r.Key, len(r.Value), MaxValueBytes)
	case !utf8.Valid(r.Value) || !json.Valid(r.Value):
		return fmt.Errorf("%w: %s %q: value is not valid JSON", ErrInvalidRecord, r.Type, r.Key)
	}
	for k := range r.Headers {
		if k == "" {
			return fmt.Errorf("%w: %s %q: empty header name", ErrInvalidRecord, r.Type, r.Key)
		}
	}
	for _, s := range []string{r.Topic, r.Key, r.Type} {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%w: topic, key and type must be UTF-8 text without NUL", ErrInvalidRecord)
		}
	}
	return nil
}

// Enqueue adds recs to the outbox inside tx, the caller's transaction that
// makes the change they describe: they are delivered if and only if tx
// commits. driver is the database's (casedb.SQLite or casedb.Postgres), for
// its placeholders.
//
// On PostgreSQL, Enqueue locks the outbox's id counter until tx ends, which
// serialises the transactions that enqueue: call it as late in tx as
// possible. At the default READ COMMITTED isolation the others wait; at
// REPEATABLE READ or SERIALIZABLE they fail with a serialization error, to
// be retried. Call Dispatcher.Notify after the commit for prompt delivery.
func Enqueue(ctx context.Context, tx *sql.Tx, driver string, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	if driver != casedb.SQLite && driver != casedb.Postgres {
		return fmt.Errorf("outbox enqueue: unknown driver %q", driver)
	}
	rows := make([][]any, len(recs))
	now := time.Now().UnixMilli()
	for i := range recs {
		r := &recs[i]
		if err := r.check(); err != nil {
			return err
		}
		headers := ""
		if len(r.Headers) > 0 {
			b, err := json.Marshal(r.Headers)
			if err != nil {
				return fmt.Errorf("%w: %s %q: headers: %v", ErrInvalidRecord, r.Type, r.Key, err)
			}
			headers = string(b)
		}
		rows[i] = []any{rand.Text(), r.Topic, r.Key, r.Type, string(r.Value), headers, now}
	}

	var last int64
	q := casedb.Rebind(driver, "UPDATE outbox_seq SET last_id = last_id + ? WHERE name = 'outbox' RETURNING last_id")
	if err := tx.QueryRowContext(ctx, q, len(recs)).Scan(&last); err != nil {
		return fmt.Errorf("outbox enqueue: allocate ids: %w", err)
	}
	// One statement per insertChunk records: a round trip each.
	id := last - int64(len(recs)) + 1
	for chunk := range slices.Chunk(rows, insertChunk) {
		q := "INSERT INTO outbox (id, uid, topic, msg_key, type, value, headers, created_at) VALUES " + casedb.Placeholders(len(chunk), 8)
		args := make([]any, 0, 8*len(chunk))
		for _, row := range chunk {
			args = append(args, id)
			args = append(args, row...)
			id++
		}
		if _, err := tx.ExecContext(ctx, casedb.Rebind(driver, q), args...); err != nil {
			return fmt.Errorf("outbox enqueue %d records: %w", len(chunk), err)
		}
	}
	return nil
}

// insertChunk is how many records one INSERT writes.
const insertChunk = 100

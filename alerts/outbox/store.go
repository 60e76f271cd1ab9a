package outbox

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"sharpeye/alerts/casedb"
)

// stored is a record as read back from the outbox.
type stored struct {
	id      int64
	uid     string
	topic   string
	key     string
	typ     string
	value   []byte
	headers map[string]string
	created time.Time
	// retry is set when the record is a dead letter sent again.
	retry retryOf
}

// retryOf names the dead letter a record is sent again from.
type retryOf struct {
	id string // the dead letter's
	by string // who asked
}

// store is the dispatcher's access to the outbox tables.
type store struct {
	db *casedb.DB
}

// load returns up to limit records after id, in id order.
func (s store) load(ctx context.Context, after int64, limit int) ([]stored, error) {
	rows, err := s.db.Query(ctx, "SELECT id, uid, topic, msg_key, type, value, headers, created_at FROM outbox WHERE id > ? ORDER BY id LIMIT ?", after, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	defer rows.Close()
	var out []stored
	for rows.Next() {
		var (
			r       stored
			value   string
			headers string
			created int64
		)
		if err := rows.Scan(&r.id, &r.uid, &r.topic, &r.key, &r.typ, &value, &headers, &created); err != nil {
			return nil, fmt.Errorf("read outbox: %w", err)
		}
		r.value = []byte(value)
		r.created = casedb.FromMillis(created)
		if headers != "" {
			if err := json.Unmarshal([]byte(headers), &r.headers); err != nil {
				// Enqueue wrote it: only a hand edit gets here. Deliver
				// without the headers rather than never.
				r.headers = map[string]string{"outbox-bad-headers": "1"}
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}

// head returns the last id allocated.
func (s store) head(ctx context.Context) (int64, error) {
	var id int64
	err := s.db.QueryRow(ctx, "SELECT last_id FROM outbox_seq WHERE name = 'outbox'").Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("read outbox head: %w", err)
	}
	return id, nil
}

// cursor returns the last id delivered to sink, creating its cursor at 0
// (the oldest record kept) the first time.
func (s store) cursor(ctx context.Context, sink string, now time.Time) (int64, error) {
	if _, err := s.db.Exec(ctx, "INSERT INTO outbox_cursors (sink, last_id, updated_at) VALUES (?, 0, ?) ON CONFLICT (sink) DO NOTHING", sink, casedb.Millis(now)); err != nil {
		return 0, fmt.Errorf("create cursor of %s: %w", sink, err)
	}
	var id int64
	if err := s.db.QueryRow(ctx, "SELECT last_id FROM outbox_cursors WHERE sink = ?", sink).Scan(&id); err != nil {
		return 0, fmt.Errorf("read cursor of %s: %w", sink, err)
	}
	return id, nil
}

// advance moves sink's cursor forward to id; never back, should another
// dispatcher have gone further.
func (s store) advance(ctx context.Context, sink string, id int64, now time.Time) error {
	_, err := s.db.Exec(ctx, "UPDATE outbox_cursors SET last_id = ?, updated_at = ? WHERE sink = ? AND last_id < ?", id, casedb.Millis(now), sink, id)
	if err != nil {
		return fmt.Errorf("advance cursor of %s to %d: %w", sink, id, err)
	}
	return nil
}

// deadLetter keeps a record a subscriber refused. A record refused again
// (a retry refused, or delivered twice after a crash) keeps its dead
// letter's id: the status, response and time are the last refusal's, and
// any retry asked for is done.
func (s store) deadLetter(ctx context.Context, sink string, r stored, status int, response string, now time.Time) error {
	_, err := s.db.Exec(ctx, `INSERT INTO outbox_dead_letters (id, sink, outbox_id, uid, type, msg_key, value, created_at, status, response, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (sink, outbox_id) DO UPDATE SET status = excluded.status, response = excluded.response, at = excluded.at, retry_at = 0, retry_by = ''`,
		rand.Text(), sink, r.id, r.uid, r.typ, r.key, string(r.value), casedb.Millis(r.created), status, response, casedb.Millis(now))
	if err != nil {
		return fmt.Errorf("dead-letter record %d of %s: %w", r.id, sink, err)
	}
	return nil
}

// retries returns up to limit of sink's dead letters whose retry was asked
// for, the longest waiting first, as records to post again.
func (s store) retries(ctx context.Context, sink string, limit int) ([]stored, error) {
	rows, err := s.db.Query(ctx, `SELECT id, outbox_id, uid, type, msg_key, value, created_at, retry_by FROM outbox_dead_letters
		WHERE sink = ? AND retry_at > 0 ORDER BY retry_at, id LIMIT ?`, sink, limit)
	if err != nil {
		return nil, fmt.Errorf("read retries of %s: %w", sink, err)
	}
	defer rows.Close()
	var out []stored
	for rows.Next() {
		var (
			r       stored
			value   string
			created int64
		)
		if err := rows.Scan(&r.retry.id, &r.id, &r.uid, &r.typ, &r.key, &value, &created, &r.retry.by); err != nil {
			return nil, fmt.Errorf("read retries of %s: %w", sink, err)
		}
		r.value = []byte(value)
		r.created = casedb.FromMillis(created)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read retries of %s: %w", sink, err)
	}
	return out, nil
}

// forget deletes the dead letter id, delivered on a retry.
func (s store) forget(ctx context.Context, id string) error {
	if _, err := s.db.Exec(ctx, "DELETE FROM outbox_dead_letters WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete dead letter %s: %w", id, err)
	}
	return nil
}

// claim takes or renews the lease for holder until now+ttl, when it is free,
// expired or already holder's. It reports whether holder has it.
func (s store) claim(ctx context.Context, holder string, now time.Time, ttl time.Duration) (bool, error) {
	res, err := s.db.Exec(ctx, "UPDATE outbox_lease SET holder = ?, expires_at = ? WHERE name = 'dispatcher' AND (holder = ? OR expires_at <= ?)",
		holder, casedb.Millis(now.Add(ttl)), holder, casedb.Millis(now))
	if err != nil {
		return false, fmt.Errorf("claim outbox lease: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim outbox lease: %w", err)
	}
	return n == 1, nil
}

// release gives the lease up if holder has it.
func (s store) release(ctx context.Context, holder string) error {
	_, err := s.db.Exec(ctx, "UPDATE outbox_lease SET expires_at = 0 WHERE name = 'dispatcher' AND holder = ?", holder)
	if err != nil {
		return fmt.Errorf("release outbox lease: %w", err)
	}
	return nil
}

// prunable returns the last id every sink has delivered: 0 unless each of
// sinks has a cursor.
func (s store) prunable(ctx context.Context, sinks []string) (int64, error) {
	args := make([]any, len(sinks))
	for i, name := range sinks {
		args[i] = name
	}
	q := "SELECT COUNT(*), COALESCE(MIN(last_id), 0) FROM outbox_cursors WHERE sink IN (" + strings.Repeat("?, ", len(sinks)-1) + "?)"
	var n int
	var low int64
	if err := s.db.QueryRow(ctx, q, args...).Scan(&n, &low); err != nil {
		return 0, fmt.Errorf("read outbox cursors: %w", err)
	}
	if n < len(sinks) {
		return 0, nil
	}
	return low, nil
}

// prune deletes up to limit records with ids up to upTo created before
// before; it returns how many it deleted.
func (s store) prune(ctx context.Context, upTo int64, before time.Time, limit int) (int64, error) {
	res, err := s.db.Exec(ctx, "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id <= ? AND created_at < ? ORDER BY id LIMIT ?)",
		upTo, casedb.Millis(before), limit)
	if err != nil {
		return 0, fmt.Errorf("prune outbox: %w", err)
	}
	return res.RowsAffected()
}

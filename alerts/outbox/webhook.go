package outbox

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"sharpeye/ingest/bus"
)

// Webhook request headers.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderEvent          = "X-Sharpeye-Event"
	HeaderTimestamp      = "X-Sharpeye-Timestamp"
	HeaderSignature      = "X-Sharpeye-Signature"
)

// SignatureTolerance is how far VerifySignature lets a request's timestamp
// be from the receiver's clock.
const SignatureTolerance = 5 * time.Minute

// Errors of VerifySignature.
var (
	ErrBadSignature   = errors.New("webhook signature does not match")
	ErrStaleTimestamp = errors.New("webhook timestamp outside tolerance")
)

const (
	// responseKept is how much of a refusal's body is dead-lettered.
	responseKept = 1 << 10
	// maxRetryAfter caps a subscriber's Retry-After.
	maxRetryAfter = time.Hour
)

// Body is the JSON body of a webhook request: one record per request.
type Body struct {
	// ID is the record's unique id, also sent as Idempotency-Key.
	ID string `json:"id"`
	// Seq is the record's position in the outbox: increasing, in commit
	// order, the order in which the subscriber receives records.
	Seq int64 `json:"seq"`
	// Type is the change, also sent as X-Sharpeye-Event.
	Type string `json:"type"`
	// Key is the case id.
	Key string `json:"key"`
	// Time is when the change was recorded (by Enqueue, in its
	// transaction).
	Time time.Time `json:"time"`
	// Data is the record's value.
	Data json.RawMessage `json:"data"`
}

// Sign returns the X-Sharpeye-Signature value of body sent at timestamp
// (Unix seconds, as in X-Sharpeye-Timestamp).
func Sign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks a webhook request as a receiver would: header is
// X-Sharpeye-Signature, timestamp X-Sharpeye-Timestamp, and the timestamp
// must be within SignatureTolerance of the local clock (a replayed request
// is refused once it is stale; a fresh duplicate is caught by its
// Idempotency-Key).
func VerifySignature(secret, timestamp string, body []byte, header string) error {
	return verifySignature(secret, timestamp, body, header, time.Now(), SignatureTolerance)
}

func verifySignature(secret, timestamp string, body []byte, header string, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not Unix seconds", ErrStaleTimestamp, timestamp)
	}
	if d := now.Sub(time.Unix(sec, 0)).Abs(); d > tolerance {
		return fmt.Errorf("%w: %s off, tolerance %s", ErrStaleTimestamp, d.Round(time.Second), tolerance)
	}
	if !strings.HasPrefix(header, "sha256=") {
		return fmt.Errorf("%w: header must be sha256=<hex>", ErrBadSignature)
	}
	if !hmac.Equal([]byte(header), []byte(Sign(secret, timestamp, body))) {
		return ErrBadSignature
	}
	return nil
}

// webhook posts records to one subscriber.
type webhook struct {
	cfg    *Webhook
	client *http.Client
}

func newWebhook(cfg *Webhook) *webhook {
	return &webhook{cfg: cfg, client: &http.Client{
		Timeout: cfg.Timeout.D(),
		// A redirect is a misconfigured URL, retried (and logged) until
		// the configuration is mended: following it would turn the POST
		// into a GET.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// outcome is what one attempt gave.
type outcome struct {
	status     int           // 0 when no response
	refused    bool          // for good: dead-letter it
	err        error         // why it failed, nil when delivered
	retryAfter time.Duration // asked for by the subscriber, 0 when not
	response   string        // the start of the body of a refusal
}

// send makes one attempt at posting body.
func (w *webhook) send(ctx context.Context, r stored, body []byte, now time.Time) outcome {
	ts := strconv.FormatInt(now.Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return outcome{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sharpeye-outbox")
	req.Header.Set(HeaderIdempotencyKey, r.uid)
	req.Header.Set(HeaderEvent, r.typ)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(w.cfg.Secret.Reveal(), ts, body))
	resp, err := w.client.Do(req)
	if err != nil {
		// The url.Error repeats the URL, which may carry a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return outcome{err: err}
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, responseKept))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	o := outcome{status: resp.StatusCode}
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return o
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		o.err = fmt.Errorf("status %d", c)
		o.retryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	case c >= 400:
		o.refused = true
		o.err = fmt.Errorf("refused with status %d", c)
		// Kept as text: invalid UTF-8 (such as a character cut at 1 KiB)
		// and NUL bytes are dropped.
		o.response = strings.ToValidUTF8(strings.ReplaceAll(string(head), "\x00", ""), "")
	default:
		o.err = fmt.Errorf("unexpected status %d (a redirect? the URL must be the endpoint itself)", c)
	}
	return o
}

// retryAfter parses a Retry-After header: seconds or an HTTP date; 0 when
// absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// deliverWebhook sends the records of recs its subscriber wants, one at a
// time in id order, each until it is delivered or refused, and returns the
// new cursor (short of the end of recs only when ctx ends).
func (d *Dispatcher) deliverWebhook(ctx context.Context, s *sink, recs []stored, cursor int64) int64 {
	saved := cursor
	for _, r := range recs {
		if !s.hook.cfg.wants(r.typ) {
			cursor = r.id
			continue
		}
		if d.post(ctx, s, r) == stopped {
			break
		}
		cursor = r.id
		d.commit(ctx, s, cursor)
		saved = cursor
	}
	if cursor > saved {
		d.commit(ctx, s, cursor)
	}
	return cursor
}

// posted is what became of a record post was given.
type posted int

const (
	delivered posted = iota // the subscriber took it
	refused                 // for good: it is dead-lettered
	stopped                 // ctx ended first
)

// post delivers r to s's subscriber, retrying forever until it is taken or
// refused for good (and dead-lettered), or ctx ends.
func (d *Dispatcher) post(ctx context.Context, s *sink, r stored) posted {
	body, err := json.Marshal(Body{ID: r.uid, Seq: r.id, Type: r.typ, Key: r.key, Time: r.created, Data: r.value})
	if err != nil {
		// Enqueue checked the value is JSON: only a hand edit gets here.
		body, _ = json.Marshal(Body{ID: r.uid, Seq: r.id, Type: r.typ, Key: r.key, Time: r.created, Data: json.RawMessage("null")})
	}
	var st streak
	for attempt := 0; ; {
		if r.retry.id == "" {
			// A dead letter sent again is not what the sink is behind by.
			d.setLag(s, r)
		}
		o := s.hook.send(ctx, r, body, d.now())
		switch {
		case o.err == nil:
			st.ok(s.log, d.now, "webhook subscriber accepts records again")
			d.m.delivered.WithLabelValues(s.name).Inc()
			return delivered
		case ctx.Err() != nil:
			return stopped
		case o.refused:
			err := d.store.deadLetter(ctx, s.name, r, o.status, o.response, d.now())
			if err == nil {
				st.ok(s.log, d.now, "webhook subscriber answers again")
				d.m.deadLettered.WithLabelValues(s.name).Inc()
				if r.retry.id != "" {
					s.log.Warn("webhook subscriber refused a dead letter again on retry", "dead_letter", r.retry.id, "id", r.id, "type", r.typ, "key", r.key,
						"status", o.status, "requested_by", r.retry.by)
				} else {
					s.log.Warn("webhook subscriber refused a record: dead-lettered", "id", r.id, "type", r.typ, "key", r.key, "status", o.status)
				}
				return refused
			}
			o.err = err
		}
		d.m.failures.WithLabelValues(s.name).Inc()
		st.fail(s.log, d.now(), "webhook delivery failing: retrying until it succeeds", "id", r.id, "type", r.typ, "err", o.err)
		wait := o.retryAfter
		if wait == 0 {
			wait = jitter(bus.Backoff(attempt, minBackoff, s.hook.cfg.MaxBackoff.D()))
			attempt++
		}
		if d.sleep(ctx, wait) != nil {
			return stopped
		}
	}
}

// redeliver posts again the dead letters whose retry was asked for, one at
// a time, each like a new record (retried until it is taken or refused):
// one taken is deleted; one refused is dead-lettered again in its place,
// its retry done. It returns false when ctx ended first.
func (d *Dispatcher) redeliver(ctx context.Context, s *sink, rs []stored) bool {
	for _, r := range rs {
		switch d.post(ctx, s, r) {
		case stopped:
			return false
		case refused: // kept, and logged, by post
			continue
		}
		// Deleted even when ctx has just ended: it was delivered.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err := d.store.forget(dctx, r.retry.id)
		cancel()
		if err != nil {
			s.log.Warn("dead letter delivered on retry but not deleted: it will be sent again (same Idempotency-Key)", "dead_letter", r.retry.id, "err", err)
			continue
		}
		s.log.Info("dead letter delivered on retry", "dead_letter", r.retry.id, "id", r.id, "type", r.typ, "key", r.key, "requested_by", r.retry.by)
	}
	return true
}

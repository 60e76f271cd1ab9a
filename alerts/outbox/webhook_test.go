package outbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/outbox"
	"sharpeye/configs/conf"
	"sharpeye/console/api/apitest"
	"sharpeye/ingest/bus"
)

const secret = "s3cret-shared-with-the-province"

// hookRequest is a request a test subscriber received, its signature
// checked.
type hookRequest struct {
	n         int // 1 for the first request
	key       string
	event     string
	timestamp string
	body      outbox.Body
	raw       []byte
}

// answer is a test subscriber's reply.
type answer struct {
	status int
	header http.Header
	body   string
}

// subscriber starts a webhook receiver that checks each request as a
// receiver would, reports it on the returned channel and answers with
// respond (200 when nil).
func subscriber(t testing.TB, respond func(ctx context.Context, r hookRequest) answer) (url string, reqs <-chan hookRequest) {
	t.Helper()
	ch := make(chan hookRequest, 10000)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		raw, err := io.ReadAll(req.Body)
		if err != nil {
			t.Errorf("read request: %v", err)
			return
		}
		hr := hookRequest{
			n:         int(n.Add(1)),
			key:       req.Header.Get(outbox.HeaderIdempotencyKey),
			event:     req.Header.Get(outbox.HeaderEvent),
			timestamp: req.Header.Get(outbox.HeaderTimestamp),
			raw:       raw,
		}
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			t.Errorf("request %s with Content-Type %q", req.Method, req.Header.Get("Content-Type"))
		}
		if err := outbox.VerifySignature(secret, hr.timestamp, raw, req.Header.Get(outbox.HeaderSignature)); err != nil {
			t.Errorf("request %d: %v", hr.n, err)
		}
		if err := json.Unmarshal(raw, &hr.body); err != nil {
			t.Errorf("request %d body %s: %v", hr.n, raw, err)
		}
		if hr.key == "" || hr.key != hr.body.ID || hr.event != hr.body.Type {
			t.Errorf("request %d: Idempotency-Key %q, event %q, body %s", hr.n, hr.key, hr.event, raw)
		}
		ch <- hr
		a := answer{status: http.StatusOK}
		if respond != nil {
			a = respond(req.Context(), hr)
		}
		for k, v := range a.header {
			w.Header()[k] = v
		}
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

func hook(name, url string) outbox.Webhook {
	return outbox.Webhook{Name: name, URL: url, Secret: secret}
}

// data returns the record values of requests, in order.
func data(reqs []hookRequest) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = string(r.body.Data)
	}
	return out
}

// compact re-encodes JSON as the webhook body carries it.
func compact(t testing.TB, vs []string) []string {
	t.Helper()
	out := make([]string, len(vs))
	for i, v := range vs {
		var b bytes.Buffer
		if err := json.Compact(&b, []byte(v)); err != nil {
			t.Fatal(err)
		}
		out[i] = b.String()
	}
	return out
}

// syncBuffer is a log destination read after the dispatcher stopped.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWebhookSignedRetriedWithOneKey is not parallel: it checks that no
// dispatcher goroutine is left, in the whole process.
func TestWebhookSignedRetriedWithOneKey(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			url, reqs := subscriber(t, func(_ context.Context, r hookRequest) answer {
				if r.n <= 2 {
					return answer{status: http.StatusServiceUnavailable}
				}
				return answer{status: http.StatusNoContent}
			})
			cfg := testConfig()
			cfg.Webhooks = []outbox.Webhook{hook("province", url)}
			var logs syncBuffer
			d := newDispatcherLog(t, cfg, db, newBus(t, nil), nil, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			recs := []outbox.Record{rec("case-1", 1), rec("case-2", 2), rec("case-1", 3)}
			recs[1].Type = "case.dispatched"
			enqueue(t, db, recs...)
			stop := run(t, d)
			d.Notify()

			got := receive(t, reqs, 5)
			stop()
			checkNoGoroutines(t)
			want := compact(t, recValues(recs))
			if w := []string{want[0], want[0], want[0], want[1], want[2]}; !slices.Equal(data(got), w) {
				t.Fatalf("subscriber got\n%q\nwant\n%q", data(got), w)
			}
			if got[0].key != got[1].key || got[1].key != got[2].key || !bytes.Equal(got[0].raw, got[2].raw) {
				t.Fatalf("a retry changed the request: keys %q %q %q", got[0].key, got[1].key, got[2].key)
			}
			if got[2].key == got[3].key || got[3].key == got[4].key {
				t.Fatal("two records share an Idempotency-Key")
			}
			if got[3].event != "case.dispatched" || got[3].body.Key != "case-2" || got[3].body.Seq <= got[2].body.Seq || got[4].body.Seq <= got[3].body.Seq {
				t.Fatalf("second record: %s", got[3].raw)
			}
			out := logs.String()
			if strings.Contains(out, secret) {
				t.Fatalf("the secret is in the log:\n%s", out)
			}
			if n := strings.Count(out, "webhook delivery failing"); n != 1 {
				t.Fatalf("failure logged %d times for one streak:\n%s", n, out)
			}
		})
	}
}

func TestFailingSubscriberHoldsUpNobody(t *testing.T) {
	t.Parallel()
	db := casedbtest.Open(t, casedb.SQLite)
	b := newBus(t, nil)
	msgs := consume(t, b, "analytics")

	release := make(chan struct{})
	slowURL, slowReqs := subscriber(t, func(ctx context.Context, r hookRequest) answer {
		if r.n == 1 {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		if r.n <= 3 {
			return answer{status: http.StatusServiceUnavailable}
		}
		return answer{status: http.StatusOK}
	})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the server closes
	fastURL, fastReqs := subscriber(t, nil)

	cfg := testConfig()
	cfg.Webhooks = []outbox.Webhook{hook("slow", slowURL), hook("fast", fastURL)}
	reg := prometheus.NewRegistry()
	d := newDispatcher(t, cfg, db, b, reg)
	slept := make(chan time.Duration, 100)
	outbox.SetSleep(d, func(ctx context.Context, d time.Duration) error {
		slept <- d
		return ctx.Err()
	})
	var recs []outbox.Record
	for i := range 20 {
		recs = append(recs, rec(fmt.Sprintf("case-%d", i%4), i))
	}
	enqueue(t, db, recs...)
	run(t, d)
	d.Notify()

	// The bus and the other subscriber get everything while the slow one
	// still holds its first request.
	want := compact(t, recValues(recs))
	if got := receive(t, msgs, len(recs)); !slices.Equal(values(got), recValues(recs)) {
		t.Fatalf("bus got %q", values(got))
	}
	if got := receive(t, fastReqs, len(recs)); !slices.Equal(data(got), want) {
		t.Fatalf("fast subscriber got %q", data(got))
	}
	if got := receive(t, slowReqs, 1); got[0].body.Seq != 1 {
		t.Fatalf("slow subscriber's first request is record %d", got[0].body.Seq)
	}
	select {
	case d := <-slept:
		t.Fatalf("backoff of %s before the first failure", d)
	default:
	}
	// The operator sees the subscriber behind.
	if n := apitest.Metric(t, reg, "sharpeye_outbox_pending_records", "sink", "webhook:slow"); n != float64(len(recs)) {
		t.Fatalf("pending records of the slow subscriber: %v, want %d", n, len(recs))
	}
	unblock()

	got := receive(t, slowReqs, len(recs)+2)
	if w := append([]string{want[0], want[0]}, want...); !slices.Equal(data(got), w) {
		t.Fatalf("slow subscriber got, after its first request,\n%q\nwant\n%q", data(got), w)
	}
	waits := receive(t, slept, 3)
	for i, w := range waits {
		// Doubling from 1s, with jitter over the upper half.
		if hi := time.Second << i; w < hi/2 || w > hi {
			t.Fatalf("backoffs %v, want 0.5-1s, 1-2s, 2-4s", waits)
		}
	}
}

func TestSubscriberAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status  int
		retried bool
	}{
		{http.StatusOK, false},
		{http.StatusAccepted, false},
		{http.StatusBadRequest, false},
		{http.StatusUnauthorized, false},
		{http.StatusNotFound, false},
		{http.StatusUnprocessableEntity, false},
		{http.StatusRequestTimeout, true},
		{http.StatusTooManyRequests, true},
		{http.StatusInternalServerError, true},
		{http.StatusBadGateway, true},
		{http.StatusServiceUnavailable, true},
		{http.StatusFound, true}, // a redirect is a wrong URL, not a refusal
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			db := casedbtest.Open(t, casedb.SQLite)
			long := strings.Repeat("字", 1000) // 3000 bytes
			url, reqs := subscriber(t, func(_ context.Context, r hookRequest) answer {
				if r.n == 1 {
					return answer{status: tt.status, body: long, header: http.Header{"Location": {"http://127.0.0.1:1/"}}}
				}
				return answer{status: http.StatusOK}
			})
			cfg := testConfig()
			cfg.Webhooks = []outbox.Webhook{hook("province", url)}
			reg := prometheus.NewRegistry()
			d := newDispatcher(t, cfg, db, newBus(t, nil), reg)
			recs := []outbox.Record{rec("case-1", 1), rec("case-1", 2)}
			enqueue(t, db, recs...)
			run(t, d)
			d.Notify()

			got := receive(t, reqs, 2)
			retried := got[1].key == got[0].key
			if retried != tt.retried {
				t.Fatalf("status %d: second request %s, retried %v, want %v", tt.status, got[1].raw, retried, tt.retried)
			}
			if !retried {
				// The dead letter is written before the next record goes.
				var (
					status         int
					response, val  string
					typ, recordKey string
				)
				err := db.QueryRow(t.Context(), "SELECT status, response, value, type, msg_key FROM outbox_dead_letters WHERE sink = 'webhook:province'").Scan(&status, &response, &val, &typ, &recordKey)
				dead := tt.status >= 400
				switch {
				case !dead && err == nil:
					t.Fatalf("status %d dead-lettered", tt.status)
				case dead && err != nil:
					t.Fatalf("status %d not dead-lettered: %v", tt.status, err)
				case dead && (status != tt.status || len(response) > 1024 || !strings.HasPrefix(long, response) || len(response) < 1000 ||
					val != string(recs[0].Value) || typ != recs[0].Type || recordKey != "case-1"):
					t.Fatalf("dead letter: status %d, %d bytes of response, value %s, type %s, key %s", status, len(response), val, typ, recordKey)
				}
				want := 0.0
				if dead {
					want = 1
				}
				if n := apitest.Metric(t, reg, "sharpeye_outbox_dead_lettered_total", "sink", "webhook:province"); n != want {
					t.Fatalf("dead-lettered counter %v, want %v", n, want)
				}
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	db := casedbtest.Open(t, casedb.SQLite)
	now := time.Now().Truncate(time.Second)
	answers := []answer{
		{status: http.StatusTooManyRequests, header: http.Header{"Retry-After": {"7"}}},
		{status: http.StatusServiceUnavailable, header: http.Header{"Retry-After": {now.Add(30 * time.Second).UTC().Format(http.TimeFormat)}}},
		{status: http.StatusServiceUnavailable},
		{status: http.StatusServiceUnavailable, header: http.Header{"Retry-After": {"99999999"}}},
		{status: http.StatusServiceUnavailable, header: http.Header{"Retry-After": {"soon"}}},
		{status: http.StatusOK},
	}
	url, reqs := subscriber(t, func(_ context.Context, r hookRequest) answer { return answers[min(r.n, len(answers))-1] })
	cfg := testConfig()
	cfg.Webhooks = []outbox.Webhook{hook("province", url)}
	d := newDispatcher(t, cfg, db, newBus(t, nil), nil)
	outbox.SetClock(d, func() time.Time { return now })
	slept := make(chan time.Duration, 100)
	outbox.SetSleep(d, func(ctx context.Context, d time.Duration) error {
		slept <- d
		return ctx.Err()
	})
	enqueue(t, db, rec("case-1", 1))
	run(t, d)
	d.Notify()

	receive(t, reqs, len(answers))
	got := receive(t, slept, len(answers)-1)
	checks := []struct {
		what   string
		lo, hi time.Duration
	}{
		{"Retry-After: 7", 7 * time.Second, 7 * time.Second},
		{"Retry-After: <date in 30s>", 30 * time.Second, 30 * time.Second},
		{"no Retry-After: first backoff", 500 * time.Millisecond, time.Second},
		{"Retry-After: 99999999 capped", time.Hour, time.Hour},
		{"unreadable Retry-After: second backoff", time.Second, 2 * time.Second},
	}
	for i, c := range checks {
		if got[i] < c.lo || got[i] > c.hi {
			t.Errorf("%s: waited %s, want %s..%s", c.what, got[i], c.lo, c.hi)
		}
	}
}

func TestTypesFilter(t *testing.T) {
	t.Parallel()
	db := casedbtest.Open(t, casedb.SQLite)
	url, reqs := subscriber(t, nil)
	cfg := testConfig()
	h := hook("closures", url)
	h.Types = []string{"case.closed", "case.escalat*"}
	cfg.Webhooks = []outbox.Webhook{h}
	b := newBus(t, nil)
	msgs := consume(t, b, "analytics")
	d := newDispatcher(t, cfg, db, b, nil)
	var recs, want []outbox.Record
	for i, typ := range []string{"case.created", "case.closed", "case.dispatched", "case.escalated", "camera.offline", "case.closed.extra", "case.closed"} {
		r := rec("case-1", i)
		r.Type = typ
		recs = append(recs, r)
		if typ == "case.closed" || typ == "case.escalated" {
			want = append(want, r)
		}
	}
	enqueue(t, db, recs...)
	run(t, d)
	d.Notify()
	if got := receive(t, reqs, len(want)); !slices.Equal(data(got), compact(t, recValues(want))) {
		t.Fatalf("subscriber got %q", data(got))
	}
	if got := receive(t, msgs, len(recs)); !slices.Equal(values(got), recValues(recs)) {
		t.Fatalf("the bus got %q", values(got))
	}
}

func TestVerifySignature(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_770_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte(`{"id":"x","type":"case.created"}`)
	good := outbox.Sign(secret, ts, body)
	tests := []struct {
		name      string
		secret    string
		timestamp string
		body      []byte
		header    string
		at        time.Time
		want      error
	}{
		{"valid", secret, ts, body, good, now, nil},
		{"valid within tolerance", secret, ts, body, good, now.Add(4 * time.Minute), nil},
		{"wrong secret", "another-secret-of-16", ts, body, good, now, outbox.ErrBadSignature},
		{"body changed", secret, ts, []byte(`{"id":"y","type":"case.created"}`), good, now, outbox.ErrBadSignature},
		{"timestamp changed", secret, strconv.FormatInt(now.Unix()+1, 10), body, good, now, outbox.ErrBadSignature},
		{"stale", secret, ts, body, good, now.Add(6 * time.Minute), outbox.ErrStaleTimestamp},
		{"from the future", secret, ts, body, good, now.Add(-6 * time.Minute), outbox.ErrStaleTimestamp},
		{"no prefix", secret, ts, body, strings.TrimPrefix(good, "sha256="), now, outbox.ErrBadSignature},
		{"empty header", secret, ts, body, "", now, outbox.ErrBadSignature},
		{"timestamp not a number", secret, "yesterday", body, good, now, outbox.ErrStaleTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := outbox.VerifySignatureAt(tt.secret, tt.timestamp, tt.body, tt.header, tt.at, outbox.SignatureTolerance)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []string // error paths; none for a valid file
	}{
		{"defaults", "", nil},
		{"webhook with defaults", `
webhooks:
  - name: province-gov
    url: https://gov.example.cn/hooks/sharpeye
    secret: 0123456789abcdef
`, nil},
		{"bad keys", `
poll: 0s
batch: 501
retention: 30s
lease: 100ms
`, []string{"poll", "batch", "retention", "lease"}},
		{"bad webhooks", `
webhooks:
  - name: Province_1
    url: ftp://gov.example.cn/
    secret: short
    types: ["case.[", ""]
    timeout: -1s
    max_backoff: 10ms
  - name: ok
    url: http://user:pw@gov.example.cn/
  - name: ok
    url: "%zz"
    secret: 0123456789abcdef
`, []string{
			"webhooks[0].name", "webhooks[0].url", "webhooks[0].secret", "webhooks[0].types[0]", "webhooks[0].types[1]",
			"webhooks[0].timeout", "webhooks[0].max_backoff", "webhooks[1].url", "webhooks[1].secret", "webhooks[2].name", "webhooks[2].url",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := outbox.Defaults()
			err := conf.Load(&cfg, []byte(tt.yaml), "sharpeye.yml", nil)
			var paths []string
			if errs, ok := conf.AsErrors(err); ok {
				for _, e := range errs {
					paths = append(paths, e.Path)
					if strings.Contains(e.Error(), "0123456789abcdef") || strings.Contains(e.Error(), "short") {
						t.Errorf("error shows the secret: %v", e)
					}
				}
			} else if err != nil {
				t.Fatal(err)
			}
			slices.Sort(paths)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(paths, want) {
				t.Fatalf("errors at %q, want %q\n%v", paths, want, err)
			}
			if err == nil {
				for _, w := range cfg.Webhooks {
					if !slices.Equal(w.Types, []string{"case.*"}) || w.Timeout.D() != 10*time.Second || w.MaxBackoff.D() != 5*time.Minute {
						t.Fatalf("webhook defaults not filled in: %+v", w)
					}
				}
			}
		})
	}
}

func TestNewDispatcherChecks(t *testing.T) {
	t.Parallel()
	db := casedbtest.Open(t, casedb.SQLite)
	b := newBus(t, nil)
	cfg := testConfig()
	cfg.Webhooks = []outbox.Webhook{{Name: "x", URL: "https://gov.example.cn/", Secret: "short"}}
	if _, err := outbox.NewDispatcher(cfg, db, b, nil, nil); err == nil || !strings.Contains(err.Error(), "webhooks[0].secret") {
		t.Fatalf("short secret: %v", err)
	}
	if _, err := outbox.NewDispatcher(testConfig(), nil, b, nil, nil); err == nil {
		t.Fatal("no database accepted")
	}
	var _ bus.Producer = b
}

package outbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/outbox"
	"sharpeye/console/api"
	"sharpeye/console/api/apitest"
	"sharpeye/console/auth"
	"sharpeye/ingest/bus"
)

var principals = apitest.Principals{
	"admin": {Username: "admin", Role: auth.Admin},
	"clerk": {Username: "clerk", Role: auth.Clerk},
}

// serveAPI serves d's dead-letter API as a node would.
func serveAPI(t testing.TB, d *outbox.Dispatcher) *httptest.Server {
	t.Helper()
	rt := api.NewRouter(1<<20, 10*time.Second)
	rt.SetAuthenticator(principals)
	outbox.NewAPI(d).Routes(rt)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return srv
}

// refusal is what the province answers a record it does not take.
const refusal = `{"error":"category unknown to the province"}`

// world is a node delivering the outbox to the bus, to the webhook
// subscriber "province", which refuses (422) every record but sentinels
// until accept is set, and to "other", which takes everything. Four
// records have been refused and dead-lettered.
type world struct {
	db       *casedb.DB
	cfg      outbox.Config
	bus      *bus.Embedded
	busMsgs  <-chan bus.Message
	province <-chan hookRequest
	other    <-chan hookRequest
	hostPort string // the subscribers' address
	accept   atomic.Bool
	logs     *syncBuffer
	reg      *prometheus.Registry
	d        *outbox.Dispatcher
	stop     func()
	srv      *httptest.Server // d's API
	// refused are the province's requests it refused, in order: records
	// case.created, case.dispatched, case.closed, case.created.
	refused []hookRequest
	// sentinels counts the sentinel records enqueued.
	sentinels int
}

func newWorld(t *testing.T, driver string) *world {
	t.Helper()
	w := &world{db: casedbtest.Open(t, driver), logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	provinceURL, province := subscriber(t, func(_ context.Context, r hookRequest) answer {
		if w.accept.Load() || r.body.Type == "case.updated" {
			return answer{status: http.StatusNoContent}
		}
		return answer{status: http.StatusUnprocessableEntity, body: refusal}
	})
	otherURL, other := subscriber(t, nil)
	w.province, w.other = province, other
	u, err := url.Parse(provinceURL)
	if err != nil {
		t.Fatal(err)
	}
	w.hostPort = u.Host
	w.bus = newBus(t, nil)
	w.busMsgs = consume(t, w.bus, "analytics")
	w.cfg = testConfig()
	w.cfg.Webhooks = []outbox.Webhook{hook("province", provinceURL), hook("other", otherURL)}
	w.start(t)
	w.srv = serveAPI(t, w.d)

	var recs []outbox.Record
	for i, typ := range []string{"case.created", "case.dispatched", "case.closed", "case.created"} {
		r := rec("case-"+strconv.Itoa(1+i/3), i)
		r.Type = typ
		recs = append(recs, r)
	}
	enqueue(t, w.db, recs...)
	w.d.Notify()
	w.refused = receive(t, w.province, len(recs))
	for i, r := range w.refused {
		if r.event != recs[i].Type {
			t.Fatalf("province request %d is %s, want %s", i, r.event, recs[i].Type)
		}
	}
	receive(t, w.other, len(recs))
	receive(t, w.busMsgs, len(recs))
	// The province takes the sentinel once the four are dead-lettered.
	w.sentinel(t)
	return w
}

// start runs a dispatcher for w's node, as after a (re)start.
func (w *world) start(t *testing.T) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.reg = prometheus.NewRegistry()
	w.d = newDispatcherLog(t, w.cfg, w.db, w.bus, w.reg, log)
	w.stop = run(t, w.d)
}

// sentinel enqueues a record every sink takes and checks that it is the
// next, and only, thing each receives. Sinks deliver in order, and
// retries before records: once it arrives, what came before is done.
func (w *world) sentinel(t *testing.T) {
	t.Helper()
	w.sentinels++
	r := rec("sentinel", w.sentinels)
	enqueue(t, w.db, r)
	w.d.Notify()
	want := compact(t, []string{string(r.Value)})[0]
	for name, ch := range map[string]<-chan hookRequest{"province": w.province, "other": w.other} {
		if got := receive(t, ch, 1)[0]; string(got.body.Data) != want {
			t.Fatalf("%s got %s before sentinel %d", name, got.raw, w.sentinels)
		}
		if n := len(ch); n != 0 {
			t.Fatalf("%s got %d more requests after sentinel %d", name, n, w.sentinels)
		}
	}
	if got := receive(t, w.busMsgs, 1)[0]; string(got.Value) != string(r.Value) {
		t.Fatalf("the bus got %s before sentinel %d", got.Value, w.sentinels)
	}
	if n := len(w.busMsgs); n != 0 {
		t.Fatalf("the bus got %d more messages after sentinel %d", n, w.sentinels)
	}
}

// settle waits until every sink has saved its cursor at the last record:
// a sink stopped before saving it would deliver that record again after the
// restart (at least once), and the test would see it twice.
func (w *world) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var n int
		err := w.db.QueryRow(t.Context(), "SELECT COUNT(*) FROM outbox_cursors WHERE last_id = (SELECT last_id FROM outbox_seq WHERE name = 'outbox')").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 cursors saved at the last record after %s", n, wait)
		}
		time.Sleep(5 * time.Millisecond) // polls a condition; not a timing assertion
	}
}

// call sends one API request and checks that its answer shows no secret
// and no subscriber address.
func (w *world) call(t *testing.T, srv *httptest.Server, user, method, path string) (int, http.Header, string) {
	t.Helper()
	code, hdr, body := apitest.Call(t, srv, user, method, path, "")
	if strings.Contains(body, secret) || strings.Contains(body, w.hostPort) {
		t.Fatalf("%s %s shows the secret or the subscriber's URL: %s", method, path, body)
	}
	return code, hdr, body
}

// list returns a page of dead letters and the next cursor.
func (w *world) list(t *testing.T, srv *httptest.Server, query string) ([]outbox.DeadLetter, string) {
	t.Helper()
	code, _, body := w.call(t, srv, "admin", "GET", "/api/v1/outbox/dead-letters?"+query)
	var page struct {
		DeadLetters []outbox.DeadLetter `json:"dead_letters"`
		Next        string              `json:"next"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &page) != nil {
		t.Fatalf("list ?%s: %d %s", query, code, body)
	}
	return page.DeadLetters, page.Next
}

// get returns one dead letter.
func (w *world) get(t *testing.T, srv *httptest.Server, id string) outbox.DeadLetter {
	t.Helper()
	code, _, body := w.call(t, srv, "admin", "GET", "/api/v1/outbox/dead-letters/"+id)
	var dl outbox.DeadLetter
	if code != http.StatusOK || json.Unmarshal([]byte(body), &dl) != nil {
		t.Fatalf("get %s: %d %s", id, code, body)
	}
	return dl
}

// deadLetterOf returns the dead letter of the i-th refused record.
func (w *world) deadLetterOf(t *testing.T, i int) outbox.DeadLetter {
	t.Helper()
	dls, _ := w.list(t, w.srv, "limit=500")
	for _, dl := range dls {
		if dl.UID == w.refused[i].key {
			return dl
		}
	}
	t.Fatalf("no dead letter of refused record %d (%s) in %+v", i, w.refused[i].key, dls)
	return outbox.DeadLetter{}
}

func ids(dls []outbox.DeadLetter) []string {
	out := make([]string, len(dls))
	for i, dl := range dls {
		out[i] = dl.ID
	}
	return out
}

func TestDeadLetterAPI(t *testing.T) {
	t.Parallel()
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			w := newWorld(t, driver)

			// Paged, newest first.
			first, next := w.list(t, w.srv, "limit=3")
			if len(first) != 3 || next == "" {
				t.Fatalf("first page: %d dead letters, next %q; want 3 and a cursor", len(first), next)
			}
			rest, last := w.list(t, w.srv, "limit=3&before="+url.QueryEscape(next))
			if len(rest) != 1 || last != "" {
				t.Fatalf("second page: %d dead letters, next %q; want 1 and none", len(rest), last)
			}
			all := append(first, rest...)
			for i := 1; i < len(all); i++ {
				a, b := all[i-1], all[i]
				if a.At.Before(b.At) || (a.At.Equal(b.At) && a.ID <= b.ID) {
					t.Fatalf("not newest first: %s at %s before %s at %s", a.ID, a.At, b.ID, b.At)
				}
			}
			byUID := map[string]outbox.DeadLetter{}
			for _, dl := range all {
				byUID[dl.UID] = dl
			}
			for i, r := range w.refused {
				dl, ok := byUID[r.key]
				switch {
				case !ok:
					t.Fatalf("refused record %d (%s) not listed: %v", i, r.key, ids(all))
				case dl.Sink != "province" || !dl.SinkConfigured || dl.Status != http.StatusUnprocessableEntity || dl.Response != refusal:
					t.Errorf("dead letter %d: sink %q (configured %v), status %d, response %q", i, dl.Sink, dl.SinkConfigured, dl.Status, dl.Response)
				case dl.OutboxID != r.body.Seq || dl.Type != r.event || dl.Key != r.body.Key || !dl.RecordedAt.Equal(r.body.Time):
					t.Errorf("dead letter %d: outbox id %d, type %s, key %s, recorded %s; the request had %s", i, dl.OutboxID, dl.Type, dl.Key, dl.RecordedAt, r.raw)
				case compact(t, []string{string(dl.Value)})[0] != string(r.body.Data):
					t.Errorf("dead letter %d: value %s, want %s", i, dl.Value, r.body.Data)
				case dl.At.IsZero() || dl.RetryRequestedAt != nil:
					t.Errorf("dead letter %d: at %s, retry requested at %v", i, dl.At, dl.RetryRequestedAt)
				}
				if one := w.get(t, w.srv, dl.ID); !jsonEqual(t, one, dl) {
					t.Errorf("GET %s differs from the list's:\n%+v\n%+v", dl.ID, one, dl)
				}
			}

			filters := []struct {
				query string
				want  []int // indexes into w.refused
			}{
				{"sink=province", []int{0, 1, 2, 3}},
				{"sink=webhook:province", []int{0, 1, 2, 3}},
				{"sink=other", nil},
				{"type=case.created", []int{0, 3}},
				{"type=case.dispatched,case.closed", []int{1, 2}},
				{"type=case.dispatched&type=case.closed", []int{1, 2}},
				{"sink=province,other&type=case.closed", []int{2}},
				{"type=case.escalated", nil},
			}
			for _, f := range filters {
				got, _ := w.list(t, w.srv, f.query)
				var want []string
				for _, i := range f.want {
					want = append(want, byUID[w.refused[i].key].ID)
				}
				gotIDs := ids(got)
				slices.Sort(gotIDs)
				slices.Sort(want)
				if !slices.Equal(gotIDs, want) {
					t.Errorf("?%s: %v, want %v", f.query, gotIDs, want)
				}
			}
			for _, q := range []string{"limit=0", "limit=x", "before=not-a-cursor", "sink=Bad_Name"} {
				if code, _, body := w.call(t, w.srv, "admin", "GET", "/api/v1/outbox/dead-letters?"+q); code != http.StatusBadRequest {
					t.Errorf("?%s: %d %s, want 400", q, code, body)
				}
			}

			id := byUID[w.refused[0].key].ID
			for _, c := range []struct{ method, path string }{
				{"GET", "/api/v1/outbox/dead-letters"},
				{"GET", "/api/v1/outbox/dead-letters/" + id},
				{"POST", "/api/v1/outbox/dead-letters/" + id + "/retry"},
				{"DELETE", "/api/v1/outbox/dead-letters/" + id},
			} {
				if code, _, body := w.call(t, w.srv, "clerk", c.method, c.path); code != http.StatusForbidden {
					t.Errorf("clerk %s %s: %d %s, want 403", c.method, c.path, code, body)
				}
				if code, _, body := w.call(t, w.srv, "", c.method, c.path); code != http.StatusUnauthorized {
					t.Errorf("anonymous %s %s: %d %s, want 401", c.method, c.path, code, body)
				}
				unknown := strings.Replace(c.path, id, "NOSUCHDEADLETTER", 1)
				if code, _, body := w.call(t, w.srv, "admin", c.method, unknown); c.path != unknown && code != http.StatusNotFound {
					t.Errorf("admin %s %s: %d %s, want 404", c.method, unknown, code, body)
				}
			}
			if dl := w.get(t, w.srv, id); dl.RetryRequestedAt != nil {
				t.Fatal("a clerk's retry was recorded")
			}

			if n := apitest.Metric(t, w.reg, "sharpeye_outbox_dead_letters", "sink", "webhook:province"); n != 4 {
				t.Errorf("dead letters held by the province: %v, want 4", n)
			}
			if ms := apitest.Series(t, w.reg, "sharpeye_outbox_dead_letters", "sink", "webhook:other"); len(ms) != 1 || ms[0].GetGauge().GetValue() != 0 {
				t.Errorf("dead letters held by the other subscriber: %v, want one series at 0", ms)
			}

			// Discarded: gone, and the log says who.
			if code, _, body := w.call(t, w.srv, "admin", "DELETE", "/api/v1/outbox/dead-letters/"+id); code != http.StatusNoContent {
				t.Fatalf("delete: %d %s", code, body)
			}
			for _, method := range []string{"GET", "DELETE"} {
				if code, _, _ := w.call(t, w.srv, "admin", method, "/api/v1/outbox/dead-letters/"+id); code != http.StatusNotFound {
					t.Errorf("%s after the delete: %d, want 404", method, code)
				}
			}
			if left, _ := w.list(t, w.srv, ""); len(left) != 3 {
				t.Errorf("%d dead letters after the delete, want 3", len(left))
			}
			if n := apitest.Metric(t, w.reg, "sharpeye_outbox_dead_letters", "sink", "webhook:province"); n != 3 {
				t.Errorf("dead letters held after the delete: %v, want 3", n)
			}
			if logs := w.logs.String(); !strings.Contains(logs, "dead letter discarded") || !strings.Contains(logs, "dead_letter="+id) || !strings.Contains(logs, "by=admin") {
				t.Errorf("the discard is not logged with the admin's name:\n%s", logs)
			}
		})
	}
}

// jsonEqual compares a and b as the API shows them.
func jsonEqual(t testing.TB, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// retry asks srv to retry the dead letter id and checks the 202.
func (w *world) retry(t *testing.T, srv *httptest.Server, id string) {
	t.Helper()
	code, hdr, body := w.call(t, srv, "admin", "POST", "/api/v1/outbox/dead-letters/"+id+"/retry")
	var dl outbox.DeadLetter
	if code != http.StatusAccepted || json.Unmarshal([]byte(body), &dl) != nil {
		t.Fatalf("retry %s: %d %s, want 202", id, code, body)
	}
	if dl.ID != id || dl.RetryRequestedBy != "admin" || dl.RetryRequestedAt == nil || hdr.Get("Location") != "/api/v1/outbox/dead-letters/"+id {
		t.Fatalf("retry %s answered %s (Location %q)", id, body, hdr.Get("Location"))
	}
}

// checkResent checks that req is refused record i sent again: the same
// body and Idempotency-Key, signed afresh (the subscriber checked it).
func (w *world) checkResent(t *testing.T, req hookRequest, i int) {
	t.Helper()
	orig := w.refused[i]
	if req.key != orig.key || !bytes.Equal(req.raw, orig.raw) {
		t.Fatalf("retry sent key %s body %s; the refused request had key %s body %s", req.key, req.raw, orig.key, orig.raw)
	}
	if ts, _ := strconv.ParseInt(req.timestamp, 10, 64); ts < mustInt(t, orig.timestamp) {
		t.Fatalf("retry signed at %s, before the first attempt at %s", req.timestamp, orig.timestamp)
	}
}

func mustInt(t testing.TB, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeadLetterRetry: a retry asked for on a node that does not deliver
// is carried out by the one that does, to that subscriber only; refused
// again, the dead letter stays; taken, it is gone.
func TestDeadLetterRetry(t *testing.T) {
	t.Parallel()
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			w := newWorld(t, driver)
			// Another node sharing the database: its dispatcher does not
			// run (it would wait for the lease), its API serves.
			nodeB := serveAPI(t, newDispatcher(t, w.cfg, w.db, w.bus, nil))
			target := w.deadLetterOf(t, 1)

			// Still refused: kept under the same id, with the new refusal
			// and no retry pending.
			w.retry(t, nodeB, target.ID)
			w.checkResent(t, receive(t, w.province, 1)[0], 1)
			w.sentinel(t)
			again := w.get(t, nodeB, target.ID)
			if again.RetryRequestedAt != nil || again.RetryRequestedBy != "" || again.At.Before(target.At) || again.Status != http.StatusUnprocessableEntity {
				t.Fatalf("refused again: %+v", again)
			}
			if n := apitest.Metric(t, w.reg, "sharpeye_outbox_dead_lettered_total", "sink", "webhook:province"); n != 5 {
				t.Fatalf("dead-lettered counter %v, want 5 (4 and the retry)", n)
			}
			if n := apitest.Metric(t, w.reg, "sharpeye_outbox_dead_letters", "sink", "webhook:province"); n != 4 {
				t.Fatalf("dead letters held %v, want still 4", n)
			}

			// Taken: delivered once, to the province only, then gone.
			w.accept.Store(true)
			w.retry(t, nodeB, target.ID)
			w.checkResent(t, receive(t, w.province, 1)[0], 1)
			w.sentinel(t)
			if code, _, body := w.call(t, nodeB, "admin", "GET", "/api/v1/outbox/dead-letters/"+target.ID); code != http.StatusNotFound {
				t.Fatalf("after the retry was taken: %d %s, want 404", code, body)
			}
			if left, _ := w.list(t, nodeB, ""); len(left) != 3 || slices.Contains(ids(left), target.ID) {
				t.Fatalf("left: %v", ids(left))
			}
			if n := apitest.Metric(t, w.reg, "sharpeye_outbox_dead_letters", "sink", "webhook:province"); n != 3 {
				t.Fatalf("dead letters held %v, want 3", n)
			}
			// Four records and three sentinels, nothing more.
			for sink, want := range map[string]float64{"bus": 7, "webhook:other": 7, "webhook:province": 4} {
				if n := apitest.Metric(t, w.reg, "sharpeye_outbox_delivered_records_total", "sink", sink); n != want {
					t.Errorf("%s delivered %v records, want %v", sink, n, want)
				}
			}
			if logs := w.logs.String(); !strings.Contains(logs, "dead letter delivered on retry") || !strings.Contains(logs, "requested_by=admin") {
				t.Errorf("the retry is not logged:\n%s", logs)
			}
		})
	}
}

// TestDeadLetterRetrySurvivesRestart: a retry asked for while no
// dispatcher runs is carried out by the next one to start.
func TestDeadLetterRetrySurvivesRestart(t *testing.T) {
	t.Parallel()
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			w := newWorld(t, driver)
			w.accept.Store(true)
			target := w.deadLetterOf(t, 2)
			w.settle(t)
			w.stop()
			w.retry(t, w.srv, target.ID)
			if dl := w.get(t, w.srv, target.ID); dl.RetryRequestedAt == nil || dl.RetryRequestedBy != "admin" {
				t.Fatalf("the pending retry is not shown: %+v", dl)
			}

			w.start(t)
			w.checkResent(t, receive(t, w.province, 1)[0], 2)
			w.sentinel(t)
			if code, _, body := w.call(t, w.srv, "admin", "GET", "/api/v1/outbox/dead-letters/"+target.ID); code != http.StatusNotFound {
				t.Fatalf("after the restart and the retry: %d %s, want 404", code, body)
			}
		})
	}
}

// TestDeadLetterRetryRemovedSink: the dead letters of a subscriber taken
// out of the configuration are still listed and held, can be discarded,
// and cannot be retried.
func TestDeadLetterRetryRemovedSink(t *testing.T) {
	t.Parallel()
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			w := newWorld(t, driver)
			w.stop()
			cfg := w.cfg
			cfg.Webhooks = []outbox.Webhook{w.cfg.Webhooks[1]} // "other" only
			reg := prometheus.NewRegistry()
			srv := serveAPI(t, newDispatcher(t, cfg, w.db, w.bus, reg))

			dls, _ := w.list(t, srv, "")
			if len(dls) != 4 {
				t.Fatalf("%d dead letters listed, want 4", len(dls))
			}
			for _, dl := range dls {
				if dl.SinkConfigured {
					t.Fatalf("%s: sink %s shown as configured", dl.ID, dl.Sink)
				}
			}
			code, _, body := w.call(t, srv, "admin", "POST", "/api/v1/outbox/dead-letters/"+dls[0].ID+"/retry")
			if code != http.StatusConflict || !strings.Contains(body, `\"province\" is no longer configured`) {
				t.Fatalf("retry for a removed subscriber: %d %s, want 409 saying so", code, body)
			}
			if dl := w.get(t, srv, dls[0].ID); dl.RetryRequestedAt != nil {
				t.Fatalf("a refused retry was recorded: %+v", dl)
			}
			if n := apitest.Metric(t, reg, "sharpeye_outbox_dead_letters", "sink", "webhook:province"); n != 4 {
				t.Errorf("dead letters held for the removed subscriber: %v, want 4", n)
			}
			if code, _, body := w.call(t, srv, "admin", "DELETE", "/api/v1/outbox/dead-letters/"+dls[0].ID); code != http.StatusNoContent {
				t.Fatalf("delete: %d %s", code, body)
			}
		})
	}
}

package outbox

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"sharpeye/console/api"
	"sharpeye/console/auth"
)

// Page sizes of the dead-letter list.
const (
	DefaultDeadLetterPage = 50
	MaxDeadLetterPage     = 500
)

// API is the dead-letter API, for admins only:
//
//	GET    /api/v1/outbox/dead-letters             newest first, by sink and type, cursor-paged
//	GET    /api/v1/outbox/dead-letters/{id}        one
//	POST   /api/v1/outbox/dead-letters/{id}/retry  send it again to its subscriber (202)
//	DELETE /api/v1/outbox/dead-letters/{id}        discard it
//
// A retry is recorded in the dead letter's row for the dispatcher holding
// the lease, on whichever node, to carry out: see the package
// documentation.
type API struct {
	d *Dispatcher
}

// NewAPI serves d's dead letters; d's configuration says which
// subscribers exist.
func NewAPI(d *Dispatcher) *API { return &API{d: d} }

// Routes registers the dead-letter API.
func (a *API) Routes(rt *api.Router) {
	rt.Handle("GET", "/api/v1/outbox/dead-letters", auth.Require(a.handleList, auth.Admin))
	rt.Handle("GET", "/api/v1/outbox/dead-letters/{id}", auth.Require(a.handleGet, auth.Admin))
	rt.Handle("POST", "/api/v1/outbox/dead-letters/{id}/retry", auth.Require(a.handleRetry, auth.Admin), api.MaxBody(1<<10))
	rt.Handle("DELETE", "/api/v1/outbox/dead-letters/{id}", auth.Require(a.handleDelete, auth.Admin))
}

// configured reports whether the webhook subscriber name is configured.
func (a *API) configured(name string) bool {
	for _, w := range a.d.cfg.Webhooks {
		if w.Name == name {
			return true
		}
	}
	return false
}

func (a *API) view(dl *DeadLetter) *DeadLetter {
	dl.SinkConfigured = a.configured(dl.Sink)
	return dl
}

// list splits the comma-separated values of the query parameter key.
func list(r *http.Request, key string) []string {
	var out []string
	for _, v := range r.URL.Query()[key] {
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func parseDeadLetterFilter(r *http.Request) (deadLetterFilter, error) {
	q := r.URL.Query()
	f := deadLetterFilter{limit: DefaultDeadLetterPage, types: list(r, "type")}
	for _, name := range list(r, "sink") {
		name = strings.TrimPrefix(name, "webhook:")
		if !namePattern.MatchString(name) {
			return f, api.BadRequest("sink", "%q is not a webhook name (1-64 characters of a-z, 0-9 and -)", name)
		}
		f.sinks = append(f.sinks, webhookSink(name))
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return f, api.BadRequest("limit", "must be a positive integer")
		}
		f.limit = min(n, MaxDeadLetterPage)
	}
	if v := q.Get("before"); v != "" {
		c, err := parseDeadLetterCursor(v)
		if err != nil {
			return f, api.BadRequest("before", "%v", err)
		}
		f.before = &c
	}
	return f, nil
}

func (a *API) handleList(w http.ResponseWriter, r *http.Request) error {
	f, err := parseDeadLetterFilter(r)
	if err != nil {
		return err
	}
	dls, next, err := a.d.store.listDeadLetters(r.Context(), f)
	if err != nil {
		return err
	}
	for _, dl := range dls {
		a.view(dl)
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"dead_letters": dls, "next": next})
	return nil
}

// get reads the dead letter the path names.
func (a *API) get(r *http.Request) (*DeadLetter, error) {
	id := r.PathValue("id")
	dl, err := a.d.store.getDeadLetter(r.Context(), id)
	if errors.Is(err, errNoDeadLetter) {
		return nil, api.NotFound("no dead letter %q (delivered on a retry, or discarded?)", id)
	}
	if err != nil {
		return nil, err
	}
	return a.view(dl), nil
}

func (a *API) handleGet(w http.ResponseWriter, r *http.Request) error {
	dl, err := a.get(r)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, dl)
	return nil
}

func actor(r *http.Request) string {
	if p, ok := auth.FromContext(r.Context()); ok {
		return p.Username
	}
	return ""
}

// handleRetry records the request to send the dead letter again and
// answers 202 with it: the dispatcher holding the lease carries it out.
// The dead letter disappears once the subscriber takes it; refused again,
// it stays with the new refusal and no retry pending.
func (a *API) handleRetry(w http.ResponseWriter, r *http.Request) error {
	dl, err := a.get(r)
	if err != nil {
		return err
	}
	if !dl.SinkConfigured {
		return api.Conflict("webhook subscriber %q is no longer configured (alerts.outbox.webhooks): there is nowhere to send dead letter %s; configure the subscriber again, or delete the dead letter", dl.Sink, dl.ID)
	}
	now := a.d.now().UTC()
	by := actor(r)
	if err := a.d.store.requestRetry(r.Context(), dl.ID, by, now); errors.Is(err, errNoDeadLetter) {
		return api.NotFound("no dead letter %q (delivered on a retry, or discarded?)", dl.ID)
	} else if err != nil {
		return err
	}
	a.d.log.Info("dead letter retry requested", "dead_letter", dl.ID, "sink", webhookSink(dl.Sink), "id", dl.OutboxID, "type", dl.Type, "key", dl.Key, "by", by)
	a.d.wake(webhookSink(dl.Sink))
	dl.RetryRequestedAt, dl.RetryRequestedBy = &now, by
	w.Header().Set("Location", "/api/v1/outbox/dead-letters/"+dl.ID)
	api.WriteJSON(w, http.StatusAccepted, dl)
	return nil
}

func (a *API) handleDelete(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	dl, err := a.d.store.discard(r.Context(), id)
	if errors.Is(err, errNoDeadLetter) {
		return api.NotFound("no dead letter %q (delivered on a retry, or discarded?)", id)
	}
	if err != nil {
		return err
	}
	a.d.log.Info("dead letter discarded", "dead_letter", dl.ID, "sink", webhookSink(dl.Sink), "id", dl.OutboxID, "uid", dl.UID,
		"type", dl.Type, "key", dl.Key, "status", dl.Status, "by", actor(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"sharpeye/console/api"
	"sharpeye/console/auth"
	"sharpeye/ingest/event"
)

// MaxBody bounds a request body of the rules API.
const MaxBody = 64 << 10

// maxTestEvents bounds the events of a dry run.
const maxTestEvents = 500

// Counter supplies each rule's firing counts (the Engine does).
type Counter interface {
	Counts(rule string) FireCounts
}

// API is the rules API: list and read for everyone but service accounts,
// changes for admins, dry runs for admins and commanders. Changes carry the
// version read (If-Match or the version field): a stale one gets 412.
type API struct {
	store  *Store
	counts Counter
}

// NewAPI serves store; counts (may be nil) supplies firing counts.
func NewAPI(store *Store, counts Counter) *API {
	return &API{store: store, counts: counts}
}

var readers = []auth.Role{auth.Admin, auth.Commander, auth.Clerk, auth.Analyst, auth.Handler, auth.Supervisor, auth.GridWorker, auth.Leader}

// Routes registers the rules API.
func (a *API) Routes(rt *api.Router) {
	rt.Handle("GET", "/api/v1/rules", auth.Require(a.handleList, readers...))
	rt.Handle("POST", "/api/v1/rules", auth.Require(a.handleCreate, auth.Admin), api.MaxBody(MaxBody))
	rt.Handle("POST", "/api/v1/rules/test", auth.Require(a.handleTest, auth.Admin, auth.Commander), api.MaxBody(MaxBody))
	rt.Handle("GET", "/api/v1/rules/{id}", auth.Require(a.handleGet, readers...))
	rt.Handle("GET", "/api/v1/rules/{id}/history", auth.Require(a.handleHistory, readers...))
	rt.Handle("PUT", "/api/v1/rules/{id}", auth.Require(a.handleUpdate, auth.Admin), api.MaxBody(MaxBody))
	rt.Handle("DELETE", "/api/v1/rules/{id}", auth.Require(a.handleDelete, auth.Admin))
}

// View is a rule as the API shows it.
type View struct {
	Entry
	Firings *FireCounts `json:"firings,omitempty"`
}

func (a *API) view(e Entry) View {
	on := e.IsEnabled()
	e.Enabled = &on
	v := View{Entry: e}
	if a.counts != nil {
		c := a.counts.Counts(e.ID)
		v.Firings = &c
	}
	return v
}

func (a *API) handleList(w http.ResponseWriter, r *http.Request) error {
	out := []View{}
	for _, e := range a.store.Entries() {
		out = append(out, a.view(e))
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"version": a.store.Set().Version(), "rules": out})
	return nil
}

func (a *API) entry(r *http.Request) (Entry, error) {
	id := r.PathValue("id")
	e, ok := a.store.Entry(id)
	if !ok {
		return Entry{}, api.NotFound("no rule %q", id)
	}
	return e, nil
}

func (a *API) handleGet(w http.ResponseWriter, r *http.Request) error {
	e, err := a.entry(r)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", api.ETag(e.Version))
	api.WriteJSON(w, http.StatusOK, a.view(e))
	return nil
}

func (a *API) handleHistory(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	hs, err := a.store.History(r.Context(), id)
	if err != nil {
		return err
	}
	if _, ok := a.store.Entry(id); !ok && len(hs) == 0 {
		return api.NotFound("no rule %q", id)
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"history": hs})
	return nil
}

// body is a rule as the API takes it; what GET answers may be sent back.
type body struct {
	Rule
	// Version, when given, must match the stored one (or send If-Match).
	Version *int64 `json:"version,omitempty"`
	// Read-only fields, accepted and ignored.
	Source    string          `json:"source,omitempty"`
	UpdatedBy string          `json:"updated_by,omitempty"`
	UpdatedAt *time.Time      `json:"updated_at,omitempty"`
	Firings   json.RawMessage `json:"firings,omitempty"`
}

func decodeBody(r *http.Request) (Rule, *int64, error) {
	var b body
	if err := api.DecodeJSON(r, &b); err != nil {
		return Rule{}, nil, err
	}
	v, ok, err := api.IfMatch(r, "rule")
	if err != nil {
		return Rule{}, nil, err
	}
	if ok {
		return b.Rule, &v, nil
	}
	return b.Rule, b.Version, nil
}

func actor(r *http.Request) string {
	if p, ok := auth.FromContext(r.Context()); ok {
		return p.Username
	}
	return ""
}

// problemsBody is the 400 answer to an invalid rule: the uniform error body
// with every problem listed.
type problemsBody struct {
	Error struct {
		Code     string    `json:"code"`
		Message  string    `json:"message"`
		Problems []Problem `json:"problems"`
	} `json:"error"`
}

// storeError answers err; a *ValidationError is answered here (400 with
// every problem) and nil returned.
func storeError(w http.ResponseWriter, err error) error {
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		var b problemsBody
		b.Error.Code = api.CodeBadRequest
		b.Error.Problems = ve.Problems
		msgs := make([]string, len(ve.Problems))
		for i, p := range ve.Problems {
			msgs[i] = p.Msg
			if p.Field != "" {
				msgs[i] = p.Field + ": " + p.Msg
			}
			if p.Rule != "" {
				msgs[i] = "rule " + p.Rule + ": " + msgs[i]
			}
		}
		b.Error.Message = fmt.Sprintf("%d problem(s): %s", len(msgs), strings.Join(msgs, "; "))
		api.WriteJSON(w, http.StatusBadRequest, b)
		return nil
	case errors.Is(err, ErrExists):
		return api.Conflict("%v", err)
	case errors.Is(err, ErrConflict):
		return api.Errorf(http.StatusPreconditionFailed, api.CodeConflict, "%v", err)
	case errors.Is(err, ErrNotFound):
		return api.NotFound("%v", err)
	case errors.Is(err, ErrNoStorage):
		return api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "%v", err)
	}
	return err
}

func (a *API) handleCreate(w http.ResponseWriter, r *http.Request) error {
	rule, _, err := decodeBody(r)
	if err != nil {
		return err
	}
	e, err := a.store.Create(r.Context(), rule, actor(r))
	if err != nil {
		return storeError(w, err)
	}
	w.Header().Set("Location", "/api/v1/rules/"+e.ID)
	w.Header().Set("ETag", api.ETag(e.Version))
	api.WriteJSON(w, http.StatusCreated, a.view(e))
	return nil
}

func (a *API) handleUpdate(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.entry(r); err != nil {
		return err
	}
	rule, version, err := decodeBody(r)
	if err != nil {
		return err
	}
	if rule.ID != r.PathValue("id") {
		return api.BadRequest("id", "must match the URL (%q)", r.PathValue("id"))
	}
	if version == nil {
		return api.Errorf(http.StatusPreconditionRequired, api.CodeBadRequest, "send the version read, as If-Match or the version field, so that concurrent changes are not lost")
	}
	e, err := a.store.Update(r.Context(), rule, *version, actor(r))
	if err != nil {
		return storeError(w, err)
	}
	w.Header().Set("ETag", api.ETag(e.Version))
	api.WriteJSON(w, http.StatusOK, a.view(e))
	return nil
}

func (a *API) handleDelete(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.entry(r); err != nil {
		return err
	}
	e, err := a.store.Delete(r.Context(), r.PathValue("id"), actor(r))
	if err != nil {
		return storeError(w, err)
	}
	if e.Name != "" {
		// A configuration rule is kept, disabled.
		w.Header().Set("ETag", api.ETag(e.Version))
		api.WriteJSON(w, http.StatusOK, a.view(e))
		return nil
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// testRequest is a dry run: a rule and events to evaluate it on.
type testRequest struct {
	Rule   Rule              `json:"rule"`
	Events []json.RawMessage `json:"events"`
}

// testFiring is a dry run's firing, naming its events by id.
type testFiring struct {
	GroupKey     string    `json:"group_key"`
	Kind         string    `json:"kind"`
	Time         time.Time `json:"time"`
	Title        string    `json:"title"`
	Description  string    `json:"description,omitempty"`
	Risk         int       `json:"risk"`
	Events       []string  `json:"events"`
	SuppressedBy string    `json:"suppressed_by,omitempty"`
}

// handleTest evaluates a rule (validated with the whole set, replacing the
// rule of the same id) on the given events, in order, in a throw-away
// engine: nothing is stored and no case opened.
func (a *API) handleTest(w http.ResponseWriter, r *http.Request) error {
	var req testRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if len(req.Events) > maxTestEvents {
		return api.BadRequest("events", "%d events; the limit is %d", len(req.Events), maxTestEvents)
	}
	evs := make([]*event.Event, 0, len(req.Events))
	for i, raw := range req.Events {
		e, err := event.Decode(raw)
		if err != nil {
			return api.BadRequest(fmt.Sprintf("events[%d]", i), "%v", err)
		}
		evs = append(evs, e)
	}
	all := a.store.Set().Rules()
	replaced := false
	for i := range all {
		if all[i].ID == req.Rule.ID {
			all[i], replaced = req.Rule, true
		}
	}
	if !replaced {
		all = append(all, req.Rule)
	}
	if _, err := CompileIn(all, a.store.Locality()); err != nil {
		return storeError(w, err)
	}
	alone := req.Rule
	alone.Inhibits = nil
	alone.Enabled = nil
	set, err := Compile([]Rule{alone})
	if err != nil {
		return storeError(w, err)
	}
	eng, err := NewEngine(set, nil, nil, nil)
	if err != nil {
		return err
	}
	fs, err := eng.Process(r.Context(), evs)
	if err != nil {
		return err
	}
	out := make([]testFiring, 0, len(fs))
	for _, f := range fs {
		tf := testFiring{GroupKey: f.GroupKey, Kind: f.Kind(), Time: f.Time, Title: f.Title, Description: f.Description, Risk: f.Risk, SuppressedBy: f.SuppressedBy}
		for _, e := range f.Events {
			tf.Events = append(tf.Events, e.ID.String())
		}
		out = append(out, tf)
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"firings": out})
	return nil
}

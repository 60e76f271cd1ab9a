package cases

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"sharpeye/console/api"
	"sharpeye/console/auth"
)

// API is the case API:
//
//	GET  /api/v1/cases                        the queue, filtered, newest first, cursor-paged
//	POST /api/v1/cases                        manual intake (window, hotline, grid, police)
//	GET  /api/v1/cases/{id}                   a case with history, evidence, tasks, timers, merge candidates
//	POST /api/v1/cases/{id}/actions/{action}  a workflow action; the body carries the version read
//	GET  /api/v1/cases/stream                 server-sent events: every change the caller may see
//	GET  /api/v1/playbooks                    categories with their playbooks, departments, outcomes
type API struct {
	s   *Service
	hub *Hub
}

// NewAPI serves s, pushing live updates from hub.
func NewAPI(s *Service, hub *Hub) *API { return &API{s: s, hub: hub} }

// Routes registers the case API.
func (a *API) Routes(rt *api.Router) {
	rt.Handle("GET", "/api/v1/cases", a.handleList)
	rt.Handle("POST", "/api/v1/cases", a.handleCreate, api.MaxBody(32<<10))
	rt.Handle("GET", "/api/v1/cases/stream", a.handleStream, api.Streaming())
	rt.Handle("GET", "/api/v1/cases/{id}", a.handleGet)
	rt.Handle("POST", "/api/v1/cases/{id}/actions/{action}", a.handleAction, api.MaxBody(64<<10))
	rt.Handle("GET", "/api/v1/playbooks", a.handlePlaybooks)
}

// apiError turns the workflow's errors into answers.
func apiError(err error) error {
	var (
		fe *FieldError
		fb *ForbiddenError
		se *StateError
	)
	switch {
	case errors.Is(err, ErrNotFound):
		return api.NotFound("no such case in your region")
	case errors.Is(err, ErrStale):
		return api.Errorf(http.StatusPreconditionFailed, "stale", "%s", err.Error())
	case errors.As(err, &fb):
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "%s", fb.Msg)
	case errors.As(err, &se):
		return api.Conflict("%s", se.Msg)
	case errors.As(err, &fe):
		e := api.BadRequest(fe.Field, "%s", fe.Msg)
		if strings.Contains(err.Error(), "\n") { // several problems at once
			e.Message = strings.ReplaceAll(err.Error(), "\n", "; ")
		}
		return e
	}
	return err
}

func csv(r *http.Request, key string) []string {
	var out []string
	for _, v := range r.URL.Query()[key] {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func typed[T ~string](ss []string) []T {
	out := make([]T, len(ss))
	for i, s := range ss {
		out[i] = T(s)
	}
	return out
}

// parseFilter reads the list's query parameters.
func parseFilter(r *http.Request) (Filter, error) {
	q := r.URL.Query()
	f := Filter{
		States: typed[State](csv(r, "state")), Colours: typed[Colour](csv(r, "colour")),
		Categories: csv(r, "category"), Sources: typed[Source](csv(r, "source")),
		Region: q.Get("region"), Department: q.Get("department"), Grid: q.Get("grid"), Rule: q.Get("rule"),
		Text: q.Get("q"), Cursor: q.Get("cursor"),
	}
	for _, s := range f.States {
		if !s.Valid() {
			return f, api.BadRequest("state", "unknown state %q", s)
		}
	}
	for _, c := range f.Colours {
		if !c.Valid() {
			return f, api.BadRequest("colour", "must be red, orange or yellow, not %q", c)
		}
	}
	if err := auth.CheckRegion(f.Region); err != nil {
		return f, api.BadRequest("region", "%v", err)
	}
	if len(f.Text) > 200 {
		return f, api.BadRequest("q", "longer than 200 bytes")
	}
	if v := q.Get("overdue"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, api.BadRequest("overdue", "must be true or false")
		}
		f.Overdue = b
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return f, api.BadRequest("limit", "must be a positive integer")
		}
		f.Limit = n
	}
	for _, p := range []struct {
		key string
		dst *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(p.key); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, api.BadRequest(p.key, "must be an RFC 3339 time such as 2026-11-21T08:00:00+08:00")
			}
			*p.dst = t
		}
	}
	return f, nil
}

func (a *API) handleList(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.FromContext(r.Context())
	f, err := parseFilter(r)
	if err != nil {
		return err
	}
	page, err := a.s.List(r.Context(), p, f)
	if err != nil {
		return apiError(err)
	}
	now := a.s.now()
	type row struct {
		*Case
		Overdue bool `json:"overdue"`
	}
	out := make([]row, len(page.Cases))
	for i, c := range page.Cases {
		out[i] = row{c, c.Overdue(now)}
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"cases": out, "next": page.Next})
	return nil
}

func (a *API) handleCreate(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.FromContext(r.Context())
	var in NewCase
	if err := api.DecodeJSON(r, &in); err != nil {
		return err
	}
	c, err := a.s.Create(r.Context(), p, in)
	if err != nil {
		return apiError(err)
	}
	w.Header().Set("Location", "/api/v1/cases/"+c.ID)
	api.WriteJSON(w, http.StatusCreated, c)
	return nil
}

func (a *API) handleGet(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.FromContext(r.Context())
	d, err := a.s.Get(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return apiError(err)
	}
	w.Header().Set("ETag", api.ETag(d.Version))
	api.WriteJSON(w, http.StatusOK, d)
	return nil
}

func (a *API) handleAction(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.FromContext(r.Context())
	var req ActionRequest
	if r.ContentLength != 0 {
		if err := api.DecodeJSON(r, &req); err != nil {
			return err
		}
	}
	if req.Version == 0 {
		v, _, err := api.IfMatch(r, "case")
		if err != nil {
			return err
		}
		req.Version = v
	}
	c, err := a.s.Act(r.Context(), p, r.PathValue("id"), r.PathValue("action"), req)
	if err != nil {
		return apiError(err)
	}
	w.Header().Set("ETag", api.ETag(c.Version))
	api.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (a *API) handlePlaybooks(w http.ResponseWriter, r *http.Request) error {
	api.WriteJSON(w, http.StatusOK, map[string]any{
		"playbooks":     a.s.cfg.Playbooks,
		"departments":   a.s.cfg.Departments,
		"outcomes":      Outcomes,
		"satisfactions": Satisfactions,
		"actions":       Actions(),
		"elements":      ElementNames,
		"colours":       a.s.cfg.Colours,
	})
	return nil
}

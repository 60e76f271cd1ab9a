package device

import (
	"encoding/json"
	"errors"
	"net/http"

	"sharpeye/configs/conf"
	"sharpeye/console/api"
	"sharpeye/console/auth"
)

// API is the device API: GET/POST /api/v1/devices and GET/PUT/DELETE
// /api/v1/devices/{id}. Anyone authenticated reads the devices of their
// region (with their status); admins change them. Updates carry the version
// read (If-Match or the version field): a stale one is refused with 412.
type API struct {
	reg    *Registry
	status StatusSource
}

// NewAPI serves reg; status (may be nil) supplies each device's liveness.
func NewAPI(reg *Registry, status StatusSource) *API {
	return &API{reg: reg, status: status}
}

// Routes registers the device API.
func (a *API) Routes(rt *api.Router) {
	rt.Handle("GET", "/api/v1/devices", a.handleList)
	rt.Handle("POST", "/api/v1/devices", auth.Require(a.handleCreate, auth.Admin), api.MaxBody(16<<10))
	rt.Handle("GET", "/api/v1/devices/{id}", a.handleGet)
	rt.Handle("PUT", "/api/v1/devices/{id}", auth.Require(a.handleUpdate, auth.Admin), api.MaxBody(16<<10))
	rt.Handle("DELETE", "/api/v1/devices/{id}", auth.Require(a.handleDelete, auth.Admin))
}

// View is a device as the API shows it: the record without its password,
// where it comes from, its version and its status.
type View struct {
	Entry
	Status Status `json:"status"`
}

// View returns what the API shows of a device.
func (a *API) View(e Entry) View {
	e.Device = e.Public()
	v := View{Entry: e, Status: Status{State: StateUnknown}}
	if a.status != nil {
		if st, ok := a.status.DeviceStatus(e.ID); ok {
			v.Status = st
		}
	}
	if e.Disabled {
		v.Status.State = StateDisabled
	}
	return v
}

func (a *API) handleList(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.FromContext(r.Context())
	scope := p.Scope()
	out := []View{}
	for _, e := range a.reg.All() {
		if scope.AllowsRegion(e.Region) {
			out = append(out, a.View(e))
		}
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"devices": out})
	return nil
}

// visible finds a device the caller may see; others are "not found".
func (a *API) visible(r *http.Request) (Entry, error) {
	p, _ := auth.FromContext(r.Context())
	id := r.PathValue("id")
	e, ok := a.reg.Get(id)
	if !ok || !p.Scope().AllowsRegion(e.Region) {
		return Entry{}, api.NotFound("no device %q in your region", id)
	}
	return e, nil
}

func (a *API) handleGet(w http.ResponseWriter, r *http.Request) error {
	e, err := a.visible(r)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", api.ETag(e.Version))
	api.WriteJSON(w, http.StatusOK, a.View(e))
	return nil
}

// body is a device as the API takes it: the password may be given (it is
// never shown back).
type body struct {
	Device
	Password *string `json:"password"`
	// Version, when given, must match the stored one (or send If-Match).
	Version int64 `json:"version,omitempty"`
	// Source and Status are read-only: accepted (and ignored) so that what
	// GET answers can be sent back changed.
	Source string          `json:"source,omitempty"`
	Status json.RawMessage `json:"status,omitempty"`
}

func decode(r *http.Request) (Device, int64, error) {
	var b body
	if err := api.DecodeJSON(r, &b); err != nil {
		return Device{}, 0, err
	}
	d := b.Device
	if b.Password != nil {
		d.Password = conf.Secret(*b.Password)
	}
	d.Normalize()
	if ps := d.Problems(); len(ps) > 0 {
		return Device{}, 0, api.BadRequest(ps[0].Field, "%s", ps[0].Msg)
	}
	p, _ := auth.FromContext(r.Context())
	if !p.Scope().AllowsRegion(d.Region) {
		return Device{}, 0, api.BadRequest("region", "must lie within your own region %q", p.Region)
	}
	version, ok, err := api.IfMatch(r, "device")
	if err != nil {
		return Device{}, 0, err
	}
	if !ok {
		version = b.Version
	}
	return d, version, nil
}

func registryError(err error) error {
	switch {
	case errors.Is(err, ErrExists), errors.Is(err, ErrReadOnly), errors.Is(err, ErrUsernameTaken):
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
	d, _, err := decode(r)
	if err != nil {
		return err
	}
	e, err := a.reg.Create(r.Context(), d)
	if err != nil {
		return registryError(err)
	}
	w.Header().Set("Location", "/api/v1/devices/"+e.ID)
	w.Header().Set("ETag", api.ETag(e.Version))
	api.WriteJSON(w, http.StatusCreated, a.View(e))
	return nil
}

func (a *API) handleUpdate(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.visible(r); err != nil {
		return err
	}
	d, version, err := decode(r)
	if err != nil {
		return err
	}
	if d.ID != r.PathValue("id") {
		return api.BadRequest("id", "must match the URL (%q)", r.PathValue("id"))
	}
	e, err := a.reg.Update(r.Context(), d, version)
	if err != nil {
		return registryError(err)
	}
	w.Header().Set("ETag", api.ETag(e.Version))
	api.WriteJSON(w, http.StatusOK, a.View(e))
	return nil
}

func (a *API) handleDelete(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.visible(r); err != nil {
		return err
	}
	if err := a.reg.Delete(r.Context(), r.PathValue("id")); err != nil {
		return registryError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

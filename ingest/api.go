package ingest

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"sharpeye/configs/conf"
	"sharpeye/console/api"
	"sharpeye/console/auth"
	"sharpeye/ingest/blob"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/detect"
)

// Routes registers the camera API.
func (in *Ingest) Routes(rt *api.Router) {
	rt.Handle("GET", "/api/v1/cameras", in.handleList)
	rt.Handle("POST", "/api/v1/cameras", auth.Require(in.handleCreate, auth.Admin), api.MaxBody(16<<10))
	rt.Handle("GET", "/api/v1/cameras/{id}", in.handleGet)
	rt.Handle("PUT", "/api/v1/cameras/{id}", auth.Require(in.handleUpdate, auth.Admin), api.MaxBody(16<<10))
	rt.Handle("DELETE", "/api/v1/cameras/{id}", auth.Require(in.handleDelete, auth.Admin))
	rt.Handle("GET", "/api/v1/cameras/{id}/snapshot", in.handleSnapshot)
	rt.Handle("GET", "/api/v1/cameras/{id}/snapshots/{sha256}", in.handleStoredSnapshot)
}

// handleStoredSnapshot serves a snapshot the camera's detectors stored as
// evidence (blob:sha256:<sum> in an event), to callers who may see the
// camera. Stored snapshots never change, so they are cached privately.
func (in *Ingest) handleStoredSnapshot(w http.ResponseWriter, r *http.Request) error {
	st, err := in.visible(r)
	if err != nil {
		return err
	}
	sum := r.PathValue("sha256")
	if _, err := blob.ParseRef(blob.Ref(sum)); err != nil {
		return api.BadRequest("sha256", "must be the 64 lowercase hex digits of the snapshot's SHA-256")
	}
	if in.blobs == nil {
		return api.NotFound("no stored snapshot %s of camera %q: this node keeps no snapshots", sum, st.ID)
	}
	etag := `"` + sum + `"`
	rc, ct, err := in.blobs.GetOwned(blob.Ref(sum), detect.BlobOwner(st.ID))
	if errors.Is(err, blob.ErrNotFound) {
		return api.NotFound("no stored snapshot %s of camera %q (never taken here, or past its retention)", sum, st.ID)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	w.Header().Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && (inm == "*" || strings.Contains(inm, etag)) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, err = io.Copy(w, rc)
	return err
}

func (in *Ingest) handleSnapshot(w http.ResponseWriter, r *http.Request) error {
	st, err := in.visible(r)
	if err != nil {
		return err
	}
	jpeg, err := in.Snapshot(r.Context(), st.ID)
	switch {
	case errors.Is(err, detect.ErrNoFFmpeg):
		return api.Errorf(http.StatusNotImplemented, api.CodeUnavailable, "snapshots need ffmpeg, which is not installed on this node")
	case errors.Is(err, detect.ErrNoPicture), errors.Is(err, errNoDetector):
		return api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "no picture from camera %q: %v", st.ID, err)
	case err != nil:
		return err
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "no-store")
	_, err = w.Write(jpeg)
	return err
}

// CameraSummary counts the cameras a caller may see, by state: what the
// console's overview shows, without the whole list.
type CameraSummary struct {
	Total  int            `json:"total"`
	States map[string]int `json:"states"`
}

// handleList answers the cameras in the caller's region, or with
// ?summary=true only their numbers by state.
func (in *Ingest) handleList(w http.ResponseWriter, r *http.Request) error {
	summary := false
	switch v := r.URL.Query().Get("summary"); v {
	case "", "false":
	case "true":
		summary = true
	default:
		return api.BadRequest("summary", "summary must be true or false, not %q", v)
	}
	p, _ := auth.FromContext(r.Context())
	scope := p.Scope()
	out := []CameraStatus{}
	sum := CameraSummary{States: map[string]int{}}
	for _, e := range in.reg.All() {
		if !scope.AllowsRegion(e.Region) {
			continue
		}
		st, ok := in.Status(e.ID)
		switch {
		case !ok:
		case summary:
			sum.Total++
			sum.States[string(st.Status.State)]++
		default:
			out = append(out, st)
		}
	}
	if summary {
		api.WriteJSON(w, http.StatusOK, map[string]any{"summary": sum})
		return nil
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"cameras": out})
	return nil
}

// visible finds a camera the caller may see; others are "not found".
func (in *Ingest) visible(r *http.Request) (CameraStatus, error) {
	p, _ := auth.FromContext(r.Context())
	id := r.PathValue("id")
	st, ok := in.Status(id)
	if !ok || !p.Scope().AllowsRegion(st.Region) {
		return CameraStatus{}, api.NotFound("no camera %q in your region", id)
	}
	return st, nil
}

func (in *Ingest) handleGet(w http.ResponseWriter, r *http.Request) error {
	st, err := in.visible(r)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", api.ETag(st.Version))
	api.WriteJSON(w, http.StatusOK, st)
	return nil
}

// cameraBody is a camera as the API takes it: the password may be given
// (it is never shown back).
type cameraBody struct {
	camera.Camera
	Password *string `json:"password"`
	// Version, when given, must match the stored one (or send If-Match).
	Version int64 `json:"version,omitempty"`
}

func (in *Ingest) decodeCamera(r *http.Request) (camera.Camera, int64, error) {
	var b cameraBody
	if err := api.DecodeJSON(r, &b); err != nil {
		return camera.Camera{}, 0, err
	}
	c := b.Camera
	if b.Password != nil {
		c.Password = conf.Secret(*b.Password)
	}
	c.Normalize()
	if ps := c.Problems(); len(ps) > 0 {
		return camera.Camera{}, 0, api.BadRequest(ps[0].Field, "%s", ps[0].Msg)
	}
	p, _ := auth.FromContext(r.Context())
	if !p.Scope().AllowsRegion(c.Region) {
		return camera.Camera{}, 0, api.BadRequest("region", "must lie within your own region %q", p.Region)
	}
	version, ok, err := api.IfMatch(r, "camera")
	if err != nil {
		return camera.Camera{}, 0, err
	}
	if !ok {
		version = b.Version
	}
	return c, version, nil
}

func registryError(err error) error {
	switch {
	case errors.Is(err, camera.ErrExists):
		return api.Conflict("%v", err)
	case errors.Is(err, camera.ErrReadOnly):
		return api.Conflict("%v", err)
	case errors.Is(err, camera.ErrConflict):
		return api.Errorf(http.StatusPreconditionFailed, api.CodeConflict, "%v", err)
	case errors.Is(err, camera.ErrNotFound):
		return api.NotFound("%v", err)
	}
	return err
}

func (in *Ingest) handleCreate(w http.ResponseWriter, r *http.Request) error {
	c, _, err := in.decodeCamera(r)
	if err != nil {
		return err
	}
	e, err := in.reg.Create(r.Context(), c)
	if err != nil {
		return registryError(err)
	}
	st, _ := in.Status(c.ID)
	w.Header().Set("Location", "/api/v1/cameras/"+c.ID)
	w.Header().Set("ETag", api.ETag(e.Version))
	api.WriteJSON(w, http.StatusCreated, st)
	return nil
}

func (in *Ingest) handleUpdate(w http.ResponseWriter, r *http.Request) error {
	if _, err := in.visible(r); err != nil {
		return err
	}
	c, version, err := in.decodeCamera(r)
	if err != nil {
		return err
	}
	if c.ID != r.PathValue("id") {
		return api.BadRequest("id", "must match the URL (%q)", r.PathValue("id"))
	}
	e, err := in.reg.Update(r.Context(), c, version)
	if err != nil {
		return registryError(err)
	}
	st, _ := in.Status(c.ID)
	w.Header().Set("ETag", api.ETag(e.Version))
	api.WriteJSON(w, http.StatusOK, st)
	return nil
}

func (in *Ingest) handleDelete(w http.ResponseWriter, r *http.Request) error {
	if _, err := in.visible(r); err != nil {
		return err
	}
	if err := in.reg.Delete(r.Context(), r.PathValue("id")); err != nil {
		return registryError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

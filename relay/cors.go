package relay

import (
	"net/http"
	"slices"

	"sharpeye/console/api"
)

// CORS for WHEP players served from other origins (WHEP §4.x: the
// endpoint and session URLs answer OPTIONS preflights). Cross-origin
// players authenticate with a bearer token: no credentials are allowed
// (the session cookie is SameSite=Strict anyway).
const (
	corsAllowHeaders  = "Authorization, Content-Type, If-Match"
	corsExposeHeaders = "Location, ETag, Link, Accept-Patch"
	corsMaxAge        = "600"
)

// allowOrigin reports whether a page of origin may use the WHEP endpoints.
func (r *Relay) allowOrigin(origin string) bool {
	return origin != "" && (slices.Contains(r.cfg.CORSOrigins, origin) || slices.Contains(r.cfg.CORSOrigins, "*"))
}

// corsHeaders lets an allowed origin read the answer.
func (r *Relay) corsHeaders(w http.ResponseWriter, req *http.Request) {
	origin := req.Header.Get("Origin")
	h := w.Header()
	h.Add("Vary", "Origin")
	if !r.allowOrigin(origin) {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
}

// preflight answers OPTIONS on a WHEP URL allowing methods. Without an
// Origin it is a plain WHEP OPTIONS: what the URL accepts.
func (r *Relay) preflight(w http.ResponseWriter, req *http.Request, methods string, accept func(http.Header)) error {
	h := w.Header()
	h.Set("Allow", methods)
	accept(h)
	if origin := req.Header.Get("Origin"); origin != "" {
		h.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
		if !r.allowOrigin(origin) {
			return api.Errorf(http.StatusForbidden, api.CodeForbidden, "pages of origin %q may not use this WHEP endpoint; an administrator can add the origin to relay.cors_origins", origin)
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", methods)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleEndpointOptions: OPTIONS /api/v1/cameras/{id}/whep (public: a
// preflight carries no credentials; it reveals nothing about the camera).
func (r *Relay) handleEndpointOptions(w http.ResponseWriter, req *http.Request) error {
	return r.preflight(w, req, "POST, OPTIONS", func(h http.Header) { h.Set("Accept-Post", sdpType) })
}

// handleSessionOptions: OPTIONS /api/v1/whep/{session}.
func (r *Relay) handleSessionOptions(w http.ResponseWriter, req *http.Request) error {
	return r.preflight(w, req, "PATCH, DELETE, OPTIONS", func(h http.Header) { h.Set("Accept-Patch", sdpFragType) })
}

package api

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the API's description, kept true by a test that compares it
// with the registered routes.
//
//go:embed openapi.yaml
var OpenAPI []byte

// ServeOpenAPI registers GET /api/v1/openapi.yaml.
func ServeOpenAPI(rt *Router) {
	rt.Handle(http.MethodGet, "/api/v1/openapi.yaml", func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/yaml")
		_, err := w.Write(OpenAPI)
		return err
	})
}

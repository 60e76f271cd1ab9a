// Package web serves the dispatch room's web console: static files
// embedded in the binary, talking to the HTTP API with the session cookie.
package web

import (
	"embed"
	"io/fs"
	"net/http"

	"sharpeye/console/api"
)

//go:embed static
var static embed.FS

// Routes serves the console at / (public: the login page must load; every
// piece of data it shows comes from the authenticated API).
func Routes(rt *api.Router) {
	root, _ := fs.Sub(static, "static")
	files := http.FileServerFS(root)
	rt.Mount("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			api.WriteError(w, api.Errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "%s not allowed here", r.Method))
			return
		}
		if _, err := fs.Stat(root, cleanPath(r.URL.Path)); err != nil {
			// Client-side routes (#/...) all load the one page.
			r.URL.Path = "/"
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
}

func cleanPath(p string) string {
	if p == "/" || p == "" {
		return "index.html"
	}
	if p[0] == '/' {
		p = p[1:]
	}
	if p[len(p)-1] == '/' {
		p += "index.html"
	}
	return p
}

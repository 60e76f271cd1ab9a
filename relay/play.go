package relay

import (
	"embed"
	"net/http"

	"sharpeye/console/api"
)

// The play page: plain files, no build step, no inline script (the
// server's Content-Security-Policy allows only 'self').
//
//go:embed play/play.html play/play.js play/play.css
var playFiles embed.FS

// playRoutes serves GET /play/{id} and its script and style sheet. The
// page is public (it must load for the user to log in); the video comes
// from the authenticated WHEP endpoint. The page's relative links resolve
// to /play/play.js and /play/play.css.
func playRoutes(rt *api.Router) {
	rt.Handle("GET", "/play/{id}", serveFile("play/play.html", "text/html; charset=utf-8"))
	rt.Handle("GET", "/play/play.js", serveFile("play/play.js", "text/javascript; charset=utf-8"))
	rt.Handle("GET", "/play/play.css", serveFile("play/play.css", "text/css; charset=utf-8"))
}

func serveFile(name, contentType string) api.HandlerFunc {
	b, err := playFiles.ReadFile(name)
	return func(w http.ResponseWriter, r *http.Request) error {
		if err != nil {
			return err
		}
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", "no-cache")
		_, err := w.Write(b)
		return err
	}
}

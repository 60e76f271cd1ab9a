// Package apitest holds what tests of an API registered on the router share:
// an authenticator that takes the caller's name from a header, one call
// that answers status, header and body, and the value of a metric in a
// registry.
package apitest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"sharpeye/console/api"
	"sharpeye/console/auth"
)

// Principals lets a request in as the principal its X-User header names.
type Principals map[string]*auth.Principal

// Authenticate implements api.Authenticator.
func (p Principals) Authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	pr, ok := p[r.Header.Get("X-User")]
	if !ok {
		return nil, api.ErrUnauthenticated
	}
	return r.WithContext(auth.WithPrincipal(r.Context(), pr)), nil
}

var _ api.Authenticator = Principals(nil)

// Call sends one request to srv as user (a JSON body, if any) with hdr's
// name-value pairs as headers, and returns the answer's status, header and
// body.
func Call(t testing.TB, srv *httptest.Server, user, method, path, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-User", user)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, string(b)
}

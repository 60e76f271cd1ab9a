// Package api is Sharpeye's one HTTP surface: the listener, the router every
// role registers its endpoints on, the uniform JSON error body, strict JSON
// decoding with size limits, request timeouts, request metrics, and the
// health (/healthz), readiness (/readyz) and metrics (/metrics) endpoints.
//
// Every route under /api/ requires authentication unless registered with
// Public(); the Authenticator (the console's auth service) decides who the
// caller is. Other routes (the web UI's static files) are public unless
// registered with Authenticated().
package api

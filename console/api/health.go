package api

import (
	"net/http"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Health tracks whether each part of the process (each role, the case
// database...) is ready. /readyz answers 200 only when all are.
type Health struct {
	mu    sync.Mutex
	parts map[string]string // name -> "" when ready, else why not
	gauge *prometheus.GaugeVec
}

// NewHealth returns a Health whose state is also exported as
// sharpeye_ready{component}.
func NewHealth(reg prometheus.Registerer) *Health {
	h := &Health{
		parts: map[string]string{},
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sharpeye_ready",
			Help: "1 when the component is ready to serve, 0 while starting or failed.",
		}, []string{"component"}),
	}
	reg.MustRegister(h.gauge)
	return h
}

// Starting registers a component as not yet ready.
func (h *Health) Starting(name string) { h.set(name, "starting") }

// Ready marks a component ready.
func (h *Health) Ready(name string) { h.set(name, "") }

// NotReady marks a component not ready, with the reason.
func (h *Health) NotReady(name, reason string) {
	if reason == "" {
		reason = "not ready"
	}
	h.set(name, reason)
}

func (h *Health) set(name, reason string) {
	h.mu.Lock()
	h.parts[name] = reason
	h.mu.Unlock()
	v := 0.0
	if reason == "" {
		v = 1
	}
	h.gauge.WithLabelValues(name).Set(v)
}

// ComponentState is one component in the /readyz answer.
type ComponentState struct {
	Name   string `json:"name"`
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// State returns whether every component is ready, and each one's state.
func (h *Health) State() (bool, []ComponentState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	all := len(h.parts) > 0
	out := make([]ComponentState, 0, len(h.parts))
	for name, reason := range h.parts {
		out = append(out, ComponentState{Name: name, Ready: reason == "", Reason: reason})
		if reason != "" {
			all = false
		}
	}
	slices.SortFunc(out, func(a, b ComponentState) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return all, out
}

// serveHealthz answers 200 while the process is alive.
func serveHealthz(w http.ResponseWriter, r *http.Request) error {
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// serveReadyz answers 200 when every component is ready, 503 otherwise.
func (h *Health) serveReadyz(w http.ResponseWriter, r *http.Request) error {
	ready, parts := h.State()
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	WriteJSON(w, status, map[string]any{"ready": ready, "components": parts})
	return nil
}

package node

import (
	"net/http"
	"time"

	"sharpeye/console/api"
)

type systemInfo struct {
	Version    string               `json:"version"`
	Roles      []string             `json:"roles"`
	Ready      bool                 `json:"ready"`
	Components []api.ComponentState `json:"components"`
	CaseDB     string               `json:"casedb"`
	StartedAt  time.Time            `json:"started_at"`
}

// registerSystem serves what this node is and how it is doing.
func (n *Node) registerSystem() {
	api.ServeOpenAPI(n.router)
	started := time.Now().UTC().Truncate(time.Second)
	n.router.Handle("GET", "/api/v1/system", func(w http.ResponseWriter, r *http.Request) error {
		ready, parts := n.health.State()
		api.WriteJSON(w, http.StatusOK, systemInfo{
			Version: n.opts.Version, Roles: n.opts.Roles, Ready: ready, Components: parts,
			CaseDB: n.db.Driver(), StartedAt: started,
		})
		return nil
	})
}

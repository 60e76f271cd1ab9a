package rules_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/rules"
	"sharpeye/console/api"
	"sharpeye/console/api/apitest"
	"sharpeye/console/auth"
)

var principals = apitest.Principals{
	"admin":     {Username: "admin", Role: auth.Admin},
	"commander": {Username: "commander", Role: auth.Commander},
	"clerk":     {Username: "clerk", Role: auth.Clerk},
	"service":   {Username: "box", Role: auth.ServiceAccount},
}

const configRules = `
- id: camera-offline
  name: 摄像机离线
  match: {types: [camera.offline]}
  cooldown: 10m
  case: {category: equipment_fault, risk: 30}
`

func newAPI(t *testing.T, db *casedb.DB) (*httptest.Server, *rules.Store) {
	t.Helper()
	store, err := rules.NewStore(parse(t, configRules), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	rt := api.NewRouter(1<<20, 10*time.Second)
	rt.SetAuthenticator(principals)
	rules.NewAPI(store, nil).Routes(rt)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return srv, store
}

const smokeJSON = `{"id": "smoke-high", "name": "烟感浓度持续超标", "match": {"device_kinds": ["smoke"]}, "when": "attr.smoke > 0.3", "for": "30s",
  "case": {"category": "public_safety", "risk": 70, "title": "{{source}}烟感浓度{{attr \"smoke\"}}"}}`

func TestAPI(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			srv, store := newAPI(t, casedbtest.Open(t, driver))

			if code, _, body := apitest.Call(t, srv, "clerk", "POST", "/api/v1/rules", smokeJSON); code != http.StatusForbidden {
				t.Fatalf("clerk create: %d %s, want 403", code, body)
			}
			if code, _, _ := apitest.Call(t, srv, "service", "GET", "/api/v1/rules", ""); code != http.StatusForbidden {
				t.Errorf("service list: %d, want 403", code)
			}

			// Invalid: every problem listed.
			bad := `{"id": "bad", "name": "坏", "when": "attr.smoke >", "count": 3, "case": {"category": "public_safety", "risk": 170}}`
			code, _, body := apitest.Call(t, srv, "admin", "POST", "/api/v1/rules", bad)
			var pb struct {
				Error struct {
					Problems []rules.Problem `json:"problems"`
				} `json:"error"`
			}
			if code != http.StatusBadRequest || json.Unmarshal([]byte(body), &pb) != nil || len(pb.Error.Problems) != 3 {
				t.Fatalf("invalid create: %d %s, want 400 with 3 problems", code, body)
			}
			for _, f := range []string{"when", "window", "case.risk"} {
				if !strings.Contains(body, `"field":"`+f+`"`) {
					t.Errorf("problems %s do not name %s", body, f)
				}
			}

			code, hdr, body := apitest.Call(t, srv, "admin", "POST", "/api/v1/rules", smokeJSON)
			if code != http.StatusCreated || hdr.Get("ETag") != `"1"` {
				t.Fatalf("create: %d %s (ETag %s)", code, body, hdr.Get("ETag"))
			}
			if code, _, _ := apitest.Call(t, srv, "admin", "POST", "/api/v1/rules", smokeJSON); code != http.StatusConflict {
				t.Errorf("create twice: %d, want 409", code)
			}
			if set := store.Set(); set.Version() != 1 {
				t.Errorf("set version %d after the create, want 1", set.Version())
			}

			// Update: stale → 412, missing version → 428, right → 200.
			upd := strings.Replace(smokeJSON, `"risk": 70`, `"risk": 75`, 1)
			if code, _, _ := apitest.Call(t, srv, "admin", "PUT", "/api/v1/rules/smoke-high", upd, "If-Match", `"7"`); code != http.StatusPreconditionFailed {
				t.Errorf("stale update: %d, want 412", code)
			}
			if code, _, _ := apitest.Call(t, srv, "admin", "PUT", "/api/v1/rules/smoke-high", upd); code != http.StatusPreconditionRequired {
				t.Errorf("update without version: %d, want 428", code)
			}
			code, hdr, body = apitest.Call(t, srv, "admin", "PUT", "/api/v1/rules/smoke-high", upd, "If-Match", `"1"`)
			if code != http.StatusOK || hdr.Get("ETag") != `"2"` {
				t.Fatalf("update: %d %s", code, body)
			}
			if r, _ := store.Set().Rule("smoke-high"); r.Case.Risk != 75 {
				t.Errorf("risk %d after the update, want 75", r.Case.Risk)
			}

			// An inhibits reference to a missing rule is refused with the set.
			inh := `{"id": "net", "name": "网络", "inhibits": {"rules": ["ghost"]}, "case": {"category": "equipment_fault", "risk": 50}}`
			if code, _, body := apitest.Call(t, srv, "admin", "POST", "/api/v1/rules", inh); code != http.StatusBadRequest || !strings.Contains(body, `no rule \"ghost\"`) {
				t.Errorf("dangling inhibits: %d %s", code, body)
			}
			// Deleting a rule another inhibits is refused too.
			inh = strings.Replace(inh, "ghost", "smoke-high", 1)
			if code, _, body := apitest.Call(t, srv, "admin", "POST", "/api/v1/rules", inh); code != http.StatusCreated {
				t.Fatalf("create net: %d %s", code, body)
			}
			if code, _, body := apitest.Call(t, srv, "admin", "DELETE", "/api/v1/rules/smoke-high", ""); code != http.StatusBadRequest {
				t.Errorf("delete of an inhibited rule: %d %s, want 400", code, body)
			}
			if code, _, _ := apitest.Call(t, srv, "admin", "DELETE", "/api/v1/rules/net", ""); code != http.StatusNoContent {
				t.Errorf("delete net: %d, want 204", code)
			}

			// Deleting a configuration rule disables it.
			code, _, body = apitest.Call(t, srv, "admin", "DELETE", "/api/v1/rules/camera-offline", "")
			if code != http.StatusOK || !strings.Contains(body, `"enabled":false`) {
				t.Errorf("delete config rule: %d %s, want 200 and disabled", code, body)
			}
			if r, _ := store.Set().Rule("camera-offline"); r.IsEnabled() {
				t.Error("the configuration rule is still enabled")
			}

			// Everyone but service accounts reads, with version and source.
			code, _, body = apitest.Call(t, srv, "clerk", "GET", "/api/v1/rules", "")
			var list struct {
				Version int64         `json:"version"`
				Rules   []rules.Entry `json:"rules"`
			}
			if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil {
				t.Fatalf("list: %d %s", code, body)
			}
			if list.Version != 5 || len(list.Rules) != 2 || list.Rules[0].ID != "camera-offline" || !list.Rules[0].OverridesConfig || list.Rules[1].Source != rules.SourceAPI {
				t.Errorf("list: %s", body)
			}

			code, _, body = apitest.Call(t, srv, "clerk", "GET", "/api/v1/rules/smoke-high/history", "")
			var hist struct{ History []rules.Change }
			if code != http.StatusOK || json.Unmarshal([]byte(body), &hist) != nil || len(hist.History) != 2 {
				t.Fatalf("history: %d %s", code, body)
			}
			if h := hist.History; h[0].Action != "update" || h[0].Actor != "admin" || h[0].Spec.Case.Risk != 75 || h[1].Action != "create" || h[1].Version != 1 {
				t.Errorf("history %+v", h)
			}
			code, _, body = apitest.Call(t, srv, "clerk", "GET", "/api/v1/rules/camera-offline/history", "")
			if code != http.StatusOK || !strings.Contains(body, `"action":"disable"`) {
				t.Errorf("config rule history: %d %s", code, body)
			}
			if code, _, _ := apitest.Call(t, srv, "clerk", "GET", "/api/v1/rules/nope", ""); code != http.StatusNotFound {
				t.Errorf("unknown rule: %d, want 404", code)
			}
		})
	}
}

func TestAPIDryRun(t *testing.T) {
	srv, _ := newAPI(t, casedbtest.Open(t, casedb.SQLite))
	var evs []string
	for i, level := range []float64{0.4, 0.5, 0.45, 0.1} {
		e := smoke(t, "smoke-1", level, after(time.Duration(i)*20*time.Second))
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, string(b))
	}
	req := `{"rule": ` + smokeJSON + `, "events": [` + strings.Join(evs, ",") + `]}`
	if code, _, _ := apitest.Call(t, srv, "clerk", "POST", "/api/v1/rules/test", req); code != http.StatusForbidden {
		t.Errorf("clerk dry run: %d, want 403", code)
	}
	code, _, body := apitest.Call(t, srv, "commander", "POST", "/api/v1/rules/test", req)
	var res struct {
		Firings []struct {
			Kind   string   `json:"kind"`
			Title  string   `json:"title"`
			Events []string `json:"events"`
		} `json:"firings"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || len(res.Firings) != 1 || res.Firings[0].Title != "smoke-1烟感浓度0.45" {
		t.Fatalf("dry run: %d %s, want one firing at the third reading (40s)", code, body)
	}
	// Nothing was stored.
	code, _, body = apitest.Call(t, srv, "commander", "GET", "/api/v1/rules/smoke-high", "")
	if code != http.StatusNotFound {
		t.Errorf("dry run stored the rule: %d %s", code, body)
	}
	bad := `{"rule": {"id": "x", "name": "x", "when": "(", "case": {"category": "c", "risk": 1}}, "events": []}`
	if code, _, body := apitest.Call(t, srv, "admin", "POST", "/api/v1/rules/test", bad); code != http.StatusBadRequest || !strings.Contains(body, `"field":"when"`) {
		t.Errorf("invalid dry run: %d %s", code, body)
	}
}

// TestStoreRun checks a change made on one node reaches another's engine
// without a restart.
func TestStoreRun(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			nodeA, err := rules.NewStore(parse(t, configRules), db, nil)
			if err != nil {
				t.Fatal(err)
			}
			nodeB, err := rules.NewStore(parse(t, configRules), db, nil)
			if err != nil {
				t.Fatal(err)
			}
			set, err := nodeB.Load(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			eng, err := rules.NewEngine(set, nil, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var r rules.Rule
			if err := json.Unmarshal([]byte(smokeJSON), &r); err != nil {
				t.Fatal(err)
			}
			r.For, r.When = 0, ""
			if _, err := nodeA.Create(t.Context(), r, "admin"); err != nil {
				t.Fatal(err)
			}

			ctx, cancel := context.WithCancel(t.Context())
			applied := make(chan *rules.Set, 1)
			done := make(chan error, 1)
			go func() {
				done <- nodeB.Run(ctx, time.Millisecond, func(s *rules.Set) {
					eng.Replace(s)
					applied <- s
				})
			}()
			s := <-applied
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if s.Version() != 1 {
				t.Errorf("applied version %d, want 1", s.Version())
			}
			fs := process(t, eng, smoke(t, "smoke-1", 0.9, tags("x")))
			if len(fs) != 1 || fs[0].Rule != "smoke-high" || fs[0].RuleVersion != 1 {
				t.Errorf("firings after the reload: %+v", fs)
			}
		})
	}
}

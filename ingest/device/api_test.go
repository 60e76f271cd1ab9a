package device_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/console/api"
	"sharpeye/console/api/apitest"
	"sharpeye/console/auth"
	"sharpeye/ingest/device"
)

var principals = apitest.Principals{
	"admin":       {Username: "admin", Role: auth.Admin},
	"north-admin": {Username: "north-admin", Role: auth.Admin, Region: "north"},
	"south":       {Username: "south", Role: auth.Commander, Region: "south"},
}

type fixedStatus map[string]device.Status

func (f fixedStatus) DeviceStatus(id string) (device.Status, bool) {
	st, ok := f[id]
	return st, ok
}

func newAPI(t *testing.T) (*httptest.Server, *device.Registry) {
	t.Helper()
	reg := device.NewRegistry([]device.Device{{ID: "cfg-north", Kind: device.KindSmoke, Region: "north"}}, casedbtest.Open(t, "sqlite"))
	rt := api.NewRouter(1<<20, 10*time.Second)
	rt.SetAuthenticator(principals)
	seen := time.Date(2026, 11, 21, 6, 40, 0, 0, time.UTC)
	device.NewAPI(reg, fixedStatus{"cfg-north": {State: device.StateOnline, LastSeen: &seen, Messages: 7}}).Routes(rt)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return srv, reg
}

func TestAPI(t *testing.T) {
	srv, reg := newAPI(t)
	create := `{"id": "gas-1", "kind": "gas", "region": "north/village", "grid": "g-7", "interval": "1m", "password": "very-secret-1", "tags": ["kitchen"]}`

	if code, _, body := apitest.Call(t, srv, "south", "POST", "/api/v1/devices", create); code != http.StatusForbidden {
		t.Fatalf("commander creates: %d %s", code, body)
	}
	if code, _, body := apitest.Call(t, srv, "north-admin", "POST", "/api/v1/devices", strings.Replace(create, "north/village", "south", 1)); code != http.StatusBadRequest || !strings.Contains(body, "region") {
		t.Fatalf("admin creates outside their region: %d %s", code, body)
	}
	if code, _, body := apitest.Call(t, srv, "admin", "POST", "/api/v1/devices", `{"id": "x", "kind": "toaster"}`); code != http.StatusBadRequest || !strings.Contains(body, `"field":"kind"`) {
		t.Fatalf("bad kind: %d %s", code, body)
	}
	code, hdr, body := apitest.Call(t, srv, "north-admin", "POST", "/api/v1/devices", create)
	if code != http.StatusCreated || hdr.Get("Location") != "/api/v1/devices/gas-1" || hdr.Get("ETag") != `"1"` {
		t.Fatalf("create: %d %v %s", code, hdr, body)
	}
	if strings.Contains(body, "very-secret") {
		t.Fatalf("answer shows the password: %s", body)
	}
	if e, ok := reg.Get("gas-1"); !ok || !e.CheckPassword("very-secret-1") {
		t.Fatal("created device does not log in with its password")
	}
	if code, _, body := apitest.Call(t, srv, "admin", "POST", "/api/v1/devices", create); code != http.StatusConflict {
		t.Fatalf("duplicate: %d %s", code, body)
	}

	// Reads are scoped by region.
	code, _, body = apitest.Call(t, srv, "south", "GET", "/api/v1/devices", "")
	if code != http.StatusOK || strings.Contains(body, "gas-1") || strings.Contains(body, "cfg-north") {
		t.Fatalf("south lists: %d %s", code, body)
	}
	if code, _, _ := apitest.Call(t, srv, "south", "GET", "/api/v1/devices/gas-1", ""); code != http.StatusNotFound {
		t.Fatalf("south reads a northern device: %d", code)
	}
	code, _, body = apitest.Call(t, srv, "north-admin", "GET", "/api/v1/devices", "")
	var list struct {
		Devices []device.View `json:"devices"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil || code != 200 || len(list.Devices) != 2 {
		t.Fatalf("north lists: %d %s", code, body)
	}
	if st := list.Devices[0].Status; list.Devices[0].ID != "cfg-north" || st.State != device.StateOnline || st.Messages != 7 || st.LastSeen == nil {
		t.Fatalf("status of cfg-north: %+v", list.Devices[0])
	}
	if st := list.Devices[1].Status; st.State != device.StateUnknown {
		t.Fatalf("status of a device never heard: %+v", st)
	}

	// Updates need the current version.
	update := `{"id": "gas-1", "kind": "gas", "region": "north/village", "name": "灶台"}`
	if code, _, body := apitest.Call(t, srv, "admin", "PUT", "/api/v1/devices/gas-1", update, "If-Match", `"7"`); code != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %d %s", code, body)
	}
	code, hdr, body = apitest.Call(t, srv, "admin", "PUT", "/api/v1/devices/gas-1", update, "If-Match", `"1"`)
	if code != http.StatusOK || hdr.Get("ETag") != `"2"` || !strings.Contains(body, "灶台") {
		t.Fatalf("update: %d %s", code, body)
	}
	if e, _ := reg.Get("gas-1"); !e.CheckPassword("very-secret-1") {
		t.Fatal("update without a password lost the stored one")
	}
	// What GET answers can be sent back changed.
	_, _, body = apitest.Call(t, srv, "admin", "GET", "/api/v1/devices/gas-1", "")
	if code, _, body := apitest.Call(t, srv, "admin", "PUT", "/api/v1/devices/gas-1", strings.Replace(body, "灶台", "厨房", 1)); code != http.StatusOK || !strings.Contains(body, "厨房") {
		t.Fatalf("round trip: %d %s", code, body)
	}
	if code, _, body := apitest.Call(t, srv, "admin", "PUT", "/api/v1/devices/gas-1", strings.Replace(update, `"id": "gas-1"`, `"id": "gas-2"`, 1)); code != http.StatusBadRequest {
		t.Fatalf("id differs from the URL: %d %s", code, body)
	}
	if code, _, body := apitest.Call(t, srv, "admin", "PUT", "/api/v1/devices/cfg-north", `{"id": "cfg-north", "kind": "smoke", "region": "north"}`); code != http.StatusConflict {
		t.Fatalf("update a configured device: %d %s", code, body)
	}
	if code, _, body := apitest.Call(t, srv, "admin", "DELETE", "/api/v1/devices/gas-1", ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, _, _ := apitest.Call(t, srv, "admin", "GET", "/api/v1/devices/gas-1", ""); code != http.StatusNotFound {
		t.Fatalf("deleted device: %d", code)
	}
}

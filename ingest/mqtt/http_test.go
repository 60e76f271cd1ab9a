package mqtt

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sharpeye/console/api"
	"sharpeye/console/auth"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/device"
)

// fakeAuth lets a request in as the principal named by its bearer token.
type fakeAuth map[string]*auth.Principal

func (f fakeAuth) Authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	p, ok := f[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	if !ok {
		return nil, api.ErrUnauthenticated
	}
	return r.WithContext(auth.WithPrincipal(r.Context(), p)), nil
}

func TestHTTPDetections(t *testing.T) {
	smokeSvc := smoke
	h := start(t, setup{devices: []device.Device{box, smokeSvc}, cameras: cameraLookup})
	rt := api.NewRouter(1<<20, 10*time.Second)
	rt.SetAuthenticator(fakeAuth{
		"box-token":   {Username: "box-1", Role: auth.ServiceAccount, Region: "huangpi"},
		"other-token": {Username: "box-9", Role: auth.ServiceAccount, Region: "xinzhou"},
		"human-token": {Username: "li", Role: auth.Commander},
	})
	h.in.Routes(rt)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	post := func(token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/detections", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	code, body := post("box-token", `{"detections": [
		{"camera": "cam-42", "class": "person", "confidence": 0.93, "bbox": [0.1, 0.1, 0.2, 0.5]},
		{"camera": "cam-42", "class": "person", "confidence": 1.7},
		{"camera": "cam-42", "class": "crowd", "confidence": 0.6, "extra": 1},
		{"camera": "cam-7", "class": "vehicle", "confidence": 0.5, "snapshot": "snap/7/1.jpg"}
	]}`)
	if code != http.StatusOK {
		t.Fatalf("post: %d %s", code, body)
	}
	var resp DetectionsResponse
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Accepted != 2 || resp.Rejected != 2 || len(resp.Results) != 4 {
		t.Fatalf("answer %s", body)
	}
	if r := resp.Results[1]; r.Index != 1 || r.ID != "" || !strings.Contains(r.Error, "detections[1].confidence") {
		t.Fatalf("result 1 %+v", r)
	}
	if r := resp.Results[2]; !strings.Contains(r.Error, "detections[2].extra: unknown field") {
		t.Fatalf("result 2 %+v", r)
	}
	// Everything was durable before the answer.
	all := h.bus.all()
	evs := events(t, all)
	if len(evs) != 2 || evs[0].ID.String() != resp.Results[0].ID || evs[1].ID.String() != resp.Results[3].ID {
		t.Fatalf("events %s, answer %s", summary(all), body)
	}
	if evs[0].Type != "detection.person" || evs[0].Location.Grid != "g-0412" || evs[1].Location.Grid != box.Grid {
		t.Fatalf("events %+v %+v", evs[0], evs[1])
	}
	dls := deadLetters(all)
	if len(dls) != 2 || !strings.Contains(string(dls[0].Value), "1.7") || !strings.Contains(dls[0].Headers[bus.HeaderReason], "confidence") ||
		!strings.Contains(dls[0].Headers[bus.HeaderSource], "index=1") {
		t.Fatalf("dead letters %s", summary(dls))
	}
	if st, _ := h.in.DeviceStatus("box-1"); st.Rejected != 2 || st.State != device.StateOnline {
		t.Fatalf("analyser status %+v", st)
	}

	// Naming the analyser explicitly; refusals of the request as a whole.
	if code, body := post("box-token", `{"analyser": "box-1", "detections": [{"camera": "cam-42", "class": "fire", "confidence": 0.8}]}`); code != 200 || !strings.Contains(body, `"accepted":1`) {
		t.Fatalf("named analyser: %d %s", code, body)
	}
	tests := []struct {
		name, token, body string
		code              int
	}{
		{"a person's account", "human-token", `{"analyser": "box-1", "detections": [{}]}`, http.StatusForbidden},
		{"analyser outside the caller's region", "other-token", `{"analyser": "box-1", "detections": [{}]}`, http.StatusNotFound},
		{"unknown analyser", "other-token", `{"detections": [{}]}`, http.StatusNotFound},
		{"not an analyser", "box-token", `{"analyser": "smoke-1", "detections": [{}]}`, http.StatusBadRequest},
		{"no detections", "box-token", `{"detections": []}`, http.StatusBadRequest},
		{"too many", "box-token", `{"detections": [` + strings.Repeat(`{},`, MaxDetections) + `{}]}`, http.StatusBadRequest},
		{"not JSON", "box-token", `{"detections": [`, http.StatusBadRequest},
		{"unknown field", "box-token", `{"detection": []}`, http.StatusBadRequest},
		{"no token", "", `{"detections": [{}]}`, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := post(tt.token, tt.body); code != tt.code {
				t.Fatalf("%d %s, want %d", code, body, tt.code)
			}
		})
	}
	// A full batch of 1,000.
	var b strings.Builder
	b.WriteString(`{"detections": [`)
	for i := range MaxDetections {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"camera": "cam-42", "class": "person", "confidence": %g}`, float64(i)/MaxDetections)
	}
	b.WriteString("]}")
	before := len(events(t, h.bus.all()))
	if code, body := post("box-token", b.String()); code != 200 || !strings.Contains(body, `"accepted":1000`) {
		t.Fatalf("1,000 detections: %d %.200s", code, body)
	}
	if n := len(events(t, h.bus.all())) - before; n != MaxDetections {
		t.Fatalf("%d events for 1,000 detections", n)
	}
}

package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/rules"
	"sharpeye/configs/conf"
	"sharpeye/console/auth"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/event"
)

func smokeRule() rules.Rule {
	return rules.Rule{
		ID: "smoke-high", Name: "烟感浓度超标",
		Match:   rules.Match{Types: []string{"telemetry"}, DeviceKinds: []string{"smoke"}},
		When:    "attr.smoke > 0.3",
		GroupBy: []string{"device"},
		Case:    rules.Case{Category: "public_safety", Risk: 85, Title: `{{.Source.Name}}烟感浓度{{attr "smoke"}}`},
	}
}

func smokeReading(v float64) *event.Event {
	e := event.New(event.SourceDevice, "lx-smoke-1", "telemetry")
	e.Source.Name = "新庄村卫生室烟感"
	e.Location = event.Location{Region: "lanxi/xinzhuang", Grid: "g-03"}
	e.SetNumber("smoke", v)
	e.SetString("device_kind", "smoke")
	return e
}

func publishEvents(t *testing.T, b bus.Producer, evs ...*event.Event) {
	t.Helper()
	msgs := make([]bus.Message, len(evs))
	for i, e := range evs {
		v, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = bus.Message{Topic: bus.TopicEvents, Key: e.PartitionKey(), Value: v}
	}
	if err := b.Publish(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

type caseView struct {
	ID         string `json:"id"`
	Number     string `json:"number"`
	State      string `json:"state"`
	Colour     string `json:"colour"`
	Title      string `json:"title"`
	Department string `json:"department"`
	Version    int64  `json:"version"`
	Warned     bool   `json:"risk_warned"`
	Evidence   []struct {
		Kind string `json:"kind"`
	} `json:"evidence"`
}

// TestAlertsEndToEnd follows an event from the bus through a rule to a
// case, its live update, its action API and its record on sharpeye.cases.
func TestAlertsEndToEnd(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			n := startNode(t, driver, func(c *Config) {
				c.Alerts.Rules = rules.Rules{smokeRule()}
				c.Alerts.Poll = conf.Duration(50 * time.Millisecond)
				c.Alerts.BatchWait = conf.Duration(10 * time.Millisecond)
			})
			ctx := context.Background()
			for _, u := range []auth.NewUser{
				{Username: "cmd", Password: "commander-pass-1", Role: auth.Commander, Region: "lanxi"},
				{Username: "fire1", Password: "fire-handler-1", Role: auth.Handler, Region: "county-fire", Department: "fire"},
				{Username: "other", Password: "other-region-1", Role: auth.Commander, Region: "dongyang"},
				{Username: "an", Password: "analyst-pass-1", Role: auth.Analyst, Region: "lanxi"},
			} {
				if _, err := n.Auth().EnsureUser(ctx, u); err != nil {
					t.Fatal(err)
				}
			}
			login := func(user, pw string) *client {
				c := newClient(t, n)
				if res, body := c.do("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"`+user+`","password":"`+pw+`"}`)); res.StatusCode != 200 {
					t.Fatalf("login %s: %d %s", user, res.StatusCode, body)
				}
				return c
			}
			cmd, fire, other, an := login("cmd", "commander-pass-1"), login("fire1", "fire-handler-1"), login("other", "other-region-1"), login("an", "analyst-pass-1")

			// Live updates for the commander.
			sctx, stop := context.WithCancel(ctx)
			defer stop()
			req, _ := http.NewRequestWithContext(sctx, "GET", n.URL()+"/api/v1/cases/stream", nil)
			stream, err := (&http.Client{Jar: cmd.c.Jar}).Do(req)
			if err != nil || stream.StatusCode != 200 {
				t.Fatalf("stream: %v %v", err, stream)
			}
			defer stream.Body.Close()
			updates := make(chan string, 100)
			go func() {
				sc := bufio.NewScanner(stream.Body)
				for sc.Scan() {
					if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
						updates <- line
					}
				}
			}()

			<-n.Alerts().Consuming()
			publishEvents(t, n.Bus(), smokeReading(0.12), smokeReading(0.42))
			// A malformed message is dead-lettered, not lost.
			if err := n.Bus().Publish(ctx, bus.Message{Topic: bus.TopicEvents, Key: "x", Value: []byte(`{"schema":1,`)}); err != nil {
				t.Fatal(err)
			}

			// The live update says the case is committed: then the list shows it.
			var first string
			select {
			case first = <-updates:
			case <-time.After(20 * time.Second):
				t.Fatal("no case opened for the smoke alarm (no live update)")
			}
			var list struct {
				Cases []caseView `json:"cases"`
			}
			_, body := cmd.do("GET", "/api/v1/cases?colour=red", nil)
			json.Unmarshal(body, &list)
			if len(list.Cases) != 1 {
				t.Fatalf("red cases: %s", body)
			}
			c := list.Cases[0]
			if c.State != "assessed" || c.Colour != "red" || c.Title != "新庄村卫生室烟感烟感浓度0.42" {
				t.Fatalf("case %+v", c)
			}
			if !strings.Contains(first, c.ID) {
				t.Fatalf("live update for another case: %s", first)
			}

			// A red case's risk warning is a timer firing at once: wait for
			// it, so that the versions below are not overtaken by it.
			deadline := time.Now().Add(60 * time.Second)
			for !c.Warned {
				if time.Now().After(deadline) {
					t.Fatalf("no risk warning on the red case %s", c.ID)
				}
				time.Sleep(20 * time.Millisecond)
				res, body := cmd.do("GET", "/api/v1/cases/"+c.ID, nil)
				if res.StatusCode != 200 || json.Unmarshal(body, &c) != nil {
					t.Fatalf("read the case: %d %s", res.StatusCode, body)
				}
			}

			// Scope, roles, staleness and the action API.
			if res, _ := other.do("GET", "/api/v1/cases/"+c.ID, nil); res.StatusCode != 404 {
				t.Fatalf("another region reads the case: %d", res.StatusCode)
			}
			if res, body := fire.do("GET", "/api/v1/cases/"+c.ID, nil); res.StatusCode != 404 {
				t.Fatalf("fire brigade sees the case before dispatch: %d %s", res.StatusCode, body)
			}
			act := func(cl *client, action, body string, version int64) (*http.Response, []byte) {
				b := `{"version":` + strconv.FormatInt(version, 10)
				if body != "" {
					b += "," + body
				}
				return cl.do("POST", "/api/v1/cases/"+c.ID+"/actions/"+action, strings.NewReader(b+"}"))
			}
			if res, body := act(an, "dispatch", "", c.Version); res.StatusCode != 403 {
				t.Fatalf("analyst dispatching: %d %s", res.StatusCode, body)
			}
			if res, body := act(cmd, "dispatch", "", c.Version-1); res.StatusCode != 412 {
				t.Fatalf("stale dispatch: %d %s", res.StatusCode, body)
			}
			if res, body := cmd.do("POST", "/api/v1/cases/"+c.ID+"/actions/comment", strings.NewReader(`{"note":"x"}`), "If-Match", `W/"1"`); res.StatusCode != 412 {
				t.Fatalf("stale If-Match: %d %s", res.StatusCode, body)
			}
			if res, body := act(cmd, "fly", "", c.Version); res.StatusCode != 400 || !bytes.Contains(body, []byte("unknown action")) {
				t.Fatalf("unknown action: %d %s", res.StatusCode, body)
			}
			res, body := act(cmd, "dispatch", "", c.Version)
			var after caseView
			if json.Unmarshal(body, &after); res.StatusCode != 200 || after.State != "dispatched" || after.Department != "fire" {
				t.Fatalf("dispatch: %d %s", res.StatusCode, body)
			}
			if res, body := act(fire, "accept", "", after.Version); res.StatusCode != 200 {
				t.Fatalf("fire brigade accepting: %d %s", res.StatusCode, body)
			}
			if res, body := act(fire, "accept", "", after.Version+1); res.StatusCode != 409 {
				t.Fatalf("accepting twice: %d %s", res.StatusCode, body)
			}
			_, body = cmd.do("GET", "/api/v1/cases/"+c.ID, nil)
			var detail caseView
			json.Unmarshal(body, &detail)
			if detail.State != "accepted" || len(detail.Evidence) < 2 {
				t.Fatalf("detail: %s", body)
			}

			// Every change left through the outbox onto sharpeye.cases, in order.
			got := map[string]bool{}
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			n.Bus().Consume(cctx, "test-cases", []string{bus.TopicCases}, 100, 10*time.Millisecond, func(_ context.Context, msgs []bus.Message) error {
				for _, m := range msgs {
					if m.Key == c.ID {
						got[m.Headers["type"]] = true
					}
				}
				if got["case.accept"] {
					cancel()
				}
				return nil
			})
			for _, typ := range []string{"case.registered", "case.assess", "case.dispatch", "case.accept"} {
				if !got[typ] {
					t.Errorf("%s not on %s (got %v)", typ, bus.TopicCases, got)
				}
			}
			dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
			defer dcancel()
			var reason string
			n.Bus().Consume(dctx, "test-dead", []string{bus.TopicDeadLetter}, 100, 10*time.Millisecond, func(_ context.Context, msgs []bus.Message) error {
				for _, m := range msgs {
					if strings.HasPrefix(m.Headers[bus.HeaderReason], "alerts:") {
						reason = m.Headers[bus.HeaderReason]
						dcancel()
					}
				}
				return nil
			})
			if !strings.Contains(reason, "malformed JSON") {
				t.Errorf("dead letter for the malformed event: %q", reason)
			}
		})
	}
}

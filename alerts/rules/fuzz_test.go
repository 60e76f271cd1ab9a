package rules_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"gopkg.in/yaml.v3"

	"sharpeye/alerts/rules"
	"sharpeye/ingest/event"
)

// FuzzRules decodes rules from YAML and JSON, validates them and, when they
// compile, evaluates a few events: nothing may panic.
func FuzzRules(f *testing.F) {
	f.Add([]byte(smokeFor))
	f.Add([]byte(alarmCorrelate))
	f.Add([]byte(motionCount))
	f.Add([]byte(benchRules))
	f.Add([]byte(`[` + smokeJSON + `]`))
	f.Add([]byte(`- {id: r, name: n, when: 'attr.x[0] / 0 > hour', schedule: {periods: [{from: "23:59", to: "00:00"}]}, case: {category: c, risk: 1, title: '{{attr "x"}}{{.Events}}{{time}}'}}`))
	f.Add([]byte(`- {id: r, name: n, group_by: [attr.x, camera], inhibits: {rules: [r]}, case: {category: c, risk: 1}}`))

	e1 := event.New(event.SourceDevice, "smoke-1", "telemetry")
	e1.SetNumber("smoke", 0.5)
	e1.SetString("device_kind", "smoke")
	e1.Location = event.Location{Region: "lanxi/xinzhuang", Grid: "g-07"}
	e2 := event.New(event.SourceCamera, "cam-1", "camera.motion")
	e2.Tags = []string{"school"}
	evs := []*event.Event{e1, e2, e1}

	f.Fuzz(func(t *testing.T, data []byte) {
		var fromYAML []rules.Rule
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if dec.Decode(&fromYAML) == nil {
			check(t, fromYAML, evs)
		}
		var fromJSON []rules.Rule
		if json.Unmarshal(data, &fromJSON) == nil {
			check(t, fromJSON, evs)
		}
	})
}

func check(t *testing.T, rs []rules.Rule, evs []*event.Event) {
	set, err := rules.Compile(rs)
	if err != nil {
		if err.Error() == "" {
			t.Fatal("empty validation error")
		}
		return
	}
	e, err := rules.NewEngine(set, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Process(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	// What compiled once compiles again from its JSON form (the API's).
	b, err := json.Marshal(set.Rules())
	if err != nil {
		t.Fatal(err)
	}
	var again []rules.Rule
	if err := json.Unmarshal(b, &again); err != nil {
		t.Fatalf("re-decode: %v", err)
	}
	if _, err := rules.Compile(again); err != nil {
		t.Fatalf("valid rules no longer compile after a JSON round trip: %v\n%s", err, b)
	}
}

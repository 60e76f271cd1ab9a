package rules

import (
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestForType checks the rules an event type is tested against: those
// whose match or correlate.match types may match it (globs included) and
// those without types, in the set's order, so that firings come in the
// same order as without the index.
func TestForType(t *testing.T) {
	var rs []Rule
	if err := yaml.Unmarshal([]byte(`
- {id: any-critical, name: a, match: {min_severity: critical}, case: {category: c, risk: 1}}
- {id: person, name: b, match: {types: [detection.person]}, case: {category: c, risk: 1}}
- {id: detections, name: c, match: {types: ["detection.*"]}, case: {category: c, risk: 1}}
- {id: alarm-people, name: d, match: {types: [sensor.alarm]}, correlate: {match: {types: [detection.person]}, within: 1m}, case: {category: c, risk: 1}}
- {id: offline, name: e, match: {types: [camera.offline]}, case: {category: c, risk: 1}}
- {id: alarm-anything, name: f, match: {types: [sensor.alarm]}, correlate: {within: 1m}, case: {category: c, risk: 1}}
`), &rs); err != nil {
		t.Fatal(err)
	}
	set, err := Compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[string][]string{
		"detection.person": {"any-critical", "person", "detections", "alarm-people", "alarm-anything"},
		"detection.car":    {"any-critical", "detections", "alarm-anything"},
		"sensor.alarm":     {"any-critical", "alarm-people", "alarm-anything"},
		"camera.offline":   {"any-critical", "offline", "alarm-anything"},
		"telemetry":        {"any-critical", "alarm-anything"},
	} {
		for range 2 { // computed, then remembered
			var got []string
			for _, c := range set.forType(typ) {
				got = append(got, c.spec.ID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: rules %q, want %q", typ, got, want)
			}
		}
	}
	if v := set.WithVersion(3); len(v.forType("camera.offline")) != 3 {
		t.Errorf("a versioned copy of the set lost its index")
	}
}

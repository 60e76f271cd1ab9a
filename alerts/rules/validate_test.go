package rules_test

import (
	"errors"
	"strings"
	"testing"

	"sharpeye/alerts/rules"
	"sharpeye/configs/conf"
)

const okRule = `
- id: ok
  name: 正常
  case: {category: public_safety, risk: 10}
`

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error
	}{
		{"missing id and name", `- {case: {category: c, risk: 1}}`, []string{"rules[0].id: required", "rules[0].name: required"}},
		{"bad id", `- {id: "Bad Id", name: n, case: {category: c, risk: 1}}`, []string{`rules[0].id: "Bad Id" must be`}},
		{"duplicate id", okRule + okRule, []string{`rules[1].id: duplicate: rule "ok" is also rules[0]`}},
		{"when syntax", `- {id: r, name: n, when: 'attr.smoke >', case: {category: c, risk: 1}}`, []string{"rules[0].when: at line 1, column"}},
		{"when unknown variable", `- {id: r, name: n, when: 'smoke > 1', case: {category: c, risk: 1}}`, []string{"rules[0].when: at line 1, column 1: unknown name smoke"}},
		{"when not bool", `- {id: r, name: n, when: 'hour + 1', case: {category: c, risk: 1}}`, []string{"rules[0].when:", "bool"}},
		{"count without window", `- {id: r, name: n, count: 3, case: {category: c, risk: 1}}`, []string{"rules[0].window: required when count > 1"}},
		{"window without count", `- {id: r, name: n, window: 1m, case: {category: c, risk: 1}}`, []string{"rules[0].window: only applies with count > 1"}},
		{"negative window", `- {id: r, name: n, count: 2, window: -1s, case: {category: c, risk: 1}}`, []string{"rules[0].window: must be positive"}},
		{"count negative", `- {id: r, name: n, count: -2, case: {category: c, risk: 1}}`, []string{"rules[0].count: must be at least 1"}},
		{"for with count", `- {id: r, name: n, when: 'true', for: 30s, count: 2, window: 1m, case: {category: c, risk: 1}}`, []string{"rules[0].for: cannot be combined with count"}},
		{"for without when", `- {id: r, name: n, for: 30s, case: {category: c, risk: 1}}`, []string{"rules[0].for: needs a when condition"}},
		{"for with correlate", `- {id: r, name: n, when: 'true', for: 30s, correlate: {within: 1m}, case: {category: c, risk: 1}}`, []string{"rules[0].for: cannot be combined with correlate"}},
		{"correlate without within", `- {id: r, name: n, correlate: {match: {types: [a]}}, case: {category: c, risk: 1}}`, []string{"rules[0].correlate.within: required"}},
		{"bad glob", `- {id: r, name: n, match: {types: ["detection.["]}, case: {category: c, risk: 1}}`, []string{"rules[0].match.types[0]: bad glob"}},
		{"bad correlate when", `- {id: r, name: n, correlate: {when: 'nope(', within: 1m}, case: {category: c, risk: 1}}`, []string{"rules[0].correlate.when: at line 1"}},
		{"bad source kind", `- {id: r, name: n, match: {source_kinds: [robot]}, case: {category: c, risk: 1}}`, []string{`rules[0].match.source_kinds[0]: "robot" is not a source kind`}},
		{"bad severity", `- {id: r, name: n, match: {min_severity: huge}, case: {category: c, risk: 1}}`, []string{`rules[0].match.min_severity: "huge"`}},
		{"risk out of range", `- {id: r, name: n, case: {category: c, risk: 101, risk_per_repeat: -1}}`, []string{"rules[0].case.risk: 101 is outside 0..100", "rules[0].case.risk_per_repeat: -1"}},
		{"missing category", `- {id: r, name: n, case: {risk: 1}}`, []string{"rules[0].case.category: required"}},
		{"template does not parse", `- {id: r, name: n, case: {category: c, risk: 1, title: '{{.Source.Name'}}`, []string{"rules[0].case.title:"}},
		{"template unknown function", `- {id: r, name: n, case: {category: c, risk: 1, description: '{{nope}}'}}`, []string{`rules[0].case.description:`, `"nope" not defined`}},
		{"unknown element", `- {id: r, name: n, case: {category: c, risk: 1, elements: {why: x}}}`, []string{`rules[0].case.elements.why: unknown element: one of when, where, who, what, circumstances, cause, object`}},
		{"element template", `- {id: r, name: n, case: {category: c, risk: 1, elements: {cause: '{{nope}}'}}}`, []string{`rules[0].case.elements.cause:`, `"nope" not defined`}},
		{"inhibits unknown rule", `- {id: r, name: n, inhibits: {rules: [ghost]}, case: {category: c, risk: 1}}`, []string{`rules[0].inhibits.rules[0]: no rule "ghost" in the set`}},
		{"inhibits itself", `- {id: r, name: n, inhibits: {rules: [r]}, case: {category: c, risk: 1}}`, []string{"rules[0].inhibits.rules[0]: a rule cannot inhibit itself"}},
		{"inhibits bad equal", okRule + `- {id: r, name: n, inhibits: {rules: [ok], equal: [street]}, case: {category: c, risk: 1}}`, []string{`rules[1].inhibits.equal[0]: "street" is not one of`}},
		{"bad group_by", `- {id: r, name: n, group_by: [grid, grid, attr.], case: {category: c, risk: 1}}`, []string{`rules[0].group_by[1]: "grid" is listed twice`, "rules[0].group_by[2]:"}},
		{"bad timezone", `- {id: r, name: n, schedule: {timezone: Mars/Olympus}, case: {category: c, risk: 1}}`, []string{`rules[0].schedule.timezone: unknown time zone "Mars/Olympus"`}},
		{"bad period", `- {id: r, name: n, schedule: {periods: [{days: [someday], from: "25:00", to: "6"}]}, case: {category: c, risk: 1}}`, []string{"schedule.periods[0].days[0]", "schedule.periods[0].from", "schedule.periods[0].to"}},
		{"empty period", `- {id: r, name: n, schedule: {periods: [{from: "06:00", to: "06:00"}]}, case: {category: c, risk: 1}}`, []string{"schedule.periods[0]: from and to are equal"}},
		{"when range", `- {id: r, name: n, when: 'len(0..100000000) > 1', case: {category: c, risk: 1}}`, []string{"rules[0].when: ranges (a..b) are not allowed"}},
		{"when nested loops", `- {id: r, name: n, when: 'all(tags, {all(tags, {all(tags, {# == ""})})})', case: {category: c, risk: 1}}`, []string{"rules[0].when: more than 2 predicates"}},
		{"confidence range", `- {id: r, name: n, match: {min_confidence: 1.5}, case: {category: c, risk: 1}}`, []string{"rules[0].match.min_confidence: 1.5 is outside 0..1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rules.Compile(parse(t, tt.yaml))
			var ve *rules.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Compile: %v, want a *ValidationError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidationListsEveryProblem(t *testing.T) {
	_, err := rules.Compile(parse(t, `
- {id: a, name: n, count: 3, case: {category: c, risk: 1}}
- {id: b, name: n, when: '1 +', case: {category: c, risk: 200}}
`))
	var ve *rules.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("problems: %v, want 3", err)
	}
}

// TestConfigSection checks the alerts.rules section through conf.Load:
// errors carry the full path.
func TestConfigSection(t *testing.T) {
	type alerts struct {
		Rules rules.Rules `yaml:"rules"`
	}
	type root struct {
		Alerts alerts `yaml:"alerts"`
	}
	var cfg root
	err := conf.Load(&cfg, []byte(`
alerts:
  rules:
    - id: smoke-high
      name: 烟感
      when: 'attr.smoke > 0.3'
      case: {category: public_safety, risk: 70}
    - id: bad
      name: 坏
      when: 'attr.smoke >'
      case: {category: public_safety, risk: 70}
`), "sharpeye.yml", nil)
	if err == nil || !strings.Contains(err.Error(), "alerts.rules[1].when") {
		t.Fatalf("Load: %v, want an error at alerts.rules[1].when", err)
	}
	if len(cfg.Alerts.Rules) != 2 || cfg.Alerts.Rules[0].When != "attr.smoke > 0.3" {
		t.Errorf("decoded %+v", cfg.Alerts.Rules)
	}
}

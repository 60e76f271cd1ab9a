package node

import (
	_ "embed"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"sharpeye/alerts"
	"sharpeye/alerts/cases"
	"sharpeye/alerts/rules"
	"sharpeye/configs/conf"
)

//go:embed demo/alerts.yml
var demoRulesYAML []byte

// demoAlerts gives the demo its alert rules and playbooks whose deadlines
// are minutes instead of hours, so that reminders, urges, supervision and
// escalation happen while someone watches; the readings around an alert
// are attached after 30 s, not 5 min.
func demoAlerts(cfg *alerts.Config) error {
	var rs rules.Rules
	if err := yaml.Unmarshal(demoRulesYAML, &rs); err != nil {
		return fmt.Errorf("demo rules: %w", err)
	}
	if _, err := rules.Compile(rs); err != nil {
		return fmt.Errorf("demo rules: %w", err)
	}
	cfg.Rules = append(cfg.Rules, rs...)
	cfg.Cases.Readings.Before = conf.Duration(5 * time.Minute)
	cfg.Cases.Readings.After = conf.Duration(30 * time.Second)
	m := func(n int) conf.Duration { return conf.Duration(time.Duration(n) * time.Minute) }
	for i := range cfg.Cases.Playbooks {
		pb := &cfg.Cases.Playbooks[i]
		pb.Deadlines = cases.Deadlines{Assess: m(5), Accept: m(3), Resolve: m(15), FollowUp: m(15)}
		pb.RemindBefore = m(1)
		pb.Ladder = []cases.Step{{After: m(0), Action: "urge"}, {After: m(2), Action: "urge"}, {After: m(4), Action: "supervise"}, {After: m(8), Action: "escalate"}}
	}
	return nil
}

package node

import (
	"testing"

	"sharpeye/configs/conf"
)

// TestDemoAlertsValid keeps the demo's rules and playbooks loadable: every
// rule compiles and names a category with a playbook.
func TestDemoAlertsValid(t *testing.T) {
	cfg := Defaults()
	if err := demoAlerts(&cfg.Alerts); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Alerts.Rules) < 10 {
		t.Fatalf("%d demo rules", len(cfg.Alerts.Rules))
	}
	data, err := conf.Marshal(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := Defaults()
	if err := conf.Load(&out, data, "demo", nil); err != nil {
		t.Fatalf("the demo configuration does not validate: %v", err)
	}
}

package bench

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"sharpeye/alerts/rules"
)

// TestAlertsSmoke runs `bench alerts` at a tiny rate: the node in its child
// process opens cases from the county's events, every one arrives on the
// live stream with its events in the evidence, and the figures are in
// order. Timings are not checked: the machine is shared.
func TestAlertsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process and runs for seconds")
	}
	rep := runJSON[AlertsReport](t, "alerts", "--rate", "1000", "--duration", "3s")
	a := rep.Alerts
	if a == nil || len(rep.Errors) > 0 {
		t.Fatalf("no result: %+v (errors %v)", a, rep.Errors)
	}
	if a.Published < 2500 || a.Achieved <= 0 {
		t.Errorf("published %d events at %.0f/s, want about 3000 at 1000/s", a.Published, a.Achieved)
	}
	if !a.Drained {
		t.Errorf("the alerts role did not handle every event")
	}
	if a.Opened == 0 || int64(a.Opened) != a.Outcomes["opened"] {
		t.Errorf("%d cases seen on the stream, the workflow opened %d: want the same, not zero", a.Opened, a.Outcomes["opened"])
	}
	if a.Matched != a.Opened {
		t.Errorf("%d of %d cases timed: every case opened by a rule has its events in the evidence", a.Matched, a.Opened)
	}
	if !(0 < a.P50 && a.P50 <= a.P95 && a.P95 <= a.P99 && a.P99 <= a.Max) {
		t.Errorf("percentiles out of order: p50 %v, p95 %v, p99 %v, max %v ms", a.P50, a.P95, a.P99, a.Max)
	}
	if a.Node.RSS == 0 || a.Node.Window <= 0 {
		t.Errorf("node not measured: %+v", a.Node)
	}
	if len(a.Targets) != 1 || a.Targets[0].Met != nil {
		t.Errorf("the 5,000 events/s target was not measured, so it must not be reported met or missed: %+v", a.Targets)
	}
}

// The demo's rules, which --rules takes as they are, and the bench's own
// are valid rule sets for the alerts role.
func TestAlertRulesLoad(t *testing.T) {
	for _, file := range []string{"", filepath.Join("..", "node", "demo", "alerts.yml")} {
		rs, err := loadAlertRules(file)
		if err != nil {
			t.Fatalf("%q: %v", file, err)
		}
		if _, err := rules.Compile(rs); err != nil {
			t.Errorf("%q: %v", file, err)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(bad, []byte("- {id: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var o alertsOptions
	for _, file := range []string{bad, filepath.Join(t.TempDir(), "missing.yml")} {
		fs := newFlagSet("alerts", io.Discard)
		o.register(fs)
		if err := o.parse(fs, []string{"--rules", file}); err == nil {
			t.Errorf("--rules %s was accepted", file)
		} else {
			t.Log(err)
		}
	}
}

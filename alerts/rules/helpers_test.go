package rules_test

import (
	"context"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"sharpeye/alerts/rules"
	"sharpeye/ingest/event"
)

// shanghai is the default time zone of rules.
var shanghai, _ = time.LoadLocation("Asia/Shanghai")

// t0 is 2026-11-21 (a Saturday) 10:00 in Shanghai.
var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, shanghai)

// opt changes an event under construction.
type opt func(*event.Event)

func at(t time.Time) opt        { return func(e *event.Event) { e.Time = event.NewTime(t) } }
func after(d time.Duration) opt { return at(t0.Add(d)) }
func grid(g string) opt {
	return func(e *event.Event) {
		e.Location.Grid = g
		if e.Location.Region == "" {
			e.Location.Region = "lanxi/xinzhuang"
		}
	}
}
func region(r string) opt         { return func(e *event.Event) { e.Location.Region = r } }
func tags(ts ...string) opt       { return func(e *event.Event) { e.Tags = ts } }
func num(k string, v float64) opt { return func(e *event.Event) { e.SetNumber(k, v) } }
func str(k, v string) opt         { return func(e *event.Event) { e.SetString(k, v) } }
func sev(s event.Severity) opt    { return func(e *event.Event) { e.Severity = s } }
func named(n string) opt          { return func(e *event.Event) { e.Source.Name = n } }

// ev builds a valid event at t0 unless told otherwise.
func ev(t testing.TB, kind event.SourceKind, source, typ string, opts ...opt) *event.Event {
	t.Helper()
	e := event.New(kind, source, typ)
	e.Time = event.NewTime(t0)
	if kind == event.SourceDevice || kind == event.SourceAnalyser {
		e.SetString("device_kind", "smoke")
	}
	for _, o := range opts {
		o(e)
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("test event: %v", err)
	}
	return e
}

func motion(t testing.TB, cam string, opts ...opt) *event.Event {
	return ev(t, event.SourceCamera, cam, "camera.motion", opts...)
}

func smoke(t testing.TB, dev string, level float64, opts ...opt) *event.Event {
	return ev(t, event.SourceDevice, dev, "telemetry", append([]opt{num("smoke", level)}, opts...)...)
}

// parse decodes rules from YAML, failing the test on a decoding error.
func parse(t testing.TB, src string) []rules.Rule {
	t.Helper()
	var rs []rules.Rule
	if err := yaml.Unmarshal([]byte(src), &rs); err != nil {
		t.Fatalf("rules YAML: %v", err)
	}
	return rs
}

// compile parses and compiles rules, failing the test if they are invalid.
func compile(t testing.TB, src string) *rules.Set {
	t.Helper()
	set, err := rules.Compile(parse(t, src))
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return set
}

// engine returns an in-memory engine for rules.
func engine(t testing.TB, src string) *rules.Engine {
	t.Helper()
	e, err := rules.NewEngine(compile(t, src), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// process feeds events one batch and returns the firings.
func process(t testing.TB, e *rules.Engine, evs ...*event.Event) []rules.Firing {
	t.Helper()
	fs, err := e.Process(context.Background(), evs)
	if err != nil {
		t.Fatalf("process: %v", err)
	}
	return fs
}

// keys lists the firings as "rule|key kind" for comparison.
func keys(fs []rules.Firing) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.GroupKey+" "+f.Kind())
	}
	return out
}

package rules_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/rules"
	"sharpeye/console/api/apitest"
	"sharpeye/ingest/event"
)

func TestMatchFields(t *testing.T) {
	det := func(class string, conf float64, opts ...opt) *event.Event {
		return ev(t, event.SourceAnalyser, "box-1", "detection."+class,
			append([]opt{str("class", class), num("confidence", conf), str("camera", "cam-9")}, opts...)...)
	}
	tests := []struct {
		name  string
		match string
		yes   *event.Event
		no    *event.Event
	}{
		{"types glob", `types: ["detection.*"]`, det("person", 0.9), motion(t, "cam-1")},
		{"source kinds", `source_kinds: [device]`, smoke(t, "s-1", 0.1), motion(t, "cam-1")},
		{"sources glob", `sources: ["smoke-*"]`, smoke(t, "smoke-7", 0.1), smoke(t, "gas-7", 0.1)},
		{"tags any", `tags: [school, market]`, motion(t, "cam-1", tags("x", "school")), motion(t, "cam-1", tags("x"))},
		{"region subtree", `regions: [lanxi/xinzhuang]`, motion(t, "cam-1", region("lanxi/xinzhuang/east")), motion(t, "cam-1", region("lanxi/xinzhuangxi"))},
		{"grids", `grids: [g-07]`, motion(t, "cam-1", grid("g-07")), motion(t, "cam-1", grid("g-08"))},
		{"device kinds", `device_kinds: [smoke]`, smoke(t, "s-1", 0.1), ev(t, event.SourceDevice, "w-1", "telemetry", str("device_kind", "water"))},
		{"classes", `classes: [person]`, det("person", 0.9), det("car", 0.9)},
		{"min confidence", `min_confidence: 0.8`, det("person", 0.8), det("person", 0.79)},
		{"min severity", `min_severity: major`, motion(t, "cam-1", sev(event.SeverityCritical)), motion(t, "cam-1", sev(event.SeverityMinor))},
		{"fields AND", `types: [camera.motion], grids: [g-07]`, motion(t, "cam-1", grid("g-07")), ev(t, event.SourceCamera, "cam-1", "camera.offline", grid("g-07"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := engine(t, `
- id: r
  name: 测试
  match: {`+tt.match+`}
  case: {category: public_order, risk: 50}
`)
			if fs := process(t, e, tt.yes); len(fs) != 1 {
				t.Errorf("matching event: %d firings, want 1", len(fs))
			}
			if fs := process(t, e, tt.no); len(fs) != 0 {
				t.Errorf("other event: %v, want no firing", keys(fs))
			}
		})
	}
}

func TestWhen(t *testing.T) {
	tests := []struct {
		name string
		when string
		ev   *event.Event
		want bool
	}{
		{"threshold above", `attr.smoke > 0.3`, smoke(t, "s-1", 0.42), true},
		{"threshold below", `attr.smoke > 0.3`, smoke(t, "s-1", 0.2), false},
		{"attribute missing", `attr.smoke > 0.3`, ev(t, event.SourceDevice, "s-1", "telemetry", num("temperature", 30)), false},
		{"water level", `attr["water_level"] >= 3.0`, ev(t, event.SourceDevice, "w-1", "telemetry", num("water_level", 3.1)), true},
		{"hour in Shanghai", `hour == 10 && weekday == "sat"`, motion(t, "cam-1"), true},
		{"hasTag", `hasTag("school")`, motion(t, "cam-1", tags("school")), true},
		{"inRegion", `inRegion("lanxi")`, motion(t, "cam-1", region("huangpi/x")), false},
		{"source and severity", `source.kind == "camera" && atLeast("warning") && severity_rank >= 2`, motion(t, "cam-1", sev(event.SeverityMajor)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := engine(t, `
- id: r
  name: 测试
  when: '`+tt.when+`'
  case: {category: public_safety, risk: 50}
`)
			if got := len(process(t, e, tt.ev)) == 1; got != tt.want {
				t.Errorf("fired = %v, want %v", got, tt.want)
			}
		})
	}
}

const motionCount = `
- id: motion-3
  name: 频繁移动
  match: {types: [camera.motion]}
  count: 3
  window: 60s
  case: {category: public_order, risk: 40}
`

func TestCountInWindow(t *testing.T) {
	t.Run("3 in 60s fires", func(t *testing.T) {
		e := engine(t, motionCount)
		fs := process(t, e, motion(t, "cam-1", after(0)), motion(t, "cam-1", after(30*time.Second)), motion(t, "cam-1", after(60*time.Second)))
		if len(fs) != 1 || len(fs[0].Events) != 3 || !fs[0].Time.Equal(t0.Add(60*time.Second)) {
			t.Fatalf("firings %+v, want one with 3 events at +60s", fs)
		}
		// The window starts again after a firing.
		if fs := process(t, e, motion(t, "cam-1", after(61*time.Second))); len(fs) != 0 {
			t.Errorf("a fourth event fired again: %v", keys(fs))
		}
	})
	t.Run("3 in 61s does not", func(t *testing.T) {
		e := engine(t, motionCount)
		if fs := process(t, e, motion(t, "cam-1", after(0)), motion(t, "cam-1", after(30*time.Second)), motion(t, "cam-1", after(61*time.Second))); len(fs) != 0 {
			t.Fatalf("fired: %v", keys(fs))
		}
	})
	t.Run("out of order within the window counts", func(t *testing.T) {
		e := engine(t, motionCount)
		if fs := process(t, e, motion(t, "cam-1", after(50*time.Second)), motion(t, "cam-1", after(10*time.Second)), motion(t, "cam-1", after(30*time.Second))); len(fs) != 1 {
			t.Fatalf("%d firings, want 1", len(fs))
		}
	})
	t.Run("late event ignored", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		e, err := rules.NewEngine(compile(t, motionCount), nil, reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		fs := process(t, e, motion(t, "cam-1", after(5*time.Minute)), motion(t, "cam-1", after(0)), motion(t, "cam-1", after(10*time.Second)), motion(t, "cam-1", after(5*time.Minute+time.Second)))
		if len(fs) != 0 {
			t.Fatalf("events older than the window were counted: %v", keys(fs))
		}
		if n := apitest.Metric(t, reg, "sharpeye_rules_late_events_total"); n != 2 {
			t.Errorf("late events counted %v, want 2", n)
		}
	})
}

const smokeFor = `
- id: smoke-high
  name: 烟感浓度持续超标
  match: {device_kinds: [smoke]}
  when: 'attr.smoke > 0.3'
  for: 30s
  case: {category: public_safety, risk: 70, title: '{{.Source.Name}}烟感浓度{{attr "smoke"}}'}
`

func TestForDuration(t *testing.T) {
	t.Run("held 30s fires once", func(t *testing.T) {
		e := engine(t, smokeFor)
		var fired []string
		for s := 0; s <= 50; s += 10 {
			for _, f := range process(t, e, smoke(t, "smoke-1", 0.4+float64(s%20)/100, named("食堂"), after(time.Duration(s)*time.Second))) {
				fired = append(fired, f.Time.Sub(t0).String()+" "+f.Title)
			}
		}
		if want := []string{"30s 食堂烟感浓度0.5"}; !slices.Equal(fired, want) {
			t.Errorf("firings %q, want %q", fired, want)
		}
	})
	t.Run("a dip resets", func(t *testing.T) {
		e := engine(t, smokeFor)
		fs := process(t, e,
			smoke(t, "smoke-1", 0.4, after(0)),
			smoke(t, "smoke-1", 0.1, after(15*time.Second)),
			smoke(t, "smoke-1", 0.4, after(20*time.Second)),
			smoke(t, "smoke-1", 0.4, after(35*time.Second)),
		)
		if len(fs) != 0 {
			t.Fatalf("fired despite the dip: %v", keys(fs))
		}
		fs = process(t, e, smoke(t, "smoke-1", 0.5, after(50*time.Second)))
		if len(fs) != 1 {
			t.Fatalf("%d firings 30s after the dip ended, want 1", len(fs))
		}
	})
	t.Run("advance completes a quiet sensor", func(t *testing.T) {
		e := engine(t, smokeFor)
		process(t, e, smoke(t, "smoke-1", 0.4, after(0)))
		if fs, _ := e.Advance(t.Context(), t0.Add(29*time.Second)); len(fs) != 0 {
			t.Fatalf("fired before 30s: %v", keys(fs))
		}
		fs, err := e.Advance(t.Context(), t0.Add(40*time.Second))
		if err != nil || len(fs) != 1 || !fs[0].Time.Equal(t0.Add(30*time.Second)) {
			t.Fatalf("advance: %v %+v, want one firing at +30s", err, fs)
		}
		if fs, _ := e.Advance(t.Context(), t0.Add(time.Minute)); len(fs) != 0 {
			t.Errorf("fired twice: %v", keys(fs))
		}
	})
}

func TestScheduleAcrossMidnight(t *testing.T) {
	e := engine(t, `
- id: night-intrusion
  name: 夜间闯入
  match: {types: [detection.person]}
  schedule:
    periods: [{from: "22:00", to: "06:00"}]
  case: {category: public_order, risk: 60}
`)
	day := func(h int) time.Time { return time.Date(2026, 11, 21, h, 0, 0, 0, shanghai) }
	for _, tt := range []struct {
		at   time.Time
		want bool
	}{
		{day(23), true},
		{day(5), true},
		{day(12), false},
		{day(6), false},
		{day(22), true},
	} {
		got := len(process(t, e, ev(t, event.SourceAnalyser, "box-1", "detection.person", at(tt.at)))) == 1
		if got != tt.want {
			t.Errorf("at %s: fired = %v, want %v", tt.at.Format("15:04"), got, tt.want)
		}
	}

	weekdays := engine(t, `
- id: weekday-nights
  name: 工作日夜间
  schedule:
    timezone: Asia/Shanghai
    periods: [{days: [fri], from: "22:00", to: "06:00"}]
  case: {category: public_order, risk: 60}
`)
	fri23 := time.Date(2026, 11, 20, 23, 0, 0, 0, shanghai)
	for _, tt := range []struct {
		at   time.Time
		want bool
	}{
		{fri23, true},
		{fri23.Add(6 * time.Hour), true},   // Saturday 05:00 belongs to Friday night
		{fri23.Add(24 * time.Hour), false}, // Saturday 23:00
	} {
		if got := len(process(t, weekdays, motion(t, "cam-1", at(tt.at)))) == 1; got != tt.want {
			t.Errorf("at %s: fired = %v, want %v", tt.at.Format("Mon 15:04"), got, tt.want)
		}
	}
}

const alarmCorrelate = `
- id: alarm-and-motion
  name: 报警按钮与画面移动
  match: {types: [sensor.alarm_button.pressed]}
  correlate:
    match: {types: [camera.motion]}
    within: 2m
  group_by: [grid]
  case: {category: public_order, risk: 80}
`

func TestCorrelation(t *testing.T) {
	button := func(opts ...opt) *event.Event {
		return ev(t, event.SourceDevice, "btn-1", "sensor.alarm_button.pressed", opts...)
	}
	tests := []struct {
		name string
		evs  []*event.Event
		want []string
	}{
		{"button then motion", []*event.Event{button(grid("g-07")), motion(t, "cam-1", grid("g-07"), after(90*time.Second))}, []string{"alarm-and-motion|grid=g-07 new"}},
		{"motion then button", []*event.Event{motion(t, "cam-1", grid("g-07")), button(grid("g-07"), after(2*time.Minute))}, []string{"alarm-and-motion|grid=g-07 new"}},
		{"different grid", []*event.Event{button(grid("g-07")), motion(t, "cam-1", grid("g-08"), after(time.Minute))}, []string{}},
		{"3 min apart", []*event.Event{button(grid("g-07")), motion(t, "cam-1", grid("g-07"), after(3*time.Minute))}, []string{}},
		{"two buttons alone", []*event.Event{button(grid("g-07")), button(grid("g-07"), after(time.Second))}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := process(t, engine(t, alarmCorrelate), tt.evs...)
			if got := keys(fs); !slices.Equal(got, tt.want) {
				t.Fatalf("firings %q, want %q", got, tt.want)
			}
			if len(fs) == 1 && (len(fs[0].Events) != 2 || fs[0].Events[0].Time.After(fs[0].Events[1].Time.Time)) {
				t.Errorf("events of the firing are not the pair in time order: %+v", fs[0].Events)
			}
		})
	}
}

func TestGroupBySeparates(t *testing.T) {
	e := engine(t, `
- id: motion-2-grid
  name: 网格内频繁移动
  match: {types: [camera.motion]}
  count: 2
  window: 1m
  group_by: [grid]
  case: {category: public_order, risk: 40}
`)
	fs := process(t, e,
		motion(t, "cam-1", grid("g-1")),
		motion(t, "cam-2", grid("g-2")),
		motion(t, "cam-3", grid("g-1"), after(time.Second)),
	)
	if got, want := keys(fs), []string{"motion-2-grid|grid=g-1 new"}; !slices.Equal(got, want) {
		t.Errorf("firings %q, want %q (two cameras in one grid fire, the other grid does not)", got, want)
	}

	bySource := engine(t, `
- id: offline
  name: 摄像机离线
  match: {types: [camera.offline]}
  case: {category: equipment_fault, risk: 30}
`)
	fs = process(t, bySource, ev(t, event.SourceCamera, "cam-1", "camera.offline"), ev(t, event.SourceCamera, "cam-2", "camera.offline"))
	if got, want := keys(fs), []string{"offline|source=camera:cam-1 new", "offline|source=camera:cam-2 new"}; !slices.Equal(got, want) {
		t.Errorf("default group by source: %q, want %q", got, want)
	}
}

func TestCooldownRepeat(t *testing.T) {
	e := engine(t, `
- id: offline
  name: 摄像机离线
  match: {types: [camera.offline]}
  cooldown: 10m
  case: {category: equipment_fault, risk: 30, risk_per_repeat: 5}
`)
	off := func(d time.Duration) *event.Event {
		return ev(t, event.SourceCamera, "cam-1", "camera.offline", after(d))
	}
	var got []string
	for _, d := range []time.Duration{0, 5 * time.Minute, 14 * time.Minute, 25 * time.Minute} {
		for _, f := range process(t, e, off(d)) {
			got = append(got, f.Kind())
		}
	}
	// Each repeat extends the cooldown; 11 minutes of quiet starts afresh.
	if want := []string{"new", "repeat", "repeat", "new"}; !slices.Equal(got, want) {
		t.Errorf("kinds %q, want %q", got, want)
	}
}

func TestInhibition(t *testing.T) {
	e := engine(t, `
- id: village-network-down
  name: 村网络中断
  match: {types: [device.offline], device_kinds: [router]}
  group_by: [region]
  cooldown: 10m
  inhibits:
    rules: [camera-offline]
    equal: [region]
    hold: 30m
  case: {category: equipment_fault, risk: 50}
- id: camera-offline
  name: 摄像机离线
  match: {types: [camera.offline]}
  case: {category: equipment_fault, risk: 30}
`)
	router := ev(t, event.SourceDevice, "router-1", "device.offline", str("device_kind", "router"), region("lanxi/xinzhuang"))
	fs := process(t, e, router,
		ev(t, event.SourceCamera, "cam-in", "camera.offline", region("lanxi/xinzhuang/east"), after(time.Minute)),
		ev(t, event.SourceCamera, "cam-out", "camera.offline", region("lanxi/other"), after(time.Minute)),
		ev(t, event.SourceCamera, "cam-late", "camera.offline", region("lanxi/xinzhuang"), after(31*time.Minute)),
	)
	got := map[string]string{}
	for _, f := range fs {
		got[f.GroupKey] = f.SuppressedBy
	}
	want := map[string]string{
		"village-network-down|region=lanxi/xinzhuang": "",
		"camera-offline|source=camera:cam-in":         "village-network-down|region=lanxi/xinzhuang",
		"camera-offline|source=camera:cam-out":        "",
		"camera-offline|source=camera:cam-late":       "",
	}
	if len(got) != len(want) {
		t.Fatalf("firings %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s suppressed by %q, want %q", k, got[k], v)
		}
	}
}

func TestTemplates(t *testing.T) {
	reg := prometheus.NewRegistry()
	set := compile(t, `
- id: smoke
  name: 烟感告警
  match: {device_kinds: [smoke]}
  case:
    category: public_safety
    risk: 70
    title: '{{source}}烟感{{attr "smoke"}} {{time "15:04"}} {{grid}}'
    description: '{{.Location.Region}} {{.Count}}'
    elements: {circumstances: '烟感浓度 {{attr "smoke"}}', cause: 疑似火情}
- id: broken
  name: 模板出错
  match: {device_kinds: [smoke]}
  case: {category: public_safety, risk: 70, title: '{{index .Tags 5}}'}
`)
	e, err := rules.NewEngine(set, nil, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	fs := process(t, e, smoke(t, "smoke-1", 0.42, grid("g-07"), region("lanxi")))
	if len(fs) != 2 {
		t.Fatalf("%d firings, want 2", len(fs))
	}
	if fs[0].Title != "smoke-1烟感0.42 10:00 g-07" || fs[0].Description != "lanxi 1" {
		t.Errorf("title %q description %q", fs[0].Title, fs[0].Description)
	}
	if el := fs[0].Elements; len(el) != 2 || el["circumstances"] != "烟感浓度 0.42" || el["cause"] != "疑似火情" {
		t.Errorf("elements %v", el)
	}
	if fs[1].Title != "模板出错" {
		t.Errorf("failed template gave %q, want the rule name", fs[1].Title)
	}
	if n := apitest.Metric(t, reg, "sharpeye_rules_template_errors_total"); n != 1 {
		t.Errorf("template errors %v, want 1", n)
	}
}

func TestReplace(t *testing.T) {
	e := engine(t, motionCount+`
- id: offline
  name: 摄像机离线
  match: {types: [camera.offline]}
  cooldown: 10m
  case: {category: equipment_fault, risk: 30}
`)
	process(t, e, motion(t, "cam-1"), motion(t, "cam-1", after(time.Second)), ev(t, event.SourceCamera, "cam-1", "camera.offline"))

	// The offline rule's title changes (state kept: still in cooldown); the
	// motion rule's count changes (its window starts afresh).
	e.Replace(compile(t, strings.Replace(motionCount, "count: 3", "count: 2", 1)+`
- id: offline
  name: 摄像机离线（新）
  match: {types: [camera.offline]}
  cooldown: 10m
  case: {category: equipment_fault, risk: 35}
`))
	fs := process(t, e, motion(t, "cam-1", after(2*time.Second)), ev(t, event.SourceCamera, "cam-1", "camera.offline", after(time.Minute)))
	if got, want := keys(fs), []string{"offline|source=camera:cam-1 repeat"}; !slices.Equal(got, want) {
		t.Fatalf("firings %q, want %q", got, want)
	}
	if fs[0].Title != "摄像机离线（新）" || fs[0].Risk != 35 {
		t.Errorf("the new definition is not in use: %+v", fs[0])
	}
	if fs := process(t, e, motion(t, "cam-1", after(3*time.Second))); len(fs) != 1 {
		t.Errorf("second motion under the new count: %d firings, want 1", len(fs))
	}

	// Removing a rule stops it.
	e.Replace(compile(t, motionCount))
	if fs := process(t, e, ev(t, event.SourceCamera, "cam-1", "camera.offline", after(time.Hour))); len(fs) != 0 {
		t.Errorf("removed rule fired: %v", keys(fs))
	}
}

func TestDisabledRule(t *testing.T) {
	e := engine(t, `
- id: off
  name: 停用
  enabled: false
  case: {category: x, risk: 1}
`)
	if fs := process(t, e, motion(t, "cam-1")); len(fs) != 0 {
		t.Errorf("disabled rule fired: %v", keys(fs))
	}
}

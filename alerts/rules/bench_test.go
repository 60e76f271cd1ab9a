package rules_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"sharpeye/alerts/alertsim"
	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/rules"
	"sharpeye/ingest/event"
)

// benchRules is a realistic set of 20 rules of every kind.
const benchRules = `
- {id: smoke-high, name: 烟感浓度持续超标, match: {device_kinds: [smoke]}, when: 'attr.smoke > 0.3', for: 30s, cooldown: 10m, case: {category: public_safety, risk: 70, title: '{{source}}烟感浓度{{attr "smoke"}}'}}
- {id: smoke-alarm, name: 烟感报警, match: {types: [sensor.smoke.alarm]}, cooldown: 10m, case: {category: public_safety, risk: 80}}
- {id: water-high, name: 水位超警戒, match: {device_kinds: [water]}, when: 'attr.water_level > 3.0', for: 1m, group_by: [device], case: {category: public_safety, risk: 75}}
- {id: gas-leak, name: 燃气泄漏, match: {device_kinds: [gas]}, when: 'attr.gas > 0.1', cooldown: 5m, case: {category: public_safety, risk: 90}}
- {id: motion-burst, name: 频繁移动, match: {types: [camera.motion]}, count: 5, window: 60s, cooldown: 10m, case: {category: public_order, risk: 40}}
- {id: night-person, name: 夜间有人, match: {types: [detection.person], min_confidence: 0.7}, schedule: {periods: [{from: "22:00", to: "06:00"}]}, group_by: [camera], cooldown: 15m, case: {category: public_order, risk: 60}}
- {id: school-crowd, name: 校园聚集, match: {types: [detection.person], tags: [school]}, count: 10, window: 2m, group_by: [grid], case: {category: key_places, risk: 65}}
- {id: alarm-motion, name: 报警按钮与画面移动, match: {types: [sensor.alarm_button.pressed]}, correlate: {match: {types: [camera.motion]}, within: 2m}, group_by: [grid], case: {category: public_order, risk: 85}}
- {id: fight, name: 打架斗殴, match: {types: [detection.fight], min_confidence: 0.8}, group_by: [camera], cooldown: 10m, case: {category: public_order, risk: 90}}
- {id: vehicle-lane, name: 车辆占道, match: {types: [detection.car], regions: [lanxi]}, count: 3, window: 5m, group_by: [camera], case: {category: traffic, risk: 30}}
- {id: camera-offline, name: 摄像机离线, match: {types: [camera.offline]}, cooldown: 30m, case: {category: equipment_fault, risk: 30}}
- {id: camera-degraded, name: 画面异常, match: {types: [camera.frozen, camera.dark, camera.covered, camera.blur]}, count: 3, window: 10m, cooldown: 1h, case: {category: equipment_fault, risk: 20}}
- {id: device-offline, name: 设备离线, match: {types: [device.offline]}, cooldown: 30m, case: {category: equipment_fault, risk: 25}}
- {id: network-down, name: 村网络中断, match: {types: [device.offline], device_kinds: [router]}, group_by: [region], inhibits: {rules: [camera-offline, device-offline], equal: [region], hold: 30m}, case: {category: equipment_fault, risk: 50}}
- {id: critical-any, name: 严重事件, match: {min_severity: critical}, cooldown: 5m, case: {category: public_safety, risk: 95}}
- {id: market-night, name: 市场夜间活动, match: {types: ["detection.*"], tags: [market]}, when: 'hour >= 23 || hour < 5', group_by: [grid], cooldown: 30m, case: {category: key_places, risk: 50}}
- {id: river-person, name: 河道有人, match: {types: [detection.person], tags: [river]}, when: 'weekday in ["sat", "sun"]', cooldown: 10m, case: {category: public_safety, risk: 55}}
- {id: temp-high, name: 设备过温, match: {source_kinds: [analyser]}, when: 'attr.temperature > 80', for: 2m, case: {category: equipment_fault, risk: 35}}
- {id: grid-report, name: 网格员上报, match: {source_kinds: [person], types: ["report.*"]}, case: {category: neighbour_dispute, risk: 40, title: '{{.Source.Name}}上报 {{grid}}'}}
- {id: crowd-count, name: 人数超限, match: {types: [detection.crowd]}, when: 'attr.count > 50', group_by: [camera], cooldown: 10m, case: {category: public_order, risk: 70}}
`

// benchEvents returns n events from 200 cameras, 100 sensors and 20 boxes
// in 20 grids, one every 50 ms.
func benchEvents(b *testing.B, n int, start time.Time) []*event.Event {
	b.Helper()
	evs := make([]*event.Event, n)
	for i := range evs {
		g := fmt.Sprintf("g-%02d", i%20)
		var e *event.Event
		switch i % 10 {
		case 0, 1, 2:
			e = ev(b, event.SourceCamera, fmt.Sprintf("cam-%03d", i%200), "camera.motion")
		case 3, 4:
			e = ev(b, event.SourceDevice, fmt.Sprintf("smoke-%03d", i%100), "telemetry", num("smoke", float64(i%7)/10))
		case 5:
			e = ev(b, event.SourceDevice, fmt.Sprintf("water-%03d", i%100), "telemetry", str("device_kind", "water"), num("water_level", float64(i%5)))
		case 6, 7:
			e = ev(b, event.SourceAnalyser, fmt.Sprintf("box-%02d", i%20), "detection.person",
				str("class", "person"), num("confidence", 0.9), str("camera", fmt.Sprintf("cam-%03d", i%200)), tags("school"))
		case 8:
			e = ev(b, event.SourceCamera, fmt.Sprintf("cam-%03d", i%200), "camera.offline")
		default:
			e = ev(b, event.SourceDevice, fmt.Sprintf("btn-%02d", i%20), "sensor.alarm_button.pressed", str("device_kind", "alarm_button"))
		}
		e.Location = event.Location{Region: "lanxi/xinzhuang/" + g, Grid: g}
		e.Time = event.NewTime(start.Add(time.Duration(i) * 50 * time.Millisecond))
		evs[i] = e
	}
	return evs
}

// BenchmarkProcess measures evaluation of batches of 100 events against 20
// rules, in memory and with the state stored in SQLite.
func BenchmarkProcess(b *testing.B) {
	set, err := rules.Compile(parse(b, benchRules))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		state func(b *testing.B) rules.StateStore
	}{
		{"memory", func(*testing.B) rules.StateStore { return nil }},
		{"sqlite", func(b *testing.B) rules.StateStore { return rules.NewSQLState(casedbtest.Open(b, casedb.SQLite)) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e, err := rules.NewEngine(set, tc.state(b), nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			const batch = 100
			evs := benchEvents(b, 100*batch, t0)
			ctx := context.Background()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				// Fresh ids and times each round, so nothing is a duplicate.
				i := n % (len(evs) / batch)
				chunk := evs[i*batch : (i+1)*batch]
				for _, e := range chunk {
					e.ID = event.NewID()
					e.Time = event.NewTime(e.Time.Add(time.Duration(len(evs)) * 50 * time.Millisecond))
				}
				if _, err := e.Process(ctx, chunk); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func townRegion(t int) string { return fmt.Sprintf("lanxi/t%02d", t) }

// hundredRules returns 100 rules modelled on the demo's
// (deploy/node/demo/alerts.yml): nine per township, restricted to it by
// region as a county's rules are written per township, and ten county-wide.
// They cover every kind: plain, count windows, for durations, correlations,
// schedules, when conditions, group_by camera, device, grid and region,
// cooldowns and inhibitions.
func hundredRules() []rules.Rule {
	var src strings.Builder
	for t := range alertsim.Towns {
		r := townRegion(t)
		fmt.Fprintf(&src, `
- {id: smoke-high-%[1]d, name: 烟感浓度持续超标, match: {types: [telemetry], device_kinds: [smoke], regions: [%[2]s]}, when: 'attr.smoke > 0.3', for: 10s, group_by: [device], cooldown: 10m, case: {category: public_safety, risk: 85, title: '{{.Source.Name}}：烟感浓度 {{attr "smoke"}}'}}
- {id: water-high-%[1]d, name: 水位超警戒, match: {types: [telemetry], device_kinds: [water_level], regions: [%[2]s]}, when: 'attr.water_level > 3.0', count: 2, window: 1m, group_by: [device], cooldown: 15m, case: {category: public_safety, risk: 70, risk_per_repeat: 5}}
- {id: alarm-button-%[1]d, name: 一键报警, match: {types: [sensor.alarm_button.pressed], regions: [%[2]s]}, group_by: [device], cooldown: 5m, case: {category: public_order, risk: 80, title: '{{.Source.Name}}：一键报警'}}
- {id: alarm-with-people-%[1]d, name: 报警且画面有人, match: {types: [sensor.alarm_button.pressed], regions: [%[2]s]}, correlate: {match: {types: [detection.person, detection.crowd], regions: [%[2]s]}, within: 2m}, group_by: [grid], cooldown: 10m, case: {category: key_place, risk: 95}}
- {id: fall-%[1]d, name: 人员跌倒, match: {types: [detection.fall], min_confidence: 0.6, regions: [%[2]s]}, group_by: [camera], cooldown: 10m, case: {category: public_safety, risk: 65, title: '{{attr "camera"}} 画面检测到人员跌倒'}}
- {id: crowd-%[1]d, name: 人员聚集, match: {types: [detection.crowd], regions: [%[2]s]}, when: 'attr.count >= 20', count: 3, window: 5m, group_by: [camera], cooldown: 10m, case: {category: public_order, risk: 40, risk_per_repeat: 5}}
- {id: night-intrusion-%[1]d, name: 夜间校门有人, match: {types: [detection.person], sources: [lx-aibox-%02[1]d], tags: [school]}, when: 'attr.confidence > 0.7', schedule: {periods: [{from: "22:00", to: "06:00"}]}, group_by: [camera], cooldown: 30m, case: {category: key_place, risk: 70}}
- {id: camera-offline-%[1]d, name: 摄像机离线, match: {types: [camera.offline], regions: [%[2]s]}, group_by: [camera], cooldown: 30m, case: {category: equipment_fault, risk: 30, title: '摄像机 {{.Source.ID}} 离线'}}
- {id: network-down-%[1]d, name: 片区网络中断, match: {types: [camera.offline], regions: [%[2]s]}, count: 3, window: 2m, group_by: [region], cooldown: 30m, inhibits: {rules: [camera-offline-%[1]d], equal: [region], hold: 30m}, case: {category: equipment_fault, risk: 50}}`, t, r)
	}
	src.WriteString(`
- {id: camera-quality, name: 画面异常, match: {types: [video.frozen, video.dark, video.bright, video.covered, video.blur]}, group_by: [camera, type], cooldown: 30m, case: {category: equipment_fault, risk: 25}}
- {id: motion-burst, name: 频繁移动, match: {types: [camera.motion], source_kinds: [camera]}, count: 30, window: 1m, group_by: [camera], cooldown: 10m, case: {category: public_order, risk: 30}}
- {id: critical-any, name: 严重事件, match: {min_severity: critical}, cooldown: 5m, case: {category: public_safety, risk: 95}}
- {id: market-night, name: 市场夜间活动, match: {types: ["detection.*"], tags: [market]}, when: 'hour >= 23 || hour < 5', group_by: [grid], cooldown: 30m, case: {category: key_place, risk: 50}}
- {id: river-person, name: 河道有人, match: {types: [detection.person], tags: [river]}, when: 'weekday in ["sat", "sun"] && attr.confidence > 0.8', group_by: [camera], cooldown: 10m, case: {category: public_safety, risk: 55}}
- {id: school-crowd, name: 校园聚集, match: {types: [detection.person], tags: [school]}, count: 10, window: 2m, group_by: [grid], cooldown: 10m, case: {category: key_place, risk: 65}}
- {id: vehicle-lane, name: 车辆占道, match: {types: [detection.car], classes: [car, truck]}, count: 3, window: 5m, group_by: [camera], cooldown: 10m, case: {category: traffic_accident, risk: 30}}
- {id: gate-forced, name: 门磁多次报警, match: {types: [sensor.door.forced]}, count: 2, window: 5m, group_by: [device], cooldown: 10m, case: {category: key_place, risk: 60}}
- {id: gas-leak, name: 燃气泄漏, match: {types: [telemetry], device_kinds: [gas]}, when: 'attr.gas > 0.1', group_by: [device], cooldown: 5m, case: {category: public_safety, risk: 90}}
- {id: box-hot, name: 设备过温, match: {source_kinds: [analyser], types: [device.health]}, when: 'attr.temperature > 80', for: 2m, group_by: [device], case: {category: equipment_fault, risk: 35}}
`)
	var rs []rules.Rule
	if err := yaml.Unmarshal([]byte(src.String()), &rs); err != nil {
		panic(err)
	}
	return rs
}

// countyEvents returns n events of the simulated county (alertsim, the
// mix sharpeye bench alerts publishes), rate per second from start.
func countyEvents(tb testing.TB, n, rate int, start time.Time) []*event.Event {
	tb.Helper()
	c := alertsim.NewCounty(uint64(n))
	evs := make([]*event.Event, n)
	for i := range evs {
		e := c.Next()
		e.Time = event.NewTime(start.Add(time.Duration(i) * time.Second / time.Duration(rate)))
		if err := e.Validate(); err != nil {
			tb.Fatalf("bench event: %v", err)
		}
		evs[i] = e
	}
	return evs
}

// BenchmarkProcess100 measures evaluation of the county's events against
// 100 rules in batches of 500 (alerts.batch), in memory and with the state
// stored in SQLite once per batch as the alerts role does. Run it with
// -cpu 1: the engine evaluates one batch at a time, so events/s is per core.
func BenchmarkProcess100(b *testing.B) {
	set, err := rules.Compile(hundredRules())
	if err != nil {
		b.Fatal(err)
	}
	if n := len(set.Rules()); n != 100 {
		b.Fatalf("%d rules, want 100", n)
	}
	for _, tc := range []struct {
		name  string
		state func(b *testing.B) rules.StateStore
	}{
		{"memory", func(*testing.B) rules.StateStore { return nil }},
		{"sqlite", func(b *testing.B) rules.StateStore { return rules.NewSQLState(casedbtest.Open(b, casedb.SQLite)) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e, err := rules.NewEngine(set, tc.state(b), nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			const batch, rate = 500, 5000
			evs := countyEvents(b, 200*batch, rate, t0)
			span := time.Duration(len(evs)) * time.Second / rate
			ctx := context.Background()
			b.ReportAllocs()
			n, fired := 0, 0
			for b.Loop() {
				// Fresh ids and times each round, so nothing is a duplicate.
				i := n % (len(evs) / batch)
				chunk := evs[i*batch : (i+1)*batch]
				if n > 0 && i == 0 {
					for _, e := range evs {
						e.ID = event.NewID()
						e.Time = event.NewTime(e.Time.Add(span))
					}
				}
				fs, err := e.Process(ctx, chunk)
				if err != nil {
					b.Fatal(err)
				}
				fired += len(fs)
				n++
			}
			events := float64(n * batch)
			b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
			b.ReportMetric(float64(fired)/events*1000, "firings/1000events")
		})
	}
}

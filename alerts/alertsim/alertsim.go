// Package alertsim draws the events of a simulated county for the alerts
// benchmarks: the rules engine's (alerts/rules) and the end-to-end load
// tool's (sharpeye bench alerts), so that both measure the same mix.
package alertsim

import (
	"fmt"
	"math/rand/v2"

	"sharpeye/ingest/event"
)

// County is the simulated county: Towns townships of Villages villages,
// each village a grid ("g-TTVV", region "lanxi/tTT/vVV") with Cameras
// cameras ("lx-cam-TTVV-NN"), Sensors smoke, water-level and gas sensors
// each, a door sensor and an alarm button; an AI box per township
// ("lx-aibox-TT") watches its cameras. It is not safe for concurrent use.
type County struct {
	rnd *rand.Rand
}

// The county's size.
const (
	Towns    = 10
	Villages = 10 // per township
	Cameras  = 20 // per village
	Sensors  = 5  // of each kind per village
)

// NewCounty returns the county whose events the seed decides.
func NewCounty(seed uint64) *County { return &County{rnd: rand.New(rand.NewPCG(seed, 0x5eed))} }

// Next draws an event in the mix of a working day: camera motion (40 %)
// and sensor telemetry most, AI detections next, faults and alarms rare.
// Its id and time are fresh (event.New): the caller sets the time it wants.
func (c *County) Next() *event.Event {
	r := c.rnd
	t, v := r.IntN(Towns), r.IntN(Villages)
	cam := fmt.Sprintf("lx-cam-%02d%02d-%02d", t, v, r.IntN(Cameras))
	sensor := fmt.Sprintf("%02d%02d-%d", t, v, r.IntN(Sensors))
	var e *event.Event
	switch p := r.IntN(10000); {
	case p < 4000:
		e = event.New(event.SourceCamera, cam, "camera.motion")
	case p < 6500:
		e = event.New(event.SourceDevice, "lx-smoke-"+sensor, "telemetry")
		e.SetString("device_kind", "smoke")
		level := r.Float64() * 0.2
		if r.IntN(100) == 0 {
			level += 0.3
		}
		e.SetNumber("smoke", level)
	case p < 7300:
		e = event.New(event.SourceDevice, "lx-water-"+sensor, "telemetry")
		e.SetString("device_kind", "water_level")
		e.SetNumber("water_level", 1+r.Float64()*2.05)
	case p < 7600:
		e = event.New(event.SourceDevice, "lx-gas-"+sensor, "telemetry")
		e.SetString("device_kind", "gas")
		e.SetNumber("gas", r.Float64()*0.05)
	case p < 9950: // detections of the township's AI box
		typ := "detection.person"
		switch {
		case p >= 9940:
			typ = "detection.fall"
		case p >= 9400:
			typ = "detection.car"
		case p >= 9000:
			typ = "detection.crowd"
		}
		e = event.New(event.SourceAnalyser, fmt.Sprintf("lx-aibox-%02d", t), typ)
		e.SetString("device_kind", "aibox")
		e.SetString("camera", cam)
		e.SetNumber("confidence", 0.5+r.Float64()/2)
		switch typ {
		case "detection.crowd":
			e.SetNumber("count", float64(5+r.IntN(30)))
		case "detection.car":
			e.SetString("class", "car")
		default:
			e.SetString("class", "person")
		}
		switch r.IntN(10) {
		case 0:
			e.Tags = []string{"school"}
		case 1:
			e.Tags = []string{"market"}
		case 2:
			e.Tags = []string{"river"}
		}
	case p < 9970:
		e = event.New(event.SourceAnalyser, fmt.Sprintf("lx-aibox-%02d", t), "device.health")
		e.SetString("device_kind", "aibox")
		e.SetNumber("temperature", 40+r.Float64()*30)
	case p < 9980:
		e = event.New(event.SourceCamera, cam, "camera.offline")
		e.Severity = event.SeverityMajor
	case p < 9993:
		e = event.New(event.SourceCamera, cam, []string{"video.frozen", "video.dark", "video.blur"}[r.IntN(3)])
		e.Severity = event.SeverityMinor
	case p < 9996:
		e = event.New(event.SourceDevice, fmt.Sprintf("lx-button-%02d%02d", t, v), "sensor.alarm_button.pressed")
		e.SetString("device_kind", "alarm_button")
		e.Severity = event.SeverityCritical
	default:
		e = event.New(event.SourceDevice, fmt.Sprintf("lx-door-%02d%02d", t, v), "sensor.door.forced")
		e.SetString("device_kind", "door")
		e.Severity = event.SeverityMajor
	}
	e.Location = event.Location{Region: fmt.Sprintf("lanxi/t%02d/v%02d", t, v), Grid: fmt.Sprintf("g-%02d%02d", t, v)}
	return e
}

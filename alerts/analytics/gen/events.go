package gen

import (
	"math"
	"time"

	"sharpeye/ingest/event"
)

// newEvent starts an event with a fresh id. Events live until the end of
// their minute, when they are handed out and their memory reused (the
// outputs copy or encode what they keep).
func (g *engine) newEvent(kind event.SourceKind, id, name, typ string, sev event.Severity, at int64, loc event.Location, tags []string, attrs int) *event.Event {
	var e *event.Event
	if n := len(g.free); n > 0 {
		e, g.free = g.free[n-1], g.free[:n-1]
		clear(e.Attributes)
	} else {
		e = &event.Event{Attributes: make(map[string]any, 12)}
	}
	ev := e.Evidence[:0]
	*e = event.Event{
		Schema:     event.SchemaVersion,
		ID:         g.id(at),
		Time:       event.Time{Time: time.UnixMilli(at).UTC()},
		Source:     event.Source{Kind: kind, ID: id, Name: name},
		Type:       typ,
		Severity:   sev,
		Location:   loc,
		Tags:       tags,
		Attributes: e.Attributes,
	}
	if cap(ev) > 0 {
		e.Evidence = ev
	}
	return e
}

// recycle takes back the minute's events once they are handed out.
func (g *engine) recycle() {
	for _, e := range g.evs {
		e.Evidence = e.Evidence[:0]
		g.free = append(g.free, e)
	}
	clear(g.evs)
	g.evs = g.evs[:0]
}

func (g *engine) cameraEvent(ci int, typ string, sev event.Severity, at int64, attrs int) *event.Event {
	c := &g.a.Cameras[ci]
	return g.newEvent(event.SourceCamera, c.ID, c.Name, typ, sev, at, g.camLoc[ci], c.Tags, attrs)
}

func (g *engine) deviceEvent(di int, typ string, sev event.Severity, at int64, attrs int) *event.Event {
	d := &g.a.Devices[di]
	kind := event.SourceDevice
	if d.Kind == KindAnalyser {
		kind = event.SourceAnalyser
	}
	e := g.newEvent(kind, d.ID, d.Name, typ, sev, at, g.devLoc[di], nil, attrs+1)
	e.SetString("device_kind", d.Kind)
	return e
}

// r4 keeps four decimals, as the detectors do.
func r4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// snapshot is the evidence of a detector's or analyser's snapshot.
func snapshot(camera string, at int64) event.Evidence {
	t := time.UnixMilli(at).UTC()
	b := make([]byte, 0, 64)
	b = append(b, "snap/"...)
	b = append(b, camera...)
	b = append(b, '/')
	b = t.AppendFormat(b, "20060102/150405.000")
	b = append(b, ".jpg"...)
	et := event.Time{Time: t}
	return event.Evidence{Kind: event.EvidenceSnapshot, Ref: string(b), ContentType: "image/jpeg", Time: &et}
}

// motion is the motion detector of camera ci.
func (g *engine) motion(ci int, at int64) *event.Event {
	e := g.cameraEvent(ci, "motion", event.SeverityInfo, at, 3)
	e.SetNumber("score", r4(0.05+0.6*g.rng.Float64()))
	e.SetNumber("threshold", 0.04)
	e.SetNumber("sensitivity", 0.5)
	e.Evidence = append(e.Evidence, snapshot(g.a.Cameras[ci].ID, at))
	return e
}

// detection is an AI box's detection on camera ci; conf 0 draws one.
func (g *engine) detection(typ string, ci int, at int64, conf float64) *event.Event {
	c := &g.a.Cameras[ci]
	d := &g.a.Devices[c.Analyser]
	sev := event.SeverityInfo
	class := typ[len("detection."):]
	switch class {
	case "crowd":
		sev = event.SeverityWarning
	case "fall":
		sev = event.SeverityMajor
	}
	e := g.newEvent(event.SourceAnalyser, d.ID, d.Name, typ, sev, at, g.camLoc[ci], c.Tags, 10)
	if conf == 0 {
		conf = 0.5 + 0.49*g.rng.Float64()
	}
	e.SetString("device_kind", KindAnalyser)
	e.SetString("camera", c.ID)
	e.SetString("class", class)
	e.SetNumber("confidence", r4(conf))
	x, y := 0.8*g.rng.Float64(), 0.8*g.rng.Float64()
	e.SetNumber("bbox_x", r4(x))
	e.SetNumber("bbox_y", r4(y))
	e.SetNumber("bbox_w", r4(0.05+0.15*g.rng.Float64()))
	e.SetNumber("bbox_h", r4(0.1+0.2*g.rng.Float64()))
	if class == "crowd" {
		e.SetNumber("count", float64(8+g.rng.IntN(40)))
	}
	e.Evidence = append(e.Evidence, snapshot(c.ID, at))
	return e
}

// telemetry is a device's readings; alarm makes them cross the alert
// rule's threshold (smoke above 0.3, water above 3.0 m).
func (g *engine) telemetry(di int, at int64, alarm bool) *event.Event {
	d := &g.a.Devices[di]
	e := g.deviceEvent(di, "telemetry", event.SeverityInfo, at, 4)
	days := float64(at-g.begin) / float64(day)
	battery := math.Round(max(100-float64(di%40)-days*0.15, 15))
	hourAngle := 2 * math.Pi * g.localHour(at) / 24
	switch d.Kind {
	case KindSmoke:
		v := 0.01 + 0.04*g.rng.Float64()
		if alarm {
			v = 0.31 + 0.5*g.rng.Float64()
		}
		e.SetNumber("smoke", r4(v))
		e.SetNumber("battery", battery)
	case KindWaterLevel:
		v := d.level + 0.25*math.Sin(2*math.Pi*days/9) + 0.05*g.rng.NormFloat64()
		if alarm {
			v = 3.05 + 0.8*g.rng.Float64()
		}
		e.SetNumber("water_level", r4(max(v, 0.1)))
		e.SetNumber("rain_mm", math.Round(max(0, 8*g.rng.NormFloat64())*10)/10)
	case KindGas:
		e.SetNumber("gas", r4(max(0, 1.5+g.rng.NormFloat64())))
		e.SetNumber("battery", battery)
	case KindTemperature:
		season := 8 + 17*min(days/90, 1)
		e.SetNumber("temperature", math.Round((season-4*math.Cos(hourAngle-0.6)+g.rng.NormFloat64())*10)/10)
		e.SetNumber("humidity", math.Round(55+20*g.rng.Float64()))
	case KindAnalyser:
		e.SetNumber("temperature", math.Round((48+8*g.rng.Float64())*10)/10)
		e.SetNumber("load", r4(0.2+0.7*g.rng.Float64()))
		e.SetNumber("cameras", float64(len(d.Cameras)))
	case KindDoor, KindGate:
		e.SetBool("open", g.rng.IntN(10) == 0)
		e.SetNumber("battery", battery)
	default:
		e.SetNumber("battery", battery)
	}
	return e
}

func (g *engine) doorForced(di int, at int64) *event.Event {
	e := g.deviceEvent(di, "sensor.door.forced", event.SeverityMajor, at, 1)
	e.SetString("zone", "main")
	return e
}

func (g *engine) alarm(di int, at int64) *event.Event {
	e := g.deviceEvent(di, "sensor.alarm_button.pressed", event.SeverityCritical, at, 1)
	e.SetString("zone", "main")
	return e
}

func (g *engine) deviceStatus(di int, at int64, online bool) *event.Event {
	if online {
		e := g.deviceEvent(di, "device.online", event.SeverityInfo, at, 1)
		e.SetString("via", "status")
		return e
	}
	e := g.deviceEvent(di, "device.offline", event.SeverityWarning, at, 1)
	e.SetString("via", "silence")
	return e
}

var offlineReasons = []string{"read timeout", "connection refused", "no route to host", "RTSP 503 Service Unavailable"}

func (g *engine) cameraOffline(ci int, at int64) *event.Event {
	e := g.cameraEvent(ci, "camera.offline", event.SeverityMajor, at, 4)
	e.SetNumber("offline_after_seconds", 10)
	e.SetNumber("silent_seconds", r4(10+2*g.rng.Float64()))
	e.SetString("state", "offline")
	e.SetString("reason", offlineReasons[g.rng.IntN(len(offlineReasons))])
	return e
}

func (g *engine) cameraOnline(ci int, at, offFor int64) *event.Event {
	e := g.cameraEvent(ci, "camera.online", event.SeverityInfo, at, 1)
	e.SetNumber("offline_seconds", r4(float64(offFor)/1000))
	return e
}

func faultSeverity(kind string) event.Severity {
	switch kind {
	case "video.frozen", "video.covered":
		return event.SeverityMajor
	}
	return event.SeverityMinor
}

func (g *engine) fault(ci int, at int64, kind string) *event.Event {
	e := g.cameraEvent(ci, kind, faultSeverity(kind), at, 4)
	switch kind {
	case "camera.degraded":
		c := &g.a.Cameras[ci]
		e.SetNumber("frame_rate", r4(c.FPS*(0.3+0.3*g.rng.Float64())))
		e.SetNumber("frame_rate_baseline", c.FPS)
		e.SetNumber("bitrate", r4(c.BitrateKbps*1000*(0.2+0.3*g.rng.Float64())))
		e.SetNumber("bitrate_baseline", c.BitrateKbps*1000)
		e.SetString("reason", []string{"frame_rate", "bitrate", "packet_loss"}[g.rng.IntN(3)])
	case "video.frozen":
		e.SetNumber("difference", r4(0.2*g.rng.Float64()))
		e.SetNumber("frozen_diff", 0.5)
		e.SetNumber("frozen_after_seconds", 10)
	case "video.blur":
		e.SetNumber("sharpness", r4(2+3*g.rng.Float64()))
		e.SetNumber("sharpness_baseline", r4(12+6*g.rng.Float64()))
		e.SetNumber("blur_ratio", 0.4)
	default:
		e.SetNumber("luma_mean", r4(255*g.rng.Float64()))
		e.SetNumber("luma_stddev", r4(5+30*g.rng.Float64()))
	}
	e.Evidence = append(e.Evidence, snapshot(g.a.Cameras[ci].ID, at))
	return e
}

func (g *engine) faultCleared(ci int, at int64, kind string, lasted int64) *event.Event {
	e := g.cameraEvent(ci, kind+".cleared", event.SeverityInfo, at, 1)
	e.SetNumber("duration_seconds", r4(float64(lasted)/1000))
	return e
}

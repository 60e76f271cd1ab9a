package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"sharpeye/configs/conf"
	"sharpeye/ingest/device"
)

// demoDevice is one simulated sensor or AI box of the demo county.
type demoDevice struct {
	id, kind, name, region, grid string
	lat, lon                     float64
	cameras                      []string
}

var demoDevices = []demoDevice{
	{"lx-smoke-market", "smoke", "东城菜市场 烟感 Market smoke detector", "lanxi/dongcheng/xiangyang", "grid-02", 29.2116, 119.4634, []string{"lx-market"}},
	{"lx-smoke-clinic", "smoke", "南山卫生院 烟感 Clinic smoke detector", "lanxi/nanshan/shangtang", "grid-15", 29.1881, 119.4421, []string{"lx-clinic"}},
	{"lx-water-east", "water_level", "兰江东岸 水位计 River gauge east", "lanxi/nanshan/jiangbin", "grid-11", 29.1951, 119.4551, []string{"lx-river-east"}},
	{"lx-water-west", "water_level", "兰江西岸 水位计 River gauge west", "lanxi/nanshan/jiangbin", "grid-12", 29.1946, 119.4491, []string{"lx-river-west"}},
	{"lx-gate-school", "gate", "兰溪一中 门磁 School gate sensor", "lanxi/dongcheng/xiangyang", "grid-01", 29.2102, 119.4603, []string{"lx-school-gate"}},
	{"lx-alarm-school", "alarm_button", "兰溪一中 一键报警 School alarm button", "lanxi/dongcheng/xiangyang", "grid-01", 29.2100, 119.4601, []string{"lx-school-gate"}},
	{"lx-alarm-square", "alarm_button", "文化广场 一键报警 Square alarm button", "lanxi/dongcheng/renmin", "grid-06", 29.2067, 119.4689, []string{"lx-square"}},
	{"lx-aibox-1", "analyser", "东城 AI 边缘盒 Edge AI box", "lanxi/dongcheng", "", 29.2100, 119.4650, []string{"lx-school-gate", "lx-market", "lx-crossroads", "lx-square"}},
}

// demoDeviceRecords returns the demo devices' registry records, each with a
// fresh random password for the embedded broker.
func demoDeviceRecords() []device.Device {
	var out []device.Device
	for _, d := range demoDevices {
		lat, lon := d.lat, d.lon
		out = append(out, device.Device{
			ID: d.id, Kind: device.Kind(d.kind), Name: d.name, Region: d.region, Grid: d.grid,
			Lat: &lat, Lon: &lon, Cameras: d.cameras, Interval: conf.Duration(15 * time.Second),
			Password: conf.Secret(rand.Text()), Tags: []string{"demo"},
		})
	}
	return out
}

// runDemoSensors connects each demo device to the MQTT broker at addr and
// publishes what such a device would: telemetry every few seconds, now and
// then an alarm, and (the AI box) detections on the demo cameras. It stops
// when ctx ends.
func runDemoSensors(ctx context.Context, addr string, devices []device.Device, log *slog.Logger) error {
	clients := map[string]paho.Client{}
	for _, d := range devices {
		will := fmt.Sprintf("sharpeye/devices/%s/status", d.ID)
		if d.Kind == "analyser" {
			will = fmt.Sprintf("sharpeye/analysers/%s/status", d.ID)
		}
		// The broker takes a device's client id to be its id.
		o := paho.NewClientOptions().AddBroker("tcp://"+addr).SetClientID(d.ID).
			SetUsername(d.ID).SetPassword(d.Password.Reveal()).SetAutoReconnect(true).
			SetConnectRetry(true).SetConnectRetryInterval(time.Second).SetCleanSession(true).
			SetWill(will, `{"state":"offline"}`, 1, false)
		c := paho.NewClient(o)
		c.Connect()
		clients[d.ID] = c
	}
	defer func() {
		for _, c := range clients {
			c.Disconnect(250)
		}
	}()
	publish := func(id, kind, suffix string, v any) {
		b, _ := json.Marshal(v)
		topic := fmt.Sprintf("sharpeye/devices/%s/%s", id, suffix)
		if kind == "analyser" {
			topic = fmt.Sprintf("sharpeye/analysers/%s/%s", id, suffix)
		}
		t := clients[id].Publish(topic, 1, false, b)
		go func() {
			if t.WaitTimeout(10*time.Second) && t.Error() != nil {
				log.Debug("demo device publish failed", "device", id, "err", t.Error())
			}
		}()
	}
	for _, d := range devices {
		if d.Kind != "analyser" {
			publish(d.ID, string(d.Kind), "status", map[string]string{"state": "online"})
		}
	}

	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 7))
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	start := time.Now()
	battery := map[string]float64{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			minutes := now.Sub(start).Minutes()
			for _, d := range devices {
				if _, ok := battery[d.ID]; !ok {
					battery[d.ID] = 70 + 30*rng.Float64()
				}
				battery[d.ID] = math.Max(5, battery[d.ID]-0.01)
				switch d.Kind {
				case "smoke":
					smoke := 0.02 + 0.01*rng.Float64()
					// A cooking fire at the market every ten minutes or so.
					if d.ID == "lx-smoke-market" && math.Mod(minutes, 10) > 2 && math.Mod(minutes, 10) < 3 {
						smoke = 0.35 + 0.1*rng.Float64()
					}
					publish(d.ID, "smoke", "telemetry", map[string]any{"readings": map[string]float64{"smoke": round(smoke, 3), "temperature": round(22+3*rng.Float64(), 1), "battery": round(battery[d.ID], 1)}})
				case "water_level":
					level := 2.1 + 0.3*math.Sin(minutes/3) + 0.05*rng.Float64()
					if d.ID == "lx-water-east" && math.Mod(minutes, 15) > 5 && math.Mod(minutes, 15) < 7 {
						level += 1.2 // a flood crest
					}
					publish(d.ID, "water_level", "telemetry", map[string]any{"readings": map[string]float64{"water_level": round(level, 2), "battery": round(battery[d.ID], 1)}})
				case "gate":
					publish(d.ID, "gate", "telemetry", map[string]any{"readings": map[string]float64{"battery": round(battery[d.ID], 1)}})
					if rng.IntN(12) == 0 {
						publish(d.ID, "gate", "event", map[string]any{"type": "door.forced", "severity": "major"})
					}
				case "alarm_button":
					publish(d.ID, "alarm_button", "telemetry", map[string]any{"readings": map[string]float64{"battery": round(battery[d.ID], 1)}})
					if rng.IntN(40) == 0 {
						publish(d.ID, "alarm_button", "event", map[string]any{"type": "alarm_button.pressed", "severity": "critical"})
					}
				case "analyser":
					var dets []map[string]any
					for range 1 + rng.IntN(3) {
						class := []string{"person", "person", "vehicle", "crowd", "fall"}[rng.IntN(5)]
						if class == "fall" && rng.IntN(5) != 0 {
							class = "person"
						}
						dets = append(dets, map[string]any{
							"camera": d.Cameras[rng.IntN(len(d.Cameras))], "class": class,
							"confidence": round(0.55+0.44*rng.Float64(), 2),
							"bbox":       []float64{round(0.6*rng.Float64(), 3), round(0.6*rng.Float64(), 3), 0.2, 0.3},
						})
					}
					publish(d.ID, "analyser", "detections", map[string]any{"detections": dets})
				}
			}
		}
	}
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

package node

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"sharpeye/ingest/camera"
	"sharpeye/ingest/simcam"
)

// demoCamera is one simulated camera of the demo county.
type demoCamera struct {
	id, name, fixture, region, grid string
	lat, lon                        float64
	tags                            []string
	onDemand                        bool
}

// The demo county, 兰溪县 (fictional): two townships, a few villages, the
// places a governance centre watches: a school gate, a market, a river
// bank, a crossroads, a clinic, the township offices.
var demoCameras = []demoCamera{
	{"lx-school-gate", "兰溪一中 校门 School gate", "gate-720p.h264", "lanxi/dongcheng/xiangyang", "grid-01", 29.2101, 119.4602, []string{"school", "key-place"}, false},
	{"lx-market", "东城菜市场 Market", "street-360p.h264", "lanxi/dongcheng/xiangyang", "grid-02", 29.2115, 119.4633, []string{"market", "key-place"}, false},
	{"lx-crossroads", "人民路口 Crossroads", "square-1080p.h264", "lanxi/dongcheng/renmin", "grid-05", 29.2080, 119.4701, []string{"traffic"}, false},
	{"lx-square", "文化广场 Square", "square-1080p.h264", "lanxi/dongcheng/renmin", "grid-06", 29.2066, 119.4688, []string{"crowd"}, false},
	{"lx-river-east", "兰江东岸 River bank east", "street-360p.h264", "lanxi/nanshan/jiangbin", "grid-11", 29.1950, 119.4550, []string{"river", "flood"}, false},
	{"lx-river-west", "兰江西岸 River bank west", "gate-720p.h264", "lanxi/nanshan/jiangbin", "grid-12", 29.1945, 119.4490, []string{"river", "flood"}, false},
	{"lx-clinic", "南山卫生院 Clinic", "street-360p.h264", "lanxi/nanshan/shangtang", "grid-15", 29.1880, 119.4420, []string{"health"}, false},
	{"lx-town-hall", "南山镇政府 Township office", "gate-720p.h264", "lanxi/nanshan/shangtang", "grid-16", 29.1872, 119.4411, []string{"government"}, false},
	{"lx-bridge", "兰江大桥 Bridge (on demand)", "square-1080p.h264", "lanxi/nanshan/jiangbin", "grid-13", 29.1960, 119.4520, []string{"traffic", "river"}, true},
}

// startDemoCameras serves the demo's simulated cameras over RTSP on a free
// loopback port and returns their registry records.
func startDemoCameras(log *slog.Logger) (*simcam.Server, []camera.Camera, error) {
	sim, err := simcam.NewServer(simcam.Config{Address: "127.0.0.1:0"}, log)
	if err != nil {
		return nil, nil, err
	}
	if err := sim.Start(); err != nil {
		return nil, nil, fmt.Errorf("demo cameras: %w", err)
	}
	var cams []camera.Camera
	for i, d := range demoCameras {
		clip, err := simcam.Load(d.fixture)
		if err != nil {
			sim.Close()
			return nil, nil, err
		}
		// Spread the cameras' keyframes over the 2 s group of pictures.
		delay := time.Duration(i) * 2 * time.Second / time.Duration(len(demoCameras))
		if err := sim.Add(simcam.Camera{Path: d.id, Clip: clip, ParamsInSDP: true, Delay: delay}); err != nil {
			sim.Close()
			return nil, nil, err
		}
		lat, lon := d.lat, d.lon
		cams = append(cams, camera.Camera{
			ID: d.id, Name: d.name, URL: sim.URL(d.id), Transport: camera.TransportTCP, OnDemand: d.onDemand,
			Region: d.region, Grid: d.grid, Lat: &lat, Lon: &lon, Tags: d.tags, Vendor: "sharpeye-sim",
		})
	}
	return sim, cams, nil
}

// demoWallURL opens the console's video wall with the demo's cameras, on
// the smallest square layout that holds them (at most 4×4).
func demoWallURL(base string, cams []camera.Camera) string {
	side := 1
	for side < 4 && side*side < len(cams) {
		side++
	}
	ids := make([]string, 0, side*side)
	for _, c := range cams[:min(len(cams), side*side)] {
		ids = append(ids, url.QueryEscape(c.ID))
	}
	return fmt.Sprintf("%s/#/wall?layout=%d&cams=%s", base, side, strings.Join(ids, ","))
}

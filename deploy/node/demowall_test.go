package node

import (
	"fmt"
	"strings"
	"testing"

	"sharpeye/ingest/camera"
)

// TestDemoWallURL: the demo's wall link holds its cameras on the smallest
// square that fits them, at most 4×4, with their ids escaped.
func TestDemoWallURL(t *testing.T) {
	cams := func(n int) []camera.Camera {
		out := make([]camera.Camera, n)
		for i := range out {
			out[i].ID = fmt.Sprintf("c%d", i)
		}
		return out
	}
	for _, c := range []struct {
		cams []camera.Camera
		want string
	}{
		{cams(1), "http://h/#/wall?layout=1&cams=c0"},
		{cams(2), "http://h/#/wall?layout=2&cams=c0,c1"},
		{cams(4), "http://h/#/wall?layout=2&cams=c0,c1,c2,c3"},
		{cams(9), "http://h/#/wall?layout=3&cams=c0,c1,c2,c3,c4,c5,c6,c7,c8"},
		{cams(20), "http://h/#/wall?layout=4&cams=c0,c1,c2,c3,c4,c5,c6,c7,c8,c9,c10,c11,c12,c13,c14,c15"},
		{[]camera.Camera{{ID: "a b&c"}}, "http://h/#/wall?layout=1&cams=a+b%26c"},
	} {
		if got := demoWallURL("http://h", c.cams); got != c.want {
			t.Errorf("%d cameras: %s, want %s", len(c.cams), got, c.want)
		}
	}
	var county []camera.Camera
	for _, d := range demoCameras {
		county = append(county, camera.Camera{ID: d.id})
	}
	if got, want := demoWallURL("http://h", county), "http://h/#/wall?layout=3&cams=lx-school-gate,lx-market,"; len(county) != 9 || !strings.HasPrefix(got, want) {
		t.Errorf("the demo county's wall: %s", got)
	}
}

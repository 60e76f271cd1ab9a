package gen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Atlas is the county a history happens in: its region tree (county →
// township → village or community → grid), its cameras and its devices.
// County builds it from the configuration; the same seed gives the same
// atlas.
type Atlas struct {
	// Name is the county's name, the first segment of every region path.
	Name      string
	Townships []Township
	Villages  []Village
	Grids     []Grid
	Cameras   []Camera
	Devices   []Device
}

// Township is a 街道 (urban sub-district) or 镇 (town).
type Township struct {
	Name   string
	Region string // 示范县/城关街道
	Lat    float64
	Lon    float64
	// Villages are indexes into Atlas.Villages.
	Villages []int
}

// Village is a 村 (village) of a town or a 社区 (community) of a street.
type Village struct {
	Name      string
	Region    string // 示范县/城关街道/东门社区
	Township  int
	Community bool
	Lat       float64
	Lon       float64
	// Grids and Cameras are indexes into Atlas.Grids and Atlas.Cameras.
	Grids   []int
	Cameras []int
}

// Grid is a 网格: a few hundred households one grid worker walks.
type Grid struct {
	ID      string // g030702: township 3, village 7, grid 2
	Name    string // 东门社区第2网格
	Village int
	// Weight is how much happens there relative to other grids.
	Weight float64
	// Hot grids heat up over the last three weeks of the history: more
	// events and cases there, week after week (the hot spots).
	Hot bool
}

// Camera health classes.
const (
	Healthy = "healthy"
	// Weak cameras drop out a few times a month.
	Weak = "weak"
	// Chronic offenders are down a third of the time and flap.
	Chronic = "chronic"
)

// Camera is one public camera (雪亮工程).
type Camera struct {
	ID     string // cam-00042
	Name   string // 东门社区学校门口
	Vendor string // hikvision, dahua or uniview
	// Place is what it looks at: 村口, 路口, 学校门口, 集市...
	Place   string
	Region  string
	Grid    string
	Village int
	// GridIndex is the camera's grid in Atlas.Grids.
	GridIndex int
	Lat       float64
	Lon       float64
	Tags      []string
	// Activity weighs how much the camera sees (a market more than a
	// river bank).
	Activity float64
	// Analyser is the index in Atlas.Devices of the AI box analysing the
	// camera, -1 for none.
	Analyser int
	// Health is Healthy, Weak or Chronic.
	Health string
	// FaultProne cameras raise video quality faults often (a dirty or
	// badly aimed lens).
	FaultProne  bool
	BitrateKbps float64
	FPS         float64
}

// Device kinds (as in ingest/device).
const (
	KindSmoke       = "smoke"
	KindWaterLevel  = "water_level"
	KindGas         = "gas"
	KindTemperature = "temperature"
	KindDoor        = "door"
	KindGate        = "gate"
	KindAlarmButton = "alarm_button"
	KindAnalyser    = "analyser"
)

// Device is a sensor, an alarm button or an edge AI box.
type Device struct {
	ID        string // smoke-0001, aibox-001
	Name      string
	Kind      string
	Region    string
	Grid      string
	Village   int
	GridIndex int
	Lat       float64
	Lon       float64
	// Cameras are the indexes of the cameras covering the device, or those
	// an analyser analyses.
	Cameras []int
	// Every is how often the device reports its readings.
	Every time.Duration
	// Flapping devices drop off the network several times a day.
	Flapping bool
	// level is a water-level gauge's normal level in metres.
	level float64
}

var townshipNames = []string{
	"城关街道", "东城街道", "西城街道", "南湖街道", "新华镇", "青石镇", "白沙镇", "柳林镇",
	"石桥镇", "河口镇", "马坊镇", "龙泉镇", "永安镇", "桃源镇", "双河镇", "长岭镇",
}

var villageStems = []string{
	"东门", "西关", "南街", "北苑", "张家湾", "李家庄", "王庄", "刘营", "陈湾", "新庄", "杨树岗", "桃园",
	"柏林", "红旗", "和平", "幸福", "前进", "东风", "光明", "金星", "石门", "黄土岭", "清水", "长岭",
	"大河", "小河", "双塔", "三里店", "五里铺", "七里桥", "马家", "周家", "吴家", "郑家", "胡家畈", "高桥",
	"枣林", "杏花", "梨园", "莲花", "松林", "竹园", "荷塘", "麦庄", "稻香", "凤凰", "龙湾", "虎山",
	"白果", "青龙", "太平", "永丰", "丰收", "建设", "团结", "友谊", "向阳", "朝阳", "新民", "振兴",
}

var directions = []string{"东", "西", "南", "北", "新", "老", "大", "小", "上", "下"}

// places cameras look at, with how much each sees and its tags.
var places = []struct {
	name   string
	weight float64 // share of cameras
	act    float64 // activity
	tags   []string
}{
	{"村口", 0.20, 1.5, nil},
	{"路口", 0.20, 2.5, []string{"road"}},
	{"学校门口", 0.08, 2.0, []string{"school"}},
	{"集市", 0.06, 3.0, []string{"market"}},
	{"广场", 0.07, 2.0, []string{"square"}},
	{"河堤", 0.07, 0.5, []string{"river"}},
	{"桥头", 0.06, 1.2, []string{"river"}},
	{"村委会", 0.08, 1.0, nil},
	{"卫生室", 0.05, 1.0, nil},
	{"停车场", 0.06, 1.5, nil},
	{"小区大门", 0.07, 2.0, nil},
}

var vendors = []struct {
	name    string
	share   float64
	bitrate float64
}{
	{"hikvision", 0.55, 2048}, {"dahua", 0.30, 2048}, {"uniview", 0.15, 1536},
}

// deviceKinds: share of devices, report interval, id prefix and name.
var deviceKinds = []struct {
	kind   string
	share  float64
	every  time.Duration
	prefix string
	name   string
}{
	{KindAnalyser, 0.08, 5 * time.Minute, "aibox", "AI分析盒"},
	{KindSmoke, 0.30, 30 * time.Minute, "smoke", "烟感"},
	{KindWaterLevel, 0.08, 10 * time.Minute, "water", "水位计"},
	{KindGas, 0.12, 15 * time.Minute, "gas", "燃气探测器"},
	{KindTemperature, 0.12, 15 * time.Minute, "temp", "温湿度计"},
	{KindDoor, 0.12, time.Hour, "door", "门磁"},
	{KindGate, 0.06, time.Hour, "gate", "校门门磁"},
	{KindAlarmButton, 0.12, 2 * time.Hour, "sos", "一键报警"},
}

// camerasPerAnalyser is how many cameras one AI box analyses.
const camerasPerAnalyser = 12

// County builds the county of cfg (which must be valid): townships,
// villages and grids with Chinese names, cameras and devices placed in
// the villages around cfg.Regions' centre.
func County(cfg Config) *Atlas {
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0xa71a5))
	r := cfg.Regions
	a := &Atlas{Name: r.County}

	// Townships on a ring around the centre, villages around each.
	stems := slices.Clone(villageStems)
	rng.Shuffle(len(stems), func(i, j int) { stems[i], stems[j] = stems[j], stems[i] })
	used := map[string]bool{}
	stemAt := 0
	villageName := func() string {
		for {
			s := stems[stemAt%len(stems)]
			if round := stemAt / len(stems); round > 0 {
				s = directions[(round-1)%len(directions)] + s
				if round > len(directions) {
					s += strconv.Itoa(round)
				}
			}
			stemAt++
			if !used[s] {
				used[s] = true
				return s
			}
		}
	}
	for t := range r.Townships {
		name := fmt.Sprintf("第%d镇", t+1)
		if t < len(townshipNames) {
			name = townshipNames[t]
		}
		street := strings.HasSuffix(name, "街道")
		angle := 2 * math.Pi * (float64(t) + rng.Float64()*0.5) / float64(r.Townships)
		radius := 0.04 + 0.22*rng.Float64()
		if street {
			radius = 0.01 + 0.03*rng.Float64() // the streets are the county town
		}
		tw := Township{Name: name, Region: a.Name + "/" + name,
			Lat: r.Lat + radius*math.Sin(angle), Lon: r.Lon + radius*math.Cos(angle)*1.2}
		nv := r.VillagesMin + rng.IntN(r.VillagesMax-r.VillagesMin+1)
		for v := range nv {
			suffix := "村"
			if street {
				suffix = "社区"
			}
			vname := villageName() + suffix
			vi := len(a.Villages)
			vil := Village{Name: vname, Region: tw.Region + "/" + vname, Township: t, Community: street,
				Lat: tw.Lat + (rng.Float64()-0.5)*0.06, Lon: tw.Lon + (rng.Float64()-0.5)*0.07}
			ng := r.GridsMin + rng.IntN(r.GridsMax-r.GridsMin+1)
			for g := range ng {
				w := 0.5 + rng.ExpFloat64()
				if street {
					w *= 1.6 // denser
				}
				vil.Grids = append(vil.Grids, len(a.Grids))
				a.Grids = append(a.Grids, Grid{ID: fmt.Sprintf("g%02d%02d%02d", t+1, v+1, g+1),
					Name: fmt.Sprintf("%s第%d网格", vname, g+1), Village: vi, Weight: w})
			}
			tw.Villages = append(tw.Villages, vi)
			a.Villages = append(a.Villages, vil)
		}
		a.Townships = append(a.Townships, tw)
	}

	// Cameras: villages by weight (communities are denser), grids within
	// by weight.
	gridCDF := cdf(len(a.Grids), func(i int) float64 { return a.Grids[i].Weight })
	placeCDF := cdf(len(places), func(i int) float64 { return places[i].weight })
	vendorCDF := cdf(len(vendors), func(i int) float64 { return vendors[i].share })
	for i := range cfg.Cameras {
		gi := pick(rng, gridCDF)
		g := a.Grids[gi]
		v := &a.Villages[g.Village]
		p := places[pick(rng, placeCDF)]
		vd := vendors[pick(rng, vendorCDF)]
		c := Camera{
			ID: fmt.Sprintf("cam-%05d", i+1), Name: v.Name + p.name, Vendor: vd.name, Place: p.name,
			Region: v.Region, Grid: g.ID, Village: g.Village, GridIndex: gi,
			Lat: round6(v.Lat + (rng.Float64()-0.5)*0.008), Lon: round6(v.Lon + (rng.Float64()-0.5)*0.009),
			Tags: p.tags, Activity: p.act * math.Exp(0.5*rng.NormFloat64()), Analyser: -1, Health: Healthy,
			BitrateKbps: vd.bitrate, FPS: 25,
		}
		if rng.Float64() < 0.25 {
			c.BitrateKbps *= 2 // 4 MP models
		}
		if rng.Float64() < 0.15 {
			c.FPS = 20
		}
		switch x := rng.Float64(); {
		case x < 0.03:
			c.Health = Chronic
		case x < 0.13:
			c.Health = Weak
		}
		c.FaultProne = rng.Float64() < 0.05
		v.Cameras = append(v.Cameras, i)
		a.Cameras = append(a.Cameras, c)
	}
	if len(a.Cameras) >= 20 && !slices.ContainsFunc(a.Cameras, func(c Camera) bool { return c.Health == Chronic }) {
		a.Cameras[rng.IntN(len(a.Cameras))].Health = Chronic
	}

	// A handful of hot grids with cameras, in different townships.
	camsIn := make([]int, len(a.Grids))
	for _, c := range a.Cameras {
		camsIn[c.GridIndex]++
	}
	nHot := min(max(3, len(a.Grids)/120), len(a.Grids))
	for _, need := range []int{2, 1, 0} {
		for _, i := range rng.Perm(len(a.Grids)) {
			if nHot == 0 {
				break
			}
			if a.Grids[i].Hot || camsIn[i] < need {
				continue
			}
			same := false
			for _, g := range a.Grids {
				same = same || g.Hot && a.Villages[g.Village].Township == a.Villages[a.Grids[i].Village].Township
			}
			if same && need > 0 {
				continue
			}
			a.Grids[i].Hot = true
			nHot--
		}
	}

	// Devices, kind by kind.
	counts := make([]int, len(deviceKinds))
	left := cfg.Devices
	for k := range deviceKinds {
		counts[k] = int(math.Round(float64(cfg.Devices) * deviceKinds[k].share))
		if k == len(deviceKinds)-1 || counts[k] > left {
			counts[k] = left
		}
		left -= counts[k]
	}
	covered := make([]bool, len(a.Cameras))
	byActivity := make([]int, len(a.Cameras))
	for i := range byActivity {
		byActivity[i] = i
	}
	slices.SortStableFunc(byActivity, func(x, y int) int {
		switch {
		case a.Cameras[x].Activity > a.Cameras[y].Activity:
			return -1
		case a.Cameras[x].Activity < a.Cameras[y].Activity:
			return 1
		}
		return 0
	})
	for k, dk := range deviceKinds {
		for n := range counts[k] {
			d := Device{ID: fmt.Sprintf("%s-%04d", dk.prefix, n+1), Kind: dk.kind,
				Every: dk.every, Flapping: rng.Float64() < 0.05}
			var gi int
			if dk.kind == KindAnalyser {
				// An AI box takes the busiest cameras of its township not
				// analysed yet.
				d.ID = fmt.Sprintf("%s-%03d", dk.prefix, n+1)
				t := n % max(len(a.Townships), 1)
				for _, ci := range byActivity {
					if len(d.Cameras) == camerasPerAnalyser {
						break
					}
					if !covered[ci] && a.Villages[a.Cameras[ci].Village].Township == t {
						covered[ci] = true
						d.Cameras = append(d.Cameras, ci)
					}
				}
				if len(d.Cameras) == 0 {
					for _, ci := range byActivity {
						if !covered[ci] {
							covered[ci] = true
							d.Cameras = append(d.Cameras, ci)
							break
						}
					}
				}
				if len(d.Cameras) == 0 {
					gi = pick(rng, gridCDF)
				} else {
					gi = a.Cameras[d.Cameras[0]].GridIndex
				}
			} else {
				gi = pick(rng, gridCDF)
				if dk.kind == KindGate || dk.kind == KindWaterLevel {
					// School gates and river gauges go where such cameras are.
					want := "school"
					if dk.kind == KindWaterLevel {
						want = "river"
					}
					for range 20 {
						ci := rng.IntN(max(len(a.Cameras), 1))
						if len(a.Cameras) > 0 && slices.Contains(a.Cameras[ci].Tags, want) {
							gi = a.Cameras[ci].GridIndex
							break
						}
					}
				}
			}
			g := a.Grids[gi]
			v := a.Villages[g.Village]
			d.Region, d.Grid, d.Village, d.GridIndex = v.Region, g.ID, g.Village, gi
			d.Name = v.Name + dk.name
			if dk.kind == KindAnalyser {
				d.Name = fmt.Sprintf("%s%s%d", a.Townships[v.Township].Name, dk.name, n/max(len(a.Townships), 1)+1)
			}
			d.Lat, d.Lon = round6(v.Lat+(rng.Float64()-0.5)*0.008), round6(v.Lon+(rng.Float64()-0.5)*0.009)
			if dk.kind != KindAnalyser {
				for _, ci := range v.Cameras {
					if a.Cameras[ci].Grid == g.ID && len(d.Cameras) < 2 {
						d.Cameras = append(d.Cameras, ci)
					}
				}
			}
			d.level = 0.8 + 1.5*rng.Float64()
			a.Devices = append(a.Devices, d)
		}
	}
	for di, d := range a.Devices {
		if d.Kind == KindAnalyser {
			for _, ci := range d.Cameras {
				a.Cameras[ci].Analyser = di
			}
		}
	}
	return a
}

// HotGrids lists the grids that heat up.
func (a *Atlas) HotGrids() []string {
	var out []string
	for _, g := range a.Grids {
		if g.Hot {
			out = append(out, g.ID)
		}
	}
	return out
}

// CamerasOf lists the ids of the cameras of health class h.
func (a *Atlas) CamerasOf(h string) []string {
	var out []string
	for _, c := range a.Cameras {
		if c.Health == h {
			out = append(out, c.ID)
		}
	}
	return out
}

func round6(f float64) float64 { return math.Round(f*1e6) / 1e6 }

// cdf returns the cumulative weights of n items.
func cdf(n int, w func(int) float64) []float64 {
	out := make([]float64, n)
	sum := 0.0
	for i := range n {
		sum += max(w(i), 0)
		out[i] = sum
	}
	return out
}

// pick draws an index from cumulative weights (not empty, total > 0).
func pick(rng *rand.Rand, c []float64) int {
	x := rng.Float64() * c[len(c)-1]
	i, _ := slices.BinarySearch(c, x)
	if i >= len(c) {
		i = len(c) - 1
	}
	// Skip zero-weight items that share the cumulative value.
	for i+1 < len(c) && c[i] <= x {
		i++
	}
	return i
}

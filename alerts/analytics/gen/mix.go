package gen

import "sharpeye/alerts/cases"

// profile is a daily rhythm: a weight per local hour, and a factor for
// Saturdays and Sundays.
type profile struct {
	hours   [24]float64
	weekend float64
}

// share returns the fraction of an average day's volume that falls in one
// minute of hour h on a weekend day or not: over a whole week, the minutes
// of a day sum to 1 on average.
func (p *profile) share(h int, weekend bool) float64 {
	sum := 0.0
	for _, w := range p.hours {
		sum += w
	}
	f := p.hours[h] / (sum * (5 + 2*p.weekend) / 7) / 60
	if weekend {
		f *= p.weekend
	}
	return f
}

var (
	activity = &profile{hours: [24]float64{0.25, 0.18, 0.15, 0.14, 0.16, 0.3, 0.6, 1.0, 1.3, 1.2, 1.1, 1.1,
		1.15, 1.05, 1.0, 1.05, 1.2, 1.45, 1.6, 1.55, 1.3, 1.0, 0.7, 0.4}, weekend: 1.1}
	traffic = &profile{hours: [24]float64{0.15, 0.1, 0.08, 0.08, 0.12, 0.35, 0.9, 1.7, 1.8, 1.2, 1.0, 1.0,
		1.05, 0.95, 1.0, 1.1, 1.4, 1.8, 1.7, 1.2, 0.9, 0.7, 0.45, 0.25}, weekend: 0.85}
	evening = &profile{hours: [24]float64{0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.8, 0.9, 1.0, 1.0,
		1.0, 0.9, 0.9, 1.0, 1.2, 1.5, 1.9, 2.2, 2.1, 1.6, 1.0, 0.5}, weekend: 1.15}
	night = &profile{hours: [24]float64{1.6, 1.5, 1.4, 1.3, 1.1, 0.8, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4,
		0.4, 0.4, 0.4, 0.4, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.4, 1.5}, weekend: 1}
	flat    = &profile{hours: [24]float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, weekend: 1}
	cooking = &profile{hours: [24]float64{0.4, 0.3, 0.3, 0.3, 0.3, 0.5, 0.9, 1.0, 0.8, 0.8, 1.2, 1.8,
		1.6, 0.9, 0.7, 0.8, 1.3, 1.9, 1.7, 1.1, 0.9, 0.8, 0.6, 0.5}, weekend: 1.1}
	nightOnly = &profile{hours: [24]float64{1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, weekend: 1.2}
	// office hours of the intake window (8:30-12:00, 14:00-17:30), with
	// a skeleton weekend duty.
	office = &profile{hours: [24]float64{0, 0, 0, 0, 0, 0, 0, 0, 0.5, 1.6, 1.8, 1.5,
		0.2, 0.3, 1.4, 1.6, 1.5, 0.6, 0, 0, 0, 0, 0, 0}, weekend: 0.25}
	hotline = &profile{hours: [24]float64{0.1, 0.05, 0.03, 0.03, 0.05, 0.1, 0.3, 0.8, 1.4, 1.7, 1.6, 1.3,
		0.9, 0.9, 1.4, 1.5, 1.4, 1.2, 1.1, 1.2, 1.1, 0.8, 0.5, 0.2}, weekend: 0.8}
	// daytime is when grid workers walk their grids.
	daytime = &profile{hours: [24]float64{0, 0, 0, 0, 0, 0, 0.1, 0.5, 1.2, 1.4, 1.4, 1.1,
		0.6, 0.9, 1.3, 1.4, 1.3, 1.0, 0.4, 0.2, 0.1, 0, 0, 0}, weekend: 0.6}
)

// eventDef is one type of the events that are not tied to a case or a
// camera's condition: their share of those events and their rhythm.
type eventDef struct {
	typ   string
	share float64
	prof  *profile
}

var eventMix = []eventDef{
	{"motion", 0.445, activity},
	{"detection.person", 0.17, activity},
	{"detection.vehicle", 0.15, traffic},
	{"detection.crowd", 0.012, evening},
	{"detection.fall", 0.002, activity},
	{"telemetry", 0.21, flat},
	{"sensor.door.forced", 0.004, night},
	{"sensor.alarm_button.pressed", 0.001, activity},
}

// ruleDef is an alert rule of the demo configuration
// (deploy/node/demo/alerts.yml) as far as the history needs it.
type ruleDef struct {
	id       string
	category string
	risk     int
	// falseRate is the share of its cases found not substantiated (a
	// false alert).
	falseRate float64
	prof      *profile
	// structural rules fire on cameras' outages and faults rather than
	// at random times.
	structural bool
	// triggers is how many events make one alert.
	triggers int
	title    string
}

var rules = []ruleDef{
	{"smoke-high", "public_safety", 85, 0.15, cooking, false, 2, "烟感浓度持续超标"},
	{"water-high", "public_safety", 70, 0.08, flat, false, 2, "水位超警戒"},
	{"fall", "public_safety", 65, 0.30, activity, false, 1, "画面检测到人员跌倒"},
	{"alarm-button", "public_order", 80, 0.20, activity, false, 1, "一键报警"},
	{"crowd", "public_order", 40, 0.40, evening, false, 3, "画面人员聚集"},
	{"alarm-with-people", "key_place", 95, 0.10, activity, false, 2, "报警且现场有人员聚集"},
	{"gate-forced", "key_place", 60, 0.25, night, false, 2, "门磁多次报警"},
	{"night-intrusion", "key_place", 70, 0.35, nightOnly, false, 1, "夜间校门口发现人员"},
	{"camera-offline", "equipment_fault", 30, 0.04, nil, true, 0, "摄像机离线"},
	{"camera-quality", "equipment_fault", 25, 0.12, nil, true, 0, "画面异常"},
	{"village-network-down", "equipment_fault", 50, 0.02, nil, true, 0, "片区多路摄像机同时离线，疑似网络中断"},
}

func ruleByID(id string) *ruleDef {
	for i := range rules {
		if rules[i].id == id {
			return &rules[i]
		}
	}
	return nil
}

type weighted struct {
	name string
	w    float64
}

type sourceShare struct {
	source cases.Source
	share  float64
	prof   *profile
}

// categoryMix is how one category's cases come and go.
type categoryMix struct {
	category string
	// share of all cases.
	share float64
	// dup is the chance a matter is reported a second time and merged.
	dup float64
	// pace multiplies every stage's duration: 1 is about 4 % late.
	pace    float64
	riskLo  int
	riskHi  int
	sources []sourceShare
	// rules share the alert source's cases.
	rules    []weighted
	outcomes []weighted
	// split is the share of cases cut into tasks for two departments.
	split  float64
	issues []string
}

var categoryMixes = []categoryMix{
	{"neighbour_dispute", 0.16, 0.03, 1.0, 20, 55,
		[]sourceShare{{cases.FromWindow, 0.30, office}, {cases.FromHotline, 0.35, hotline}, {cases.FromGrid, 0.30, daytime}, {cases.FromPolice, 0.05, activity}},
		nil, []weighted{{"mediated", 72}, {"handled", 6}, {"arbitration", 3}, {"administrative", 4}, {"court", 6}, {"referred", 9}},
		0, []string{"噪音扰民", "宅基地边界", "楼上漏水", "堆放杂物", "饲养宠物", "排水纠纷"}},
	{"family_dispute", 0.07, 0.02, 1.0, 25, 70,
		[]sourceShare{{cases.FromWindow, 0.35, office}, {cases.FromHotline, 0.30, hotline}, {cases.FromGrid, 0.20, daytime}, {cases.FromPolice, 0.15, activity}},
		nil, []weighted{{"mediated", 75}, {"court", 10}, {"referred", 10}, {"handled", 5}},
		0, []string{"婚姻矛盾", "赡养老人", "遗产继承", "家庭暴力"}},
	{"labour_dispute", 0.07, 0.03, 1.2, 30, 70,
		[]sourceShare{{cases.FromWindow, 0.45, office}, {cases.FromHotline, 0.45, hotline}, {cases.FromGrid, 0.10, daytime}},
		nil, []weighted{{"mediated", 55}, {"arbitration", 25}, {"administrative", 10}, {"court", 5}, {"referred", 5}},
		0.12, []string{"拖欠工资", "工伤赔偿", "劳动合同纠纷"}},
	{"property_dispute", 0.08, 0.04, 1.4, 15, 50,
		[]sourceShare{{cases.FromWindow, 0.25, office}, {cases.FromHotline, 0.55, hotline}, {cases.FromGrid, 0.20, daytime}},
		nil, []weighted{{"mediated", 60}, {"handled", 25}, {"administrative", 8}, {"referred", 7}},
		0, []string{"物业收费", "电梯故障", "停车位纠纷", "公共维修"}},
	{"land_dispute", 0.05, 0.03, 1.6, 30, 75,
		[]sourceShare{{cases.FromWindow, 0.55, office}, {cases.FromHotline, 0.15, hotline}, {cases.FromGrid, 0.30, daytime}},
		nil, []weighted{{"mediated", 45}, {"administrative", 25}, {"court", 10}, {"referred", 20}},
		0.2, []string{"土地承包", "征迁补偿", "宅基地确权"}},
	{"traffic_accident", 0.05, 0.02, 0.9, 35, 80,
		[]sourceShare{{cases.FromPolice, 0.70, traffic}, {cases.FromHotline, 0.20, hotline}, {cases.FromGrid, 0.10, daytime}},
		nil, []weighted{{"mediated", 50}, {"handled", 30}, {"court", 10}, {"referred", 10}},
		0, []string{"车辆剐蹭", "电动车相撞", "行人受伤"}},
	{"public_order", 0.12, 0.06, 0.8, 40, 85,
		[]sourceShare{{cases.FromAlert, 0.50, nil}, {cases.FromPolice, 0.25, evening}, {cases.FromGrid, 0.15, daytime}, {cases.FromHotline, 0.10, hotline}},
		[]weighted{{"alarm-button", 0.5}, {"crowd", 0.5}},
		[]weighted{{"handled", 85}, {"referred", 10}, {"mediated", 5}},
		0, []string{"打架斗殴", "人员聚集", "醉酒闹事"}},
	{"work_safety", 0.04, 0.02, 1.1, 40, 85,
		[]sourceShare{{cases.FromGrid, 0.50, daytime}, {cases.FromHotline, 0.30, hotline}, {cases.FromWindow, 0.20, office}},
		nil, []weighted{{"handled", 85}, {"administrative", 10}, {"referred", 5}},
		0, []string{"违规施工", "消防通道堵塞", "危化品存放"}},
	{"public_safety", 0.11, 0.06, 0.7, 50, 90,
		[]sourceShare{{cases.FromAlert, 0.60, nil}, {cases.FromHotline, 0.25, hotline}, {cases.FromGrid, 0.15, daytime}},
		[]weighted{{"smoke-high", 0.45}, {"water-high", 0.25}, {"fall", 0.30}},
		[]weighted{{"handled", 90}, {"referred", 10}},
		0, []string{"疑似火情", "河道水位上涨", "燃气泄漏"}},
	{"key_place", 0.08, 0.05, 0.8, 40, 85,
		[]sourceShare{{cases.FromAlert, 0.70, nil}, {cases.FromGrid, 0.20, daytime}, {cases.FromPolice, 0.10, activity}},
		[]weighted{{"alarm-with-people", 0.25}, {"gate-forced", 0.40}, {"night-intrusion", 0.35}},
		[]weighted{{"handled", 85}, {"referred", 15}},
		0, []string{"校园周边隐患", "市场秩序", "车站滞留人员"}},
	{"equipment_fault", 0.17, 0, 1.2, 20, 40,
		[]sourceShare{{cases.FromAlert, 0.90, nil}, {cases.FromGrid, 0.10, daytime}},
		[]weighted{{"camera-offline", 0.60}, {"camera-quality", 0.35}, {"village-network-down", 0.05}},
		[]weighted{{"handled", 100}},
		0, []string{"摄像机损坏", "线路故障", "立杆倾斜"}},
}

// notSubstantiated is the share of cases reported by people that turn out
// to be nothing.
const notSubstantiated = 0.04

// satisfactions of the follow-up, with their weights.
var satisfactions = []weighted{{"satisfied", 90}, {"basically", 8}, {"dissatisfied", 2}}

// faultKinds are the video quality faults and how common each is.
var faultKinds = []weighted{
	{"video.frozen", 25}, {"video.dark", 15}, {"video.bright", 10}, {"video.covered", 10},
	{"video.blur", 20}, {"video.colour_cast", 10}, {"camera.degraded", 10},
}

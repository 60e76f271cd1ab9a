package cases

import (
	"regexp"
	"slices"
	"strconv"
	"time"

	"sharpeye/configs/conf"
)

// Config is the case workflow's section: departments, category playbooks,
// how risk scores map to colours, merge suggestions and the timer loop.
type Config struct {
	// Departments that cases are dispatched to.
	Departments []Department `yaml:"departments"`
	// Playbooks, one per category (类案标准化).
	Playbooks []Playbook `yaml:"playbooks"`
	// Colours maps a risk score to a colour: red at or above Red, orange at
	// or above Orange, yellow below.
	Colours ColourThresholds `yaml:"colours"`
	// Merge tunes automatic merge suggestions.
	Merge MergeConfig `yaml:"merge"`
	// VerifySameDay is the deadline of red risks' same-day verification
	// (不过夜核查).
	VerifySameDay VerifySameDay `yaml:"verify_same_day"`
	// Readings attaches the sensor readings around an alert to its case.
	Readings ReadingsConfig `yaml:"readings"`
	// TimerPoll is how often due timers are looked for.
	TimerPoll conf.Duration `yaml:"timer_poll"`
	// PageSize is the default page of the case list; MaxPageSize its limit.
	PageSize    int `yaml:"page_size"`
	MaxPageSize int `yaml:"max_page_size"`
}

// Department is a unit cases are dispatched to.
type Department struct {
	ID   string `yaml:"id" json:"id"`
	Name string `yaml:"name" json:"name"`
}

// ColourThresholds are the risk scores where colours begin.
type ColourThresholds struct {
	Red    int `yaml:"red" json:"red"`
	Orange int `yaml:"orange" json:"orange"`
}

// Colour maps a risk score to its colour.
func (t ColourThresholds) Colour(risk int) Colour {
	switch {
	case risk >= t.Red:
		return Red
	case risk >= t.Orange:
		return Orange
	}
	return Yellow
}

// MergeConfig says which open cases look like the same matter: same
// category, created within Window of each other, and in the same grid or
// within Distance metres.
type MergeConfig struct {
	Window   conf.Duration `yaml:"window"`
	Distance float64       `yaml:"distance"`
}

// VerifySameDay places the verification deadline of a red risk: the end
// of the local day in Timezone on which the case became red, but never
// less than Min after it (a red case opened at 23:50 gets Min).
type VerifySameDay struct {
	Timezone string        `yaml:"timezone"`
	Min      conf.Duration `yaml:"min"`
}

// ReadingsConfig says which sensor readings an alert case gets as
// evidence: the telemetry of its devices and of the devices in its grid
// from Before the alert to After it, at most MaxDevices devices of at most
// MaxPoints readings each (evenly thinned), looked up once After has
// passed. A failed lookup is retried after Retry, doubling, Attempts times
// in all; each lookup may take Timeout.
type ReadingsConfig struct {
	Before     conf.Duration `yaml:"before"`
	After      conf.Duration `yaml:"after"`
	MaxDevices int           `yaml:"max_devices"`
	MaxPoints  int           `yaml:"max_points"`
	Retry      conf.Duration `yaml:"retry"`
	Attempts   int           `yaml:"attempts"`
	Timeout    conf.Duration `yaml:"timeout"`
}

// Playbook is a category's standard handling (类案标准化).
type Playbook struct {
	// Category is the id cases and rules use, such as public_safety.
	Category string `yaml:"category" json:"category"`
	// Name is the category as people read it.
	Name string `yaml:"name" json:"name"`
	// Lead is the department dispatched to unless the commander picks
	// another; Co are the co-departments.
	Lead string   `yaml:"lead" json:"lead"`
	Co   []string `yaml:"co" json:"co"`
	// Required lists the seven elements needed before dispatch; empty
	// means all seven.
	Required []string `yaml:"required" json:"required"`
	// Deadlines per stage, from entering the stage.
	Deadlines Deadlines `yaml:"deadlines" json:"deadlines"`
	// RemindBefore is how long before a deadline the reminder comes.
	RemindBefore conf.Duration `yaml:"remind_before" json:"remind_before"`
	// Ladder is what happens once a deadline has passed, in order.
	Ladder []Step `yaml:"ladder" json:"ladder"`
}

// Deadlines are the time allowed for each stage.
type Deadlines struct {
	Assess   conf.Duration `yaml:"assess" json:"assess"`
	Accept   conf.Duration `yaml:"accept" json:"accept"`
	Resolve  conf.Duration `yaml:"resolve" json:"resolve"`
	FollowUp conf.Duration `yaml:"follow_up" json:"follow_up"`
}

// For returns the deadline of stage.
func (d Deadlines) For(stage string) time.Duration {
	switch stage {
	case StageAssess:
		return d.Assess.D()
	case StageAccept:
		return d.Accept.D()
	case StageResolve, StageTask:
		return d.Resolve.D()
	case StageFollowUp:
		return d.FollowUp.D()
	}
	return 0
}

// Step is one rung of the escalation ladder: Action (urge, supervise or
// escalate) After the deadline passed.
type Step struct {
	After  conf.Duration `yaml:"after" json:"after"`
	Action string        `yaml:"action" json:"action"`
}

// Defaults returns the compiled defaults: common departments, the
// categories of DOMAIN.md with conservative deadlines.
func Defaults() Config {
	d := func(s string) conf.Duration {
		v, _ := time.ParseDuration(s)
		return conf.Duration(v)
	}
	ladder := []Step{{d("0s"), TimerUrge}, {d("2h"), TimerUrge}, {d("4h"), TimerSupervise}, {d("24h"), TimerEscalate}}
	standard := Deadlines{Assess: d("2h"), Accept: d("2h"), Resolve: d("72h"), FollowUp: d("72h")}
	urgent := Deadlines{Assess: d("30m"), Accept: d("30m"), Resolve: d("24h"), FollowUp: d("72h")}
	pb := func(cat, name, lead string, co []string, dl Deadlines, req ...string) Playbook {
		return Playbook{Category: cat, Name: name, Lead: lead, Co: co, Required: req, Deadlines: dl, RemindBefore: d("30m"), Ladder: ladder}
	}
	alertOnly := []string{"when", "where", "what", "object"}
	return Config{
		Departments: []Department{
			{"township", "乡镇（街道）综治中心"}, {"police", "派出所"}, {"justice", "司法所"},
			{"court", "人民法庭"}, {"labour", "人社所"}, {"housing", "住建部门"},
			{"land", "自然资源所"}, {"health", "卫生院"}, {"fire", "消防救援站"},
			{"emergency", "应急管理办"}, {"water", "水利站"}, {"market", "市场监管所"},
			{"it", "雪亮工程运维"},
		},
		Playbooks: []Playbook{
			pb("neighbour_dispute", "邻里纠纷", "justice", []string{"township"}, standard),
			pb("family_dispute", "婚姻家庭纠纷", "justice", []string{"township"}, standard),
			pb("labour_dispute", "劳资纠纷", "labour", []string{"justice"}, standard),
			pb("property_dispute", "物业纠纷", "housing", []string{"township"}, standard),
			pb("land_dispute", "土地与征迁纠纷", "land", []string{"township", "justice"}, standard),
			pb("traffic_accident", "交通事故纠纷", "police", []string{"justice"}, urgent),
			pb("public_order", "治安（斗殴、聚集、闯入）", "police", []string{"township"}, urgent, alertOnly...),
			pb("work_safety", "安全生产", "emergency", []string{"township"}, urgent, alertOnly...),
			pb("public_safety", "公共安全（火情、烟雾、水情、燃气）", "fire", []string{"emergency", "township"}, urgent, alertOnly...),
			pb("key_place", "重点场所（学校、市场、车站）", "police", []string{"township"}, urgent, alertOnly...),
			pb("equipment_fault", "设备故障（摄像机离线、画面异常）", "it", nil, standard, alertOnly...),
		},
		Colours:       ColourThresholds{Red: 80, Orange: 50},
		Merge:         MergeConfig{Window: d("2h"), Distance: 300},
		VerifySameDay: VerifySameDay{Timezone: "Asia/Shanghai", Min: d("2h")},
		Readings: ReadingsConfig{Before: d("10m"), After: d("5m"), MaxDevices: 20, MaxPoints: 120,
			Retry: d("1m"), Attempts: 5, Timeout: d("30s")},
		TimerPoll:   d("1s"),
		PageSize:    50,
		MaxPageSize: 500,
	}
}

var idRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	depts := map[string]bool{}
	for i, d := range c.Departments {
		p := "departments[" + strconv.Itoa(i) + "]"
		switch {
		case !idRE.MatchString(d.ID):
			v.Errorf(p+".id", "must be lowercase letters, digits, - and _, starting with a letter")
		case depts[d.ID]:
			v.Errorf(p+".id", "%q is listed twice", d.ID)
		}
		if d.Name == "" {
			v.Errorf(p+".name", "must not be empty")
		}
		depts[d.ID] = true
	}
	cats := map[string]bool{}
	for i, pb := range c.Playbooks {
		p := "playbooks[" + strconv.Itoa(i) + "]"
		switch {
		case !idRE.MatchString(pb.Category):
			v.Errorf(p+".category", "must be lowercase letters, digits, - and _, starting with a letter")
		case cats[pb.Category]:
			v.Errorf(p+".category", "%q has two playbooks", pb.Category)
		}
		cats[pb.Category] = true
		if pb.Name == "" {
			v.Errorf(p+".name", "must not be empty")
		}
		if !depts[pb.Lead] {
			v.Errorf(p+".lead", "unknown department %q (see alerts.cases.departments)", pb.Lead)
		}
		for j, co := range pb.Co {
			if !depts[co] {
				v.Errorf(p+".co["+strconv.Itoa(j)+"]", "unknown department %q", co)
			}
		}
		for j, r := range pb.Required {
			if !slices.Contains(ElementNames, r) {
				v.Errorf(p+".required["+strconv.Itoa(j)+"]", "%q is not one of the seven elements (when, where, who, what, circumstances, cause, object)", r)
			}
		}
		for _, s := range []struct {
			key string
			d   conf.Duration
		}{{"assess", pb.Deadlines.Assess}, {"accept", pb.Deadlines.Accept}, {"resolve", pb.Deadlines.Resolve}, {"follow_up", pb.Deadlines.FollowUp}} {
			if s.d.D() <= 0 {
				v.Errorf(p+".deadlines."+s.key, "must be positive")
			}
		}
		if pb.RemindBefore.D() < 0 {
			v.Errorf(p+".remind_before", "must not be negative")
		}
		for j, st := range pb.Ladder {
			sp := p + ".ladder[" + strconv.Itoa(j) + "]"
			if st.After.D() < 0 {
				v.Errorf(sp+".after", "must not be negative")
			}
			if j > 0 && st.After.D() < pb.Ladder[j-1].After.D() {
				v.Errorf(sp+".after", "steps must be in order of time")
			}
			switch st.Action {
			case TimerUrge, TimerSupervise, TimerEscalate:
			default:
				v.Errorf(sp+".action", "must be urge, supervise or escalate, not %q", st.Action)
			}
		}
	}
	if c.Colours.Orange < 1 || c.Colours.Red > 100 || c.Colours.Orange >= c.Colours.Red {
		v.Errorf("colours", "need 0 < orange < red <= 100 (got orange %d, red %d)", c.Colours.Orange, c.Colours.Red)
	}
	if c.Merge.Window.D() < 0 {
		v.Errorf("merge.window", "must not be negative")
	}
	if c.Merge.Distance < 0 {
		v.Errorf("merge.distance", "must not be negative")
	}
	if loc, err := time.LoadLocation(c.VerifySameDay.Timezone); err != nil || c.VerifySameDay.Timezone == "" || loc == time.Local {
		v.Errorf("verify_same_day.timezone", "%q is not a time zone (such as Asia/Shanghai)", c.VerifySameDay.Timezone)
	}
	if m := c.VerifySameDay.Min.D(); m < 0 || m > 24*time.Hour {
		v.Errorf("verify_same_day.min", "must be between 0s and 24h")
	}
	r := c.Readings
	if r.Before.D() < 0 || r.Before.D() > 24*time.Hour {
		v.Errorf("readings.before", "must be between 0s and 24h")
	}
	if r.After.D() < 0 || r.After.D() > 24*time.Hour {
		v.Errorf("readings.after", "must be between 0s and 24h")
	}
	if r.MaxDevices < 1 || r.MaxDevices > 100 {
		v.Errorf("readings.max_devices", "must be 1 to 100")
	}
	if r.MaxPoints < 2 || r.MaxPoints > 1000 {
		v.Errorf("readings.max_points", "must be 2 to 1000")
	}
	if r.Retry.D() < time.Second {
		v.Errorf("readings.retry", "must be at least 1s")
	}
	if r.Attempts < 1 || r.Attempts > 20 {
		v.Errorf("readings.attempts", "must be 1 to 20")
	}
	if r.Timeout.D() < time.Second {
		v.Errorf("readings.timeout", "must be at least 1s")
	}
	if c.TimerPoll.D() < 10*time.Millisecond {
		v.Errorf("timer_poll", "must be at least 10ms")
	}
	if c.PageSize < 1 || c.MaxPageSize < c.PageSize {
		v.Errorf("page_size", "need 1 <= page_size <= max_page_size")
	}
}

// playbook returns the playbook of category.
func (c *Config) playbook(category string) (*Playbook, bool) {
	for i := range c.Playbooks {
		if c.Playbooks[i].Category == category {
			return &c.Playbooks[i], true
		}
	}
	return nil, false
}

// department reports whether id is a known department.
func (c *Config) department(id string) bool {
	return slices.ContainsFunc(c.Departments, func(d Department) bool { return d.ID == id })
}

// required returns the elements the playbook needs before dispatch.
func (p *Playbook) required() []string {
	if len(p.Required) == 0 {
		return ElementNames
	}
	return p.Required
}

package detect

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"sharpeye/configs/conf"
)

func TestDefaultsAreValid(t *testing.T) {
	cfg := Defaults()
	if err := conf.Load(&cfg, nil, "", nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Defaults()) {
		t.Fatal("validation changed the defaults")
	}
}

// Every key of a per-camera section can be overridden, and nothing else:
// the override structs mirror the sections field by field.
func TestOverridesMirrorSections(t *testing.T) {
	for _, pair := range [][2]any{{HealthConfig{}, HealthOverride{}}, {MotionConfig{}, MotionOverride{}}, {QualityConfig{}, QualityOverride{}}} {
		sec, ovr := reflect.TypeOf(pair[0]), reflect.TypeOf(pair[1])
		if sec.NumField() != ovr.NumField() {
			t.Errorf("%s has %d fields, %s %d", sec, sec.NumField(), ovr, ovr.NumField())
		}
		for i := range sec.NumField() {
			f := sec.Field(i)
			o, ok := ovr.FieldByName(f.Name)
			if !ok || o.Type != reflect.PointerTo(f.Type) || o.Tag.Get("yaml") != f.Tag.Get("yaml") {
				t.Errorf("%s.%s has no matching *%s field with key %q in %s", sec, f.Name, f.Type, f.Tag.Get("yaml"), ovr)
			}
		}
	}
}

func TestPerCameraOverrides(t *testing.T) {
	cfg := Defaults()
	err := conf.Load(&cfg, []byte(`
motion:
  sensitivity: 0.4
cameras:
  cam-7:
    motion:
      sensitivity: 0.9
      schedules: ["mon-fri 22:00-06:00"]
    quality:
      checks: [frozen, covered]
      dark_luma: 30
    health:
      enabled: false
`), "sharpeye.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.For("cam-7")
	if s.Motion.Sensitivity != 0.9 || !slices.Equal(s.Motion.Schedules, []string{"mon-fri 22:00-06:00"}) {
		t.Errorf("cam-7 motion %+v", s.Motion)
	}
	if !slices.Equal(s.Quality.Checks, []string{"frozen", "covered"}) || s.Quality.DarkLuma != 30 || s.Quality.DarkClearLuma != 50 {
		t.Errorf("cam-7 quality %+v", s.Quality)
	}
	if s.Health.Enabled || s.Health.OfflineAfter.D() != 15*time.Second {
		t.Errorf("cam-7 health %+v", s.Health)
	}
	if o := cfg.For("cam-8"); o.Motion.Sensitivity != 0.4 || !o.Health.Enabled {
		t.Errorf("cam-8 takes the sections: %+v", o.Motion)
	}
	// For does not share the override's slices with the sections.
	if len(cfg.Motion.Schedules) != 0 {
		t.Error("the override leaked into the section")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"time_zone: Mars/Olympus", "time_zone (line 1): unknown time zone"},
		{"decoders: -1", "decoders (line 1): must be between 0"},
		{"health: {offline_after: 500ms}", "health.offline_after (line 1): must be at least 1s"},
		{"health: {recover: 0.2}", "health.recover (line 1): must be at least frame_rate_drop"},
		{"motion: {sensitivity: 2}", "motion.sensitivity (line 1): must be between 0 and 1"},
		{"motion: {schedules: [\"mon-fry 22:00-06:00\"]}", `motion.schedules[0] (line 1): "mon-fry 22:00-06:00": unknown day "fry"`},
		{"quality: {checks: [frozen, wobbly]}", `quality.checks[1] (line 1): unknown check "wobbly"`},
		{"quality: {dark_luma: 60}", "quality.dark_clear_luma: must be at least dark_luma"},
		{"quality: {bright_clear_luma: 230}", "quality.bright_clear_luma (line 1): must be at most bright_luma"},
		{"snapshot: {quality: 1}", "snapshot.quality (line 1): must be between 2 and 31"},
		{"cameras: {cam-1: {quality: {dark_clear_luma: 20}}}", "cameras.cam-1.quality.dark_clear_luma (line 1): must be at least dark_luma"},
		{"cameras: {cam-1: {motion: {schedules: [\"25:00-26:00\"]}}}", `cameras.cam-1.motion.schedules[0] (line 1): "25:00-26:00": "25:00" is not a time of day`},
		{"cameras: {\"0042\": {health: {loss_percent: 1}}}", `cameras["0042"].health.loss_clear_percent: must be at most loss_percent`},
		{"cameras: {cam-1: {motion: {sensitivity: \"high\"}}}", "cameras.cam-1.motion.sensitivity (line 1)"},
		{"cameras: {cam-1: {motion: {sensitivty: 0.5}}}", "sensitivty"},
	} {
		cfg := Defaults()
		err := conf.Load(&cfg, []byte(tc.yaml), "sharpeye.yml", nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %q", tc.yaml, err, tc.want)
		}
	}
}

func TestSchedules(t *testing.T) {
	loc, _ := loadLocation("Asia/Shanghai")
	at := func(day, hh, mm int) time.Time { // day: 23 is a Monday (Nov 2026)
		return time.Date(2026, 11, day, hh, mm, 0, 0, loc)
	}
	for _, tc := range []struct {
		spec string
		yes  []time.Time
		no   []time.Time
	}{
		{"mon-fri 22:00-06:00",
			[]time.Time{at(23, 22, 0), at(24, 5, 59), at(28, 3, 0) /* Saturday morning ends Friday night */},
			[]time.Time{at(23, 21, 59), at(23, 6, 0) /* Monday morning: Sunday night is off */, at(28, 22, 0), at(24, 6, 0)}},
		{"daily 08:00-18:00", []time.Time{at(29, 8, 0), at(25, 17, 59)}, []time.Time{at(25, 18, 0), at(25, 7, 59)}},
		{"sat,sun", []time.Time{at(28, 0, 0), at(29, 23, 59)}, []time.Time{at(27, 23, 59), at(30, 0, 0)}},
		{"fri-mon 12:00-13:00", []time.Time{at(27, 12, 30), at(30, 12, 0)}, []time.Time{at(24, 12, 30)}},
		{"21:00-24:00", []time.Time{at(24, 23, 59)}, []time.Time{at(25, 0, 0)}},
		{"MON,Wed-Thu 00:00-24:00", []time.Time{at(23, 0, 0), at(26, 23, 59)}, []time.Time{at(24, 12, 0)}},
	} {
		s, err := newSchedules([]string{tc.spec}, loc)
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		for _, y := range tc.yes {
			if !s.active(y.UTC()) {
				t.Errorf("%s: %s not in", tc.spec, y.Format("Mon 15:04"))
			}
		}
		for _, n := range tc.no {
			if s.active(n) {
				t.Errorf("%s: %s in", tc.spec, n.Format("Mon 15:04"))
			}
		}
	}
	empty, _ := newSchedules(nil, loc)
	if !empty.active(time.Now()) {
		t.Error("no schedule is not always")
	}
	for _, bad := range []string{"", "mon-fri", "mon 22:00", "mon 22:00-22:00", "mon 22:00-24:01", "moon 10:00-11:00", "mon 9:0-10:00", "mon 24:00-01:00", "mon 10:00-11:00 extra"} {
		if _, err := parseSchedule(bad); err == nil && bad != "mon-fri" {
			t.Errorf("parseSchedule(%q) accepted", bad)
		}
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"mon-fri 22:00-06:00", "daily 08:00-18:00", "sat,sun", "21:00-24:00", "fri-mon 1:00-2:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := parseSchedule(s)
		if err != nil {
			return
		}
		if sc.start < 0 || sc.start >= 24*60 || sc.end <= 0 || sc.end > 24*60 || sc.start == sc.end {
			t.Fatalf("parseSchedule(%q) = %+v", s, sc)
		}
		sc.contains(time.Now())
	})
}

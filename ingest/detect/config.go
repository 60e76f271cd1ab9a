package detect

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"sharpeye/configs/conf"
)

// Config is the ingest.detect section of the configuration. The health,
// motion and quality sections apply to every camera; Cameras overrides any
// of their keys for one camera.
type Config struct {
	// FFmpeg is the ffmpeg program (a path, or a name looked up in PATH),
	// used to decode keyframes and to make snapshots. When it cannot be
	// found the quality checks and snapshots are off, with one log line
	// and sharpeye_detect_ffmpeg_available 0; the rest keeps working.
	FFmpeg string `yaml:"ffmpeg"`
	// Decoders is the number of ffmpeg keyframe decoders shared by all
	// cameras of a codec (0: one per two CPU cores, at most 4). One
	// decodes about 100 1080p keyframes a second.
	Decoders int `yaml:"decoders"`
	// TimeZone is the IANA time zone motion schedules are read in.
	TimeZone string `yaml:"time_zone"`

	Health   HealthConfig   `yaml:"health"`
	Motion   MotionConfig   `yaml:"motion"`
	Quality  QualityConfig  `yaml:"quality"`
	Snapshot SnapshotConfig `yaml:"snapshot"`

	// Cameras overrides the health, motion and quality keys for single
	// cameras, by camera id. Keys left out keep the values above.
	Cameras map[string]Override `yaml:"cameras"`
}

// HealthConfig is the ingest.detect.health section: camera.offline,
// camera.online, camera.degraded and camera.degraded.cleared.
type HealthConfig struct {
	// Enabled turns the health events on.
	Enabled bool `yaml:"enabled"`
	// OfflineAfter: no packet for this long and the camera is offline.
	OfflineAfter conf.Duration `yaml:"offline_after"`
	// OnlineAfter: an offline camera is back once packets have flowed
	// this long without a gap of 2 s.
	OnlineAfter conf.Duration `yaml:"online_after"`
	// MinHold is the least time between two changes of a state (offline,
	// degraded): a flapping camera yields at most one event per state
	// every MinHold.
	MinHold conf.Duration `yaml:"min_hold"`
	// Baseline is the time constant of the camera's own frame-rate and
	// bitrate baselines, learnt while it is healthy.
	Baseline conf.Duration `yaml:"baseline"`
	// DegradedAfter: a degraded condition must hold this long to raise
	// camera.degraded, and its absence as long to clear it.
	DegradedAfter conf.Duration `yaml:"degraded_after"`
	// FrameRateDrop: degraded when the frame rate falls below this
	// fraction of the baseline.
	FrameRateDrop float64 `yaml:"frame_rate_drop"`
	// BitrateDrop: degraded when the bitrate falls below this fraction of
	// the baseline; 0 turns the bitrate check off (a still scene lowers
	// the bitrate of a variable-bitrate camera a lot).
	BitrateDrop float64 `yaml:"bitrate_drop"`
	// Recover: the frame rate and bitrate must be back above this fraction
	// of their baselines to clear a degradation (hysteresis).
	Recover float64 `yaml:"recover"`
	// LossPercent: degraded when more than this percentage of RTP packets
	// were lost over LossWindow; 0 turns the loss check off.
	LossPercent float64 `yaml:"loss_percent"`
	// LossClearPercent: loss must fall to this to clear.
	LossClearPercent float64 `yaml:"loss_clear_percent"`
	// LossWindow is the window packet loss is measured over.
	LossWindow conf.Duration `yaml:"loss_window"`
}

// MotionConfig is the ingest.detect.motion section: motion and motion.end,
// from the sizes of the compressed frames (no decoding).
type MotionConfig struct {
	// Enabled turns motion detection on.
	Enabled bool `yaml:"enabled"`
	// Sensitivity, 0 to 1: how much bigger than usual frames must get to
	// count as motion. 0.5 is about 30 % bigger, 1 about 7 %, 0 about
	// 2.2 times.
	Sensitivity float64 `yaml:"sensitivity"`
	// MinDuration: motion must last this long to be reported.
	MinDuration conf.Duration `yaml:"min_duration"`
	// EndAfter: motion ends after this long below the (lower) end level.
	EndAfter conf.Duration `yaml:"end_after"`
	// Cooldown is the least time between a motion.end and the next motion.
	Cooldown conf.Duration `yaml:"cooldown"`
	// MaxDuration: motion lasting this long is taken as the camera's new
	// normal (rain, a busy road): it ends and the baseline restarts.
	MaxDuration conf.Duration `yaml:"max_duration"`
	// Schedules restricts detection to these weekly periods, each
	// "DAYS HH:MM-HH:MM" in TimeZone: DAYS is a day (mon), a range
	// (mon-fri), a list (sat,sun) or daily; a period ending before it
	// starts runs past midnight into the next day ("mon-fri 22:00-06:00":
	// from Monday 22:00 to Saturday 06:00, nights only). Empty: always.
	Schedules []string `yaml:"schedules"`
}

// QualityConfig is the ingest.detect.quality section: video quality
// diagnosis (视频质量诊断) on decoded keyframes. Luma levels are 8-bit,
// limited range: black is 16, white 235.
type QualityConfig struct {
	// Enabled turns the quality checks on.
	Enabled bool `yaml:"enabled"`
	// Checks lists the checks to run: frozen, dark, bright, covered, blur,
	// colour_cast.
	Checks []string `yaml:"checks"`
	// Interval: at most one keyframe per camera is decoded per interval.
	Interval conf.Duration `yaml:"interval"`
	// RaiseAfter: a condition must hold this long (on the keyframes'
	// clock) before its event; ClearAfter: it must be gone this long
	// before the .cleared event.
	RaiseAfter conf.Duration `yaml:"raise_after"`
	ClearAfter conf.Duration `yaml:"clear_after"`
	// MinHold is the least time between two changes of one condition.
	MinHold conf.Duration `yaml:"min_hold"`

	// FrozenAfter: video.frozen when consecutive analysed keyframes
	// differ by less than FrozenDiff (mean absolute luma difference) for
	// this long while packets flow; cleared above FrozenClearDiff.
	FrozenAfter     conf.Duration `yaml:"frozen_after"`
	FrozenDiff      float64       `yaml:"frozen_diff"`
	FrozenClearDiff float64       `yaml:"frozen_clear_diff"`
	// DarkLuma: video.dark below this mean luma; cleared above
	// DarkClearLuma.
	DarkLuma      float64 `yaml:"dark_luma"`
	DarkClearLuma float64 `yaml:"dark_clear_luma"`
	// BrightLuma: video.bright above this mean luma; cleared below
	// BrightClearLuma.
	BrightLuma      float64 `yaml:"bright_luma"`
	BrightClearLuma float64 `yaml:"bright_clear_luma"`
	// CoveredStdDev: video.covered (lens covered or turned away) when the
	// luma's standard deviation is below this and the picture is neither
	// dark nor bright; cleared above CoveredClearStdDev.
	CoveredStdDev      float64 `yaml:"covered_stddev"`
	CoveredClearStdDev float64 `yaml:"covered_clear_stddev"`
	// BlurSharpness: video.blur when the sharpness (variance of the
	// Laplacian over the variance of the luma, on the 320x180 picture)
	// is below this; cleared above BlurClearSharpness.
	BlurSharpness      float64 `yaml:"blur_sharpness"`
	BlurClearSharpness float64 `yaml:"blur_clear_sharpness"`
	// BlurRatio: video.blur also when the sharpness falls below this
	// fraction of the camera's own baseline (0: off); cleared above
	// BlurClearRatio of it.
	BlurRatio      float64 `yaml:"blur_ratio"`
	BlurClearRatio float64 `yaml:"blur_clear_ratio"`
	// CastChroma: video.colour_cast when the mean chroma is further than
	// this from neutral (distance in the U-V plane); cleared below
	// CastClearChroma.
	CastChroma      float64 `yaml:"cast_chroma"`
	CastClearChroma float64 `yaml:"cast_clear_chroma"`
}

// The quality checks.
const (
	CheckFrozen     = "frozen"
	CheckDark       = "dark"
	CheckBright     = "bright"
	CheckCovered    = "covered"
	CheckBlur       = "blur"
	CheckColourCast = "colour_cast"
)

var allChecks = []string{CheckFrozen, CheckDark, CheckBright, CheckCovered, CheckBlur, CheckColourCast}

// SnapshotConfig is the ingest.detect.snapshot section: the still images
// attached to events and served on demand.
type SnapshotConfig struct {
	// Enabled attaches a snapshot to every event (when ffmpeg and a blob
	// store are there).
	Enabled bool `yaml:"enabled"`
	// MinInterval: a camera encodes at most one snapshot per interval;
	// events and requests within it share the last one.
	MinInterval conf.Duration `yaml:"min_interval"`
	// MaxConcurrent bounds the snapshot encoders running at once on the
	// node (a network cut takes many cameras offline together).
	MaxConcurrent int `yaml:"max_concurrent"`
	// Timeout bounds one snapshot.
	Timeout conf.Duration `yaml:"timeout"`
	// Quality is the JPEG quality, 2 (best) to 31.
	Quality int `yaml:"quality"`
	// MotionWait: a motion event waits up to this long for a keyframe
	// taken after the motion began, so that its snapshot shows it.
	MotionWait conf.Duration `yaml:"motion_wait"`
}

// Override holds one camera's changes to the health, motion and quality
// sections: every key of those sections may be given, and those left out
// keep the section's value.
type Override struct {
	Health  HealthOverride  `yaml:"health"`
	Motion  MotionOverride  `yaml:"motion"`
	Quality QualityOverride `yaml:"quality"`
}

// HealthOverride overrides HealthConfig keys for one camera; see there.
type HealthOverride struct {
	Enabled          *bool          `yaml:"enabled"`
	OfflineAfter     *conf.Duration `yaml:"offline_after"`
	OnlineAfter      *conf.Duration `yaml:"online_after"`
	MinHold          *conf.Duration `yaml:"min_hold"`
	Baseline         *conf.Duration `yaml:"baseline"`
	DegradedAfter    *conf.Duration `yaml:"degraded_after"`
	FrameRateDrop    *float64       `yaml:"frame_rate_drop"`
	BitrateDrop      *float64       `yaml:"bitrate_drop"`
	Recover          *float64       `yaml:"recover"`
	LossPercent      *float64       `yaml:"loss_percent"`
	LossClearPercent *float64       `yaml:"loss_clear_percent"`
	LossWindow       *conf.Duration `yaml:"loss_window"`
}

// MotionOverride overrides MotionConfig keys for one camera; see there.
type MotionOverride struct {
	Enabled     *bool          `yaml:"enabled"`
	Sensitivity *float64       `yaml:"sensitivity"`
	MinDuration *conf.Duration `yaml:"min_duration"`
	EndAfter    *conf.Duration `yaml:"end_after"`
	Cooldown    *conf.Duration `yaml:"cooldown"`
	MaxDuration *conf.Duration `yaml:"max_duration"`
	Schedules   *[]string      `yaml:"schedules"`
}

// QualityOverride overrides QualityConfig keys for one camera; see there.
type QualityOverride struct {
	Enabled            *bool          `yaml:"enabled"`
	Checks             *[]string      `yaml:"checks"`
	Interval           *conf.Duration `yaml:"interval"`
	RaiseAfter         *conf.Duration `yaml:"raise_after"`
	ClearAfter         *conf.Duration `yaml:"clear_after"`
	MinHold            *conf.Duration `yaml:"min_hold"`
	FrozenAfter        *conf.Duration `yaml:"frozen_after"`
	FrozenDiff         *float64       `yaml:"frozen_diff"`
	FrozenClearDiff    *float64       `yaml:"frozen_clear_diff"`
	DarkLuma           *float64       `yaml:"dark_luma"`
	DarkClearLuma      *float64       `yaml:"dark_clear_luma"`
	BrightLuma         *float64       `yaml:"bright_luma"`
	BrightClearLuma    *float64       `yaml:"bright_clear_luma"`
	CoveredStdDev      *float64       `yaml:"covered_stddev"`
	CoveredClearStdDev *float64       `yaml:"covered_clear_stddev"`
	BlurSharpness      *float64       `yaml:"blur_sharpness"`
	BlurClearSharpness *float64       `yaml:"blur_clear_sharpness"`
	BlurRatio          *float64       `yaml:"blur_ratio"`
	BlurClearRatio     *float64       `yaml:"blur_clear_ratio"`
	CastChroma         *float64       `yaml:"cast_chroma"`
	CastClearChroma    *float64       `yaml:"cast_clear_chroma"`
}

// Defaults returns the compiled defaults.
func Defaults() Config {
	s := time.Second
	return Config{
		FFmpeg:   "ffmpeg",
		TimeZone: "Asia/Shanghai",
		Health: HealthConfig{
			Enabled:          true,
			OfflineAfter:     conf.Duration(15 * s),
			OnlineAfter:      conf.Duration(5 * s),
			MinHold:          conf.Duration(time.Minute),
			Baseline:         conf.Duration(10 * time.Minute),
			DegradedAfter:    conf.Duration(30 * s),
			FrameRateDrop:    0.3,
			BitrateDrop:      0.3,
			Recover:          0.6,
			LossPercent:      5,
			LossClearPercent: 2,
			LossWindow:       conf.Duration(time.Minute),
		},
		Motion: MotionConfig{
			Enabled:     true,
			Sensitivity: 0.5,
			MinDuration: conf.Duration(s),
			EndAfter:    conf.Duration(3 * s),
			Cooldown:    conf.Duration(10 * s),
			MaxDuration: conf.Duration(10 * time.Minute),
			Schedules:   []string{},
		},
		Quality: QualityConfig{
			Enabled:            true,
			Checks:             slices.Clone(allChecks),
			Interval:           conf.Duration(2 * s),
			RaiseAfter:         conf.Duration(10 * s),
			ClearAfter:         conf.Duration(10 * s),
			MinHold:            conf.Duration(time.Minute),
			FrozenAfter:        conf.Duration(30 * s),
			FrozenDiff:         0.5,
			FrozenClearDiff:    1,
			DarkLuma:           40,
			DarkClearLuma:      50,
			BrightLuma:         225,
			BrightClearLuma:    215,
			CoveredStdDev:      6,
			CoveredClearStdDev: 10,
			BlurSharpness:      0.01,
			BlurClearSharpness: 0.02,
			BlurRatio:          0.3,
			BlurClearRatio:     0.5,
			CastChroma:         20,
			CastClearChroma:    14,
		},
		Snapshot: SnapshotConfig{
			Enabled:       true,
			MinInterval:   conf.Duration(10 * s),
			MaxConcurrent: 2,
			Timeout:       conf.Duration(10 * s),
			Quality:       5,
			MotionWait:    conf.Duration(3 * s),
		},
		Cameras: map[string]Override{},
	}
}

// Settings are one camera's health, motion and quality sections, the
// overrides applied.
type Settings struct {
	Health  HealthConfig
	Motion  MotionConfig
	Quality QualityConfig
}

// For returns the settings of camera id: the sections with the camera's
// overrides applied.
func (c *Config) For(id string) Settings {
	s := Settings{Health: c.Health, Motion: c.Motion, Quality: c.Quality}
	o, ok := c.Cameras[id]
	if !ok {
		return s
	}
	apply(&s.Health, &o.Health)
	apply(&s.Motion, &o.Motion)
	apply(&s.Quality, &o.Quality)
	return s
}

// apply sets each field of the section dst whose namesake in the override
// src is not nil.
func apply(dst, src any) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for i := range s.NumField() {
		f := s.Field(i)
		if f.IsNil() {
			continue
		}
		d.FieldByName(s.Type().Field(i).Name).Set(f.Elem())
	}
}

// problem is one invalid key, relative to its section.
type problem struct{ key, msg string }

type problems []problem

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, problem{key, fmt.Sprintf(format, args...)})
}

func (p *problems) positive(key string, d conf.Duration) {
	if d.D() <= 0 {
		p.add(key, "must be positive")
	}
}

func (p *problems) fraction(key string, f float64) {
	if !(f >= 0 && f <= 1) {
		p.add(key, "must be between 0 and 1")
	}
}

func (p *problems) between(key string, f, lo, hi float64) {
	if !(f >= lo && f <= hi) {
		p.add(key, "must be between %g and %g", lo, hi)
	}
}

func (c *HealthConfig) problems() problems {
	var p problems
	if c.OfflineAfter.D() < time.Second {
		p.add("offline_after", "must be at least 1s")
	}
	p.positive("online_after", c.OnlineAfter)
	if c.MinHold.D() < 0 {
		p.add("min_hold", "must not be negative")
	}
	if c.Baseline.D() < time.Minute {
		p.add("baseline", "must be at least 1m")
	}
	p.positive("degraded_after", c.DegradedAfter)
	p.fraction("frame_rate_drop", c.FrameRateDrop)
	p.fraction("bitrate_drop", c.BitrateDrop)
	p.fraction("recover", c.Recover)
	if c.Recover < c.FrameRateDrop || c.Recover < c.BitrateDrop {
		p.add("recover", "must be at least frame_rate_drop and bitrate_drop")
	}
	p.between("loss_percent", c.LossPercent, 0, 100)
	p.between("loss_clear_percent", c.LossClearPercent, 0, 100)
	if c.LossClearPercent > c.LossPercent {
		p.add("loss_clear_percent", "must be at most loss_percent")
	}
	if c.LossWindow.D() < 10*time.Second {
		p.add("loss_window", "must be at least 10s")
	}
	return p
}

func (c *MotionConfig) problems() problems {
	var p problems
	p.fraction("sensitivity", c.Sensitivity)
	p.positive("min_duration", c.MinDuration)
	p.positive("end_after", c.EndAfter)
	if c.Cooldown.D() < 0 {
		p.add("cooldown", "must not be negative")
	}
	if c.MaxDuration.D() < time.Minute {
		p.add("max_duration", "must be at least 1m")
	}
	for i, s := range c.Schedules {
		if _, err := parseSchedule(s); err != nil {
			p.add(fmt.Sprintf("schedules[%d]", i), "%v", err)
		}
	}
	return p
}

func (c *QualityConfig) problems() problems {
	var p problems
	for i, name := range c.Checks {
		if !slices.Contains(allChecks, name) {
			p.add(fmt.Sprintf("checks[%d]", i), "unknown check %q; must be one of %s", name, strings.Join(allChecks, ", "))
		}
	}
	if c.Interval.D() < 0 {
		p.add("interval", "must not be negative")
	}
	for _, d := range []struct {
		key string
		v   conf.Duration
	}{{"raise_after", c.RaiseAfter}, {"clear_after", c.ClearAfter}, {"min_hold", c.MinHold}, {"frozen_after", c.FrozenAfter}} {
		if d.v.D() < 0 {
			p.add(d.key, "must not be negative")
		}
	}
	pairs := []struct {
		enter, clear string
		e, c         float64
		lo, hi       float64
		up           bool // the condition is "above": clear must be below enter
	}{
		{"frozen_diff", "frozen_clear_diff", c.FrozenDiff, c.FrozenClearDiff, 0, 255, false},
		{"dark_luma", "dark_clear_luma", c.DarkLuma, c.DarkClearLuma, 0, 255, false},
		{"bright_luma", "bright_clear_luma", c.BrightLuma, c.BrightClearLuma, 0, 255, true},
		{"covered_stddev", "covered_clear_stddev", c.CoveredStdDev, c.CoveredClearStdDev, 0, 128, false},
		{"blur_sharpness", "blur_clear_sharpness", c.BlurSharpness, c.BlurClearSharpness, 0, 10, false},
		{"blur_ratio", "blur_clear_ratio", c.BlurRatio, c.BlurClearRatio, 0, 1, false},
		{"cast_chroma", "cast_clear_chroma", c.CastChroma, c.CastClearChroma, 0, 182, true},
	}
	for _, q := range pairs {
		p.between(q.enter, q.e, q.lo, q.hi)
		p.between(q.clear, q.c, q.lo, q.hi)
		switch {
		case q.up && q.c > q.e:
			p.add(q.clear, "must be at most %s", q.enter)
		case !q.up && q.c < q.e:
			p.add(q.clear, "must be at least %s", q.enter)
		}
	}
	if c.DarkClearLuma >= c.BrightLuma {
		p.add("dark_clear_luma", "must be below bright_luma")
	}
	return p
}

func report(v *conf.V, prefix string, p problems) {
	for _, e := range p {
		v.Errorf(prefix+e.key, "%s", e.msg)
	}
}

// Validate implements conf.Validator.
func (c *HealthConfig) Validate(v *conf.V) { report(v, "", c.problems()) }

// Validate implements conf.Validator.
func (c *MotionConfig) Validate(v *conf.V) { report(v, "", c.problems()) }

// Validate implements conf.Validator.
func (c *QualityConfig) Validate(v *conf.V) { report(v, "", c.problems()) }

// Validate implements conf.Validator.
func (c *SnapshotConfig) Validate(v *conf.V) {
	if c.MinInterval.D() < 0 {
		v.Errorf("min_interval", "must not be negative")
	}
	if c.MaxConcurrent < 1 || c.MaxConcurrent > 64 {
		v.Errorf("max_concurrent", "must be between 1 and 64")
	}
	if c.Timeout.D() < 100*time.Millisecond {
		v.Errorf("timeout", "must be at least 100ms")
	}
	if c.Quality < 2 || c.Quality > 31 {
		v.Errorf("quality", "must be between 2 and 31")
	}
	if c.MotionWait.D() < 0 {
		v.Errorf("motion_wait", "must not be negative")
	}
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// Validate implements conf.Validator: it checks the top-level keys and
// every camera's settings with its overrides applied, so that an override
// breaking a relation with a key it leaves out (clear above enter, say) is
// caught.
func (c *Config) Validate(v *conf.V) {
	if c.FFmpeg == "" {
		v.Errorf("ffmpeg", "must not be empty")
	}
	if c.Decoders < 0 || c.Decoders > 64 {
		v.Errorf("decoders", "must be between 0 (automatic) and 64")
	}
	if _, err := loadLocation(c.TimeZone); err != nil {
		v.Errorf("time_zone", "%v", err)
	}
	for _, id := range slices.Sorted(maps.Keys(c.Cameras)) {
		key := "cameras." + id
		if !plainKey.MatchString(id) {
			key = fmt.Sprintf("cameras[%q]", id)
		}
		s := c.For(id)
		// Problems of the shared sections are reported at their own keys;
		// report here only what the override makes wrong.
		base := Settings{Health: c.Health, Motion: c.Motion, Quality: c.Quality}
		for _, sec := range []struct {
			name      string
			got, been problems
		}{
			{"health", s.Health.problems(), base.Health.problems()},
			{"motion", s.Motion.problems(), base.Motion.problems()},
			{"quality", s.Quality.problems(), base.Quality.problems()},
		} {
			for _, e := range sec.got {
				if !slices.Contains(sec.been, e) {
					v.Errorf(key+"."+sec.name+"."+e.key, "%s", e.msg)
				}
			}
		}
	}
}

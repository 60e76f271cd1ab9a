package detect

import (
	"slices"
	"time"

	"sharpeye/ingest/event"
	"sharpeye/ingest/stream"
)

// sharpnessTau is the time constant of a camera's sharpness baseline.
const sharpnessTau = 10 * time.Minute

// condition is one quality check's latch and event type.
type condition struct {
	typ      string
	severity event.Severity
	enabled  bool
	latch
}

// quality is one camera's video quality diagnosis, fed decoded keyframes.
// The checks depend on each other: a picture that is too dark or too
// bright says nothing about cover, focus or colour, and a uniform one
// (covered, black) nothing about freezing or focus; so each check is
// judged only when the picture can show it, and otherwise keeps its state.
type quality struct {
	cfg                                       QualityConfig
	frozen, dark, bright, covered, blur, cast condition
	sharp                                     baseline
	prev                                      []byte // the last keyframe's luma
	analysed                                  int
}

func newQuality(cfg QualityConfig) *quality {
	on := func(name string) bool { return cfg.Enabled && slices.Contains(cfg.Checks, name) }
	return &quality{
		cfg:     cfg,
		frozen:  condition{typ: TypeFrozen, severity: event.SeverityMajor, enabled: on(CheckFrozen)},
		dark:    condition{typ: TypeDark, severity: event.SeverityMinor, enabled: on(CheckDark)},
		bright:  condition{typ: TypeBright, severity: event.SeverityMinor, enabled: on(CheckBright)},
		covered: condition{typ: TypeCovered, severity: event.SeverityMajor, enabled: on(CheckCovered)},
		blur:    condition{typ: TypeBlur, severity: event.SeverityMinor, enabled: on(CheckBlur)},
		cast:    condition{typ: TypeColourCast, severity: event.SeverityMinor, enabled: on(CheckColourCast)},
	}
}

// conditions lists the checks in a fixed order, for State and metrics.
func (q *quality) conditions() []*condition {
	return []*condition{&q.frozen, &q.dark, &q.bright, &q.covered, &q.blur, &q.cast}
}

// restart forgets the previous keyframe: the stream restarted, and its
// first keyframe need not resemble the last one of the previous session.
func (q *quality) restart() { q.prev = q.prev[:0] }

// frame analyses one decoded keyframe of frameSize bytes, received at at.
func (q *quality) frame(at time.Time, key *stream.Unit, frame []byte) []finding {
	if len(frame) != frameSize {
		return nil
	}
	q.analysed++
	p := measure(frame)
	diff := -1.0
	luma := frame[:lumaSize]
	if len(q.prev) == lumaSize {
		diff = meanAbsDiff(q.prev, luma)
	}
	q.prev = append(q.prev[:0], luma...)

	c := &q.cfg
	var out []finding
	emit := func(cd *condition, judge, enter, leave bool, enterAfter time.Duration, attrs func(f finding) finding) {
		if !cd.enabled {
			return
		}
		if !judge {
			cd.idle()
			return
		}
		if !cd.update(at, enter, leave, enterAfter, c.ClearAfter.D(), c.MinHold.D()) {
			return
		}
		typ, sev := cd.typ, cd.severity
		f := newFinding(typ, sev, at)
		if !cd.on {
			f = newFinding(typ+ClearedSuffix, event.SeverityInfo, at).
				num("duration_seconds", at.Sub(cd.since).Seconds())
		}
		f.key = key
		out = append(out, attrs(f))
	}

	exposure := func(f finding) finding {
		return f.num("luma_mean", p.Mean).num("luma_stddev", p.StdDev)
	}
	emit(&q.dark, true, p.Mean < c.DarkLuma, p.Mean > c.DarkClearLuma, c.RaiseAfter.D(), func(f finding) finding {
		return exposure(f).num("dark_luma", c.DarkLuma).num("dark_clear_luma", c.DarkClearLuma)
	})
	emit(&q.bright, true, p.Mean > c.BrightLuma, p.Mean < c.BrightClearLuma, c.RaiseAfter.D(), func(f finding) finding {
		return exposure(f).num("bright_luma", c.BrightLuma).num("bright_clear_luma", c.BrightClearLuma)
	})
	exposed := p.Mean >= c.DarkLuma && p.Mean <= c.BrightLuma
	emit(&q.covered, true, exposed && p.StdDev < c.CoveredStdDev, !exposed || p.StdDev > c.CoveredClearStdDev, c.RaiseAfter.D(), func(f finding) finding {
		return exposure(f).num("covered_stddev", c.CoveredStdDev).num("covered_clear_stddev", c.CoveredClearStdDev)
	})

	// A picture with structure to judge focus and freezing by.
	structured := exposed && p.StdDev >= c.CoveredClearStdDev && !q.dark.on && !q.bright.on && !q.covered.on

	rel := c.BlurRatio > 0 && q.sharp.ready()
	blurEnter := p.Sharpness < c.BlurSharpness || rel && p.Sharpness < c.BlurRatio*q.sharp.value
	blurLeave := p.Sharpness > c.BlurClearSharpness && (!rel || p.Sharpness > c.BlurClearRatio*q.sharp.value)
	emit(&q.blur, structured, blurEnter, blurLeave, c.RaiseAfter.D(), func(f finding) finding {
		return f.num("sharpness", p.Sharpness).num("sharpness_baseline", q.sharp.value).
			num("blur_sharpness", c.BlurSharpness).num("blur_ratio", c.BlurRatio)
	})
	if structured && !q.blur.on && !blurEnter {
		q.sharp.add(at, p.Sharpness, sharpnessTau)
	}

	emit(&q.cast, exposed && !q.covered.on && !q.dark.on, p.Cast > c.CastChroma, p.Cast < c.CastClearChroma, c.RaiseAfter.D(), func(f finding) finding {
		return f.num("chroma_u", p.U).num("chroma_v", p.V).num("cast", p.Cast).
			num("cast_chroma", c.CastChroma).num("cast_clear_chroma", c.CastClearChroma)
	})

	emit(&q.frozen, structured && diff >= 0, diff < c.FrozenDiff, diff > c.FrozenClearDiff, c.FrozenAfter.D(), func(f finding) finding {
		return f.num("difference", diff).num("frozen_diff", c.FrozenDiff).
			num("frozen_after_seconds", c.FrozenAfter.D().Seconds())
	})
	return out
}

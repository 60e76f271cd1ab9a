package detect

import (
	"math"
	"time"

	"sharpeye/ingest/event"
)

// Motion detection reads the sizes of the compressed P-frames. In a still
// scene they hover around a level set by the sensor's noise and the
// encoder; movement adds changed macroblocks and motion vectors, and the
// frames grow. Encoders also make the first P-frames after a keyframe
// bigger than the rest (the IDR is coded at another quality), a pattern
// that repeats every group of pictures and must not read as motion: so
// each position after a keyframe has its own baseline, and a frame is
// compared with the frames at the same position in earlier groups.
const (
	// positions is the number of positions after a keyframe with a
	// baseline of their own; later frames share the last one.
	positions = 16
	// warmKeys: detection starts once this many keyframes were seen since
	// the stream (re)started, so that every position has a baseline.
	warmKeys = 4
	// minSamples: a position's baseline counts after this many frames.
	minSamples = 2
	// learnRate bounds how fast a baseline follows slow changes (light,
	// weather): each frame moves it by at most 1/32 of the difference.
	learnRate = 1.0 / 32
	// smoothing is the time constant of the score, which averages a few
	// frames so that one big frame is not motion.
	smoothing = 300 * time.Millisecond
	// maxRatio caps one frame's contribution (a garbage unit, a burst of
	// intra refresh).
	maxRatio = 8
)

// Reasons a motion ends, in motion.end's reason attribute.
const (
	endQuiet     = "quiet"            // the picture settled
	endSchedule  = "schedule"         // the schedule's period ended
	endMax       = "max_duration"     // it lasted max_duration: taken as the new normal
	endRestarted = "stream_restarted" // the camera's session restarted
)

// motionThreshold maps a sensitivity (0 to 1) to the score that starts
// motion: 2.2 at 0, 1.3 at 0.5, 1.075 at 1. Motion ends below halfway
// between 1 and it.
func motionThreshold(sensitivity float64) float64 {
	return 1 + 0.3*math.Pow(4, 1-2*sensitivity)
}

type posBaseline struct {
	mean float64
	n    int
}

// motion is one camera's motion detector, fed every access unit.
type motion struct {
	cfg        MotionConfig
	sched      schedules
	threshold  float64
	endLevel   float64
	pos        int // units since the last keyframe; -1 before the first
	keys       int // keyframes since the last reset
	base       [positions + 1]posBaseline
	score      float64
	last       time.Time // Received of the last unit scored
	pending    time.Time // when the score rose above the threshold; zero: it is below
	quietSince time.Time // when an active motion's score fell below the end level
	active     bool
	start      time.Time
	peak       float64
	ended      time.Time // when the last motion ended, for the cooldown
}

func newMotion(cfg MotionConfig, sched schedules) *motion {
	t := motionThreshold(cfg.Sensitivity)
	m := &motion{cfg: cfg, sched: sched, threshold: t, endLevel: 1 + (t-1)/2}
	m.reset()
	return m
}

// reset forgets the baselines: the stream restarted or changed for good.
func (m *motion) reset() {
	m.pos, m.keys = -1, 0
	m.base = [positions + 1]posBaseline{}
	m.score, m.last, m.pending, m.quietSince = 0, time.Time{}, time.Time{}, time.Time{}
}

// end closes an active motion and returns its motion.end.
func (m *motion) end(at time.Time, reason string) finding {
	m.active = false
	m.ended = at
	m.pending, m.quietSince = time.Time{}, time.Time{}
	return newFinding(TypeMotionEnd, event.SeverityInfo, at).
		num("duration_seconds", max(at.Sub(m.start), 0).Seconds()).
		num("peak_score", m.peak).
		num("threshold", m.threshold).
		str("reason", reason)
}

// restart handles a new session of the camera (an epoch change).
func (m *motion) restart(at time.Time) []finding {
	var out []finding
	if m.active {
		out = append(out, m.end(at, endRestarted))
	}
	m.reset()
	return out
}

// unit observes one access unit: received is its arrival time, size its
// bytes.
func (m *motion) unit(received time.Time, size int, key bool) []finding {
	if key {
		m.pos = 0
		m.keys++
		return nil
	}
	if m.pos < 0 {
		return nil // no keyframe yet
	}
	m.pos++
	b := &m.base[min(m.pos, positions)]
	if b.n < minSamples || m.keys < warmKeys {
		m.learn(b, size)
		return nil
	}
	r := min(float64(size)/b.mean, maxRatio)
	if m.last.IsZero() || !received.After(m.last) {
		m.score = r
	} else {
		dt := received.Sub(m.last)
		m.score += (1 - math.Exp(-dt.Seconds()/smoothing.Seconds())) * (r - m.score)
	}
	m.last = received
	if !m.active && m.score < m.threshold {
		m.learn(b, size)
	}
	return m.judge(received, size, b.mean)
}

func (m *motion) learn(b *posBaseline, size int) {
	b.n++
	a := max(1/float64(b.n), learnRate)
	b.mean += a * (float64(size) - b.mean)
}

// judge decides on the smoothed score at now.
func (m *motion) judge(now time.Time, size int, base float64) []finding {
	if !m.sched.active(now) {
		m.pending = time.Time{}
		if m.active {
			return []finding{m.end(now, endSchedule)}
		}
		return nil
	}
	if m.active {
		m.peak = max(m.peak, m.score)
		if now.Sub(m.start) >= m.cfg.MaxDuration.D() {
			f := m.end(now, endMax)
			m.reset() // the new normal
			return []finding{f}
		}
		if m.score >= m.endLevel {
			m.quietSince = time.Time{}
			return nil
		}
		if m.quietSince.IsZero() {
			m.quietSince = now
		}
		if now.Sub(m.quietSince) >= m.cfg.EndAfter.D() {
			return []finding{m.end(m.quietSince, endQuiet)}
		}
		return nil
	}
	if m.score < m.threshold {
		m.pending = time.Time{}
		return nil
	}
	if m.pending.IsZero() {
		m.pending = now
	}
	if now.Sub(m.pending) < m.cfg.MinDuration.D() ||
		!m.ended.IsZero() && now.Sub(m.ended) < m.cfg.Cooldown.D() && !now.Before(m.ended) {
		return nil
	}
	m.active, m.start, m.peak, m.quietSince = true, m.pending, m.score, time.Time{}
	f := newFinding(TypeMotion, event.SeverityInfo, m.start).
		num("score", m.score).
		num("threshold", m.threshold).
		num("sensitivity", m.cfg.Sensitivity).
		num("frame_bytes", float64(size)).
		num("baseline_bytes", base)
	f.fresh = true
	return []finding{f}
}

// tick lets time-based rules act without units: a schedule's period
// ending while the camera sends nothing.
func (m *motion) tick(now time.Time) []finding {
	if m.active && !m.sched.active(now) {
		return []finding{m.end(now, endSchedule)}
	}
	return nil
}

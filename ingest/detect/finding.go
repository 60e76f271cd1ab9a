package detect

import (
	"math"
	"time"

	"sharpeye/ingest/event"
	"sharpeye/ingest/stream"
)

// Event types the detectors emit. A condition's clearing is its type with
// ".cleared" appended, except camera.online (the end of camera.offline)
// and motion.end.
const (
	TypeOffline    = "camera.offline"
	TypeOnline     = "camera.online"
	TypeDegraded   = "camera.degraded"
	TypeMotion     = "motion"
	TypeMotionEnd  = "motion.end"
	TypeFrozen     = "video.frozen"
	TypeDark       = "video.dark"
	TypeBright     = "video.bright"
	TypeCovered    = "video.covered"
	TypeBlur       = "video.blur"
	TypeColourCast = "video.colour_cast"
	// ClearedSuffix ends the type of a condition's clearing:
	// camera.degraded.cleared, video.frozen.cleared...
	ClearedSuffix = ".cleared"
)

// finding is what a detector's state machine reports: an event to be,
// without the camera's identity and place, which the Detector adds.
type finding struct {
	typ      string
	severity event.Severity
	at       time.Time // when it happened
	attrs    map[string]any
	// key is the keyframe the finding was made on, for its snapshot; nil:
	// the latest.
	key *stream.Unit
	// fresh: the snapshot should come from a keyframe received at or after
	// at (motion).
	fresh bool
}

func newFinding(typ string, sev event.Severity, at time.Time) finding {
	return finding{typ: typ, severity: sev, at: at, attrs: map[string]any{}}
}

func (f finding) num(key string, v float64) finding {
	f.attrs[key] = round(v)
	return f
}

func (f finding) str(key, v string) finding {
	if v != "" {
		f.attrs[key] = v
	}
	return f
}

// round keeps 4 significant decimals: enough for a threshold, and stable in
// logs and tests.
func round(v float64) float64 {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return 0 // the event schema takes finite numbers only
	case math.Abs(v) >= 1e12:
		return v
	}
	return math.Round(v*1e4) / 1e4
}

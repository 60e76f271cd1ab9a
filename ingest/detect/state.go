package detect

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"sharpeye/ingest/event"
)

// A detector's state outlives the process: the conditions it has raised
// (with the event that raised each, which the clearing event points to)
// and the baselines it has learnt. Without it a restart would raise every
// ongoing condition again (a covered camera reported covered twice) and
// relearn every baseline. The state is one small JSON file per camera in
// the manager's state directory, replaced atomically on every raise and
// clear and at least every stateEvery with the baselines.

// stateEvery is how often the baselines are written.
const stateEvery = time.Minute

// stateVersion is the layout of the state files; a file of another
// version is ignored.
const stateVersion = 1

// savedState is a camera's state file.
type savedState struct {
	Version int `json:"version"`
	// Raised holds the conditions raised and not yet cleared, by the
	// event type that raised them.
	Raised map[string]raisedCondition `json:"raised,omitempty"`
	// Baselines: the health checks' frame rate and bitrate, the quality
	// checks' sharpness.
	FPS       *savedBaseline `json:"fps,omitempty"`
	Bitrate   *savedBaseline `json:"bitrate,omitempty"`
	Sharpness *savedBaseline `json:"sharpness,omitempty"`
}

type raisedCondition struct {
	Since time.Time `json:"since"`
	// Event is the id of the event that raised it; empty until published.
	Event string `json:"event,omitempty"`
}

type savedBaseline struct {
	Value   float64       `json:"value"`
	Learnt  time.Duration `json:"learnt"`
	Updated time.Time     `json:"updated"`
}

func saveBaseline(b baseline) *savedBaseline {
	if b.updated.IsZero() {
		return nil
	}
	return &savedBaseline{Value: b.value, Learnt: b.learnt, Updated: b.updated}
}

func (s *savedBaseline) restore(b *baseline) {
	if s != nil && s.Value > 0 && s.Learnt >= 0 {
		*b = baseline{value: s.Value, learnt: s.Learnt, updated: s.Updated}
	}
}

// stateFile keeps one camera's state and writes it. Its methods are safe
// for concurrent use: the detector's loop updates the baselines and its
// publisher the raised conditions.
type stateFile struct {
	path string // "": not persisted

	mu      sync.Mutex
	cur     savedState
	lastErr string // the last error reported by fresh
}

// fresh reports whether err differs from the last error it was given, so
// that a failing directory is logged once, not every minute.
func (s *stateFile) fresh(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := err.Error()
	if msg == s.lastErr {
		return false
	}
	s.lastErr = msg
	return true
}

// newStateFile returns the state of camera id in dir ("" keeps nothing).
func newStateFile(dir, id string) *stateFile {
	s := &stateFile{cur: savedState{Version: stateVersion, Raised: map[string]raisedCondition{}}}
	if dir != "" {
		s.path = filepath.Join(dir, id+".json")
	}
	return s
}

// load reads the saved state; a missing file is an empty state, and a
// file that does not parse or is of another version is reported and
// ignored (the detector starts afresh).
func (s *stateFile) load() (savedState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return s.cur, nil
	}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s.cur, nil
	}
	if err != nil {
		return s.cur, fmt.Errorf("read detector state: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(data, &st); err != nil {
		return s.cur, fmt.Errorf("detector state %s: %w", s.path, err)
	}
	if st.Version != stateVersion {
		return s.cur, fmt.Errorf("detector state %s: version %d, want %d", s.path, st.Version, stateVersion)
	}
	if st.Raised == nil {
		st.Raised = map[string]raisedCondition{}
	}
	s.cur = st
	return st, nil
}

// raised records a raised condition (event id known once published).
func (s *stateFile) raised(typ string, since time.Time, id event.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.Raised[typ] = raisedCondition{Since: since, Event: id.String()}
	return s.writeLocked()
}

// cleared forgets a condition.
func (s *stateFile) cleared(typ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cur.Raised[typ]; !ok {
		return nil
	}
	delete(s.cur.Raised, typ)
	return s.writeLocked()
}

// baselines records the learnt baselines.
func (s *stateFile) baselines(fps, bitrate, sharpness baseline) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.FPS, s.cur.Bitrate, s.cur.Sharpness = saveBaseline(fps), saveBaseline(bitrate), saveBaseline(sharpness)
	return s.writeLocked()
}

// writeLocked replaces the file with the current state: written to a
// temporary file and renamed, so a crash leaves the old state or the new.
func (s *stateFile) writeLocked() error {
	if s.path == "" {
		return nil
	}
	data, err := json.Marshal(s.cur)
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return fmt.Errorf("write detector state: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("write detector state: %w", err)
	}
	return nil
}

// restore applies a saved state to a detector about to run: the raised
// conditions become raised latches again (so that they are not raised a
// second time, and their clearing event points to the event that raised
// them) and the baselines are taken up where they were. A motion that was
// under way is ended at once (its stream is a new one now). Conditions
// whose checks are now off are forgotten.
func (d *Detector) restore(st savedState, now time.Time) {
	st.FPS.restore(&d.health.fps)
	st.Bitrate.restore(&d.health.bitrate)
	st.Sharpness.restore(&d.quality.sharp)

	latches := map[string]*latch{}
	if d.set.Health.Enabled {
		latches[TypeOffline] = &d.health.offline
		latches[TypeDegraded] = &d.health.degraded
	}
	for _, c := range d.quality.conditions() {
		if c.enabled && d.m.dec != nil {
			latches[c.typ] = &c.latch
		}
	}
	for typ, rc := range st.Raised {
		id, err := event.ParseID(rc.Event)
		l, isLatch := latches[typ]
		if err != nil || rc.Since.IsZero() || !isLatch && typ != TypeMotion {
			if err := d.state.cleared(typ); err != nil && d.state.fresh(err) {
				d.m.metrics.stateErrors.Inc()
				d.log.Warn("detector state not saved", "err", err)
			}
			continue
		}
		d.open[typ] = id
		d.stateMu.Lock()
		d.active[typ] = rc.Since
		d.stateMu.Unlock()
		if isLatch {
			*l = latch{on: true, changed: rc.Since, since: rc.Since}
			continue
		}
		// A motion under way: its stream ended with the process.
		d.motion.active, d.motion.start = true, rc.Since
		d.emit([]finding{d.motion.end(now, endRestarted)})
	}
}

// saveBaselines writes the learnt baselines (from the loop).
func (d *Detector) saveBaselines() {
	if d.state.path == "" {
		return
	}
	var fps, br baseline
	if d.health != nil {
		fps, br = d.health.fps, d.health.bitrate
	}
	if err := d.state.baselines(fps, br, d.quality.sharp); err != nil {
		d.m.metrics.stateErrors.Inc()
		if d.state.fresh(err) {
			d.log.Warn("detector state not saved", "err", err)
		}
	}
}

package cases

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/ingest/event"
)

// Readings looks up sensor readings (telemetry events): the analytics
// store answers it; the case workflow only asks.
type Readings interface {
	Readings(ctx context.Context, q ReadingsQuery) ([]Reading, error)
}

// ReadingsQuery asks for the telemetry of the devices Sources (source
// ids) and of every device in Grid (when not empty), timed From to To
// inclusive, at most Limit readings.
type ReadingsQuery struct {
	Grid     string
	Sources  []string
	From, To time.Time
	Limit    int
}

// Reading is one telemetry event: a device's readings at a time.
type Reading struct {
	EventID    string
	SourceKind string // device or analyser
	Source     string // the source id
	Name       string
	DeviceKind string
	Grid       string
	Time       time.Time
	// Values are the readings by name: numbers, booleans or strings.
	Values map[string]any
}

// SetReadings sets where the sensor readings around an alert are looked
// up; nil (the default) gathers none. Set it before RunTimers.
func (s *Service) SetReadings(r Readings) { s.readings = r }

// readingsRef is what an alert case's readings are gathered around.
type readingsRef struct {
	at      time.Time // the alert: its last triggering event
	eventID string
	sources []string // the device and analyser sources among the events
}

// refOfEvents is the readingsRef of an alert's events.
func refOfEvents(evs []*event.Event) readingsRef {
	var r readingsRef
	for _, e := range evs {
		if r.at.IsZero() || e.Time.Time.After(r.at) {
			r.at, r.eventID = e.Time.Time.UTC(), e.ID.String()
		}
		if e.Source.Kind == event.SourceDevice || e.Source.Kind == event.SourceAnalyser {
			if !slices.Contains(r.sources, e.Source.ID) {
				r.sources = append(r.sources, e.Source.ID)
			}
		}
	}
	return r
}

// refOfEvidence is the readingsRef of the events a case was opened with:
// the event evidence attached first (later alerts and merges attach more).
func refOfEvidence(c *Case, evs []Evidence) readingsRef {
	var first time.Time
	for _, e := range evs {
		if e.Kind == "event" && (first.IsZero() || e.Attached.Before(first)) {
			first = e.Attached
		}
	}
	var r readingsRef
	for _, e := range evs {
		if e.Kind != "event" || !e.Attached.Equal(first) {
			continue
		}
		if r.at.IsZero() || e.Captured.After(r.at) {
			r.at, r.eventID = e.Captured.UTC(), e.EventID
		}
		src, _ := e.Data["source"].(string)
		if kind, id, ok := strings.Cut(src, ":"); ok && (kind == string(event.SourceDevice) || kind == string(event.SourceAnalyser)) {
			if !slices.Contains(r.sources, id) {
				r.sources = append(r.sources, id)
			}
		}
	}
	if r.at.IsZero() {
		r.at = c.Created
	}
	if c.Device != "" && !slices.Contains(r.sources, c.Device) {
		r.sources = append(r.sources, c.Device)
	}
	return r
}

// query is the lookup of the readings around r in grid.
func (cfg ReadingsConfig) query(r readingsRef, grid string) ReadingsQuery {
	return ReadingsQuery{Grid: grid, Sources: r.sources, From: r.at.Add(-cfg.Before.D()), To: r.at.Add(cfg.After.D()),
		Limit: cfg.MaxDevices * cfg.MaxPoints * 10}
}

// planReadings plans the gathering of the readings around a new alert
// case's events, once the readings after them have come in.
func (s *Service) planReadings(ctx context.Context, t txn, c *Case, evs []*event.Event) error {
	r := refOfEvents(evs)
	if s.readings == nil || (len(r.sources) == 0 && c.Grid == "") {
		return nil
	}
	due := r.at
	if c.Created.After(due) {
		due = c.Created
	}
	due = due.Add(s.cfg.Readings.After.D())
	return insertTimer(ctx, t, c.ID, Timer{Stage: StageEvidence, Kind: TimerReadings, Step: 1, Due: due})
}

// fireReadings looks up the readings around a case's alert (outside any
// transaction: the store may be slow) and attaches them as one piece of
// evidence, records that there were none, or plans another attempt.
func (s *Service) fireReadings(ctx context.Context, d dueTimer) (bool, error) {
	c, err := getCase(ctx, dbq{s.db}, d.caseID)
	if err != nil {
		return false, err
	}
	evs, err := evidence(ctx, dbq{s.db}, d.caseID)
	if err != nil {
		return false, err
	}
	cfg := s.cfg.Readings
	ref := refOfEvidence(c, evs)
	q := cfg.query(ref, c.Grid)
	qctx, cancel := context.WithTimeout(ctx, cfg.Timeout.D())
	rs, qerr := s.readings.Readings(qctx, q)
	cancel()
	if qerr != nil && ctx.Err() != nil {
		return false, ctx.Err() // stopping: the timer stays due
	}
	devices, kept, total := series(rs, ref.sources, q.From, q.To, cfg.MaxDevices, cfg.MaxPoints)
	changed := false
	err = s.commit(ctx, func(t txn, out *[]Change) error {
		changed = false
		c, err := lockCase(ctx, t, d.caseID)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		res, err := t.exec(ctx, `UPDATE case_timers SET fired_at = ? WHERE id = ? AND fired_at = 0 AND cancelled = 0`, casedb.Millis(now), d.id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil
		}
		span := q.From.In(s.loc).Format("2006-01-02 15:04:05") + " – " + q.To.In(s.loc).Format("15:04:05")
		h := &HistoryEntry{Actor: system.name, Role: system.role, Data: map[string]any{
			"kind": "readings", "from": q.From.Format(time.RFC3339Nano), "to": q.To.Format(time.RFC3339Nano), "attempt": d.step}}
		switch {
		case qerr != nil && d.step < cfg.Attempts:
			wait := min(cfg.Retry.D()<<(d.step-1), time.Hour)
			s.log.Warn("sensor readings lookup failed; retrying", "case", c.ID, "attempt", d.step, "retry_in", wait, "err", qerr)
			return insertTimer(ctx, t, c.ID, Timer{Stage: StageEvidence, Kind: TimerReadings, Step: d.step + 1, Due: now.Add(wait)})
		case qerr != nil:
			s.log.Error("sensor readings lookup failed; giving up", "case", c.ID, "attempts", d.step, "err", qerr)
			h.Action = "readings_failed"
			h.Note = clip(fmt.Sprintf("sensor readings %s could not be looked up (%d attempts): %v", span, d.step, qerr), 1000)
		case len(devices) == 0:
			h.Action = "readings_none"
			h.Note = "no sensor readings " + span + " (the alert's devices and grid " + cmp.Or(c.Grid, "-") + ")"
		default:
			e := &Evidence{Kind: "readings", Ref: "readings/" + q.From.Format("20060102T150405Z") + "/" + q.To.Format("20060102T150405Z"),
				EventID: ref.eventID, Captured: ref.at, Attached: now, AttachedBy: system.name,
				Data: map[string]any{"from": q.From.Format(time.RFC3339Nano), "to": q.To.Format(time.RFC3339Nano), "at": ref.at.Format(time.RFC3339Nano),
					"grid": c.Grid, "devices": devices, "readings": kept, "readings_found": total}}
			added, err := addEvidence(ctx, t, c.ID, e)
			if err != nil || !added {
				return err // already attached: nothing twice
			}
			h.Action = "attach"
			h.Note = fmt.Sprintf("sensor readings %s: %d devices, %d readings", span, len(devices), kept)
			h.Data["evidence"], h.Data["devices"], h.Data["readings"] = e.Seq, len(devices), kept
		}
		ch, err := s.record(ctx, t, c, nil, h)
		if err != nil {
			return err
		}
		*out = append(*out, ch)
		changed = true
		return nil
	})
	if err != nil {
		return false, err
	}
	if changed {
		s.m.timers.WithLabelValues(d.kind).Inc()
	}
	return changed, nil
}

// series groups readings by device, within from..to and without
// duplicates: the alert's own devices (own) first, then the others by
// how many readings they have, at most maxDevices; each device's readings
// in time order thinned evenly (first and last kept) to maxPoints. It
// returns the devices as evidence data, the readings kept and found.
func series(rs []Reading, own []string, from, to time.Time, maxDevices, maxPoints int) (devices []any, kept, found int) {
	type dev struct {
		r   Reading
		pts []Reading
	}
	by := map[string]*dev{}
	seen := map[string]bool{}
	for _, r := range rs {
		if r.Time.Before(from) || r.Time.After(to) || (r.EventID != "" && seen[r.EventID]) {
			continue
		}
		seen[r.EventID] = true
		k := r.SourceKind + ":" + r.Source
		if by[k] == nil {
			by[k] = &dev{r: r}
		}
		by[k].pts = append(by[k].pts, r)
		found++
	}
	all := slices.Collect(maps.Values(by))
	slices.SortFunc(all, func(a, b *dev) int {
		ao, bo := slices.Contains(own, a.r.Source), slices.Contains(own, b.r.Source)
		switch {
		case ao != bo && ao:
			return -1
		case ao != bo:
			return 1
		}
		return cmp.Or(cmp.Compare(len(b.pts), len(a.pts)), cmp.Compare(a.r.SourceKind+":"+a.r.Source, b.r.SourceKind+":"+b.r.Source))
	})
	for _, d := range all[:min(len(all), maxDevices)] {
		slices.SortStableFunc(d.pts, func(a, b Reading) int { return a.Time.Compare(b.Time) })
		pts := thin(d.pts, maxPoints)
		points := make([]any, len(pts))
		for i, p := range pts {
			points[i] = map[string]any{"t": p.Time.UTC().Format(time.RFC3339Nano), "v": p.Values}
		}
		m := map[string]any{"source": d.r.SourceKind + ":" + d.r.Source, "points": points, "found": len(d.pts)}
		if d.r.Name != "" {
			m["name"] = d.r.Name
		}
		if d.r.DeviceKind != "" {
			m["device_kind"] = d.r.DeviceKind
		}
		if slices.Contains(own, d.r.Source) {
			m["alerting"] = true
		}
		devices = append(devices, m)
		kept += len(pts)
	}
	return devices, kept, found
}

// thin keeps n of pts evenly spread, the first and the last among them.
func thin(pts []Reading, n int) []Reading {
	if len(pts) <= n {
		return pts
	}
	out := make([]Reading, n)
	for i := range n {
		out[i] = pts[i*(len(pts)-1)/(n-1)]
	}
	return out
}

package cases

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"sharpeye/ingest/event"
)

// Alert is a rule firing, as the case workflow takes it.
type Alert struct {
	Rule          string
	GroupKey      string
	Category      string
	Title         string
	Description   string
	Risk          int
	RiskPerRepeat int
	// Repeat says the rule fired again within its cooldown: the alert
	// joins the open case of its group and opens none.
	Repeat bool
	// SuppressedBy is the group key of the alert that inhibits this one:
	// the alert joins that group's open case instead of opening its own.
	SuppressedBy string
	Events       []*event.Event
	// Elements, by name (ElementNames), replace the seven elements a new
	// case gets from its events (the rule's case.elements).
	Elements map[string]string
}

// Outcome says what an alert did.
type Outcome string

// What an alert can do.
const (
	Opened     Outcome = "opened"     // a new case
	Attached   Outcome = "attached"   // joined its group's open case
	Suppressed Outcome = "suppressed" // joined the inhibiting group's open case
	Duplicate  Outcome = "duplicate"  // every event was already attached
	Dropped    Outcome = "dropped"    // a repeat or suppressed alert with no open case to join
)

// Alert opens a case for an alert, or attaches it to the open case of its
// group. Replaying the same alert (a redelivery from the bus) attaches
// nothing twice and opens no second case.
func (s *Service) Alert(ctx context.Context, a Alert) (*Case, Outcome, error) {
	rs, err := s.Alerts(ctx, []Alert{a})
	if err != nil {
		return nil, "", err
	}
	return rs[0].Case, rs[0].Outcome, rs[0].Err
}

// AlertResult is what one alert of Alerts did: Err is set (and the rest
// zero) for an alert refused on its own (no events, a category without a
// playbook).
type AlertResult struct {
	Case    *Case
	Outcome Outcome
	Err     error
}

// Alerts takes alerts as Alert does, in order, in one transaction: a
// batch of rule firings costs one commit. An error other than a refused
// alert's rolls the whole batch back; taking it again is safe (replays
// attach nothing twice).
func (s *Service) Alerts(ctx context.Context, as []Alert) ([]AlertResult, error) {
	return s.AlertsWith(ctx, as, nil)
}

// AlertsWith is Alerts, running also (when not nil) in the same
// transaction after the alerts: the alerts role stores the rule state that
// produced them there, so that both or neither are written.
func (s *Service) AlertsWith(ctx context.Context, as []Alert, also func(ctx context.Context, tx *sql.Tx) error) ([]AlertResult, error) {
	rs := make([]AlertResult, len(as))
	for i, a := range as {
		switch _, ok := s.cfg.playbook(a.Category); {
		case len(a.Events) == 0:
			rs[i].Err = errors.New("alert without events")
		case !ok:
			s.m.alerts.WithLabelValues("refused").Inc()
			rs[i].Err = fmt.Errorf("rule %s: %w %q (no playbook)", a.Rule, ErrUnknownCategory, a.Category)
		}
	}
	err := s.commit(ctx, func(t txn, out *[]Change) error {
		for i, a := range as {
			if errors.Is(rs[i].Err, ErrUnknownCategory) || len(a.Events) == 0 {
				continue
			}
			c, outcome, err := s.alert(ctx, t, a, out)
			if err != nil {
				return err
			}
			rs[i].Case, rs[i].Outcome = c, outcome
		}
		if also != nil {
			return also(ctx, t.tx)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		if r.Err == nil {
			s.m.alerts.WithLabelValues(string(r.Outcome)).Inc()
		}
	}
	return rs, nil
}

// alert is the work of one alert within a transaction.
func (s *Service) alert(ctx context.Context, t txn, a Alert, out *[]Change) (*Case, Outcome, error) {
	key := a.GroupKey
	if a.SuppressedBy != "" {
		key = a.SuppressedBy
	}
	c, err := openByGroup(ctx, t, key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, "", err
	}
	switch {
	case c != nil:
		added, err := s.attachEvents(ctx, t, c, a.Events)
		if err != nil {
			return nil, "", err
		}
		if added == 0 {
			return c, Duplicate, nil
		}
		var outcome Outcome
		h := &HistoryEntry{Actor: system.name, Role: system.role, Data: map[string]any{"rule": a.Rule, "events": added}}
		if a.SuppressedBy != "" {
			outcome, h.Action = Suppressed, "alert_suppressed"
			c.Suppressed++
			h.Data["group"] = a.GroupKey
		} else {
			outcome, h.Action = Attached, "alert_repeated"
			c.AlertCount++
			h.Data["alert_count"] = c.AlertCount
			if a.RiskPerRepeat > 0 && c.ColourReason == "" {
				c.Risk = min(100, c.Risk+a.RiskPerRepeat)
				if col := s.cfg.Colours.Colour(c.Risk); col.Rank() > c.Colour.Rank() {
					h.Data["previous_colour"], h.Data["colour"] = string(c.Colour), string(col)
					c.Colour = col
					if col == Red && !c.Warned {
						if err := insertTimer(ctx, t, c.ID, Timer{Stage: StageAssess, Kind: TimerWarn, Due: s.now().UTC()}); err != nil {
							return nil, "", err
						}
					}
					if err := s.planVerify(ctx, t, c); err != nil {
						return nil, "", err
					}
				}
			}
		}
		ch, err := s.record(ctx, t, c, nil, h)
		if err != nil {
			return nil, "", err
		}
		*out = append(*out, ch)
		return c, outcome, nil
	case a.Repeat || a.SuppressedBy != "":
		return nil, Dropped, nil
	}
	c, chs, err := s.openFromAlert(ctx, t, a)
	if err != nil {
		return nil, "", err
	}
	*out = append(*out, chs...)
	return c, Opened, nil
}

func (s *Service) openFromAlert(ctx context.Context, t txn, a Alert) (*Case, []Change, error) {
	first, last := a.Events[0], a.Events[len(a.Events)-1]
	now := s.now().UTC()
	c := &Case{
		ID: event.NewID().String(), State: Registered, Title: clip(a.Title, maxTitle), Description: clip(a.Description, maxText),
		Category: a.Category, Source: FromAlert, Rule: a.Rule, GroupKey: a.GroupKey,
		Region: last.Location.Region, Grid: last.Location.Grid, Level: levelOf(last.Location.Region),
		Details: Details{Lat: last.Location.Lat, Lon: last.Location.Lon, Elements: elementsOf(a.Events, a.Elements)},
		Created: now, Updated: now, Version: 1, AlertCount: 1,
	}
	for _, e := range a.Events {
		switch e.Source.Kind {
		case event.SourceCamera:
			c.Camera = e.Source.ID
		case event.SourceDevice, event.SourceAnalyser:
			c.Device = e.Source.ID
			if cam, ok := e.String("camera"); ok && c.Camera == "" {
				c.Camera = cam
			}
		}
	}
	if c.Title == "" {
		c.Title = a.Rule
	}
	num, err := nextNumber(ctx, t, now)
	if err != nil {
		return nil, nil, err
	}
	c.Number = num
	if err := insertCase(ctx, t, c); err != nil {
		return nil, nil, err
	}
	var out []Change
	ch, err := s.recordEntry(ctx, t, c, &HistoryEntry{Actor: system.name, Role: system.role, Action: "registered", To: Registered,
		Data: map[string]any{"source": "alert", "rule": a.Rule, "group": a.GroupKey, "first_event": first.ID.String()}})
	if err != nil {
		return nil, nil, err
	}
	out = append(out, ch)
	if _, err := s.attachEvents(ctx, t, c, a.Events); err != nil {
		return nil, nil, err
	}
	if c.Camera != "" {
		if _, err := addEvidence(ctx, t, c.ID, &Evidence{Kind: "url", Ref: "/play/" + c.Camera, Attached: now, AttachedBy: system.name,
			Data: map[string]any{"camera": c.Camera, "note": "live view"}}); err != nil {
			return nil, nil, err
		}
	}
	if err := s.planStage(ctx, t, c); err != nil {
		return nil, nil, err
	}
	// The rule's risk score assesses the case at once.
	h, err := s.assess(ctx, t, c, system, "", max(0, min(100, a.Risk)), "")
	if err != nil {
		return nil, nil, err
	}
	h.Note = "assessed automatically from rule " + a.Rule
	if ch, err = s.record(ctx, t, c, nil, h); err != nil {
		return nil, nil, err
	}
	out = append(out, ch)
	if err := s.planVerify(ctx, t, c); err != nil {
		return nil, nil, err
	}
	if err := s.planReadings(ctx, t, c, a.Events); err != nil {
		return nil, nil, err
	}
	if cands, err := s.candidates(ctx, nil, c); err == nil && len(cands) > 0 {
		ids := make([]string, len(cands))
		for i, k := range cands {
			ids[i] = k.Number
		}
		if ch, err = s.recordEntry(ctx, t, c, &HistoryEntry{Actor: system.name, Role: system.role, Action: "merge_suggested",
			Note: "may be the same matter as " + strings.Join(ids, ", "), Data: map[string]any{"cases": ids}}); err != nil {
			return nil, nil, err
		}
		out = append(out, ch)
	}
	return c, out, nil
}

// attachEvents attaches each event, its evidence and its readings; it
// returns how many events were new to the case.
func (s *Service) attachEvents(ctx context.Context, t txn, c *Case, evs []*event.Event) (int, error) {
	now := s.now().UTC()
	added := 0
	for _, e := range evs {
		id := e.ID.String()
		data := map[string]any{"type": e.Type, "source": string(e.Source.Kind) + ":" + e.Source.ID, "severity": string(e.Severity)}
		if e.Source.Name != "" {
			data["source_name"] = e.Source.Name
		}
		if len(e.Attributes) > 0 {
			data["attributes"] = e.Attributes
		}
		ok, err := addEvidence(ctx, t, c.ID, &Evidence{Kind: "event", Ref: id, EventID: id, Captured: e.Time.Time, Attached: now,
			AttachedBy: system.name, Data: data})
		if err != nil {
			return added, err
		}
		if !ok {
			continue
		}
		added++
		for _, ev := range e.Evidence {
			x := &Evidence{Kind: string(ev.Kind), Ref: ev.Ref, ContentType: ev.ContentType, SHA256: ev.SHA256, EventID: id,
				Captured: e.Time.Time, Attached: now, AttachedBy: system.name}
			if ev.Time != nil {
				x.Captured = ev.Time.Time
			}
			if _, err := addEvidence(ctx, t, c.ID, x); err != nil {
				return added, err
			}
		}
		if e.Type == "telemetry" {
			if _, err := addEvidence(ctx, t, c.ID, &Evidence{Kind: "reading", Ref: id, EventID: id, Captured: e.Time.Time,
				Attached: now, AttachedBy: system.name, Data: map[string]any{"readings": e.Attributes}}); err != nil {
				return added, err
			}
		}
	}
	return added, nil
}

// elementsOf fills when, where, what and object from an alert's events.
func elementsOf(evs []*event.Event, given map[string]string) Elements {
	el := defaultElements(evs)
	for name, v := range given {
		el.Set(name, clip(strings.TrimSpace(v), maxElement))
	}
	return el
}

// defaultElements are the elements the events give: when, where, what and
// object.
func defaultElements(evs []*event.Event) Elements {
	first, last := evs[0], evs[len(evs)-1]
	var el Elements
	when := first.Time.Time.In(shanghai).Format("2006-01-02 15:04:05")
	if len(evs) > 1 {
		when += " – " + last.Time.Time.In(shanghai).Format("15:04:05")
	}
	el.When = when
	var where []string
	if last.Source.Name != "" {
		where = append(where, last.Source.Name)
	}
	if last.Location.Region != "" {
		where = append(where, last.Location.Region)
	}
	if last.Location.Grid != "" {
		where = append(where, "grid "+last.Location.Grid)
	}
	if last.Location.Lat != nil && last.Location.Lon != nil {
		where = append(where, fmt.Sprintf("%.5f,%.5f", *last.Location.Lat, *last.Location.Lon))
	}
	el.Where = strings.Join(where, ", ")
	types := map[string]bool{}
	var objects []string
	for _, e := range evs {
		types[e.Type] = true
		for _, key := range []string{"class", "device_kind", "camera"} {
			if v, ok := e.String(key); ok && v != "" && !slices.Contains(objects, v) {
				objects = append(objects, v)
			}
		}
		if e.Source.Kind == event.SourceCamera && !slices.Contains(objects, "camera "+e.Source.ID) {
			objects = append(objects, "camera "+e.Source.ID)
		}
	}
	names := make([]string, 0, len(types))
	for k := range types {
		names = append(names, k)
	}
	sort.Strings(names)
	el.What = strings.Join(names, ", ")
	if len(evs) > 1 {
		el.What += fmt.Sprintf(" (%d events)", len(evs))
	}
	el.Object = strings.Join(objects, ", ")
	if el.Object == "" {
		el.Object = string(last.Source.Kind) + " " + last.Source.ID
	}
	return el
}

// clip shortens s to at most n bytes, dropping a rune cut in half.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

package analytics

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"sharpeye/alerts/cases"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/event"
)

// EventRow is one event as stored: every field of the schema, attributes
// as key/value arrays by value type.
type EventRow struct {
	ID         string
	Time       time.Time // millisecond precision, UTC
	Received   time.Time // when the bus took it
	Schema     int
	Type       string
	Severity   string
	SourceKind string
	SourceID   string
	SourceName string
	Region     string
	Grid       string
	// HasLocation says whether Lat and Lon are set.
	HasLocation bool
	Lat, Lon    float64
	// Camera is the camera the event is about: the source when it is a
	// camera, else the "camera" attribute (analyser detections).
	Camera string
	// DeviceKind is the "device_kind" attribute (sensor events).
	DeviceKind string
	StrKeys    []string
	StrValues  []string
	NumKeys    []string
	NumValues  []float64
	BoolKeys   []string
	BoolValues []bool
	Tags       []string
	// Evidence, one entry per index.
	EvKinds  []string
	EvRefs   []string
	EvTypes  []string
	EvSHA256 []string
	EvTimes  []int64 // Unix milliseconds; 0 when unknown
	Key      string
	// Partition and Offset are where the bus held it.
	Partition int
	Offset    int64
}

// CaseRow is one change of one case: the history entry and the case as it
// stood after it.
type CaseRow struct {
	ID        string // case id "/" seq
	CaseID    string
	Number    string
	Seq       int
	Time      time.Time
	Action    string
	FromState string
	ToState   string
	State     string
	Actor     string
	ActorRole string
	Category  string
	Colour    string
	Risk      int
	Source    string
	Rule      string
	Region    string
	Grid      string
	Level     string
	// Department leads; CoDepartments help.
	Department    string
	CoDepartments []string
	AlertCount    int
	UrgeCount     int
	Escalations   int
	Satisfaction  string
	Outcome       string
	MergedInto    string
	Created       time.Time
	Dispatched    time.Time // zero when not (yet)
	Accepted      time.Time
	Resolved      time.Time
	Closed        time.Time
	Deadline      time.Time // the deadline running after the change
	Due           time.Time // the deadline running before it
	// Late is an action taken after Due.
	Late      bool
	Version   int64
	Partition int
	Offset    int64
}

// HealthRow is one camera's minute.
type HealthRow struct {
	ID            string // camera "@" minute (Unix seconds)
	Camera        string
	Minute        time.Time // the end of the window
	Region        string
	Grid          string
	Vendor        string
	WindowSeconds float64
	OnlineSeconds float64
	BitrateKbps   float64
	FPS           float64
	Packets       float64
	PacketsLost   float64
	Faults        []string
	State         string
	EventID       string
	Partition     int
	Offset        int64
}

// Batch is what one insert carries.
type Batch struct {
	Events []EventRow
	Cases  []CaseRow
	Health []HealthRow
}

// Len is the number of rows.
func (b *Batch) Len() int { return len(b.Events) + len(b.Cases) + len(b.Health) }

// Rejected is a message the sink could not turn into a row.
type Rejected struct {
	Msg    bus.Message
	Reason string
}

// parallelFrom is the batch size from which FromMessages decodes on every
// core: below it, starting goroutines costs more than it saves.
const parallelFrom = 1024

// FromMessages turns consumed bus messages into rows, in their order; what
// does not decode is returned for the dead-letter topic. Large batches are
// decoded on every core.
func FromMessages(msgs []bus.Message) (Batch, []Rejected) {
	n := min(runtime.GOMAXPROCS(0), len(msgs)/(parallelFrom/2))
	if len(msgs) < parallelFrom || n < 2 {
		return fromMessages(msgs)
	}
	type part struct {
		b   Batch
		bad []Rejected
	}
	parts := make([]part, n)
	var wg sync.WaitGroup
	for i := range n {
		lo, hi := i*len(msgs)/n, (i+1)*len(msgs)/n
		wg.Go(func() { parts[i].b, parts[i].bad = fromMessages(msgs[lo:hi]) })
	}
	wg.Wait()
	var nEvents, nCases, nHealth int
	for _, p := range parts {
		nEvents, nCases, nHealth = nEvents+len(p.b.Events), nCases+len(p.b.Cases), nHealth+len(p.b.Health)
	}
	b := Batch{Events: make([]EventRow, 0, nEvents), Cases: make([]CaseRow, 0, nCases), Health: make([]HealthRow, 0, nHealth)}
	var bad []Rejected
	for _, p := range parts {
		b.Events = append(b.Events, p.b.Events...)
		b.Cases = append(b.Cases, p.b.Cases...)
		b.Health = append(b.Health, p.b.Health...)
		bad = append(bad, p.bad...)
	}
	return b, bad
}

func fromMessages(msgs []bus.Message) (Batch, []Rejected) {
	// The rows are large: room for every event at once instead of
	// growing (and copying) the slice was most of the bytes allocated.
	events := 0
	for _, m := range msgs {
		if m.Topic == bus.TopicEvents {
			events++
		}
	}
	b := Batch{Events: make([]EventRow, 0, events)}
	var bad []Rejected
	for _, m := range msgs {
		var err error
		switch m.Topic {
		case bus.TopicEvents:
			err = b.addEvent(m)
		case bus.TopicCases:
			err = b.addCase(m)
		default:
			err = fmt.Errorf("topic %q is not one the analytics sink reads", m.Topic)
		}
		if err != nil {
			bad = append(bad, Rejected{Msg: m, Reason: "analytics: " + err.Error()})
		}
	}
	return b, bad
}

func (b *Batch) addEvent(m bus.Message) error {
	e, err := event.Decode(m.Value)
	if err != nil {
		return err
	}
	if e.Type == event.TypeCameraHealth { // to camera_health, not to events
		h, err := HealthFromEvent(e)
		if err != nil {
			return err
		}
		h.Partition, h.Offset = m.Partition, m.Offset
		b.Health = append(b.Health, h)
		return nil
	}
	r := EventFromEvent(e)
	r.Received, r.Partition, r.Offset = m.Time.UTC(), m.Partition, m.Offset
	b.Events = append(b.Events, r)
	return nil
}

// EventFromEvent flattens e into a row.
func EventFromEvent(e *event.Event) EventRow {
	r := EventRow{
		ID:         e.ID.String(),
		Time:       e.Time.UTC().Truncate(time.Millisecond),
		Schema:     e.Schema,
		Type:       e.Type,
		Severity:   string(e.Severity),
		SourceKind: string(e.Source.Kind),
		SourceID:   e.Source.ID,
		SourceName: e.Source.Name,
		Region:     e.Location.Region,
		Grid:       e.Location.Grid,
		Tags:       e.Tags,
		Key:        e.Key,
	}
	if e.Location.Lat != nil && e.Location.Lon != nil {
		r.HasLocation, r.Lat, r.Lon = true, *e.Location.Lat, *e.Location.Lon
	}
	if e.Source.Kind == event.SourceCamera {
		r.Camera = e.Source.ID
	} else if c, ok := e.String("camera"); ok {
		r.Camera = c
	}
	r.DeviceKind, _ = e.String("device_kind")
	r.attributes(e.Attributes)
	if n := len(e.Evidence); n > 0 {
		// One allocation for the four string columns.
		strs := make([]string, 4*n)
		r.EvKinds, r.EvRefs, r.EvTypes, r.EvSHA256 = strs[:n:n], strs[n:2*n:2*n], strs[2*n:3*n:3*n], strs[3*n:]
		r.EvTimes = make([]int64, n)
		for i, ev := range e.Evidence {
			r.EvKinds[i], r.EvRefs[i], r.EvTypes[i], r.EvSHA256[i] = string(ev.Kind), ev.Ref, ev.ContentType, ev.SHA256
			if ev.Time != nil {
				r.EvTimes[i] = ev.Time.UnixMilli()
			}
		}
	}
	return r
}

// attributes fills the key/value columns, each sorted by key, with as few
// allocations as the kinds of values need (this runs for every event the
// sink stores).
func (r *EventRow) attributes(attrs map[string]any) {
	if len(attrs) == 0 {
		return
	}
	type attr struct {
		k string
		v any
	}
	var buf [24]attr
	sorted := buf[:0]
	var strs, nums, bools int
	for k, v := range attrs {
		switch v.(type) {
		case string:
			strs++
		case float64:
			nums++
		case bool:
			bools++
		default:
			continue
		}
		sorted = append(sorted, attr{k, v})
	}
	slices.SortFunc(sorted, func(a, b attr) int { return strings.Compare(a.k, b.k) })
	// The keys of every kind and the string values share one array.
	text := make([]string, len(sorted)+strs)
	r.StrKeys, text = text[:strs:strs], text[strs:]
	r.StrValues, text = text[:strs:strs], text[strs:]
	r.NumKeys, text = text[:nums:nums], text[nums:]
	r.BoolKeys = text[:bools:bools]
	if nums > 0 {
		r.NumValues = make([]float64, nums)
	}
	if bools > 0 {
		r.BoolValues = make([]bool, bools)
	}
	var is, in, ib int
	for _, a := range sorted {
		switch v := a.v.(type) {
		case string:
			r.StrKeys[is], r.StrValues[is] = a.k, v
			is++
		case float64:
			r.NumKeys[in], r.NumValues[in] = a.k, v
			in++
		case bool:
			r.BoolKeys[ib], r.BoolValues[ib] = a.k, v
			ib++
		}
	}
	if strs == 0 {
		r.StrKeys, r.StrValues = nil, nil
	}
	if nums == 0 {
		r.NumKeys = nil
	}
	if bools == 0 {
		r.BoolKeys = nil
	}
}

// Event rebuilds the event a row was made from (tests and raw exports).
func (r *EventRow) Event() (*event.Event, error) {
	id, err := event.ParseID(r.ID)
	if err != nil {
		return nil, err
	}
	e := &event.Event{
		Schema:   r.Schema,
		ID:       id,
		Time:     event.NewTime(r.Time),
		Source:   event.Source{Kind: event.SourceKind(r.SourceKind), ID: r.SourceID, Name: r.SourceName},
		Type:     r.Type,
		Severity: event.Severity(r.Severity),
		Location: event.Location{Region: r.Region, Grid: r.Grid},
		Key:      r.Key,
	}
	if r.HasLocation {
		lat, lon := r.Lat, r.Lon
		e.Location.Lat, e.Location.Lon = &lat, &lon
	}
	if len(r.Tags) > 0 {
		e.Tags = r.Tags
	}
	for i, k := range r.StrKeys {
		e.SetString(k, r.StrValues[i])
	}
	for i, k := range r.NumKeys {
		e.SetNumber(k, r.NumValues[i])
	}
	for i, k := range r.BoolKeys {
		e.SetBool(k, r.BoolValues[i])
	}
	for i := range r.EvKinds {
		ev := event.Evidence{Kind: event.EvidenceKind(r.EvKinds[i]), Ref: r.EvRefs[i], ContentType: r.EvTypes[i], SHA256: r.EvSHA256[i]}
		if r.EvTimes[i] != 0 {
			t := event.NewTime(time.UnixMilli(r.EvTimes[i]))
			ev.Time = &t
		}
		e.Evidence = append(e.Evidence, ev)
	}
	return e, nil
}

// HealthFromEvent reads a camera.health sample.
func HealthFromEvent(e *event.Event) (HealthRow, error) {
	if e.Source.Kind != event.SourceCamera || e.Source.ID == "" {
		return HealthRow{}, errors.New("camera.health: the source must be a camera")
	}
	num := func(k string) (float64, error) {
		v, ok := e.Number(k)
		if !ok {
			return 0, nil
		}
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("camera.health: attribute %s is %v, want a number >= 0", k, v)
		}
		return v, nil
	}
	minute := e.Time.UTC().Truncate(time.Second)
	h := HealthRow{
		ID:      e.Source.ID + "@" + strconv.FormatInt(minute.Unix(), 10),
		Camera:  e.Source.ID,
		Minute:  minute,
		Region:  e.Location.Region,
		Grid:    e.Location.Grid,
		EventID: e.ID.String(),
	}
	h.Vendor, _ = e.String(event.HealthVendor)
	h.State, _ = e.String(event.HealthState)
	if f, _ := e.String(event.HealthFaults); f != "" {
		h.Faults = strings.Split(f, ",")
		slices.Sort(h.Faults)
	}
	var err error
	fields := []struct {
		key string
		dst *float64
	}{
		{event.HealthWindow, &h.WindowSeconds}, {event.HealthOnline, &h.OnlineSeconds}, {event.HealthBitrate, &h.BitrateKbps},
		{event.HealthFPS, &h.FPS}, {event.HealthPackets, &h.Packets}, {event.HealthLost, &h.PacketsLost},
	}
	for _, f := range fields {
		if *f.dst, err = num(f.key); err != nil {
			return HealthRow{}, err
		}
	}
	if h.WindowSeconds == 0 {
		h.WindowSeconds = 60
	}
	if h.WindowSeconds > 3600 {
		return HealthRow{}, fmt.Errorf("camera.health: window_seconds %v is over an hour", h.WindowSeconds)
	}
	h.OnlineSeconds = min(h.OnlineSeconds, h.WindowSeconds)
	return h, nil
}

func (b *Batch) addCase(m bus.Message) error {
	var ch cases.Change
	if len(m.Value) > maxChangeBytes {
		return fmt.Errorf("case change of %d bytes is over the %d-byte limit", len(m.Value), maxChangeBytes)
	}
	if err := json.Unmarshal(m.Value, &ch); err != nil {
		return fmt.Errorf("case change: %w", err)
	}
	if ch.Case == nil || ch.Case.ID == "" || ch.Entry.Seq <= 0 || ch.Entry.At.IsZero() {
		return errors.New("case change: needs case.id, entry.seq and entry.at")
	}
	r := CaseFromChange(&ch)
	r.Partition, r.Offset = m.Partition, m.Offset
	b.Cases = append(b.Cases, r)
	return nil
}

// maxChangeBytes bounds one case change on the bus.
const maxChangeBytes = 1 << 20

// CaseFromChange flattens a case change into a row.
func CaseFromChange(ch *cases.Change) CaseRow {
	c, h := ch.Case, ch.Entry
	at := h.At.UTC().Truncate(time.Millisecond)
	r := CaseRow{
		ID:            c.ID + "/" + strconv.Itoa(h.Seq),
		CaseID:        c.ID,
		Number:        c.Number,
		Seq:           h.Seq,
		Time:          at,
		Action:        h.Action,
		FromState:     string(h.From),
		ToState:       string(h.To),
		State:         string(c.State),
		Actor:         h.Actor,
		ActorRole:     h.Role,
		Category:      c.Category,
		Colour:        string(c.Colour),
		Risk:          c.Risk,
		Source:        string(c.Source),
		Rule:          c.Rule,
		Region:        c.Region,
		Grid:          c.Grid,
		Level:         string(c.Level),
		Department:    c.Department,
		CoDepartments: c.CoDepartments,
		AlertCount:    c.AlertCount,
		UrgeCount:     c.UrgeCount,
		Escalations:   c.Escalations,
		Satisfaction:  c.Satisfaction,
		Outcome:       c.Outcome,
		MergedInto:    c.MergedInto,
		Created:       utc(c.Created),
		Dispatched:    utc(c.Dispatched),
		Accepted:      utc(c.AcceptedAt),
		Resolved:      utc(c.ResolvedAt),
		Closed:        utc(c.ClosedAt),
		Deadline:      utc(c.Deadline),
		Due:           utc(ch.Due),
		Version:       c.Version,
	}
	r.Late = !r.Due.IsZero() && at.After(r.Due)
	return r
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Millisecond)
}

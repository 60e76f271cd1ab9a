package gen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/cases"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/event"
)

// Config sizes and seeds a history.
type Config struct {
	// Seed makes the history: the same configuration gives the same rows.
	Seed int64
	// Start is the first day; the history begins at its midnight in
	// Timezone.
	Start time.Time
	// Days is how long the history runs.
	Days int
	// Cameras and Devices are the county's fleet (devices: sensors, alarm
	// buttons and AI boxes).
	Cameras int
	Devices int
	// EventsPerDay is the average number of events a day, camera.health
	// samples aside; weekdays and weekends differ a little.
	EventsPerDay int
	// CasesPerDay is the average number of cases opened a day (a county
	// centre takes about 86); each has about six case events.
	CasesPerDay int
	// HealthDays is how many of the last days get camera.health samples:
	// one row per camera per minute (2000 cameras make 2.9 million a day).
	HealthDays int
	// Regions shapes the region tree.
	Regions Regions
	// Batch is how many rows (or messages) are emitted at once, at least;
	// a batch always ends at a minute boundary.
	Batch int
	// Timezone is where days begin and office hours are kept.
	Timezone string
}

// Regions shapes the county: townships (街道/镇), their villages or
// communities, and the grids (网格) of each.
type Regions struct {
	County      string
	Townships   int
	VillagesMin int
	VillagesMax int
	GridsMin    int
	GridsMax    int
	// Lat and Lon are the county town; everything lies within about 30 km.
	Lat float64
	Lon float64
}

// Defaults is a realistic county: 2,000 cameras, 500 devices, about
// 111,000 events and 86 cases a day over 90 days, with the last two days'
// camera health, starting on a Monday.
func Defaults() Config {
	return Config{
		Seed:         1,
		Start:        time.Date(2026, 3, 2, 0, 0, 0, 0, shanghai()),
		Days:         90,
		Cameras:      2000,
		Devices:      500,
		EventsPerDay: 111_112,
		CasesPerDay:  86,
		HealthDays:   2,
		Regions: Regions{County: "示范县", Townships: 12, VillagesMin: 8, VillagesMax: 15, GridsMin: 3, GridsMax: 8,
			Lat: 31.2, Lon: 115.6},
		Batch:    10_000,
		Timezone: "Asia/Shanghai",
	}
}

// Benchmark is the analytics benchmark's size: Defaults with 2,222 cases a
// day, so that 90 days hold 10 million events and about 200,000 cases
// (1.2 million case events).
func Benchmark() Config {
	c := Defaults()
	c.CasesPerDay = 2222
	return c
}

func shanghai() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		return time.FixedZone("CST", 8*3600)
	}
	return loc
}

// Validate reports the first setting out of range.
func (c *Config) Validate() error {
	r := c.Regions
	switch {
	case c.Start.IsZero():
		return errors.New("gen: start: required")
	case c.Days < 1 || c.Days > 3660:
		return errors.New("gen: days: must be 1 to 3660")
	case c.Cameras < 1 || c.Cameras > 1_000_000:
		return errors.New("gen: cameras: must be 1 to 1000000")
	case c.Devices < 0 || c.Devices > 1_000_000:
		return errors.New("gen: devices: must be 0 to 1000000")
	case c.EventsPerDay < 0 || c.EventsPerDay > 100_000_000:
		return errors.New("gen: events per day: must be 0 to 100000000")
	case c.CasesPerDay < 0 || c.CasesPerDay > 1_000_000:
		return errors.New("gen: cases per day: must be 0 to 1000000")
	case c.HealthDays < 0 || c.HealthDays > c.Days:
		return errors.New("gen: health days: must be 0 to days")
	case c.Batch < 1:
		return errors.New("gen: batch: must be at least 1")
	case r.County == "" || checkRegion(r.County) != nil:
		return fmt.Errorf("gen: regions.county: %q is not a region name", r.County)
	case r.Townships < 1 || r.Townships > 99:
		return errors.New("gen: regions.townships: must be 1 to 99")
	case r.VillagesMin < 1 || r.VillagesMax < r.VillagesMin || r.VillagesMax > 99:
		return errors.New("gen: regions.villages: need 1 <= min <= max <= 99")
	case r.GridsMin < 1 || r.GridsMax < r.GridsMin || r.GridsMax > 99:
		return errors.New("gen: regions.grids: need 1 <= min <= max <= 99")
	case r.Lat < -80 || r.Lat > 80 || r.Lon < -179 || r.Lon > 179:
		return errors.New("gen: regions.lat/lon: out of range")
	}
	if _, err := time.LoadLocation(c.Timezone); err != nil || c.Timezone == "" {
		return fmt.Errorf("gen: timezone: %q is not a time zone", c.Timezone)
	}
	return nil
}

// checkRegion checks a region segment the way the event schema does.
func checkRegion(s string) error {
	e := event.New(event.SourceSystem, "gen", "gen.check")
	e.Location.Region = s
	return e.Validate()
}

// Location is the time zone of the history.
func (c *Config) Location() *time.Location {
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		return shanghai()
	}
	return loc
}

// Begin is when the history begins: Start's midnight in Timezone.
func (c *Config) Begin() time.Time {
	loc := c.Location()
	y, m, d := c.Start.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc)
}

// End is when the history ends (exclusive): Days after Begin.
func (c *Config) End() time.Time { return c.Begin().AddDate(0, 0, c.Days) }

// ErrStop, returned by an emit function, ends Generate or Messages early
// without an error.
var ErrStop = errors.New("gen: stop")

// Generate builds the history of cfg and hands it to emit in batches of
// about cfg.Batch rows (a batch ends at a minute boundary), in time order:
// no row of a batch is newer than a row of the next, and the rows of a
// table come in time order within a batch. emit owns each batch. The rows are made from events and case
// changes through the analytics package's own constructors
// (EventFromEvent, HealthFromEvent, CaseFromChange), with bus partitions
// and offsets as a 12-partition bus would give them.
func Generate(ctx context.Context, cfg Config, emit func(*analytics.Batch) error) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	out := &rowsOutput{emit: emit, size: cfg.Batch, b: &analytics.Batch{}}
	return stopped(newEngine(cfg, out).run(ctx))
}

// Messages builds the same history as bus messages, as the ingest role and
// the case workflow publish them: events and camera.health samples on
// sharpeye.events (keyed by source, encoded with event.Encode), case
// changes on sharpeye.cases (keyed by case id, JSON). It hands them to emit
// in time order, about cfg.Batch at a time; emit owns each slice.
func Messages(ctx context.Context, cfg Config, emit func([]bus.Message) error) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	out := &messagesOutput{emit: emit, size: cfg.Batch}
	return stopped(newEngine(cfg, out).run(ctx))
}

func stopped(err error) error {
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
}

// output receives what the engine makes, in time order.
type output interface {
	event(e *event.Event) error
	health(e *event.Event) error
	change(ch *cases.Change) error
	// minute is called at the end of every minute (last: of the history).
	minute(last bool) error
}

// busPartitions is how many partitions the rows say the bus has.
const busPartitions = 12

// partition places key on a bus of busPartitions partitions (FNV-1a).
func partition(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % busPartitions)
}

// rowsOutput builds analytics batches.
type rowsOutput struct {
	emit    func(*analytics.Batch) error
	size    int
	b       *analytics.Batch
	offsets [2][busPartitions]int64
}

// received is when the bus took an event: 20 to 275 ms after it happened,
// from the event's id so that it needs no random draw.
func received(e *event.Event) time.Time {
	return e.Time.Time.Add(time.Duration(20+int(e.ID[15])) * time.Millisecond).UTC()
}

func (o *rowsOutput) event(e *event.Event) error {
	r := analytics.EventFromEvent(e)
	r.Received = received(e)
	r.Partition = partition(e.PartitionKey())
	r.Offset = o.offsets[0][r.Partition]
	o.offsets[0][r.Partition]++
	o.b.Events = append(o.b.Events, r)
	return nil
}

func (o *rowsOutput) health(e *event.Event) error {
	h, err := analytics.HealthFromEvent(e)
	if err != nil {
		return err
	}
	h.Partition = partition(e.PartitionKey())
	h.Offset = o.offsets[0][h.Partition]
	o.offsets[0][h.Partition]++
	o.b.Health = append(o.b.Health, h)
	return nil
}

func (o *rowsOutput) change(ch *cases.Change) error {
	r := analytics.CaseFromChange(ch)
	r.Partition = partition(ch.Case.ID)
	r.Offset = o.offsets[1][r.Partition]
	o.offsets[1][r.Partition]++
	o.b.Cases = append(o.b.Cases, r)
	return nil
}

func (o *rowsOutput) minute(last bool) error {
	if o.b.Len() == 0 || (o.b.Len() < o.size && !last) {
		return nil
	}
	b := o.b
	o.b = &analytics.Batch{
		Events: make([]analytics.EventRow, 0, cap(b.Events)),
		Cases:  make([]analytics.CaseRow, 0, cap(b.Cases)),
		Health: make([]analytics.HealthRow, 0, cap(b.Health)),
	}
	return o.emit(b)
}

// messagesOutput builds bus messages.
type messagesOutput struct {
	emit func([]bus.Message) error
	size int
	msgs []bus.Message
}

func (o *messagesOutput) event(e *event.Event) error {
	v, err := e.Encode()
	if err != nil {
		return fmt.Errorf("gen: encode %s event: %w", e.Type, err)
	}
	o.msgs = append(o.msgs, bus.Message{Topic: bus.TopicEvents, Key: e.PartitionKey(), Value: v})
	return nil
}

func (o *messagesOutput) health(e *event.Event) error { return o.event(e) }

func (o *messagesOutput) change(ch *cases.Change) error {
	v, err := json.Marshal(ch)
	if err != nil {
		return fmt.Errorf("gen: encode case change: %w", err)
	}
	o.msgs = append(o.msgs, bus.Message{Topic: bus.TopicCases, Key: ch.Case.ID, Value: v,
		Headers: map[string]string{"type": ch.Type}})
	return nil
}

func (o *messagesOutput) minute(last bool) error {
	if len(o.msgs) == 0 || (len(o.msgs) < o.size && !last) {
		return nil
	}
	m := o.msgs
	o.msgs = make([]bus.Message, 0, cap(m))
	return o.emit(m)
}

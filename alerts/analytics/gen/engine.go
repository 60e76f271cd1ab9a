package gen

import (
	"container/heap"
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"sharpeye/alerts/cases"
	"sharpeye/ingest/event"
)

const (
	minute = int64(time.Minute / time.Millisecond)
	hour   = 60 * minute
	day    = 24 * hour
)

// engine makes one history, minute after minute.
type engine struct {
	cfg        Config
	a          *Atlas
	loc        *time.Location
	rng        *rand.Rand
	out        output
	begin, end int64 // Unix ms
	playbooks  map[string]*cases.Playbook
	colours    cases.ColourThresholds

	// Where each camera's and device's events happen.
	camLoc []event.Location
	devLoc []event.Location

	// The cameras' and devices' conditions over the whole history, and
	// their boundaries in time order.
	cams     []camLine
	devs     [][]span
	villages []villageOutage
	marks    []mark
	markAt   int

	// Events not tied to a case or a condition: a Poisson process per
	// hour of the week (Sunday 0:00 first) and the mix of types.
	evTypes []eventDef
	evRate  [168]float64
	evCDF   [168][]float64

	// Cases opened at random (structural rules aside), likewise.
	streams []stream
	csRate  [168]float64
	csCDF   [168][]float64
	// Structural rules open cases at outages and faults, as many as
	// their quota allows.
	offlineQ, qualityQ, villageQ quota

	// Where things happen today: pools weighted by activity and by the
	// hot grids' heat.
	pools  pools
	gridHF []float64

	runs    runHeap
	order   int
	numbers map[int]int
	// Until when each camera (village) has an open case of its
	// structural rule: further outages join it.
	camOfflineUntil []int64
	camQualityUntil []int64
	villageUntil    []int64
	gridByID        map[string]int

	evs     []*event.Event
	free    []*event.Event
	offsets []int64
	health  *event.Event
}

// span is a time interval [from, to) in Unix ms; village spans are a
// village's network outage.
type span struct {
	from, to int64
	village  bool
}

type fault struct {
	span
	kind string
}

type camLine struct {
	outs   []span
	faults []fault
	// cursors of the health samples
	oc, fc int
}

type villageOutage struct {
	village  int
	from, to int64
}

// mark kinds.
const (
	mCamOff = iota
	mCamOn
	mFault
	mFaultClear
	mDevOff
	mDevOn
	mVillage
)

// mark is a boundary of a condition: an event (and maybe a case) to make.
type mark struct {
	at   int64
	kind uint8
	idx  int32 // camera, device or village outage
	sub  int32 // the span or fault
}

// stream is a kind of case opened at random: a category, a source and,
// for alerts, a rule.
type stream struct {
	mix    *categoryMix
	source cases.Source
	rule   *ruleDef
	prof   *profile
	perDay float64
}

// quota keeps a structural rule's cases on target: an eligible outage
// opens a case with the probability of the cases owed so far.
type quota struct {
	perMin float64
	due    float64
	made   float64
}

func (q *quota) take(rng *rand.Rand) bool {
	if rng.Float64() < q.due-q.made {
		q.made++
		return true
	}
	return false
}

func newEngine(cfg Config, out output) *engine {
	g := &engine{
		cfg: cfg, a: County(cfg), loc: cfg.Location(), out: out,
		rng:     rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5ea1)),
		begin:   cfg.Begin().UnixMilli(),
		end:     cfg.End().UnixMilli(),
		numbers: map[int]int{},
	}
	cc := cases.Defaults()
	g.colours = cc.Colours
	g.playbooks = map[string]*cases.Playbook{}
	for i := range cc.Playbooks {
		g.playbooks[cc.Playbooks[i].Category] = &cc.Playbooks[i]
	}
	for _, c := range g.a.Cameras {
		lat, lon := c.Lat, c.Lon
		g.camLoc = append(g.camLoc, event.Location{Region: c.Region, Grid: c.Grid, Lat: &lat, Lon: &lon})
	}
	for _, d := range g.a.Devices {
		lat, lon := d.Lat, d.Lon
		g.devLoc = append(g.devLoc, event.Location{Region: d.Region, Grid: d.Grid, Lat: &lat, Lon: &lon})
	}
	g.camOfflineUntil = make([]int64, len(g.a.Cameras))
	g.camQualityUntil = make([]int64, len(g.a.Cameras))
	g.villageUntil = make([]int64, len(g.a.Villages))
	g.gridHF = make([]float64, len(g.a.Grids))
	g.gridByID = make(map[string]int, len(g.a.Grids))
	for i, gr := range g.a.Grids {
		g.gridByID[gr.ID] = i
	}
	g.planStreams()
	g.buildTimeline()
	g.planEvents()
	return g
}

// planStreams splits the cases a day over categories, sources and rules.
func (g *engine) planStreams() {
	total := float64(g.cfg.CasesPerDay)
	for i := range categoryMixes {
		m := &categoryMixes[i]
		if g.playbooks[m.category] == nil {
			continue
		}
		for _, s := range m.sources {
			perDay := total * m.share * s.share / (1 + m.dup)
			if s.source != cases.FromAlert {
				g.streams = append(g.streams, stream{mix: m, source: s.source, prof: s.prof, perDay: perDay})
				continue
			}
			for _, r := range m.rules {
				rd := ruleByID(r.name)
				n := perDay * r.w
				switch rd.id {
				case "camera-offline":
					g.offlineQ.perMin = n / 1440
				case "camera-quality":
					g.qualityQ.perMin = n / 1440
				case "village-network-down":
					g.villageQ.perMin = n / 1440
				default:
					g.streams = append(g.streams, stream{mix: m, source: cases.FromAlert, rule: rd, prof: rd.prof, perDay: n})
				}
			}
		}
	}
	for hw := range 168 {
		h, weekend := hw%24, hw/24 == 0 || hw/24 == 6
		c := make([]float64, len(g.streams))
		sum := 0.0
		for i, s := range g.streams {
			sum += s.perDay * s.prof.share(h, weekend)
			c[i] = sum
		}
		g.csRate[hw], g.csCDF[hw] = sum, c
	}
}

// planEvents sets the rate of the events not tied to a case or a
// condition: what is left of EventsPerDay.
func (g *engine) planEvents() {
	structural := 0
	for _, m := range g.marks {
		if m.kind != mVillage {
			structural++
		}
	}
	triggers := 0.0
	for _, s := range g.streams {
		if s.rule != nil {
			triggers += s.perDay * float64(s.rule.triggers)
		}
	}
	perDay := max(float64(g.cfg.EventsPerDay)-float64(structural)/float64(g.cfg.Days)-triggers, 0)
	ai := false
	for _, c := range g.a.Cameras {
		ai = ai || c.Analyser >= 0
	}
	has := func(kinds ...string) bool {
		return slices.ContainsFunc(g.a.Devices, func(d Device) bool { return slices.Contains(kinds, d.Kind) })
	}
	sum := 0.0
	for _, d := range eventMix {
		ok := true
		switch {
		case strings.HasPrefix(d.typ, "detection."):
			ok = ai
		case d.typ == "telemetry":
			ok = len(g.a.Devices) > 0
		case d.typ == "sensor.door.forced":
			ok = has(KindDoor, KindGate)
		case d.typ == "sensor.alarm_button.pressed":
			ok = has(KindAlarmButton)
		}
		if ok {
			g.evTypes = append(g.evTypes, d)
			sum += d.share
		}
	}
	for hw := range 168 {
		h, weekend := hw%24, hw/24 == 0 || hw/24 == 6
		c := make([]float64, len(g.evTypes))
		rate := 0.0
		for i, d := range g.evTypes {
			rate += perDay * d.share / sum * d.prof.share(h, weekend)
			c[i] = rate
		}
		g.evRate[hw], g.evCDF[hw] = rate, c
	}
}

// lognormal draws a duration in ms with the given median and spread.
func (g *engine) lognormal(median time.Duration, sigma float64) int64 {
	return max(int64(float64(median/time.Millisecond)*math.Exp(sigma*g.rng.NormFloat64())), 1000)
}

// process draws the spans of a Poisson process of rate a day over the
// history, each lasting a lognormal time.
func (g *engine) process(perDay float64, median time.Duration, sigma float64) []span {
	if perDay <= 0 {
		return nil
	}
	var out []span
	t := g.begin
	for {
		t += int64(g.rng.ExpFloat64() / perDay * float64(day))
		if t >= g.end {
			return out
		}
		out = append(out, span{from: t, to: t + g.lognormal(median, sigma)})
	}
}

// merge sorts spans and joins those that overlap.
func merge(s []span) []span {
	slices.SortStableFunc(s, func(a, b span) int { return cmpInt(a.from, b.from) })
	out := s[:0]
	for _, x := range s {
		if n := len(out); n > 0 && x.from <= out[n-1].to {
			out[n-1].to = max(out[n-1].to, x.to)
			continue
		}
		out = append(out, x)
	}
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// buildTimeline draws every camera's outages and faults, every device's
// outages and every village's network outages, scaled so that the
// structural rules find enough of them to open their share of cases.
func (g *engine) buildTimeline() {
	a := g.a
	nH, nW := 0.0, 0.0
	for _, c := range a.Cameras {
		switch c.Health {
		case Healthy:
			nH++
		case Weak:
			nW++
		}
	}
	const healthyRate, weakRate = 0.08, 0.6
	scale := max(1, 2.5*g.offlineQ.perMin*1440/max(healthyRate*nH+weakRate*nW, 1e-9))
	g.cams = make([]camLine, len(a.Cameras))
	for ci, c := range a.Cameras {
		var outs []span
		switch c.Health {
		case Healthy:
			outs = g.process(healthyRate*scale, 25*time.Minute, 1.0)
		case Weak:
			outs = g.process(weakRate*scale, time.Hour, 1.0)
		case Chronic:
			outs = append(g.process(7, 70*time.Minute, 0.8), g.process(10, 2*time.Minute, 0.5)...)
		}
		g.cams[ci].outs = outs
	}
	// Village network outages: every camera of the village within 90 s.
	vRate := max(1.0/60, 2*g.villageQ.perMin*1440/float64(max(len(a.Villages), 1)))
	for vi, v := range a.Villages {
		for _, s := range g.process(vRate, time.Hour, 0.7) {
			g.villages = append(g.villages, villageOutage{village: vi, from: s.from, to: s.to})
			for _, ci := range v.Cameras {
				from := s.from + g.rng.Int64N(90_000)
				to := max(s.to+g.rng.Int64N(180_000)-60_000, from+60_000)
				g.cams[ci].outs = append(g.cams[ci].outs, span{from: from, to: to, village: true})
			}
		}
	}
	slices.SortStableFunc(g.villages, func(x, y villageOutage) int { return cmpInt(x.from, y.from) })
	// Faults, never during an outage.
	prone := 0.0
	for _, c := range a.Cameras {
		if c.FaultProne {
			prone++
		}
	}
	const normalFaults, proneFaults = 0.04, 1.5
	fscale := max(1, 2.5*g.qualityQ.perMin*1440/max(normalFaults*(float64(len(a.Cameras))-prone)+proneFaults*prone, 1e-9))
	kindCDF := cdf(len(faultKinds), func(i int) float64 { return faultKinds[i].w })
	for ci, c := range a.Cameras {
		l := &g.cams[ci]
		l.outs = merge(l.outs)
		rate := normalFaults
		if c.FaultProne {
			rate = proneFaults
		}
		last := map[string]int64{}
		for _, s := range g.process(rate*fscale, 40*time.Minute, 1.0) {
			kind := faultKinds[pick(g.rng, kindCDF)].name
			if s.from < last[kind] || overlaps(l.outs, s) {
				continue
			}
			last[kind] = s.to
			l.faults = append(l.faults, fault{span: s, kind: kind})
		}
	}
	g.devs = make([][]span, len(a.Devices))
	for di, d := range a.Devices {
		if d.Flapping {
			g.devs[di] = merge(g.process(6, 10*time.Minute, 0.8))
		} else {
			g.devs[di] = merge(g.process(0.03, 3*time.Hour, 0.8))
		}
	}

	in := func(t int64) bool { return t >= g.begin && t < g.end }
	for ci, l := range g.cams {
		for si, s := range l.outs {
			if in(s.from) {
				g.marks = append(g.marks, mark{at: s.from, kind: mCamOff, idx: int32(ci), sub: int32(si)})
			}
			if in(s.to) {
				g.marks = append(g.marks, mark{at: s.to, kind: mCamOn, idx: int32(ci), sub: int32(si)})
			}
		}
		for fi, f := range l.faults {
			if in(f.from) {
				g.marks = append(g.marks, mark{at: f.from, kind: mFault, idx: int32(ci), sub: int32(fi)})
			}
			if in(f.to) {
				g.marks = append(g.marks, mark{at: f.to, kind: mFaultClear, idx: int32(ci), sub: int32(fi)})
			}
		}
	}
	for di, spans := range g.devs {
		for si, s := range spans {
			if in(s.from) {
				g.marks = append(g.marks, mark{at: s.from, kind: mDevOff, idx: int32(di), sub: int32(si)})
			}
			if in(s.to) {
				g.marks = append(g.marks, mark{at: s.to, kind: mDevOn, idx: int32(di), sub: int32(si)})
			}
		}
	}
	for i, v := range g.villages {
		// The rule fires once the third camera is down.
		if at := v.from + 75_000; in(at) {
			g.marks = append(g.marks, mark{at: at, kind: mVillage, idx: int32(i)})
		}
	}
	slices.SortStableFunc(g.marks, func(x, y mark) int { return cmpInt(x.at, y.at) })
}

// overlaps reports whether s overlaps one of the sorted spans.
func overlaps(spans []span, s span) bool {
	i, _ := slices.BinarySearchFunc(spans, s.from, func(x span, t int64) int { return cmpInt(x.from, t) })
	if i > 0 && spans[i-1].to > s.from {
		return true
	}
	return i < len(spans) && spans[i].from < s.to
}

// down reports whether t falls in one of the sorted spans.
func down(spans []span, t int64) bool {
	i, _ := slices.BinarySearchFunc(spans, t+1, func(x span, t int64) int { return cmpInt(x.from, t) })
	return i > 0 && spans[i-1].to > t
}

// id returns a UUIDv7 stamped with at whose other bits come from the
// history's random stream.
func (g *engine) id(at int64) event.ID {
	var id event.ID
	binary.BigEndian.PutUint64(id[0:8], g.rng.Uint64())
	binary.BigEndian.PutUint64(id[8:16], g.rng.Uint64())
	ms := uint64(max(at, 0))
	id[0], id[1], id[2], id[3], id[4], id[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	id[6] = 0x70 | id[6]&0x0f
	id[8] = 0x80 | id[8]&0x3f
	return id
}

// poisson draws a count with mean l.
func (g *engine) poisson(l float64) int {
	if l <= 0 {
		return 0
	}
	if l > 30 {
		return max(int(math.Round(l+math.Sqrt(l)*g.rng.NormFloat64())), 0)
	}
	lim, k, p := math.Exp(-l), 0, 1.0
	for {
		p *= g.rng.Float64()
		if p <= lim {
			return k
		}
		k++
	}
}

// hourOfWeek is the local hour of the week of t, Sunday 0:00 first.
func (g *engine) hourOfWeek(t int64) int {
	lt := time.UnixMilli(t).In(g.loc)
	return int(lt.Weekday())*24 + lt.Hour()
}

// localHour is the local hour of t, with its fraction.
func (g *engine) localHour(t int64) float64 {
	lt := time.UnixMilli(t).In(g.loc)
	return float64(lt.Hour()) + float64(lt.Minute())/60
}

// run makes the history.
func (g *engine) run(ctx context.Context) error {
	healthFrom := g.cfg.Days - g.cfg.HealthDays
	for d := range g.cfg.Days {
		if err := ctx.Err(); err != nil {
			return err
		}
		g.newDay(d)
		for m := range 1440 {
			t0 := g.begin + int64(d)*day + int64(m)*minute
			if m%60 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if err := g.minute(t0, d >= healthFrom); err != nil {
				return err
			}
		}
	}
	return g.out.minute(true)
}

// minute makes everything that happens in [t0, t0+1m).
func (g *engine) minute(t0 int64, withHealth bool) error {
	t1 := t0 + minute
	hw := g.hourOfWeek(t0)
	g.offlineQ.due += g.offlineQ.perMin
	g.qualityQ.due += g.qualityQ.perMin
	g.villageQ.due += g.villageQ.perMin
	g.recycle()
	for ; g.markAt < len(g.marks) && g.marks[g.markAt].at < t1; g.markAt++ {
		g.structural(g.marks[g.markAt])
	}
	g.randomEvents(t0, hw)
	g.randomCases(t0, hw)
	slices.SortStableFunc(g.evs, func(x, y *event.Event) int { return x.Time.Time.Compare(y.Time.Time) })
	for _, e := range g.evs {
		if err := g.out.event(e); err != nil {
			return err
		}
	}
	if withHealth {
		if err := g.healthSamples(t0, t1); err != nil {
			return err
		}
	}
	if err := g.emitChanges(t1); err != nil {
		return err
	}
	return g.out.minute(false)
}

// sortedOffsets draws n times within a minute, in order.
func (g *engine) sortedOffsets(n int) []int64 {
	g.offsets = g.offsets[:0]
	for range n {
		g.offsets = append(g.offsets, g.rng.Int64N(minute))
	}
	slices.Sort(g.offsets)
	return g.offsets
}

func (g *engine) randomEvents(t0 int64, hw int) {
	if len(g.evTypes) == 0 {
		return
	}
	n := g.poisson(g.evRate[hw])
	for _, off := range g.sortedOffsets(n) {
		at := t0 + off
		switch d := g.evTypes[pick(g.rng, g.evCDF[hw])]; d.typ {
		case "motion":
			if ci := g.upCamera(&g.pools.cams, at); ci >= 0 {
				g.add(g.motion(ci, at))
			}
		case "detection.person", "detection.vehicle", "detection.crowd", "detection.fall":
			if ci := g.upCamera(&g.pools.ai, at); ci >= 0 {
				g.add(g.detection(d.typ, ci, at, 0))
			}
		case "telemetry":
			if di := g.upDevice(&g.pools.telemetry, at); di >= 0 {
				g.add(g.telemetry(di, at, false))
			}
		case "sensor.door.forced":
			if di := g.upDevice(&g.pools.doors, at); di >= 0 {
				g.add(g.doorForced(di, at))
			}
		case "sensor.alarm_button.pressed":
			if di := g.upDevice(&g.pools.alarms, at); di >= 0 {
				g.add(g.alarm(di, at))
			}
		}
	}
}

func (g *engine) add(e *event.Event) { g.evs = append(g.evs, e) }

// upCamera picks a camera of p that is online at t (-1: none found).
func (g *engine) upCamera(p *pool, t int64) int {
	for range 4 {
		ci := p.pick(g.rng)
		if ci < 0 {
			return -1
		}
		if !down(g.cams[ci].outs, t) {
			return ci
		}
	}
	return -1
}

// upDevice picks a device of p that is online at t (-1: none found).
func (g *engine) upDevice(p *pool, t int64) int {
	for range 4 {
		di := p.pick(g.rng)
		if di < 0 {
			return -1
		}
		if !down(g.devs[di], t) {
			return di
		}
	}
	return -1
}

// structural makes the events of a condition's boundary, and the case a
// structural rule opens there.
func (g *engine) structural(m mark) {
	i := int(m.idx)
	switch m.kind {
	case mCamOff:
		s := g.cams[i].outs[m.sub]
		g.add(g.cameraOffline(i, m.at))
		if !s.village && g.camOfflineUntil[i] <= m.at && g.offlineQ.take(g.rng) {
			g.cameraCase(ruleByID("camera-offline"), i, m.at, int(m.sub), "")
		}
	case mCamOn:
		s := g.cams[i].outs[m.sub]
		g.add(g.cameraOnline(i, m.at, s.to-s.from))
	case mFault:
		f := g.cams[i].faults[m.sub]
		g.add(g.fault(i, m.at, f.kind))
		if g.camQualityUntil[i] <= m.at && g.qualityQ.take(g.rng) {
			g.cameraCase(ruleByID("camera-quality"), i, m.at, -1, f.kind)
		}
	case mFaultClear:
		f := g.cams[i].faults[m.sub]
		g.add(g.faultCleared(i, m.at, f.kind, f.to-f.from))
	case mDevOff:
		g.add(g.deviceStatus(i, m.at, false))
	case mDevOn:
		g.add(g.deviceStatus(i, m.at, true))
	case mVillage:
		v := g.villages[i]
		if g.villageUntil[v.village] <= m.at && g.villageQ.take(g.rng) {
			g.villageCase(i, m.at)
		}
	}
}

// healthSamples makes every camera's camera.health sample of the minute
// ending at t1.
func (g *engine) healthSamples(t0, t1 int64) error {
	e := g.health
	if e == nil {
		e = &event.Event{Schema: event.SchemaVersion, Type: event.TypeCameraHealth, Severity: event.SeverityInfo,
			Attributes: make(map[string]any, 9)}
		g.health = e
	}
	at := event.Time{Time: time.UnixMilli(t1).UTC()}
	var faults []string
	for ci := range g.a.Cameras {
		c := &g.a.Cameras[ci]
		l := &g.cams[ci]
		for l.oc < len(l.outs) && l.outs[l.oc].to <= t0 {
			l.oc++
		}
		off := int64(0)
		offline := false
		for k := l.oc; k < len(l.outs) && l.outs[k].from < t1; k++ {
			off += min(l.outs[k].to, t1) - max(l.outs[k].from, t0)
			offline = offline || l.outs[k].to >= t1
		}
		for l.fc < len(l.faults) && l.faults[l.fc].to <= t0 {
			l.fc++
		}
		faults = faults[:0]
		degraded := false
		for k := l.fc; k < len(l.faults) && l.faults[k].from < t1; k++ {
			if l.faults[k].to > t0 && !slices.Contains(faults, l.faults[k].kind) {
				faults = append(faults, l.faults[k].kind)
				degraded = degraded || l.faults[k].kind == "camera.degraded"
			}
		}
		slices.Sort(faults)
		online := float64(minute-off) / 1000
		share := online / 60
		br := c.BitrateKbps * share * (1 + 0.04*g.rng.NormFloat64())
		fps := c.FPS * share
		if degraded {
			br *= 0.4
			fps *= 0.5
		}
		packets := math.Round(max(br, 0) * 6.25)
		lossRate := 0.0002
		switch c.Health {
		case Weak:
			lossRate = 0.001
		case Chronic:
			lossRate = 0.004
		}
		state := "online"
		switch {
		case offline && c.Health == Chronic && g.rng.IntN(3) == 0:
			state = "connecting"
		case offline:
			state = "offline"
		}
		e.ID = g.id(t1)
		e.Time = at
		e.Source = event.Source{Kind: event.SourceCamera, ID: c.ID, Name: c.Name}
		e.Location = g.camLoc[ci]
		e.Tags = c.Tags
		clear(e.Attributes)
		e.SetNumber(event.HealthWindow, 60)
		e.SetNumber(event.HealthOnline, online)
		e.SetNumber(event.HealthBitrate, math.Round(max(br, 0)*10)/10)
		e.SetNumber(event.HealthFPS, math.Round(fps*100)/100)
		e.SetNumber(event.HealthPackets, packets)
		e.SetNumber(event.HealthLost, float64(g.poisson(packets*lossRate)))
		e.SetString(event.HealthFaults, strings.Join(faults, ","))
		e.SetString(event.HealthVendor, c.Vendor)
		e.SetString(event.HealthState, state)
		if err := g.out.health(e); err != nil {
			return err
		}
	}
	return nil
}

// pool is a weighted set of cameras or devices.
type pool struct {
	idx []int
	cdf []float64
}

func (p *pool) pick(rng *rand.Rand) int {
	if len(p.idx) == 0 || p.cdf[len(p.cdf)-1] <= 0 {
		return -1
	}
	return p.idx[pick(rng, p.cdf)]
}

// set refills the pool with the items of idx weighted by w.
func (p *pool) set(idx []int, w func(int) float64) {
	p.idx = idx
	p.cdf = cdf(len(idx), func(i int) float64 { return w(idx[i]) })
}

type pools struct {
	cams, ai, school, grids      pool
	telemetry, doors, alarms     pool
	smoke, water, alarmsWithCams pool
	// members, fixed for the history
	all, aiCams, schoolCams, grid []int
	tele, doorDevs, alarmDevs     []int
	smokeDevs, waterDevs, alarmAI []int
	aiOfGrid                      map[int][]int
}

// heat is how much hotter a hot grid is on day d: nothing before the
// last three weeks, then up to six times as busy on the last day.
func (g *engine) heat(d int) float64 {
	w := min(21, g.cfg.Days)
	ramp := float64(d-(g.cfg.Days-w)+1) / float64(w)
	return 1 + 5*min(max(ramp, 0), 1)
}

// newDay refills the pools with today's heat.
func (g *engine) newDay(d int) {
	a, p := g.a, &g.pools
	if p.all == nil {
		p.aiOfGrid = map[int][]int{}
		for ci, c := range a.Cameras {
			p.all = append(p.all, ci)
			if c.Analyser >= 0 {
				p.aiCams = append(p.aiCams, ci)
				p.aiOfGrid[c.GridIndex] = append(p.aiOfGrid[c.GridIndex], ci)
				if slices.Contains(c.Tags, "school") {
					p.schoolCams = append(p.schoolCams, ci)
				}
			}
		}
		if len(p.schoolCams) == 0 {
			p.schoolCams = p.aiCams
		}
		for gi := range a.Grids {
			p.grid = append(p.grid, gi)
		}
		for di, dv := range a.Devices {
			p.tele = append(p.tele, di)
			switch dv.Kind {
			case KindDoor, KindGate:
				p.doorDevs = append(p.doorDevs, di)
			case KindAlarmButton:
				p.alarmDevs = append(p.alarmDevs, di)
				if len(p.aiOfGrid[dv.GridIndex]) > 0 {
					p.alarmAI = append(p.alarmAI, di)
				}
			case KindSmoke:
				p.smokeDevs = append(p.smokeDevs, di)
			case KindWaterLevel:
				p.waterDevs = append(p.waterDevs, di)
			}
		}
	}
	h := g.heat(d)
	for gi, gr := range a.Grids {
		g.gridHF[gi] = 1
		if gr.Hot {
			g.gridHF[gi] = h
		}
	}
	camW := func(ci int) float64 { return a.Cameras[ci].Activity * g.gridHF[a.Cameras[ci].GridIndex] }
	devW := func(di int) float64 { return g.gridHF[a.Devices[di].GridIndex] }
	p.cams.set(p.all, camW)
	p.ai.set(p.aiCams, camW)
	p.school.set(p.schoolCams, camW)
	p.grids.set(p.grid, func(gi int) float64 { return a.Grids[gi].Weight * g.gridHF[gi] })
	p.telemetry.set(p.tele, func(di int) float64 { return 1 / a.Devices[di].Every.Minutes() })
	p.doors.set(p.doorDevs, devW)
	p.alarms.set(p.alarmDevs, devW)
	p.smoke.set(p.smokeDevs, devW)
	p.water.set(p.waterDevs, devW)
	p.alarmsWithCams.set(p.alarmAI, devW)
}

// runHeap orders the cases by their next change.
type runHeap []*caseRun

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	a, b := h[i].ats[h[i].next], h[j].ats[h[j].next]
	return a < b || a == b && h[i].order < h[j].order
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*caseRun)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// emitChanges hands out the case changes before t1.
func (g *engine) emitChanges(t1 int64) error {
	for len(g.runs) > 0 {
		r := g.runs[0]
		at := r.ats[r.next]
		if at >= t1 {
			return nil
		}
		if at >= g.end {
			heap.Pop(&g.runs)
			continue
		}
		ch := &r.chs[r.next]
		if r.next == 0 {
			y := time.UnixMilli(at).In(g.loc).Year()
			g.numbers[y]++
			r.number = numberOf(y, g.numbers[y])
			for i := range r.chs {
				r.chs[i].Case.Number = r.number
			}
		}
		for _, l := range r.links {
			if l.idx == r.next {
				l.patch(ch, l.to)
			}
		}
		if err := g.out.change(ch); err != nil {
			return err
		}
		r.next++
		if r.next < len(r.chs) {
			heap.Fix(&g.runs, 0)
		} else {
			heap.Pop(&g.runs)
		}
	}
	return nil
}

package rules

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"sharpeye/ingest/event"
)

// Env is what a when expression sees of an event. The expr names are the
// lowercase ones in the tags: type, source.kind, source.id, source.name,
// severity, severity_rank (1 info .. 5 critical), region, grid, tags, attr
// (the attributes: attr.smoke, attr["water_level"]), hour, minute and
// weekday ("mon".."sun", in the rule's time zone), and the functions
// hasTag("school"), inRegion("lanxi/xinzhuang") and
// atLeast("major") (severity at least).
type Env struct {
	Type         string         `expr:"type"`
	Source       EnvSource      `expr:"source"`
	Severity     string         `expr:"severity"`
	SeverityRank int            `expr:"severity_rank"`
	Region       string         `expr:"region"`
	Grid         string         `expr:"grid"`
	Tags         []string       `expr:"tags"`
	Attr         map[string]any `expr:"attr"`
	Hour         int            `expr:"hour"`
	Minute       int            `expr:"minute"`
	Weekday      string         `expr:"weekday"`

	HasTag   func(tag string) bool      `expr:"hasTag"`
	InRegion func(region string) bool   `expr:"inRegion"`
	AtLeast  func(severity string) bool `expr:"atLeast"`
}

// EnvSource is the event's source as a when expression sees it.
type EnvSource struct {
	Kind string `expr:"kind"`
	ID   string `expr:"id"`
	Name string `expr:"name"`
}

var exprOptions = []expr.Option{
	expr.Env(Env{}), expr.AsBool(), expr.MaxNodes(1000),
	expr.DisableBuiltin("repeat"),
}

// exprMemory bounds what one evaluation of a condition may allocate.
const exprMemory = 100_000

var weekdays = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func newEnv(e *event.Event, loc *time.Location) *Env {
	lt := e.Time.In(loc)
	return &Env{
		Type:         e.Type,
		Source:       EnvSource{Kind: string(e.Source.Kind), ID: e.Source.ID, Name: e.Source.Name},
		Severity:     string(e.Severity),
		SeverityRank: e.Severity.Rank(),
		Region:       e.Location.Region,
		Grid:         e.Location.Grid,
		Tags:         e.Tags,
		Attr:         e.Attributes,
		Hour:         lt.Hour(),
		Minute:       lt.Minute(),
		Weekday:      weekdays[lt.Weekday()],
		HasTag:       func(t string) bool { return slices.Contains(e.Tags, t) },
		InRegion:     func(r string) bool { return inRegion(e.Location.Region, r) },
		AtLeast:      func(s string) bool { return e.Severity.Rank() >= event.Severity(s).Rank() },
	}
}

// inRegion reports whether region lies within the subtree rooted at within.
func inRegion(region, within string) bool {
	return within == "" || region == within || strings.HasPrefix(region, within+"/")
}

// evalCtx is one event as the rules see it: what every rule may need of
// it is built once, when the first rule needs it (its Env once per time
// zone, its id, its state entry).
type evalCtx struct {
	e    *event.Event
	vm   *vm.VM
	id   string
	en   *entry
	envs []*Env
	locs []*time.Location
}

// eventID returns the event's id as text.
func (x *evalCtx) eventID() string {
	if x.id == "" {
		x.id = x.e.ID.String()
	}
	return x.id
}

// entry returns the event as kept in state, one for every group that
// keeps it, so that it is encoded once when the state is stored.
func (x *evalCtx) entry() *entry {
	if x.en == nil {
		x.en = &entry{ID: x.eventID(), T: x.e.Time.UnixMilli(), ev: x.e}
	}
	return x.en
}

func (x *evalCtx) env(loc *time.Location) *Env {
	for i, l := range x.locs {
		if l == loc || l.String() == loc.String() {
			return x.envs[i]
		}
	}
	env := newEnv(x.e, loc)
	x.locs = append(x.locs, loc)
	x.envs = append(x.envs, env)
	return env
}

// eval runs prog; ok is false when it could not be evaluated (an attribute
// missing or of the wrong type, say).
func (x *evalCtx) eval(prog *vm.Program, loc *time.Location) (res, ok bool) {
	out, err := x.vm.Run(prog, x.env(loc))
	if err != nil {
		return false, false
	}
	b, isBool := out.(bool)
	return b, isBool
}

// matches reports whether e passes every field of the match.
func (m *matcher) matches(e *event.Event) bool {
	f := &m.m
	if len(m.types) > 0 && !anyGlob(m.types, e.Type) {
		return false
	}
	if len(f.SourceKinds) > 0 && !slices.Contains(f.SourceKinds, string(e.Source.Kind)) {
		return false
	}
	if len(m.sources) > 0 && !anyGlob(m.sources, e.Source.ID) {
		return false
	}
	if len(f.Tags) > 0 && !slices.ContainsFunc(f.Tags, func(t string) bool { return slices.Contains(e.Tags, t) }) {
		return false
	}
	if len(f.Regions) > 0 && (e.Location.Region == "" || !slices.ContainsFunc(f.Regions, func(r string) bool { return inRegion(e.Location.Region, r) })) {
		return false
	}
	if len(f.Grids) > 0 && !slices.Contains(f.Grids, e.Location.Grid) {
		return false
	}
	if len(f.DeviceKinds) > 0 {
		if k, _ := e.String("device_kind"); !slices.Contains(f.DeviceKinds, k) {
			return false
		}
	}
	if len(f.Classes) > 0 {
		if k, _ := e.String("class"); !slices.Contains(f.Classes, k) {
			return false
		}
	}
	if f.MinConfidence > 0 {
		if c, ok := e.Number("confidence"); !ok || c < f.MinConfidence {
			return false
		}
	}
	if m.sev > 0 && e.Severity.Rank() < m.sev {
		return false
	}
	return true
}

// label returns the value of a group_by or inhibits.equal entry for e.
func label(e *event.Event, g string) string {
	switch g {
	case "source":
		return string(e.Source.Kind) + ":" + e.Source.ID
	case "camera":
		if strings.HasPrefix(e.Type, "detection.") {
			s, _ := e.String("camera")
			return s
		}
		if e.Source.Kind == event.SourceCamera {
			return e.Source.ID
		}
		return ""
	case "device":
		if e.Source.Kind == event.SourceDevice || e.Source.Kind == event.SourceAnalyser {
			return e.Source.ID
		}
		return ""
	case "grid":
		return e.Location.Grid
	case "region":
		return e.Location.Region
	case "type":
		return e.Type
	}
	if name, ok := strings.CutPrefix(g, "attr."); ok {
		return formatValue(e.Attributes[name])
	}
	return ""
}

var keyEscaper = strings.NewReplacer("%", "%25", "|", "%7C", ",", "%2C")

// groupKey is "<rule id>|grid=g-07" or "<rule id>|source=camera:c1,type=camera.offline".
func (c *compiled) groupKey(e *event.Event) string {
	var b strings.Builder
	b.Grow(len(c.spec.ID) + 64)
	b.WriteString(c.spec.ID)
	b.WriteByte('|')
	for i, g := range c.groupBy {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(g)
		b.WriteByte('=')
		keyEscaper.WriteString(&b, label(e, g))
	}
	return b.String()
}

func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// tmplData is what title and description templates see: the triggering
// event's fields (.Type, .Source.Name, .Location.Grid, .Severity...), plus
// .Rule (the rule), .Events (every triggering event) and .Count.
type tmplData struct {
	*event.Event
	Rule   Rule
	Events []*event.Event
	Count  int
}

// templateFuncs are the functions of title and description templates:
// attr "smoke" (the attribute, formatted), region, grid, source (the
// source's name, else its id) and time "15:04" (the event time in the
// rule's time zone; layout optional, default 2006-01-02 15:04:05).
func templateFuncs(e *event.Event, loc *time.Location) template.FuncMap {
	if e == nil {
		e = &event.Event{}
	}
	return template.FuncMap{
		"attr":   func(name string) string { return formatValue(e.Attributes[name]) },
		"region": func() string { return e.Location.Region },
		"grid":   func() string { return e.Location.Grid },
		"source": func() string {
			if e.Source.Name != "" {
				return e.Source.Name
			}
			return e.Source.ID
		},
		"time": func(layout ...string) string {
			l := "2006-01-02 15:04:05"
			if len(layout) > 0 {
				l = layout[0]
			}
			return e.Time.In(loc).Format(l)
		},
	}
}

const maxRendered = 2048

// render executes t over the firing's last event; ok is false when it
// failed (the caller falls back and counts it).
func render(t *template.Template, c *compiled, evs []*event.Event) (s string, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			s, ok = "", false
		}
	}()
	last := evs[len(evs)-1]
	tc, err := t.Clone()
	if err != nil {
		return "", false
	}
	var b strings.Builder
	if err := tc.Funcs(templateFuncs(last, c.loc)).Execute(&b, tmplData{Event: last, Rule: c.spec, Events: evs, Count: len(evs)}); err != nil {
		return "", false
	}
	s = b.String()
	if len(s) > maxRendered {
		s = s[:maxRendered]
		for len(s) > 0 && !utf8Valid(s) {
			s = s[:len(s)-1]
		}
	}
	return s, true
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

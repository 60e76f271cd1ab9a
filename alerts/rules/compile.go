package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"
	_ "time/tzdata" // schedules must work without system zoneinfo

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"sharpeye/configs/conf"
	"sharpeye/ingest/event"
)

// DefaultTimezone is the time zone of schedules, hour and weekday unless a
// rule's schedule names another.
const DefaultTimezone = "Asia/Shanghai"

// Limits that keep a rule's state bounded.
const (
	MaxCount    = 1000           // count
	MaxDuration = 24 * time.Hour // window, for, correlate.within, cooldown, hold
	MaxRules    = 1000           // rules in a set
	maxExprLen  = 4096           // bytes in a when expression
	maxTmplLen  = 4096           // bytes in a title or description
)

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Problem is one thing wrong with a rule.
type Problem struct {
	// Index is the rule's position in the list given to Compile.
	Index int `json:"index"`
	// Rule is the rule's id, when it has one.
	Rule string `json:"rule,omitempty"`
	// Field is the path within the rule, such as "when" or "match.types[1]".
	Field string `json:"field,omitempty"`
	// Msg says what is wrong.
	Msg string `json:"message"`
}

// Path returns the problem's path relative to the list: "[2].when".
func (p Problem) Path() string {
	s := "[" + strconv.Itoa(p.Index) + "]"
	if p.Field != "" {
		s += "." + p.Field
	}
	return s
}

func (p Problem) String() string { return "rules" + p.Path() + ": " + p.Msg }

// ValidationError lists every problem of a rule set.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// Rules is the alerts.rules section of the configuration.
type Rules []Rule

// Validate implements conf.Validator: every problem Compile would report,
// each at its path (alerts.rules[2].when).
func (rs Rules) Validate(v *conf.V) {
	_, err := Compile(rs)
	var ve *ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			v.Errorf(p.Path(), "%s", p.Msg)
		}
	}
}

// Set is a compiled, valid rule set, ready for an Engine. It is immutable.
type Set struct {
	version int64
	rules   []*compiled
	byID    map[string]*compiled
	// inhibitors maps a target rule id to the rules inhibiting it.
	inhibitors map[string][]*compiled
	// index lists the rules by the event types they may match.
	index *typeIndex
}

// Version returns the version of the rule set (see Store); 0 for a set
// compiled from the configuration alone.
func (s *Set) Version() int64 { return s.version }

// WithVersion returns a copy of s carrying version.
func (s *Set) WithVersion(v int64) *Set {
	c := *s
	c.version = v
	return &c
}

// Rules returns the rule definitions, in order.
func (s *Set) Rules() []Rule {
	out := make([]Rule, len(s.rules))
	for i, c := range s.rules {
		out[i] = c.spec
	}
	return out
}

// Rule returns the definition of the rule id.
func (s *Set) Rule(id string) (Rule, bool) {
	c, ok := s.byID[id]
	if !ok {
		return Rule{}, false
	}
	return c.spec, true
}

type mode int

const (
	modeSimple mode = iota
	modeCount
	modeFor
	modeCorrelate
)

// compiled is a rule ready to evaluate.
type compiled struct {
	spec     Rule
	enabled  bool
	mode     mode
	primary  matcher
	second   matcher // correlate
	within   time.Duration
	forDur   time.Duration
	count    int
	window   time.Duration
	loc      *time.Location
	periods  []period
	groupBy  []string
	cooldown time.Duration
	hold     time.Duration
	equal    []string
	targets  []string // rules this one inhibits
	title    *template.Template
	desc     *template.Template
	elements map[string]*template.Template // by element name
	// fingerprint identifies what the rule's state depends on: state is
	// kept across a change of the rule only when it is unchanged.
	fingerprint string
}

type matcher struct {
	m              Match
	types, sources []glob
	sev            int
	when           *vm.Program
}

// glob is a match.types or match.sources entry; one without wildcards
// compares as a plain string, without path.Match on every event.
type glob struct {
	pattern string
	literal bool
}

func compileGlobs(list []string) []glob {
	out := make([]glob, len(list))
	for i, g := range list {
		out[i] = glob{pattern: g, literal: !strings.ContainsAny(g, `*?[\`)}
	}
	return out
}

// anyGlob reports whether s matches one of gs.
func anyGlob(gs []glob, s string) bool {
	for _, g := range gs {
		if g.literal {
			if g.pattern == s {
				return true
			}
		} else if ok, _ := path.Match(g.pattern, s); ok {
			return true
		}
	}
	return false
}

type period struct {
	days     [7]bool // by time.Weekday
	from, to int     // minutes of the day
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

var groupFields = []string{"source", "camera", "device", "grid", "region", "type"}

// problems collects the problems of one rule.
type problems struct {
	index int
	id    string
	list  *[]Problem
}

func (p problems) add(field, format string, args ...any) {
	*p.list = append(*p.list, Problem{Index: p.index, Rule: p.id, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Compile validates rules as a whole (ids unique, inhibits references
// resolved) and compiles them. The error, if any, is a *ValidationError
// listing every problem.
func Compile(rules []Rule) (*Set, error) {
	var list []Problem
	if len(rules) > MaxRules {
		list = append(list, Problem{Index: MaxRules, Msg: fmt.Sprintf("%d rules; the limit is %d", len(rules), MaxRules)})
		return nil, &ValidationError{Problems: list}
	}
	s := &Set{byID: make(map[string]*compiled, len(rules)), inhibitors: make(map[string][]*compiled)}
	first := make(map[string]int, len(rules))
	for i := range rules {
		p := problems{index: i, id: rules[i].ID, list: &list}
		c := compileRule(rules[i], p)
		if j, dup := first[rules[i].ID]; dup && rules[i].ID != "" {
			p.add("id", "duplicate: rule %q is also rules[%d]", rules[i].ID, j)
			continue
		}
		first[rules[i].ID] = i
		if c != nil {
			s.rules = append(s.rules, c)
			s.byID[c.spec.ID] = c
		}
	}
	for i := range rules {
		in := rules[i].Inhibits
		if in == nil {
			continue
		}
		p := problems{index: i, id: rules[i].ID, list: &list}
		for j, t := range in.Rules {
			switch _, ok := first[t]; {
			case t == rules[i].ID:
				p.add(fmt.Sprintf("inhibits.rules[%d]", j), "a rule cannot inhibit itself")
			case !ok:
				p.add(fmt.Sprintf("inhibits.rules[%d]", j), "no rule %q in the set", t)
			}
		}
	}
	if len(list) > 0 {
		return nil, &ValidationError{Problems: list}
	}
	for _, c := range s.rules {
		for _, t := range c.targets {
			s.inhibitors[t] = append(s.inhibitors[t], c)
		}
	}
	s.index = newTypeIndex(s.rules)
	return s, nil
}

func compileRule(r Rule, p problems) *compiled {
	n := len(*p.list)
	c := &compiled{spec: r, enabled: r.IsEnabled()}
	if r.ID == "" {
		p.add("id", "required")
	} else if !idPattern.MatchString(r.ID) {
		p.add("id", "%q must be 1 to 64 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit", r.ID)
	}
	if strings.TrimSpace(r.Name) == "" {
		p.add("name", "required: what people see")
	} else if len(r.Name) > 256 {
		p.add("name", "%d bytes; the limit is 256", len(r.Name))
	}

	c.loc = defaultZone()
	if r.Schedule != nil {
		c.loc, c.periods = compileSchedule(r.Schedule, p)
	}
	c.primary = compileMatcher(r.Match, r.When, "match", "when", p)

	c.count = max(r.Count, 1)
	c.window = r.Window.D()
	c.forDur = r.For.D()
	checkDuration(p, "for", r.For, false)
	checkDuration(p, "window", r.Window, false)
	checkDuration(p, "cooldown", r.Cooldown, false)
	switch {
	case r.Count < 0:
		p.add("count", "must be at least 1")
	case r.Count > MaxCount:
		p.add("count", "%d; the limit is %d", r.Count, MaxCount)
	case r.Count > 1 && r.Window <= 0:
		p.add("window", "required when count > 1: the sliding window the %d events must fall within", r.Count)
	case r.Count <= 1 && r.Window != 0:
		p.add("window", "only applies with count > 1")
	}
	if r.For != 0 {
		switch {
		case r.Count > 1:
			p.add("for", "cannot be combined with count: for needs the condition to hold throughout, count counts events")
		case r.Correlate != nil:
			p.add("for", "cannot be combined with correlate")
		case r.When == "":
			p.add("for", "needs a when condition: an event that matches but fails when is what resets the duration")
		}
	}
	switch {
	case r.Correlate != nil:
		c.mode = modeCorrelate
		if r.Count > 1 {
			p.add("correlate", "cannot be combined with count > 1")
		}
		c.second = compileMatcher(r.Correlate.Match, r.Correlate.When, "correlate.match", "correlate.when", p)
		c.within = r.Correlate.Within.D()
		if r.Correlate.Within == 0 {
			p.add("correlate.within", "required: how close in time the two events must be")
		} else {
			checkDuration(p, "correlate.within", r.Correlate.Within, false)
		}
	case r.For != 0:
		c.mode = modeFor
	case c.count > 1:
		c.mode = modeCount
	}

	c.groupBy = r.GroupBy
	if len(c.groupBy) == 0 {
		c.groupBy = []string{"source"}
	}
	for i, g := range r.GroupBy {
		if reason := checkLabel(g); reason != "" {
			p.add(fmt.Sprintf("group_by[%d]", i), "%s", reason)
		} else if slices.Index(r.GroupBy, g) < i {
			p.add(fmt.Sprintf("group_by[%d]", i), "%q is listed twice", g)
		}
	}
	c.cooldown = r.Cooldown.D()

	if in := r.Inhibits; in != nil {
		if len(in.Rules) == 0 {
			p.add("inhibits.rules", "required: the rules to suppress")
		}
		c.targets = in.Rules
		c.equal = in.Equal
		for i, g := range in.Equal {
			if reason := checkLabel(g); reason != "" {
				p.add(fmt.Sprintf("inhibits.equal[%d]", i), "%s", reason)
			}
		}
		checkDuration(p, "inhibits.hold", in.Hold, false)
		c.hold = in.Hold.D()
		if c.hold == 0 {
			c.hold = c.cooldown
		}
		c.hold = max(c.hold, time.Minute)
	}

	cs := r.Case
	if cs.Category == "" {
		p.add("case.category", "required: the case category id (checked against the categories by the alerts role)")
	} else if !idPattern.MatchString(cs.Category) {
		p.add("case.category", "%q must be lowercase letters, digits, '-' and '_'", cs.Category)
	}
	if cs.Risk < 0 || cs.Risk > 100 {
		p.add("case.risk", "%d is outside 0..100", cs.Risk)
	}
	if cs.RiskPerRepeat < 0 || cs.RiskPerRepeat > 100 {
		p.add("case.risk_per_repeat", "%d is outside 0..100", cs.RiskPerRepeat)
	}
	c.title = compileTemplate(r.ID+".title", cs.Title, "case.title", p)
	c.desc = compileTemplate(r.ID+".description", cs.Description, "case.description", p)
	for _, name := range slices.Sorted(maps.Keys(cs.Elements)) {
		if !slices.Contains(ElementNames, name) {
			p.add("case.elements."+name, "unknown element: one of %s", strings.Join(ElementNames, ", "))
			continue
		}
		if t := compileTemplate(r.ID+".elements."+name, cs.Elements[name], "case.elements."+name, p); t != nil {
			if c.elements == nil {
				c.elements = map[string]*template.Template{}
			}
			c.elements[name] = t
		}
	}

	if len(*p.list) > n {
		return nil
	}
	c.fingerprint = fingerprint(r)
	return c
}

// fingerprint hashes the parts of r its state depends on.
func fingerprint(r Rule) string {
	b, _ := json.Marshal(struct {
		Match     Match
		When      string
		For       conf.Duration
		Count     int
		Window    conf.Duration
		Correlate *Correlate
		GroupBy   []string
	}{r.Match, r.When, r.For, r.Count, r.Window, r.Correlate, r.GroupBy})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

func checkDuration(p problems, field string, d conf.Duration, required bool) {
	switch {
	case d < 0:
		p.add(field, "must be positive, not %s", d)
	case d == 0 && required:
		p.add(field, "required")
	case d.D() > MaxDuration:
		p.add(field, "%s is over the limit of %s", d, conf.Duration(MaxDuration))
	}
}

// checkLabel checks a group_by or inhibits.equal entry.
func checkLabel(g string) string {
	if name, ok := strings.CutPrefix(g, "attr."); ok {
		if name == "" || len(name) > event.MaxAttributeKey {
			return fmt.Sprintf("%q needs an attribute name after attr.", g)
		}
		return ""
	}
	if !slices.Contains(groupFields, g) {
		return fmt.Sprintf("%q is not one of %s or attr.<name>", g, strings.Join(groupFields, ", "))
	}
	return ""
}

// defaultZone is DefaultTimezone, loaded once and shared by every rule
// that names no other.
var defaultZone = sync.OnceValue(func() *time.Location {
	loc, err := time.LoadLocation(DefaultTimezone)
	if err != nil {
		panic(err) // the zone database is embedded
	}
	return loc
})

func compileSchedule(s *Schedule, p problems) (*time.Location, []period) {
	loc := defaultZone()
	if s.Timezone != "" {
		l, err := time.LoadLocation(s.Timezone)
		if err != nil || s.Timezone == "Local" {
			p.add("schedule.timezone", "unknown time zone %q: use an IANA name such as Asia/Shanghai", s.Timezone)
		} else {
			loc = l
		}
	}
	var out []period
	for i, per := range s.Periods {
		field := fmt.Sprintf("schedule.periods[%d]", i)
		var pd period
		if len(per.Days) == 0 {
			pd.days = [7]bool{true, true, true, true, true, true, true}
		}
		for j, d := range per.Days {
			wd, ok := dayNames[strings.ToLower(d)]
			if !ok {
				p.add(fmt.Sprintf("%s.days[%d]", field, j), "%q is not a day: use mon, tue, wed, thu, fri, sat or sun", d)
				continue
			}
			pd.days[wd] = true
		}
		var okFrom, okTo bool
		pd.from, okFrom = parseClock(per.From, false)
		pd.to, okTo = parseClock(per.To, true)
		if !okFrom {
			p.add(field+".from", "%q is not a time of day HH:MM", per.From)
		}
		if !okTo {
			p.add(field+".to", "%q is not a time of day HH:MM (24:00 for midnight at the end)", per.To)
		}
		if okFrom && okTo && pd.from == pd.to%(24*60) {
			p.add(field, "from and to are equal: leave periods out for always")
		}
		out = append(out, pd)
	}
	return loc, out
}

func parseClock(s string, allow24 bool) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 {
		return 0, false
	}
	if hh == 24 && mm == 0 && allow24 {
		return 24 * 60, true
	}
	if hh > 23 {
		return 0, false
	}
	return hh*60 + mm, true
}

// active reports whether t lies in one of the periods (always, without any).
func (c *compiled) active(t time.Time) bool {
	if len(c.periods) == 0 {
		return true
	}
	lt := t.In(c.loc)
	m := lt.Hour()*60 + lt.Minute()
	wd := lt.Weekday()
	prev := (wd + 6) % 7
	for _, p := range c.periods {
		if p.from < p.to {
			if p.days[wd] && m >= p.from && m < p.to {
				return true
			}
			continue
		}
		// Crosses midnight: the evening belongs to the day, the morning to
		// the day before.
		if (p.days[wd] && m >= p.from) || (p.days[prev] && m < p.to) {
			return true
		}
	}
	return false
}

func compileMatcher(m Match, when, mfield, wfield string, p problems) matcher {
	out := matcher{m: m, types: compileGlobs(m.Types), sources: compileGlobs(m.Sources)}
	globs := func(name string, list []string) {
		for i, g := range list {
			if g == "" {
				p.add(fmt.Sprintf("%s.%s[%d]", mfield, name, i), "empty")
			} else if _, err := path.Match(g, ""); err != nil {
				p.add(fmt.Sprintf("%s.%s[%d]", mfield, name, i), "bad glob %q: %v", g, err)
			}
		}
	}
	globs("types", m.Types)
	globs("sources", m.Sources)
	for i, k := range m.SourceKinds {
		if !event.SourceKind(k).Valid() {
			p.add(fmt.Sprintf("%s.source_kinds[%d]", mfield, i), "%q is not a source kind: camera, device, analyser, system or person", k)
		}
	}
	nonEmpty := func(name string, list []string) {
		for i, s := range list {
			if strings.TrimSpace(s) == "" {
				p.add(fmt.Sprintf("%s.%s[%d]", mfield, name, i), "empty")
			}
		}
	}
	nonEmpty("tags", m.Tags)
	nonEmpty("grids", m.Grids)
	nonEmpty("device_kinds", m.DeviceKinds)
	nonEmpty("classes", m.Classes)
	for i, r := range m.Regions {
		if r == "" || strings.HasPrefix(r, "/") || strings.HasSuffix(r, "/") || strings.Contains(r, "//") {
			p.add(fmt.Sprintf("%s.regions[%d]", mfield, i), "%q is not a region path such as lanxi/xinzhuang", r)
		}
	}
	if m.MinConfidence < 0 || m.MinConfidence > 1 {
		p.add(mfield+".min_confidence", "%g is outside 0..1", m.MinConfidence)
	}
	if m.MinSeverity != "" {
		out.sev = event.Severity(m.MinSeverity).Rank()
		if out.sev == 0 {
			p.add(mfield+".min_severity", "%q is not a severity: info, warning, minor, major or critical", m.MinSeverity)
		}
	}
	if when != "" {
		if len(when) > maxExprLen {
			p.add(wfield, "%d bytes; the limit is %d", len(when), maxExprLen)
			return out
		}
		prog, err := compileExpr(when)
		if err != nil {
			p.add(wfield, "%s", exprError(err))
		}
		out.when = prog
	}
	return out
}

func compileExpr(s string) (prog *vm.Program, err error) {
	defer func() {
		// The expr compiler is not expected to panic, but a rule author's
		// typo must never take the process down.
		if r := recover(); r != nil {
			prog, err = nil, fmt.Errorf("cannot compile: %v", r)
		}
	}()
	// Conditions run on every event: refuse what could loop for long,
	// before the compiler folds constant ranges into arrays.
	tree, err := parser.Parse(s)
	if err != nil {
		return nil, err
	}
	var lim limits
	ast.Walk(&tree.Node, &lim)
	if lim.err != nil {
		return nil, lim.err
	}
	return expr.Compile(s, exprOptions...)
}

// maxPredicates bounds the predicates (all, any, filter...) in a
// condition; they iterate over tags or attributes, so two nested cost at
// most a few thousand steps.
const maxPredicates = 2

type limits struct {
	predicates int
	err        error
}

func (l *limits) Visit(n *ast.Node) {
	if l.err != nil {
		return
	}
	switch x := (*n).(type) {
	case *ast.PredicateNode:
		l.predicates++
		if l.predicates > maxPredicates {
			l.err = fmt.Errorf("more than %d predicates (all, any, filter, map...): keep conditions simple", maxPredicates)
		}
	case *ast.BinaryNode:
		if x.Operator == ".." {
			l.err = errors.New("ranges (a..b) are not allowed in rule conditions")
		}
	}
}

func exprError(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fmt.Sprintf("at line %d, column %d: %s", fe.Line, fe.Column+1, fe.Message)
	}
	return err.Error()
}

// ElementNames are the seven elements (七要素) a rule's case.elements may
// fill, by name.
var ElementNames = []string{"when", "where", "who", "what", "circumstances", "cause", "object"}

func compileTemplate(name, text, field string, p problems) *template.Template {
	if text == "" {
		return nil
	}
	if len(text) > maxTmplLen {
		p.add(field, "%d bytes; the limit is %d", len(text), maxTmplLen)
		return nil
	}
	t, err := template.New(name).Option("missingkey=zero").Funcs(templateFuncs(nil, time.UTC)).Parse(text)
	if err != nil {
		p.add(field, "%v", err)
		return nil
	}
	return t
}

package cases

import (
	"slices"
	"strings"
	"time"
)

// State is where a case stands in the closed loop (DOMAIN.md).
type State string

// The states, in the order of the loop.
const (
	Registered State = "registered"  // 受理登记
	Assessed   State = "assessed"    // 研判
	Dispatched State = "dispatched"  // 分流交办
	Accepted   State = "accepted"    // 签收 / 应哨
	Resolved   State = "resolved"    // 办结
	FollowedUp State = "followed_up" // 回访
	Closed     State = "closed"      // 销号
)

// States lists every state in loop order.
var States = []State{Registered, Assessed, Dispatched, Accepted, Resolved, FollowedUp, Closed}

// Valid reports whether s is a known state.
func (s State) Valid() bool { return slices.Contains(States, s) }

// Open reports whether the case still needs work.
func (s State) Open() bool { return s != Closed }

// Colour is the three-colour risk warning (三色预警).
type Colour string

// The colours; the empty colour means not yet assessed.
const (
	Red    Colour = "red"
	Orange Colour = "orange"
	Yellow Colour = "yellow"
)

// Valid reports whether c is a colour.
func (c Colour) Valid() bool { return c == Red || c == Orange || c == Yellow }

// Rank orders colours: 3 for red down to 1 for yellow, 0 for none.
func (c Colour) Rank() int {
	switch c {
	case Red:
		return 3
	case Orange:
		return 2
	case Yellow:
		return 1
	}
	return 0
}

// Level is the administrative level handling a case (提级: village →
// township → county).
type Level string

// The levels, lowest first.
const (
	Village  Level = "village"
	Township Level = "township"
	County   Level = "county"
)

// Levels lists the levels from the lowest.
var Levels = []Level{Village, Township, County}

// next returns the level above l and whether there is one.
func (l Level) next() (Level, bool) {
	i := slices.Index(Levels, l)
	if i < 0 || i+1 >= len(Levels) {
		return l, false
	}
	return Levels[i+1], true
}

// Source says how a case came in.
type Source string

// Case sources.
const (
	FromAlert   Source = "alert"   // an alert rule
	FromWindow  Source = "window"  // the intake window
	FromHotline Source = "hotline" // the 12345 hotline
	FromGrid    Source = "grid"    // a grid worker
	FromPolice  Source = "police"  // a police feed
)

// Valid reports whether s is a case source.
func (s Source) Valid() bool {
	switch s {
	case FromAlert, FromWindow, FromHotline, FromGrid, FromPolice:
		return true
	}
	return false
}

// Elements are the seven elements (七何) a case needs before dispatch.
type Elements struct {
	When          string `json:"when,omitempty"`          // 何时
	Where         string `json:"where,omitempty"`         // 何地
	Who           string `json:"who,omitempty"`           // 何人
	What          string `json:"what,omitempty"`          // 何事
	Circumstances string `json:"circumstances,omitempty"` // 何情
	Cause         string `json:"cause,omitempty"`         // 何故
	Object        string `json:"object,omitempty"`        // 何物
}

// ElementNames lists the seven elements by their JSON names.
var ElementNames = []string{"when", "where", "who", "what", "circumstances", "cause", "object"}

// Set sets the element named name (ElementNames) to v; other names are
// ignored.
func (e *Elements) Set(name, v string) {
	if p := e.field(name); p != nil {
		*p = v
	}
}

// Get returns the element named name.
func (e Elements) Get(name string) string {
	if p := e.field(name); p != nil {
		return *p
	}
	return ""
}

// field is the element named name, nil for another name.
func (e *Elements) field(name string) *string {
	switch name {
	case "when":
		return &e.When
	case "where":
		return &e.Where
	case "who":
		return &e.Who
	case "what":
		return &e.What
	case "circumstances":
		return &e.Circumstances
	case "cause":
		return &e.Cause
	case "object":
		return &e.Object
	}
	return nil
}

// Missing returns which of required are empty.
func (e Elements) Missing(required []string) []string {
	var out []string
	for _, n := range required {
		if strings.TrimSpace(e.Get(n)) == "" {
			out = append(out, n)
		}
	}
	return out
}

// merge fills e's empty elements from o.
func (e *Elements) merge(o Elements) {
	fill := func(dst *string, src string) {
		if *dst == "" {
			*dst = src
		}
	}
	fill(&e.When, o.When)
	fill(&e.Where, o.Where)
	fill(&e.Who, o.Who)
	fill(&e.What, o.What)
	fill(&e.Circumstances, o.Circumstances)
	fill(&e.Cause, o.Cause)
	fill(&e.Object, o.Object)
}

// Reporter is who reported a case that did not come from an alert.
type Reporter struct {
	Name  string `json:"name,omitempty"`
	Phone string `json:"phone,omitempty"`
}

// Case is one matter running the closed loop.
type Case struct {
	ID          string `json:"id"`
	Number      string `json:"number"`
	State       State  `json:"state"`
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
	Category    string `json:"category"`
	Colour      Colour `json:"colour,omitempty"`
	Risk        int    `json:"risk"`
	Source      Source `json:"source"`
	Rule        string `json:"rule,omitempty"`
	GroupKey    string `json:"group_key,omitempty"`
	Region      string `json:"region"`
	Grid        string `json:"grid,omitempty"`
	Level       Level  `json:"level"`
	// Department leads the handling once dispatched; CoDepartments help.
	Department    string   `json:"department,omitempty"`
	CoDepartments []string `json:"co_departments,omitempty"`
	// Details are kept whole in the data column.
	Details
	AlertCount  int    `json:"alert_count"`
	UrgeCount   int    `json:"urge_count"`
	Escalations int    `json:"escalations"`
	MergedInto  string `json:"merged_into,omitempty"`
	// Deadline is the current stage's deadline; zero when none runs.
	Deadline   time.Time `json:"deadline,omitzero"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	Dispatched time.Time `json:"dispatched,omitzero"`
	AcceptedAt time.Time `json:"accepted,omitzero"`
	ResolvedAt time.Time `json:"resolved,omitzero"`
	ClosedAt   time.Time `json:"closed,omitzero"`
	Version    int64     `json:"version"`
}

// Details are the parts of a case stored as JSON.
type Details struct {
	Elements     Elements  `json:"elements"`
	Lat          *float64  `json:"lat,omitempty"`
	Lon          *float64  `json:"lon,omitempty"`
	Camera       string    `json:"camera,omitempty"`
	Device       string    `json:"device,omitempty"`
	Reporter     *Reporter `json:"reporter,omitempty"`
	ColourReason string    `json:"colour_reason,omitempty"`
	Outcome      string    `json:"outcome,omitempty"`
	Result       string    `json:"result,omitempty"`
	Satisfaction string    `json:"satisfaction,omitempty"`
	Supervised   bool      `json:"supervised,omitempty"`
	Warned       bool      `json:"risk_warned,omitempty"`
	// Verified is when a person first verified the case (核查): assessed
	// it, dispatched it or dismissed it; VerifiedBy is who.
	Verified   time.Time `json:"verified,omitzero"`
	VerifiedBy string    `json:"verified_by,omitempty"`
	// Suppressed counts alerts attached because this case inhibited them.
	Suppressed int `json:"suppressed,omitempty"`
	// Before is the state a merged case had, so that the merge can be undone.
	Before State `json:"merged_from_state,omitempty"`
	// Merged lists the cases merged into this one.
	Merged []string `json:"merged,omitempty"`
}

// Overdue reports whether the case's current deadline has passed at now.
func (c *Case) Overdue(now time.Time) bool {
	return c.State.Open() && !c.Deadline.IsZero() && now.After(c.Deadline)
}

// involves reports whether department is the lead, a co-department or
// holds one of the case's tasks (as recorded in the departments column).
func (c *Case) involves(department string, tasks []Task) bool {
	if department == "" {
		return false
	}
	if c.Department == department || slices.Contains(c.CoDepartments, department) {
		return true
	}
	for _, t := range tasks {
		if t.Department == department {
			return true
		}
	}
	return false
}

// HistoryEntry is one line of a case's history.
type HistoryEntry struct {
	Seq    int            `json:"seq"`
	At     time.Time      `json:"at"`
	Actor  string         `json:"actor"`
	Role   string         `json:"role,omitempty"`
	Action string         `json:"action"`
	From   State          `json:"from,omitempty"`
	To     State          `json:"to,omitempty"`
	Note   string         `json:"note,omitempty"`
	Data   map[string]any `json:"data,omitempty"`
}

// Evidence backs a case: an event, a snapshot, a reading, a clip, a link.
// It is never changed once attached.
type Evidence struct {
	Seq         int            `json:"seq"`
	Kind        string         `json:"kind"`
	Ref         string         `json:"ref"`
	ContentType string         `json:"content_type,omitempty"`
	SHA256      string         `json:"sha256,omitempty"`
	EventID     string         `json:"event_id,omitempty"`
	Captured    time.Time      `json:"captured,omitzero"`
	Attached    time.Time      `json:"attached"`
	AttachedBy  string         `json:"attached_by"`
	Data        map[string]any `json:"data,omitempty"`
}

// TaskState is where a task stands.
type TaskState string

// Task states.
const (
	TaskOpen     TaskState = "open"
	TaskAccepted TaskState = "accepted"
	TaskDone     TaskState = "done"
)

// Task is one department's part of a split case ("一把钥匙开一把锁").
type Task struct {
	ID         string    `json:"id"`
	Department string    `json:"department"`
	Title      string    `json:"title"`
	State      TaskState `json:"state"`
	Deadline   time.Time `json:"deadline"`
	Outcome    string    `json:"outcome,omitempty"`
	Created    time.Time `json:"created"`
	AcceptedAt time.Time `json:"accepted,omitzero"`
	DoneAt     time.Time `json:"done,omitzero"`
}

// Timer is a deadline's consequence waiting to happen (or done).
type Timer struct {
	ID        string    `json:"id"`
	Task      string    `json:"task,omitempty"`
	Stage     string    `json:"stage"`
	Kind      string    `json:"kind"`
	Step      int       `json:"step"`
	Due       time.Time `json:"due"`
	Fired     time.Time `json:"fired,omitzero"`
	Cancelled bool      `json:"cancelled,omitempty"`
}

// Timer kinds.
const (
	TimerRemind    = "remind"    // 提醒: before the deadline
	TimerUrge      = "urge"      // 催办: at and after the deadline, counted
	TimerSupervise = "supervise" // 督办: formal supervision
	TimerEscalate  = "escalate"  // 提级: one level up
	TimerWarn      = "warn"      // 风险提示函: red-level risk to leaders
	TimerVerify    = "verify"    // 不过夜核查: a red risk not verified the same day, counted as an urge
	TimerReadings  = "readings"  // 前后读数: attach the sensor readings around an alert
)

// Stages whose deadlines timers watch.
const (
	StageAssess   = "assess"    // registered → assessed (red: verify the same day)
	StageAccept   = "accept"    // dispatched → accepted
	StageResolve  = "resolve"   // accepted → resolved
	StageFollowUp = "follow_up" // resolved → followed up
	StageTask     = "task"      // a task's deadline
	StageEvidence = "evidence"  // evidence gathered after the case opened
)

// stageOf is the stage a case in state s is working towards.
func stageOf(s State) string {
	switch s {
	case Registered, Assessed:
		return StageAssess
	case Dispatched:
		return StageAccept
	case Accepted:
		return StageResolve
	case Resolved:
		return StageFollowUp
	}
	return ""
}

// Detail is a case with everything attached to it, as the case page shows.
type Detail struct {
	*Case
	Overdue    bool           `json:"overdue"`
	History    []HistoryEntry `json:"history"`
	Evidence   []Evidence     `json:"evidence"`
	Tasks      []Task         `json:"tasks"`
	Timers     []Timer        `json:"timers"`
	Candidates []Candidate    `json:"merge_candidates"`
	// Allowed lists the actions the caller may take now, the next step first.
	Allowed []string `json:"allowed_actions"`
}

// Candidate is an open case that may be the same matter (同案合并 suggestion).
type Candidate struct {
	ID       string    `json:"id"`
	Number   string    `json:"number"`
	Title    string    `json:"title"`
	State    State     `json:"state"`
	Grid     string    `json:"grid,omitempty"`
	Distance *float64  `json:"distance_m,omitempty"`
	Created  time.Time `json:"created"`
	Why      string    `json:"why"`
}

package cases

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"sharpeye/console/auth"
	"sharpeye/ingest/event"
)

// ActionRequest carries an action's parameters; each action reads the
// fields it needs and refuses none of the others.
type ActionRequest struct {
	// Version is the case version the caller read (required: a stale
	// version is refused rather than overwritten).
	Version int64  `json:"version"`
	Note    string `json:"note"`
	// assess
	Colour Colour `json:"colour"`
	Risk   *int   `json:"risk"`
	Reason string `json:"reason"`
	// dispatch, reassign
	Department    string     `json:"department"`
	CoDepartments []string   `json:"co_departments"`
	Deadline      *time.Time `json:"deadline"`
	// resolve
	Outcome string `json:"outcome"`
	Result  string `json:"result"`
	// follow_up
	Satisfaction string `json:"satisfaction"`
	// edit
	Title       *string   `json:"title"`
	Description *string   `json:"description"`
	Elements    *Elements `json:"elements"`
	Category    string    `json:"category"`
	// merge
	Into string `json:"into"`
	// split
	Tasks []TaskSpec `json:"tasks"`
	// task_accept, task_done
	Task string `json:"task"`
	// attach
	Evidence *EvidenceSpec `json:"evidence"`
}

// TaskSpec is one task of a split.
type TaskSpec struct {
	Department string     `json:"department"`
	Title      string     `json:"title"`
	Deadline   *time.Time `json:"deadline"`
}

// EvidenceSpec is evidence a person attaches.
type EvidenceSpec struct {
	Kind        string    `json:"kind"`
	Ref         string    `json:"ref"`
	ContentType string    `json:"content_type"`
	SHA256      string    `json:"sha256"`
	Captured    time.Time `json:"captured"`
	Note        string    `json:"note"`
}

// Outcomes a department may record (办结方式).
var Outcomes = []string{"mediated", "handled", "arbitration", "administrative", "court", "referred", "unsubstantiated"}

// Satisfactions of a follow-up (回访评价).
var Satisfactions = []string{"satisfied", "basically", "dissatisfied"}

// action describes one action: who may take it and from which states.
type action struct {
	roles []auth.Role
	from  []State // nil: any open state
	// department lets the case's (or the task's) department's handlers act.
	department bool
	run        func(s *Service, ctx context.Context, t txn, a actor, c *Case, ts []Task, r *ActionRequest) (*HistoryEntry, error)
}

var (
	commanders = []auth.Role{auth.Commander, auth.Admin}
	anyone     = []auth.Role{auth.Admin, auth.Commander, auth.Clerk, auth.Analyst, auth.Handler, auth.Supervisor, auth.GridWorker, auth.Leader}
)

var actions = map[string]action{
	"assess":      {roles: commanders, run: (*Service).actAssess},
	"dispatch":    {roles: commanders, from: []State{Assessed}, run: (*Service).actDispatch},
	"accept":      {roles: commanders, department: true, from: []State{Dispatched}, run: (*Service).actAccept},
	"resolve":     {roles: commanders, department: true, from: []State{Accepted}, run: (*Service).actResolve},
	"follow_up":   {roles: []auth.Role{auth.Commander, auth.Clerk, auth.Supervisor, auth.Admin}, from: []State{Resolved}, run: (*Service).actFollowUp},
	"close":       {roles: commanders, from: []State{FollowedUp, Resolved}, run: (*Service).actClose},
	"dismiss":     {roles: commanders, from: []State{Registered, Assessed}, run: (*Service).actDismiss},
	"reopen":      {roles: []auth.Role{auth.Commander, auth.Supervisor, auth.Admin}, from: []State{Resolved, FollowedUp, Closed}, run: (*Service).actReopen},
	"reassign":    {roles: commanders, from: []State{Dispatched, Accepted}, run: (*Service).actReassign},
	"comment":     {roles: anyone, department: true, from: States, run: (*Service).actComment},
	"attach":      {roles: anyone, department: true, run: (*Service).actAttach},
	"edit":        {roles: []auth.Role{auth.Commander, auth.Clerk, auth.Admin}, from: []State{Registered, Assessed, Dispatched, Accepted}, run: (*Service).actEdit},
	"urge":        {roles: []auth.Role{auth.Supervisor, auth.Commander, auth.Admin}, from: []State{Dispatched, Accepted}, run: (*Service).actUrge},
	"supervise":   {roles: []auth.Role{auth.Supervisor, auth.Admin}, from: []State{Dispatched, Accepted}, run: (*Service).actSupervise},
	"escalate":    {roles: []auth.Role{auth.Commander, auth.Supervisor, auth.Admin}, run: (*Service).actEscalate},
	"merge":       {roles: commanders, from: []State{Registered, Assessed, Dispatched, Accepted}, run: (*Service).actMerge},
	"unmerge":     {roles: commanders, from: []State{Closed}, run: (*Service).actUnmerge},
	"split":       {roles: commanders, from: []State{Dispatched, Accepted}, run: (*Service).actSplit},
	"task_accept": {roles: commanders, department: true, from: []State{Dispatched, Accepted}, run: (*Service).actTaskAccept},
	"task_done":   {roles: commanders, department: true, from: []State{Dispatched, Accepted}, run: (*Service).actTaskDone},
}

// Actions lists the action names.
func Actions() []string {
	out := make([]string, 0, len(actions))
	for n := range actions {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// pageOrder is the order in which the case page offers actions: the next
// step of the loop first.
var pageOrder = []string{"dispatch", "accept", "resolve", "follow_up", "close", "assess", "reassign", "split",
	"urge", "supervise", "escalate", "edit", "merge", "unmerge", "reopen", "dismiss", "comment", "attach",
	"task_accept", "task_done"}

// allowedActions lists, in page order, the actions p may take on c now
// (task actions when p may act on at least one of its tasks). Act remains
// the judge: an action listed may still be refused for its input.
func allowedActions(p *auth.Principal, c *Case, ts []Task) []string {
	out := []string{}
	for _, name := range pageOrder {
		act := actions[name]
		switch {
		case act.from != nil && !slices.Contains(act.from, c.State),
			act.from == nil && !c.State.Open(),
			name == "unmerge" && c.MergedInto == "",
			name == "reopen" && c.MergedInto != "":
			continue
		}
		ok := false
		if strings.HasPrefix(name, "task_") {
			for _, k := range ts {
				ok = ok || act.allowed(p, name, c, ts, k.ID) == nil
			}
		} else {
			ok = act.allowed(p, name, c, ts, "") == nil
		}
		if ok {
			out = append(out, name)
		}
	}
	return out
}

// Act takes action name on case id for p.
func (s *Service) Act(ctx context.Context, p *auth.Principal, id, name string, r ActionRequest) (*Case, error) {
	act, ok := actions[name]
	if !ok {
		return nil, fieldErr("action", "unknown action %q (one of %s)", name, strings.Join(Actions(), ", "))
	}
	if r.Version == 0 {
		return nil, fieldErr("version", "required: the version of the case you read (it refuses stale updates)")
	}
	if err := checkText("note", r.Note, maxText, false); err != nil {
		return nil, err
	}
	c, err := s.change(ctx, id, r.Version, func(t txn, c *Case, ts []Task) (*HistoryEntry, error) {
		if !visible(p, c, ts) {
			return nil, ErrNotFound
		}
		if err := act.allowed(p, name, c, ts, r.Task); err != nil {
			return nil, err
		}
		if act.from != nil && !slices.Contains(act.from, c.State) {
			return nil, &StateError{Msg: fmt.Sprintf("cannot %s a case that is %s (only from %s)", name, c.State, joinStates(act.from))}
		}
		if act.from == nil && !c.State.Open() {
			return nil, &StateError{Msg: fmt.Sprintf("cannot %s a closed case", name)}
		}
		from, deadline := c.State, c.Deadline
		h, err := act.run(s, ctx, t, actorOf(p), c, ts, &r)
		if err != nil || h == nil {
			return h, err
		}
		h.Actor, h.Role = p.Username, string(p.Role)
		if h.Action == "" {
			h.Action = name
		}
		if verifyActions[name] {
			first, err := s.markVerified(ctx, t, c, actorOf(p))
			if err != nil {
				return nil, err
			}
			if first {
				h.Data = withData(h.Data, "verified", true)
			}
		}
		h.From = from
		if c.State != from {
			h.To = c.State
		}
		if stageOf(from) != stageOf(c.State) || name == "reassign" {
			if c.Deadline.Equal(deadline) {
				c.Deadline = time.Time{} // not set by the action: the stage's own
			}
			if err := s.planStage(ctx, t, c); err != nil {
				return nil, err
			}
		}
		if err := s.planVerify(ctx, t, c); err != nil {
			return nil, err
		}
		if h.Note == "" {
			h.Note = r.Note
		}
		return h, nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func joinStates(ss []State) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return strings.Join(out, ", ")
}

// allowed checks p's role for the action: one of its roles, or a handler of
// the department the action concerns.
func (a action) allowed(p *auth.Principal, name string, c *Case, ts []Task, task string) error {
	if slices.Contains(a.roles, p.Role) {
		return nil
	}
	if a.department && p.Role == auth.Handler && p.Department != "" {
		switch {
		case strings.HasPrefix(name, "task_"):
			for _, t := range ts {
				if t.ID == task && t.Department == p.Department {
					return nil
				}
			}
		case name == "comment" || name == "attach":
			if c.involves(p.Department, ts) {
				return nil
			}
		case c.Department == p.Department:
			return nil
		}
		return forbidden("%s is for the handlers of the department it concerns; you are in %q", name, p.Department)
	}
	roles := make([]string, len(a.roles))
	for i, r := range a.roles {
		roles[i] = string(r)
	}
	if a.department {
		roles = append(roles, "the department's handlers")
	}
	return forbidden("%s is for %s; you are %s", name, strings.Join(roles, ", "), p.Role)
}

// assess sets the risk and colour. A colour other than the one the score
// maps to needs a reason.
func (s *Service) assess(ctx context.Context, t txn, c *Case, a actor, colour Colour, risk int, reason string) (*HistoryEntry, error) {
	if risk < 0 || risk > 100 {
		return nil, fieldErr("risk", "must be 0 to 100")
	}
	scored := s.cfg.Colours.Colour(risk)
	if colour == "" {
		colour = scored
	}
	if !colour.Valid() {
		return nil, fieldErr("colour", "must be red, orange or yellow")
	}
	if colour != scored && strings.TrimSpace(reason) == "" {
		return nil, fieldErr("reason", "required to set %s when risk %d maps to %s", colour, risk, scored)
	}
	if err := checkText("reason", reason, maxText, false); err != nil {
		return nil, err
	}
	was := c.Colour
	c.Risk, c.Colour, c.ColourReason = risk, colour, reason
	from := c.State
	if c.State == Registered {
		c.State = Assessed
	}
	if colour == Red && was != Red && !c.Warned {
		// A red risk warns leaders at once (风险提示函) and must be verified
		// the same day (不过夜核查).
		if err := insertTimer(ctx, t, c.ID, Timer{Stage: StageAssess, Kind: TimerWarn, Due: s.now().UTC()}); err != nil {
			return nil, err
		}
	}
	h := &HistoryEntry{Actor: a.name, Role: a.role, Action: "assess", From: from, To: c.State, Note: reason,
		Data: map[string]any{"risk": risk, "colour": string(colour)}}
	if was != "" {
		h.Data["previous_colour"] = string(was)
	}
	return h, nil
}

func (s *Service) actAssess(ctx context.Context, t txn, a actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	risk := c.Risk
	if r.Risk != nil {
		risk = *r.Risk
	}
	return s.assess(ctx, t, c, a, r.Colour, risk, r.Reason)
}

func (s *Service) checkDepartments(lead string, co []string) error {
	if !s.cfg.department(lead) {
		return fieldErr("department", "unknown department %q", lead)
	}
	for i, d := range co {
		if !s.cfg.department(d) {
			return fieldErr(fmt.Sprintf("co_departments[%d]", i), "unknown department %q", d)
		}
		if d == lead {
			return fieldErr(fmt.Sprintf("co_departments[%d]", i), "%q already leads the case", d)
		}
	}
	return nil
}

func (s *Service) actDispatch(ctx context.Context, t txn, a actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	pb, ok := s.cfg.playbook(c.Category)
	if !ok {
		return nil, fieldErr("category", "category %q has no playbook; edit the case's category first", c.Category)
	}
	if missing := c.Elements.Missing(pb.required()); len(missing) > 0 {
		return nil, &FieldError{Field: "elements", Msg: "dispatch needs the seven elements; missing: " + strings.Join(missing, ", ")}
	}
	lead, co := r.Department, r.CoDepartments
	if lead == "" {
		lead = pb.Lead
		if co == nil {
			co = pb.Co
		}
	}
	if err := s.checkDepartments(lead, co); err != nil {
		return nil, err
	}
	c.Department, c.CoDepartments = lead, slices.Clone(co)
	c.State, c.Dispatched = Dispatched, s.now().UTC()
	if r.Deadline != nil {
		if !r.Deadline.After(s.now()) {
			return nil, fieldErr("deadline", "must be in the future")
		}
		c.Deadline = r.Deadline.UTC() // planStage keeps an explicit deadline
	}
	return &HistoryEntry{Data: map[string]any{"department": lead, "co_departments": co}}, nil
}

func (s *Service) actAccept(_ context.Context, _ txn, _ actor, c *Case, _ []Task, _ *ActionRequest) (*HistoryEntry, error) {
	c.State, c.AcceptedAt = Accepted, s.now().UTC()
	return &HistoryEntry{Data: map[string]any{"department": c.Department}}, nil
}

func (s *Service) actResolve(_ context.Context, _ txn, _ actor, c *Case, ts []Task, r *ActionRequest) (*HistoryEntry, error) {
	if !slices.Contains(Outcomes, r.Outcome) {
		return nil, fieldErr("outcome", "must be one of %s", strings.Join(Outcomes, ", "))
	}
	if err := checkText("result", r.Result, maxText, true); err != nil {
		return nil, err
	}
	var open []string
	for _, k := range ts {
		if k.State != TaskDone {
			open = append(open, k.Department)
		}
	}
	if len(open) > 0 {
		return nil, &StateError{Msg: "tasks still open for: " + strings.Join(open, ", ") + "; the case resolves when every task is done"}
	}
	c.State, c.ResolvedAt, c.Outcome, c.Result = Resolved, s.now().UTC(), r.Outcome, r.Result
	return &HistoryEntry{Data: map[string]any{"outcome": r.Outcome}}, nil
}

func (s *Service) actFollowUp(_ context.Context, _ txn, _ actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	if !slices.Contains(Satisfactions, r.Satisfaction) {
		return nil, fieldErr("satisfaction", "must be one of %s", strings.Join(Satisfactions, ", "))
	}
	c.Satisfaction = r.Satisfaction
	h := &HistoryEntry{Data: map[string]any{"satisfaction": r.Satisfaction}}
	if r.Satisfaction == "dissatisfied" {
		// Dissatisfied re-opens the case with the same department.
		c.State, c.AcceptedAt, c.ResolvedAt, c.Deadline = Dispatched, time.Time{}, time.Time{}, time.Time{}
		h.Data["reopened"] = true
		return h, nil
	}
	c.State = FollowedUp
	return h, nil
}

func (s *Service) actClose(_ context.Context, _ txn, _ actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	if c.State == Resolved && c.Reporter != nil && c.Outcome != "unsubstantiated" {
		return nil, &StateError{Msg: "a case with a reporter is followed up (回访) before it is closed"}
	}
	c.State, c.ClosedAt, c.Deadline = Closed, s.now().UTC(), time.Time{}
	return &HistoryEntry{}, nil
}

func (s *Service) actDismiss(_ context.Context, _ txn, _ actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	if strings.TrimSpace(r.Note) == "" {
		return nil, fieldErr("note", "say why the case is dismissed (a false alert, a duplicate...)")
	}
	c.State, c.ClosedAt, c.Outcome, c.Deadline = Closed, s.now().UTC(), "unsubstantiated", time.Time{}
	return &HistoryEntry{Data: map[string]any{"outcome": "unsubstantiated"}}, nil
}

func (s *Service) actReopen(_ context.Context, _ txn, _ actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	if c.MergedInto != "" {
		return nil, &StateError{Msg: "the case was merged into " + c.MergedInto + "; unmerge it instead"}
	}
	if strings.TrimSpace(r.Note) == "" {
		return nil, fieldErr("note", "say why the case is re-opened")
	}
	c.ClosedAt, c.ResolvedAt, c.AcceptedAt, c.Deadline = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	c.State = Assessed
	if c.Department != "" {
		c.State = Dispatched
	}
	return &HistoryEntry{}, nil
}

func (s *Service) actReassign(_ context.Context, _ txn, _ actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	if r.Department == c.Department {
		return nil, fieldErr("department", "the case is already with %q", r.Department)
	}
	if err := s.checkDepartments(r.Department, r.CoDepartments); err != nil {
		return nil, err
	}
	prev := c.Department
	c.Department, c.CoDepartments = r.Department, slices.Clone(r.CoDepartments)
	c.State, c.AcceptedAt, c.Dispatched, c.Deadline = Dispatched, time.Time{}, s.now().UTC(), time.Time{}
	return &HistoryEntry{Data: map[string]any{"department": r.Department, "previous_department": prev}}, nil
}

func (s *Service) actComment(_ context.Context, _ txn, _ actor, _ *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	if err := checkText("note", r.Note, maxText, true); err != nil {
		return nil, err
	}
	return &HistoryEntry{}, nil
}

// evidenceKinds people may attach.
var evidenceKinds = []string{"snapshot", "clip", "reading", "url", "document", "photo", "event"}

func (s *Service) actAttach(ctx context.Context, t txn, a actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	e := r.Evidence
	if e == nil {
		return nil, fieldErr("evidence", "required: {kind, ref}")
	}
	if !slices.Contains(evidenceKinds, e.Kind) {
		return nil, fieldErr("evidence.kind", "must be one of %s", strings.Join(evidenceKinds, ", "))
	}
	if err := errors.Join(checkText("evidence.ref", e.Ref, event.MaxRefLen, true),
		checkText("evidence.content_type", e.ContentType, event.MaxContentTypeLen, false),
		checkText("evidence.note", e.Note, maxText, false)); err != nil {
		return nil, err
	}
	if e.SHA256 != "" && (len(e.SHA256) != 64 || strings.Trim(e.SHA256, "0123456789abcdef") != "") {
		return nil, fieldErr("evidence.sha256", "must be 64 lowercase hex digits")
	}
	ev := &Evidence{Kind: e.Kind, Ref: e.Ref, ContentType: e.ContentType, SHA256: e.SHA256, Captured: e.Captured.UTC(),
		Attached: s.now().UTC(), AttachedBy: a.name}
	if e.Note != "" {
		ev.Data = map[string]any{"note": e.Note}
	}
	added, err := addEvidence(ctx, t, c.ID, ev)
	if err != nil {
		return nil, err
	}
	if !added {
		return nil, &StateError{Msg: "that evidence is already attached"}
	}
	return &HistoryEntry{Data: map[string]any{"evidence": ev.Seq, "kind": ev.Kind}}, nil
}

func (s *Service) actEdit(_ context.Context, _ txn, _ actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	var changed []string
	if r.Title != nil {
		if err := checkText("title", *r.Title, maxTitle, true); err != nil {
			return nil, err
		}
		c.Title = *r.Title
		changed = append(changed, "title")
	}
	if r.Description != nil {
		if err := checkText("description", *r.Description, maxText, false); err != nil {
			return nil, err
		}
		c.Description = *r.Description
		changed = append(changed, "description")
	}
	if r.Elements != nil {
		if err := checkElements(*r.Elements); err != nil {
			return nil, err
		}
		for _, n := range ElementNames {
			if r.Elements.Get(n) != c.Elements.Get(n) {
				changed = append(changed, "elements."+n)
			}
		}
		c.Elements = *r.Elements
	}
	if r.Category != "" && r.Category != c.Category {
		if c.State != Registered && c.State != Assessed {
			return nil, &StateError{Msg: "the category is fixed once the case is dispatched; reassign it instead"}
		}
		if _, ok := s.cfg.playbook(r.Category); !ok {
			return nil, fieldErr("category", "unknown category %q", r.Category)
		}
		c.Category = r.Category
		changed = append(changed, "category")
	}
	if len(changed) == 0 {
		return nil, fieldErr("", "nothing to change: give title, description, elements or category")
	}
	return &HistoryEntry{Data: map[string]any{"changed": changed}}, nil
}

func (s *Service) actUrge(_ context.Context, _ txn, _ actor, c *Case, _ []Task, _ *ActionRequest) (*HistoryEntry, error) {
	c.UrgeCount++
	return &HistoryEntry{Data: map[string]any{"urge_count": c.UrgeCount, "department": c.Department}}, nil
}

func (s *Service) actSupervise(_ context.Context, _ txn, _ actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	if c.Supervised {
		return nil, &StateError{Msg: "the case is already under formal supervision"}
	}
	c.Supervised = true
	return &HistoryEntry{Data: map[string]any{"department": c.Department}}, nil
}

func (s *Service) actEscalate(_ context.Context, _ txn, _ actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	next, ok := c.Level.next()
	if !ok {
		return nil, &StateError{Msg: "the case is already at county level"}
	}
	prev := c.Level
	c.Level = next
	c.Escalations++
	return &HistoryEntry{Data: map[string]any{"level": string(next), "previous_level": string(prev)}}, nil
}

func (s *Service) actSplit(ctx context.Context, t txn, _ actor, c *Case, ts []Task, r *ActionRequest) (*HistoryEntry, error) {
	if len(r.Tasks) == 0 || len(r.Tasks) > 20 {
		return nil, fieldErr("tasks", "give 1 to 20 tasks")
	}
	pb, _ := s.cfg.playbook(c.Category)
	now := s.now().UTC()
	var ids []string
	for i, spec := range r.Tasks {
		f := fmt.Sprintf("tasks[%d]", i)
		if !s.cfg.department(spec.Department) {
			return nil, fieldErr(f+".department", "unknown department %q", spec.Department)
		}
		if err := checkText(f+".title", spec.Title, maxTitle, true); err != nil {
			return nil, err
		}
		k := Task{ID: event.NewID().String(), Department: spec.Department, Title: spec.Title, State: TaskOpen, Created: now}
		switch {
		case spec.Deadline != nil && !spec.Deadline.After(now):
			return nil, fieldErr(f+".deadline", "must be in the future")
		case spec.Deadline != nil:
			k.Deadline = spec.Deadline.UTC()
		case pb != nil:
			k.Deadline = now.Add(pb.Deadlines.Resolve.D())
		default:
			k.Deadline = now.Add(72 * time.Hour)
		}
		if err := insertTask(ctx, t, c.ID, &k); err != nil {
			return nil, err
		}
		if err := s.planTimers(ctx, t, c, pb, StageTask, k.ID, k.Deadline); err != nil {
			return nil, err
		}
		ids = append(ids, k.ID)
	}
	return &HistoryEntry{Data: map[string]any{"tasks": ids}}, nil
}

func findTask(ts []Task, id string) (*Task, error) {
	for i := range ts {
		if ts[i].ID == id {
			return &ts[i], nil
		}
	}
	return nil, fieldErr("task", "no task %q in this case", id)
}

func (s *Service) actTaskAccept(ctx context.Context, t txn, _ actor, c *Case, ts []Task, r *ActionRequest) (*HistoryEntry, error) {
	k, err := findTask(ts, r.Task)
	if err != nil {
		return nil, err
	}
	if k.State != TaskOpen {
		return nil, &StateError{Msg: "the task is already " + string(k.State)}
	}
	k.State, k.AcceptedAt = TaskAccepted, s.now().UTC()
	if err := updateTask(ctx, t, c.ID, k); err != nil {
		return nil, err
	}
	return &HistoryEntry{Data: map[string]any{"task": k.ID, "department": k.Department}}, nil
}

func (s *Service) actTaskDone(ctx context.Context, t txn, _ actor, c *Case, ts []Task, r *ActionRequest) (*HistoryEntry, error) {
	k, err := findTask(ts, r.Task)
	if err != nil {
		return nil, err
	}
	if k.State == TaskDone {
		return nil, &StateError{Msg: "the task is already done"}
	}
	if err := checkText("result", r.Result, maxText, true); err != nil {
		return nil, err
	}
	k.State, k.DoneAt, k.Outcome = TaskDone, s.now().UTC(), r.Result
	if k.AcceptedAt.IsZero() {
		k.AcceptedAt = k.DoneAt
	}
	if err := updateTask(ctx, t, c.ID, k); err != nil {
		return nil, err
	}
	if err := cancelTimers(ctx, t, c.ID, k.ID); err != nil {
		return nil, err
	}
	left := 0
	for _, o := range ts {
		if o.State != TaskDone {
			left++
		}
	}
	return &HistoryEntry{Data: map[string]any{"task": k.ID, "department": k.Department, "tasks_open": left}}, nil
}

// actMerge merges c into r.Into: c is closed pointing to the target, the
// target gets a copy of every piece of c's evidence (the originals stay
// with c) and c's alert count.
func (s *Service) actMerge(ctx context.Context, t txn, a actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	if r.Into == "" || r.Into == c.ID {
		return nil, fieldErr("into", "give the id of the case to merge into (not this one)")
	}
	if c.MergedInto != "" {
		return nil, &StateError{Msg: "already merged into " + c.MergedInto}
	}
	target, err := lockCase(ctx, t, r.Into)
	if errors.Is(err, ErrNotFound) {
		return nil, fieldErr("into", "no case %q", r.Into)
	}
	if err != nil {
		return nil, err
	}
	if !target.State.Open() || target.MergedInto != "" {
		return nil, fieldErr("into", "case %s is %s; merge into an open case", target.Number, target.State)
	}
	evs, err := evidence(ctx, t, c.ID)
	if err != nil {
		return nil, err
	}
	copied := 0
	for _, e := range evs {
		e.Data = withData(e.Data, "from_case", c.ID)
		e.Attached, e.AttachedBy = s.now().UTC(), a.name
		ok, err := addEvidence(ctx, t, target.ID, &e)
		if err != nil {
			return nil, err
		}
		if ok {
			copied++
		}
	}
	target.AlertCount += c.AlertCount
	target.Merged = append(target.Merged, c.ID)
	target.Elements.merge(c.Elements)
	ch, err := s.record(ctx, t, target, nil, &HistoryEntry{Actor: a.name, Role: a.role, Action: "merged_in", Note: r.Note,
		Data: map[string]any{"case": c.ID, "number": c.Number, "evidence_copied": copied}})
	if err != nil {
		return nil, err
	}
	t.publish(ch)
	c.Before, c.MergedInto = c.State, target.ID
	c.State, c.ClosedAt, c.Deadline = Closed, s.now().UTC(), time.Time{}
	if err := cancelAllTimers(ctx, t, c.ID); err != nil {
		return nil, err
	}
	return &HistoryEntry{Data: map[string]any{"into": target.ID, "number": target.Number}}, nil
}

func withData(m map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for kk, vv := range m {
		out[kk] = vv
	}
	out[k] = v
	return out
}

// actUnmerge undoes a merge: c returns to the state it had; the evidence
// copied to the target stays there (evidence is never removed).
func (s *Service) actUnmerge(ctx context.Context, t txn, a actor, c *Case, _ []Task, r *ActionRequest) (*HistoryEntry, error) {
	if c.MergedInto == "" {
		return nil, &StateError{Msg: "the case was not merged"}
	}
	target, err := lockCase(ctx, t, c.MergedInto)
	if err != nil {
		return nil, err
	}
	target.Merged = slices.DeleteFunc(target.Merged, func(id string) bool { return id == c.ID })
	target.AlertCount = max(1, target.AlertCount-c.AlertCount)
	ch, err := s.record(ctx, t, target, nil, &HistoryEntry{Actor: a.name, Role: a.role, Action: "merged_out", Note: r.Note,
		Data: map[string]any{"case": c.ID, "number": c.Number}})
	if err != nil {
		return nil, err
	}
	t.publish(ch)
	prevTarget := c.MergedInto
	c.State, c.MergedInto, c.Before, c.ClosedAt = c.Before, "", "", time.Time{}
	if !c.State.Valid() {
		c.State = Registered
	}
	return &HistoryEntry{Data: map[string]any{"from": prevTarget}}, nil
}

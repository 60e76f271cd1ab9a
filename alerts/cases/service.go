package cases

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // Asia/Shanghai without the system's zoneinfo

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb"
	"sharpeye/console/auth"
	"sharpeye/ingest/event"
)

var shanghai = func() *time.Location {
	l, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return l
}()

// Change is one change to a case, as published (sharpeye.cases, webhooks)
// and pushed to consoles: the case after the change and the history entry
// that records it.
type Change struct {
	Case  *Case        `json:"case"`
	Entry HistoryEntry `json:"entry"`
	Type  string       `json:"type"` // "case." + the action
	// Due is the deadline that ran before the change (zero when none):
	// an action after it was late (the analytics' on-time rate).
	Due time.Time `json:"due,omitzero"`
}

// Publisher records the changes of a transaction inside it, as its last
// step, so that they leave the platform exactly when they are committed
// (the transactional outbox).
type Publisher func(ctx context.Context, tx *sql.Tx, chs []Change) error

// Service runs the case workflow over the case database.
type Service struct {
	cfg     Config
	db      *casedb.DB
	log     *slog.Logger
	now     func() time.Time
	publish Publisher
	// committed is called after each commit (wakes the outbox, feeds SSE).
	mu        sync.Mutex
	committed []func(Change)
	m         *metrics
	// loc is where the same-day verification's day ends.
	loc *time.Location
	// readings looks up sensor readings for evidence; nil: not gathered.
	readings Readings
}

// New returns the workflow over db.
func New(cfg Config, db *casedb.DB, reg prometheus.Registerer, log *slog.Logger) *Service {
	loc, err := time.LoadLocation(cfg.VerifySameDay.Timezone)
	if err != nil || cfg.VerifySameDay.Timezone == "" {
		loc = shanghai // Validate refuses what does not load
	}
	return &Service{cfg: cfg, db: db, log: log, now: time.Now, m: newMetrics(reg), loc: loc}
}

// SetClock replaces the clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// SetPublisher sets where changes are recorded in their transaction.
func (s *Service) SetPublisher(p Publisher) { s.publish = p }

// OnCommit adds a function called after every committed change.
func (s *Service) OnCommit(f func(Change)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.committed = append(s.committed, f)
}

// actor names who acts in the history.
type actor struct {
	name, role string
}

var system = actor{name: "sharpeye", role: "system"}

func actorOf(p *auth.Principal) actor {
	return actor{name: p.Username, role: string(p.Role)}
}

// change runs f on case id inside a transaction with the case locked; f
// returns the history entry to record (nil records nothing and leaves the
// case unwritten). want, when not zero, is the version the caller read.
func (s *Service) change(ctx context.Context, id string, want int64, f func(t txn, c *Case, tasks []Task) (*HistoryEntry, error)) (*Case, error) {
	var result *Case
	err := s.commit(ctx, func(t txn, out *[]Change) error {
		c, err := lockCase(ctx, t, id)
		if err != nil {
			return err
		}
		if want != 0 && c.Version != want {
			return fmt.Errorf("%w: you read version %d, it is now at %d; reload and try again", ErrStale, want, c.Version)
		}
		ts, err := tasks(ctx, t, id)
		if err != nil {
			return err
		}
		due := c.Deadline
		h, err := f(t, c, ts)
		if err != nil {
			return err
		}
		result = c
		if h == nil {
			return nil
		}
		ch, err := s.record(ctx, t, c, nil, h) // nil: the tasks as the action left them
		if err != nil {
			return err
		}
		ch.Due = due
		*out = append(*out, ch)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// record writes c (bumping its version) with its history entry h and
// publishes the change, all in t.
func (s *Service) record(ctx context.Context, t txn, c *Case, ts []Task, h *HistoryEntry) (Change, error) {
	now := s.now().UTC()
	if h.At.IsZero() {
		h.At = now
	}
	c.Updated = h.At
	if err := updateCase(ctx, t, c, ts); err != nil {
		return Change{}, err
	}
	return s.recordEntry(ctx, t, c, h)
}

// recordEntry appends h to c's history and publishes it.
func (s *Service) recordEntry(ctx context.Context, t txn, c *Case, h *HistoryEntry) (Change, error) {
	if h.At.IsZero() {
		h.At = s.now().UTC()
	}
	if err := appendHistory(ctx, t, c.ID, h); err != nil {
		return Change{}, err
	}
	cp := *c
	return Change{Case: &cp, Entry: *h, Type: "case." + h.Action}, nil
}

// commit runs f in a transaction; the changes f collects are published in
// it, last, and announced once it commits.
func (s *Service) commit(ctx context.Context, f func(t txn, out *[]Change) error) error {
	var out []Change
	err := inTx(ctx, s.db, func(t txn) error {
		out = out[:0]
		*t.also = (*t.also)[:0]
		if err := f(t, &out); err != nil {
			return err
		}
		out = append(out, *t.also...)
		if s.publish == nil || len(out) == 0 {
			return nil
		}
		if err := s.publish(ctx, t.tx, out); err != nil {
			return fmt.Errorf("publish %d case changes: %w", len(out), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.afterCommit(out...)
	return nil
}

func (s *Service) afterCommit(chs ...Change) {
	if len(chs) == 0 {
		return
	}
	s.mu.Lock()
	fs := append([]func(Change){}, s.committed...)
	s.mu.Unlock()
	for _, ch := range chs {
		s.m.changes.WithLabelValues(ch.Entry.Action).Inc()
		for _, f := range fs {
			f(ch)
		}
	}
}

// NewCase is a case registered by a person (manual intake).
type NewCase struct {
	Title       string    `json:"title"`
	Description string    `json:"description"`
	Category    string    `json:"category"`
	Source      Source    `json:"source"`
	Region      string    `json:"region"`
	Grid        string    `json:"grid"`
	Lat         *float64  `json:"lat"`
	Lon         *float64  `json:"lon"`
	Elements    Elements  `json:"elements"`
	Reporter    *Reporter `json:"reporter"`
	Colour      Colour    `json:"colour"`
	Risk        *int      `json:"risk"`
	Reason      string    `json:"reason"`
}

// Limits on what people type.
const (
	maxTitle   = 200
	maxText    = 8000
	maxElement = 1000
)

// FieldError is a refused input, naming the field.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ForbiddenError is an action the caller's role or scope does not allow.
type ForbiddenError struct{ Msg string }

func (e *ForbiddenError) Error() string { return e.Msg }

func forbidden(format string, args ...any) error {
	return &ForbiddenError{Msg: fmt.Sprintf(format, args...)}
}

// StateError is an action the case's state does not allow.
type StateError struct{ Msg string }

func (e *StateError) Error() string { return e.Msg }

func checkText(field, s string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return fieldErr(field, "is required")
	case len(s) > max:
		return fieldErr(field, "is longer than %d bytes", max)
	case !validText(s):
		return fieldErr(field, "contains control characters or invalid UTF-8")
	}
	return nil
}

func validText(s string) bool {
	for _, c := range s {
		if c == 0xFFFD || (c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7F {
			return false
		}
	}
	return true
}

func checkElements(e Elements) error {
	for _, n := range ElementNames {
		if err := checkText("elements."+n, e.Get(n), maxElement, false); err != nil {
			return err
		}
	}
	return nil
}

// Create registers a case from the window, the hotline, a grid worker or
// a police feed. The registering unit owns it until dispatch.
func (s *Service) Create(ctx context.Context, p *auth.Principal, in NewCase) (*Case, error) {
	if !p.Is(auth.Clerk, auth.Commander, auth.GridWorker, auth.Admin, auth.ServiceAccount) {
		return nil, forbidden("registering cases is for clerks, commanders, grid workers and admins")
	}
	if in.Source == "" {
		in.Source = FromWindow
		if p.Role == auth.GridWorker {
			in.Source = FromGrid
		}
	}
	errs := []error{
		checkText("title", in.Title, maxTitle, true),
		checkText("description", in.Description, maxText, false),
		checkElements(in.Elements),
	}
	if in.Source == FromAlert || !in.Source.Valid() {
		errs = append(errs, fieldErr("source", "must be window, hotline, grid or police"))
	}
	if _, ok := s.cfg.playbook(in.Category); !ok {
		errs = append(errs, fieldErr("category", "unknown category %q (see GET /api/v1/playbooks)", in.Category))
	}
	if in.Region == "" {
		in.Region = p.Region
	}
	if err := auth.CheckRegion(in.Region); err != nil {
		errs = append(errs, fieldErr("region", "%v", err))
	} else if !auth.InRegion(in.Region, p.Region) {
		errs = append(errs, fieldErr("region", "%q is outside your region %q", in.Region, p.Region))
	}
	errs = append(errs, checkText("grid", in.Grid, 128, false))
	if (in.Lat == nil) != (in.Lon == nil) || (in.Lat != nil && (*in.Lat < -90 || *in.Lat > 90 || *in.Lon < -180 || *in.Lon > 180)) {
		errs = append(errs, fieldErr("lat", "lat and lon go together, within ±90 and ±180"))
	}
	if in.Reporter != nil {
		errs = append(errs, checkText("reporter.name", in.Reporter.Name, 100, false), checkText("reporter.phone", in.Reporter.Phone, 32, false))
	}
	if in.Colour != "" && !in.Colour.Valid() {
		errs = append(errs, fieldErr("colour", "must be red, orange or yellow"))
	}
	if in.Risk != nil && (*in.Risk < 0 || *in.Risk > 100) {
		errs = append(errs, fieldErr("risk", "must be 0 to 100"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	c := &Case{
		ID: event.NewID().String(), State: Registered, Title: in.Title, Description: in.Description,
		Category: in.Category, Source: in.Source, Region: in.Region, Grid: in.Grid, Level: levelOf(in.Region),
		Details: Details{Elements: in.Elements, Lat: in.Lat, Lon: in.Lon, Reporter: in.Reporter},
		Created: now, Updated: now, Version: 1, AlertCount: 0,
	}
	if c.Elements.When == "" {
		c.Elements.When = now.In(shanghai).Format("2006-01-02 15:04")
	}
	err := s.commit(ctx, func(t txn, out *[]Change) error {
		num, err := nextNumber(ctx, t, now)
		if err != nil {
			return err
		}
		c.Number = num
		if err := insertCase(ctx, t, c); err != nil {
			return err
		}
		ch, err := s.recordEntry(ctx, t, c, &HistoryEntry{Actor: p.Username, Role: string(p.Role), Action: "registered", To: Registered,
			Data: map[string]any{"source": string(c.Source), "number": c.Number}})
		if err != nil {
			return err
		}
		*out = append(*out, ch)
		if err := s.planStage(ctx, t, c); err != nil {
			return err
		}
		if _, err := t.exec(ctx, "UPDATE cases SET deadline_at = ? WHERE id = ?", casedb.Millis(c.Deadline), c.ID); err != nil {
			return err
		}
		if in.Colour != "" || in.Risk != nil {
			risk := c.Risk
			if in.Risk != nil {
				risk = *in.Risk
			}
			h, err := s.assess(ctx, t, c, actorOf(p), in.Colour, risk, in.Reason)
			if err != nil {
				return err
			}
			ch, err := s.record(ctx, t, c, nil, h)
			if err != nil {
				return err
			}
			*out = append(*out, ch)
		}
		return s.planVerify(ctx, t, c)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// levelOf guesses the level owning a case from its region's depth:
// county/township/village(/grid).
func levelOf(region string) Level {
	switch n := strings.Count(region, "/") + 1; {
	case region == "" || n <= 1:
		return County
	case n == 2:
		return Township
	}
	return Village
}

// visible reports whether p may see c (and its tasks).
func visible(p *auth.Principal, c *Case, ts []Task) bool {
	if auth.InRegion(c.Region, p.Region) {
		return true
	}
	return c.involves(p.Department, ts)
}

// Get returns a case with its history, evidence, tasks, timers and merge
// candidates, if p may see it.
func (s *Service) Get(ctx context.Context, p *auth.Principal, id string) (*Detail, error) {
	q := dbq{s.db}
	c, err := getCase(ctx, q, id)
	if err != nil {
		return nil, err
	}
	d := &Detail{Case: c, Overdue: c.Overdue(s.now())}
	if d.Tasks, err = tasks(ctx, q, id); err != nil {
		return nil, err
	}
	if !visible(p, c, d.Tasks) {
		return nil, ErrNotFound
	}
	if d.History, err = history(ctx, q, id); err != nil {
		return nil, err
	}
	if d.Evidence, err = evidence(ctx, q, id); err != nil {
		return nil, err
	}
	if d.Timers, err = timers(ctx, q, id); err != nil {
		return nil, err
	}
	if d.Candidates, err = s.candidates(ctx, p, c); err != nil {
		return nil, err
	}
	d.Allowed = allowedActions(p, c, d.Tasks)
	return d, nil
}

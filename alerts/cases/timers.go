package cases

import (
	"context"
	"fmt"
	"time"

	"sharpeye/alerts/casedb"
)

// planStage starts the deadline of the stage c has entered: it cancels the
// waiting timers of the stage left (risk warnings and evidence gathering
// excepted; a same-day verification goes with the assess stage) and plans the
// new stage's reminder and escalation ladder from its playbook. A deadline
// still ahead in c.Deadline (set explicitly by the commander) is kept.
func (s *Service) planStage(ctx context.Context, t txn, c *Case) error {
	if _, err := t.exec(ctx, `UPDATE case_timers SET cancelled = 1
		WHERE case_id = ? AND task_id = '' AND kind NOT IN (?, ?) AND fired_at = 0 AND cancelled = 0`, c.ID, TimerWarn, TimerReadings); err != nil {
		return fmt.Errorf("cancel timers: %w", err)
	}
	stage := stageOf(c.State)
	pb, ok := s.cfg.playbook(c.Category)
	if stage == "" || !ok {
		c.Deadline = time.Time{}
		return nil
	}
	now := s.now().UTC()
	deadline := c.Deadline
	if !deadline.After(now) {
		deadline = now.Add(pb.Deadlines.For(stage))
	}
	c.Deadline = deadline
	return s.planTimers(ctx, t, c, pb, stage, "", deadline)
}

// planTimers inserts the reminder before deadline and the ladder after it.
func (s *Service) planTimers(ctx context.Context, t txn, c *Case, pb *Playbook, stage, task string, deadline time.Time) error {
	if pb == nil {
		return nil
	}
	now := s.now().UTC()
	if r := deadline.Add(-pb.RemindBefore.D()); pb.RemindBefore > 0 && r.After(now) {
		if err := insertTimer(ctx, t, c.ID, Timer{Task: task, Stage: stage, Kind: TimerRemind, Due: r}); err != nil {
			return err
		}
	}
	for i, st := range pb.Ladder {
		if err := insertTimer(ctx, t, c.ID, Timer{Task: task, Stage: stage, Kind: st.Action, Step: i + 1, Due: deadline.Add(st.After.D())}); err != nil {
			return err
		}
	}
	return nil
}

type dueTimer struct {
	id, caseID, task, stage, kind string
	step                          int
	due                           time.Time
}

// FireDue fires every timer due at the service's clock and returns how
// many fired. Each fires exactly once, however many nodes run this at the
// same time: the timer is marked fired in the transaction that acts on it.
func (s *Service) FireDue(ctx context.Context) (int, error) {
	fired := 0
	for {
		// Without a readings source, readings timers wait for a node that has one.
		only := ""
		if s.readings == nil {
			only = " AND kind <> '" + TimerReadings + "'"
		}
		rows, err := s.db.Query(ctx, `SELECT id, case_id, task_id, stage, kind, step, due_at FROM case_timers
			WHERE fired_at = 0 AND cancelled = 0 AND due_at <= ?`+only+` ORDER BY due_at, id LIMIT 200`, casedb.Millis(s.now()))
		if err != nil {
			return fired, fmt.Errorf("due timers: %w", err)
		}
		var due []dueTimer
		for rows.Next() {
			var d dueTimer
			var at int64
			if err := rows.Scan(&d.id, &d.caseID, &d.task, &d.stage, &d.kind, &d.step, &at); err != nil {
				rows.Close()
				return fired, err
			}
			d.due = casedb.FromMillis(at)
			due = append(due, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fired, err
		}
		for _, d := range due {
			ok, err := s.fire(ctx, d)
			if err != nil {
				return fired, fmt.Errorf("timer %s (%s of case %s): %w", d.id, d.kind, d.caseID, err)
			}
			if ok {
				fired++
			}
		}
		if len(due) < 200 {
			return fired, nil
		}
	}
}

// fire acts on one due timer and reports whether it changed the case (a
// timer another node fired, or one cancelled meanwhile, does nothing; a
// risk warning with no red risk left, or a verification deadline of a
// case verified meanwhile, is spent silently).
func (s *Service) fire(ctx context.Context, d dueTimer) (bool, error) {
	if d.kind == TimerReadings {
		return s.fireReadings(ctx, d)
	}
	fired := false
	err := s.commit(ctx, func(t txn, out *[]Change) error {
		fired = false
		c, err := lockCase(ctx, t, d.caseID)
		if err != nil {
			return err
		}
		res, err := t.exec(ctx, `UPDATE case_timers SET fired_at = ? WHERE id = ? AND fired_at = 0 AND cancelled = 0`, casedb.Millis(s.now()), d.id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil
		}
		h := &HistoryEntry{Actor: system.name, Role: system.role,
			Data: map[string]any{"stage": d.stage, "step": d.step, "due": d.due.Format(time.RFC3339)}}
		if d.task != "" {
			h.Data["task"] = d.task
		}
		if !c.Deadline.IsZero() && d.task == "" {
			h.Data["deadline"] = c.Deadline.Format(time.RFC3339)
		}
		switch d.kind {
		case TimerRemind:
			h.Action = "reminded"
		case TimerUrge:
			c.UrgeCount++
			h.Action = "urged"
			h.Data["urge_count"] = c.UrgeCount
		case TimerSupervise:
			h.Action = "supervised"
			if c.Supervised {
				h.Note = "still overdue under supervision"
			}
			c.Supervised = true
		case TimerEscalate:
			next, ok := c.Level.next()
			h.Action = "escalated"
			if !ok {
				h.Note = "already at county level: reported to the county leaders"
				break
			}
			h.Data["previous_level"], h.Data["level"] = string(c.Level), string(next)
			c.Level = next
			c.Escalations++
		case TimerWarn:
			if c.Colour != Red || c.Warned || !c.State.Open() {
				return nil
			}
			c.Warned = true
			h.Action = "risk_warning"
			h.Note = "red-level risk: leaders informed; verify the same day"
		case TimerVerify:
			if !needsVerify(c) {
				return nil // verified, or no longer red, meanwhile
			}
			c.UrgeCount++
			h.Action = "verify_overdue"
			h.Note = "red-level risk not verified the same day (不过夜核查): urged"
			h.Data["urge_count"] = c.UrgeCount
		default:
			return fmt.Errorf("unknown timer kind %q", d.kind)
		}
		ch, err := s.record(ctx, t, c, nil, h)
		if err != nil {
			return err
		}
		*out = append(*out, ch)
		fired = true
		return nil
	})
	if err != nil {
		return false, err
	}
	if fired {
		s.m.timers.WithLabelValues(d.kind).Inc()
	}
	return fired, nil
}

// RunTimers fires due timers every poll interval until ctx ends. A
// database failure is logged and retried at the next tick: deadlines are
// data, so nothing is lost while the database is away.
func (s *Service) RunTimers(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.TimerPoll.D())
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if _, err := s.FireDue(ctx); err != nil && ctx.Err() == nil {
			if !failing {
				s.log.Error("case timers", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			s.log.Info("case timers running again")
		}
		failing = false
	}
}

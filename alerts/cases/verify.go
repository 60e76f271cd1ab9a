package cases

import (
	"context"
	"fmt"
	"time"
)

// Same-day verification of red risks (不过夜核查). A case that is, or
// becomes, red before a person has verified it gets a verify timer due at
// the end of that local day (never less than VerifySameDay.Min away).
// A person verifies a case by assessing, dispatching or dismissing it:
// the automatic assessment of an alert and the colour a clerk gives at
// registration are the estimate being verified, not the verification.
// The timer is cancelled when the case is verified (or merged, or leaves
// the assess stage); if it passes first, it fires once and counts as an
// urge (DOMAIN.md: after a missed deadline the system urges, counted;
// formal supervision follows from the playbook's ladder).

// verifyActions are the actions by which a person verifies a case.
var verifyActions = map[string]bool{"assess": true, "dispatch": true, "dismiss": true}

// verifyDeadline is when a case that became red at t must have been
// verified: the end of t's day in the configured zone, at least Min after t.
func (s *Service) verifyDeadline(t time.Time) time.Time {
	y, m, d := t.In(s.loc).Date()
	end := time.Date(y, m, d+1, 0, 0, 0, 0, s.loc)
	if least := t.Add(s.cfg.VerifySameDay.Min.D()); end.Before(least) {
		end = least
	}
	return end.UTC()
}

// needsVerify reports whether c is a red risk in the assess stage that no
// person has verified.
func needsVerify(c *Case) bool {
	return c.Colour == Red && c.Verified.IsZero() && c.MergedInto == "" && (c.State == Registered || c.State == Assessed)
}

// planVerify plans c's verification deadline when c needs one and has
// none waiting or passed (a cancelled one, as by a merge since undone,
// does not count).
func (s *Service) planVerify(ctx context.Context, t txn, c *Case) error {
	if !needsVerify(c) {
		return nil
	}
	var n int
	if err := t.queryRow(ctx, `SELECT COUNT(*) FROM case_timers WHERE case_id = ? AND kind = ? AND cancelled = 0`,
		c.ID, TimerVerify).Scan(&n); err != nil {
		return fmt.Errorf("verify timers: %w", err)
	}
	if n > 0 {
		return nil
	}
	return insertTimer(ctx, t, c.ID, Timer{Stage: StageAssess, Kind: TimerVerify, Due: s.verifyDeadline(s.now())})
}

// markVerified records that a verified c now (the first time only) and
// cancels its waiting verification deadline; it reports whether this was
// the first verification.
func (s *Service) markVerified(ctx context.Context, t txn, c *Case, a actor) (bool, error) {
	if !c.Verified.IsZero() {
		return false, nil
	}
	c.Verified, c.VerifiedBy = s.now().UTC(), a.name
	if _, err := t.exec(ctx, `UPDATE case_timers SET cancelled = 1 WHERE case_id = ? AND kind = ? AND fired_at = 0 AND cancelled = 0`,
		c.ID, TimerVerify); err != nil {
		return false, fmt.Errorf("cancel verify timer: %w", err)
	}
	return true, nil
}

// Package cases runs the governance case workflow (the closed loop of
// DOMAIN.md): cases registered by people or opened by alert rules are
// assessed (risk score and three-colour warning), dispatched to a
// department with a deadline once their seven elements are complete,
// accepted, resolved, followed up and closed. Merge, split into tasks,
// reminders, urges, supervision, level escalation, risk warnings, re-open,
// re-assign, comments and evidence are recorded in each case's history.
//
// Deadlines are data: every stage plans its reminder and escalation ladder
// (from the category's playbook) as rows of case_timers, and FireDue marks
// each one fired in the same transaction that acts on it, so a timer fires
// exactly once across restarts and nodes.
//
// Every change bumps the case's version (a stale update is refused with
// ErrStale) and is handed, inside its transaction, to the Publisher: the
// transactional outbox that carries it to the bus and to webhooks.
package cases

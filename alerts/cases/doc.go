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
// A red risk must be verified the same day (不过夜核查): a case that is, or
// becomes, red before a person has verified it (assessed, dispatched or
// dismissed it) gets a verify timer at the end of that local day (at least
// verify_same_day.min away), cancelled by the verification; passed, it
// fires once as an urge (verify_overdue in the history).
//
// Evidence is never changed once attached. Beyond an alert's events, their
// snapshots and the camera's live view, a case opened by an alert gets the
// sensor readings around it (前后读数): a readings timer due once the
// readings after the alert have come in asks the Readings source (the
// analytics store, set by the node) for the telemetry of the alert's
// devices and of its grid's, and attaches them, thinned, as one evidence
// item; none found is noted in the history, a failed lookup retried with
// backoff and then given up with a note.
//
// Every change bumps the case's version (a stale update is refused with
// ErrStale) and is handed, inside its transaction, to the Publisher: the
// transactional outbox that carries it to the bus and to webhooks.
package cases

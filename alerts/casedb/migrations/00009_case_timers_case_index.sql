-- +goose Up
-- A case's pending timers are looked up by case (planStage cancels them at
-- every stage change). With case_timers_case on case_id alone, SQLite's
-- planner prefers case_timers_due (two equality terms: fired_at = 0 AND
-- cancelled = 0) and scans every pending timer of every case, so opening
-- a case got slower with each case open. The index below has the case and
-- both terms.
CREATE INDEX case_timers_case_pending ON case_timers (case_id, fired_at, cancelled);
DROP INDEX case_timers_case;

-- +goose Down
CREATE INDEX case_timers_case ON case_timers (case_id);
DROP INDEX case_timers_case_pending;

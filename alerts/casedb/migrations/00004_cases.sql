-- Governance cases: the case itself (one row, versioned for optimistic
-- concurrency), its history (append-only), its evidence (immutable once
-- attached), its tasks (one per department when split) and its timers
-- (deadlines as data: reminders, urges, supervision, escalation, risk
-- warnings, each fired exactly once). JSON columns hold what is read whole
-- and never filtered on.

-- +goose Up
CREATE TABLE cases (
    id             TEXT PRIMARY KEY,
    number         TEXT NOT NULL UNIQUE,
    state          TEXT NOT NULL,
    title          TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    category       TEXT NOT NULL,
    colour         TEXT NOT NULL DEFAULT '',
    risk           INTEGER NOT NULL DEFAULT 0,
    source         TEXT NOT NULL,
    rule_id        TEXT NOT NULL DEFAULT '',
    group_key      TEXT NOT NULL DEFAULT '',
    region         TEXT NOT NULL DEFAULT '',
    grid           TEXT NOT NULL DEFAULT '',
    level          TEXT NOT NULL,
    department     TEXT NOT NULL DEFAULT '',
    departments    TEXT NOT NULL DEFAULT '',
    data           TEXT NOT NULL,
    alert_count    INTEGER NOT NULL DEFAULT 1,
    urge_count     INTEGER NOT NULL DEFAULT 0,
    escalations    INTEGER NOT NULL DEFAULT 0,
    merged_into    TEXT NOT NULL DEFAULT '',
    deadline_at    BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    dispatched_at  BIGINT NOT NULL DEFAULT 0,
    accepted_at    BIGINT NOT NULL DEFAULT 0,
    resolved_at    BIGINT NOT NULL DEFAULT 0,
    closed_at      BIGINT NOT NULL DEFAULT 0,
    version        BIGINT NOT NULL
);
CREATE INDEX cases_state ON cases (state, created_at);
CREATE INDEX cases_region ON cases (region);
CREATE INDEX cases_department ON cases (department);
CREATE INDEX cases_group ON cases (group_key, state);
CREATE INDEX cases_created ON cases (created_at, id);
CREATE INDEX cases_grid ON cases (grid, category, created_at);

CREATE TABLE case_history (
    case_id    TEXT NOT NULL REFERENCES cases (id),
    seq        INTEGER NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    role       TEXT NOT NULL DEFAULT '',
    action     TEXT NOT NULL,
    from_state TEXT NOT NULL DEFAULT '',
    to_state   TEXT NOT NULL DEFAULT '',
    note       TEXT NOT NULL DEFAULT '',
    data       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (case_id, seq)
);

CREATE TABLE case_evidence (
    case_id      TEXT NOT NULL REFERENCES cases (id),
    seq          INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    ref          TEXT NOT NULL,
    content_type TEXT NOT NULL DEFAULT '',
    sha256       TEXT NOT NULL DEFAULT '',
    event_id     TEXT NOT NULL DEFAULT '',
    captured_at  BIGINT NOT NULL DEFAULT 0,
    attached_at  BIGINT NOT NULL,
    attached_by  TEXT NOT NULL,
    data         TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (case_id, seq)
);
CREATE UNIQUE INDEX case_evidence_event ON case_evidence (case_id, event_id, kind, ref);

CREATE TABLE case_tasks (
    case_id     TEXT NOT NULL REFERENCES cases (id),
    id          TEXT NOT NULL,
    department  TEXT NOT NULL,
    title       TEXT NOT NULL,
    state       TEXT NOT NULL,
    deadline_at BIGINT NOT NULL,
    outcome     TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    accepted_at BIGINT NOT NULL DEFAULT 0,
    done_at     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (case_id, id)
);
CREATE INDEX case_tasks_department ON case_tasks (department, state);

CREATE TABLE case_timers (
    id        TEXT PRIMARY KEY,
    case_id   TEXT NOT NULL REFERENCES cases (id),
    task_id   TEXT NOT NULL DEFAULT '',
    stage     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    step      INTEGER NOT NULL DEFAULT 0,
    due_at    BIGINT NOT NULL,
    fired_at  BIGINT NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX case_timers_due ON case_timers (fired_at, cancelled, due_at);
CREATE INDEX case_timers_case ON case_timers (case_id);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

-- +goose Down
DROP TABLE counters;
DROP TABLE case_timers;
DROP TABLE case_tasks;
DROP TABLE case_evidence;
DROP TABLE case_history;
DROP TABLE cases;

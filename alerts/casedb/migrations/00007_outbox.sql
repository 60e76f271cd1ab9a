-- The transactional outbox (package alerts/outbox): case changes written in
-- the transaction that changes the case, then delivered from here to the
-- bus and to webhook subscribers, each sink keeping its own cursor.

-- +goose Up
-- outbox_seq allocates outbox ids: the writer's transaction increments the
-- row, which holds its lock until commit, so ids are gap-free and in commit
-- order (an identity column is neither; see the package documentation).
CREATE TABLE outbox_seq (
    name    TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL
);
INSERT INTO outbox_seq (name, last_id) VALUES ('outbox', 0);

CREATE TABLE outbox (
    id         BIGINT PRIMARY KEY,
    uid        TEXT NOT NULL,
    topic      TEXT NOT NULL,
    msg_key    TEXT NOT NULL DEFAULT '',
    type       TEXT NOT NULL,
    value      TEXT NOT NULL,
    headers    TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

-- One row per sink ("bus", "webhook:<name>"): the last id delivered.
CREATE TABLE outbox_cursors (
    sink       TEXT PRIMARY KEY,
    last_id    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Records a webhook subscriber refused for good (4xx other than 408/429),
-- kept whole so that an operator can look at them and send them again: id
-- names one in the API; created_at is the record's (the webhook body's
-- time), at when it was last refused. retry_at > 0 asks the dispatcher
-- holding the lease to send it again to that sink (retry_by asked): the row
-- is deleted once the subscriber takes it, or refused anew (retry_at back
-- to 0).
CREATE TABLE outbox_dead_letters (
    id         TEXT PRIMARY KEY,
    sink       TEXT NOT NULL,
    outbox_id  BIGINT NOT NULL,
    uid        TEXT NOT NULL,
    type       TEXT NOT NULL,
    msg_key    TEXT NOT NULL DEFAULT '',
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL DEFAULT 0,
    status     INTEGER NOT NULL,
    response   TEXT NOT NULL DEFAULT '',
    at         BIGINT NOT NULL,
    retry_at   BIGINT NOT NULL DEFAULT 0,
    retry_by   TEXT NOT NULL DEFAULT '',
    UNIQUE (sink, outbox_id)
);
-- The API's list, newest first.
CREATE INDEX outbox_dead_letters_at ON outbox_dead_letters (at, id);
-- Each webhook sink's look for retries asked for, at every pass.
CREATE INDEX outbox_dead_letters_retry ON outbox_dead_letters (sink, retry_at) WHERE retry_at > 0;

-- Who delivers: one dispatcher at a time across the nodes sharing the
-- database, holding the lease until expires_at (Unix milliseconds).
CREATE TABLE outbox_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL DEFAULT '',
    expires_at BIGINT NOT NULL DEFAULT 0
);
INSERT INTO outbox_lease (name, holder, expires_at) VALUES ('dispatcher', '', 0);

-- +goose Down
DROP TABLE outbox_lease;
DROP TABLE outbox_dead_letters;
DROP TABLE outbox_cursors;
DROP TABLE outbox;
DROP TABLE outbox_seq;

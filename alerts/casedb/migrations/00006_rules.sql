-- Alert rules edited through the API (sharpeye/alerts/rules). A row
-- overrides the configuration's rule of the same id; a configuration rule
-- deleted through the API is kept here disabled. rule_set holds the version
-- of the whole set, bumped by every change: nodes poll it to reload.
-- rule_history records every change (action create, update, delete,
-- disable) with the spec after it.

-- +goose Up
CREATE TABLE rules (
    id         TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    updated_by TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL
);

CREATE TABLE rule_history (
    rule_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    spec    TEXT NOT NULL,
    actor   TEXT NOT NULL DEFAULT '',
    action  TEXT NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (rule_id, version)
);

CREATE TABLE rule_set (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO rule_set (id, version) VALUES (1, 0);

-- +goose Down
DROP TABLE rule_set;
DROP TABLE rule_history;
DROP TABLE rules;

-- State of the alert rules engine (sharpeye/alerts/rules): one JSON record
-- per rule and group key (count windows, for-durations, correlations,
-- cooldowns, recently processed event ids). updated_at is the event time
-- (Unix ms) of the group's newest event.

-- +goose Up
CREATE TABLE rule_state (
    rule_id    TEXT NOT NULL,
    group_key  TEXT NOT NULL,
    state      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (rule_id, group_key)
);

-- +goose Down
DROP TABLE rule_state;

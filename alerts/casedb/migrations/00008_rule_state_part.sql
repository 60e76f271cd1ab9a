-- The partition of each rule state record (sharpeye/alerts/rules): in the
-- partitioned alerts mode (alerts.partition_by) a node loads the state of
-- the partitions of sharpeye.alerts.events it is given, and only those.
-- -1 is "not partitioned": the state of a single alerts node, as every
-- record stored before this migration.

-- +goose Up
ALTER TABLE rule_state ADD COLUMN part INTEGER NOT NULL DEFAULT -1;
CREATE INDEX rule_state_part ON rule_state (part);

-- +goose Down
DROP INDEX rule_state_part;
ALTER TABLE rule_state DROP COLUMN part;

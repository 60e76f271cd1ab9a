-- Cameras added through the API (those of the configuration file are not
-- stored). The record is JSON; the password is kept apart so that the
-- record can be shown without it.

-- +goose Up
CREATE TABLE cameras (
    id         TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    password   TEXT NOT NULL DEFAULT '',
    region     TEXT NOT NULL DEFAULT '',
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX cameras_region ON cameras (region);

-- +goose Down
DROP TABLE cameras;

-- Devices (sensors and analysers) added through the API (those of the
-- configuration file are not stored). The record is JSON; the MQTT password
-- is kept apart, as a salted hash, so that the record can be shown without
-- it. The effective MQTT username is unique across devices.

-- +goose Up
CREATE TABLE devices (
    id            TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL DEFAULT '',
    region        TEXT NOT NULL DEFAULT '',
    version       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX devices_region ON devices (region);

-- +goose Down
DROP TABLE devices;

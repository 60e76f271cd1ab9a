-- The embedded analytics store: the tables of the ClickHouse schema, with
-- times as Unix seconds (plus ms), arrays as JSON text, and the hourly
-- rollups kept by triggers (which fire only for rows actually inserted, so
-- a replayed batch, ignored by id, counts once).

-- +goose Up
CREATE TABLE events (
	id TEXT PRIMARY KEY,
	time INTEGER NOT NULL,
	ms INTEGER NOT NULL,
	received INTEGER NOT NULL,
	schema INTEGER NOT NULL,
	type TEXT NOT NULL,
	severity TEXT NOT NULL,
	source_kind TEXT NOT NULL,
	source_id TEXT NOT NULL,
	source_name TEXT NOT NULL,
	region TEXT NOT NULL,
	grid TEXT NOT NULL,
	has_location INTEGER NOT NULL,
	lat REAL NOT NULL,
	lon REAL NOT NULL,
	camera TEXT NOT NULL,
	device_kind TEXT NOT NULL,
	attributes TEXT NOT NULL,
	tags TEXT NOT NULL,
	evidence TEXT NOT NULL,
	key TEXT NOT NULL,
	bus_partition INTEGER NOT NULL,
	bus_offset INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX events_time ON events (time);
CREATE INDEX events_grid ON events (grid, time);

CREATE TABLE case_events (
	id TEXT PRIMARY KEY,
	case_id TEXT NOT NULL,
	number TEXT NOT NULL,
	seq INTEGER NOT NULL,
	time INTEGER NOT NULL,
	ms INTEGER NOT NULL,
	action TEXT NOT NULL,
	from_state TEXT NOT NULL,
	to_state TEXT NOT NULL,
	state TEXT NOT NULL,
	actor TEXT NOT NULL,
	actor_role TEXT NOT NULL,
	category TEXT NOT NULL,
	colour TEXT NOT NULL,
	risk INTEGER NOT NULL,
	source TEXT NOT NULL,
	rule TEXT NOT NULL,
	region TEXT NOT NULL,
	grid TEXT NOT NULL,
	level TEXT NOT NULL,
	department TEXT NOT NULL,
	co_departments TEXT NOT NULL,
	alert_count INTEGER NOT NULL,
	urge_count INTEGER NOT NULL,
	escalations INTEGER NOT NULL,
	satisfaction TEXT NOT NULL,
	outcome TEXT NOT NULL,
	merged_into TEXT NOT NULL,
	created INTEGER NOT NULL,
	dispatched INTEGER NOT NULL,
	accepted INTEGER NOT NULL,
	resolved INTEGER NOT NULL,
	closed INTEGER NOT NULL,
	deadline INTEGER NOT NULL,
	due INTEGER NOT NULL,
	late INTEGER NOT NULL,
	version INTEGER NOT NULL,
	bus_partition INTEGER NOT NULL,
	bus_offset INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX case_events_time ON case_events (time);
CREATE INDEX case_events_case ON case_events (case_id, seq);

CREATE TABLE camera_health (
	id TEXT PRIMARY KEY,
	camera TEXT NOT NULL,
	minute INTEGER NOT NULL,
	region TEXT NOT NULL,
	grid TEXT NOT NULL,
	vendor TEXT NOT NULL,
	window_seconds REAL NOT NULL,
	online_seconds REAL NOT NULL,
	bitrate_kbps REAL NOT NULL,
	fps REAL NOT NULL,
	packets INTEGER NOT NULL,
	packets_lost INTEGER NOT NULL,
	faults TEXT NOT NULL,
	state TEXT NOT NULL,
	event_id TEXT NOT NULL,
	bus_partition INTEGER NOT NULL,
	bus_offset INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX camera_health_minute ON camera_health (minute);

CREATE TABLE events_hourly (
	hour INTEGER NOT NULL,
	type TEXT NOT NULL,
	region TEXT NOT NULL,
	source_kind TEXT NOT NULL,
	severity TEXT NOT NULL,
	n INTEGER NOT NULL,
	PRIMARY KEY (hour, type, region, source_kind, severity)
) WITHOUT ROWID;

CREATE TABLE camera_events_hourly (
	hour INTEGER NOT NULL,
	camera TEXT NOT NULL,
	type TEXT NOT NULL,
	region TEXT NOT NULL,
	n INTEGER NOT NULL,
	PRIMARY KEY (hour, camera, type, region)
) WITHOUT ROWID;

CREATE TABLE cases_hourly (
	hour INTEGER NOT NULL,
	category TEXT NOT NULL,
	colour TEXT NOT NULL,
	region TEXT NOT NULL,
	source TEXT NOT NULL,
	opened INTEGER NOT NULL,
	closed INTEGER NOT NULL,
	PRIMARY KEY (hour, category, colour, region, source)
) WITHOUT ROWID;

-- +goose StatementBegin
CREATE TRIGGER events_rollup AFTER INSERT ON events BEGIN
	INSERT INTO events_hourly (hour, type, region, source_kind, severity, n)
	VALUES (NEW.time - NEW.time % 3600, NEW.type, NEW.region, NEW.source_kind, NEW.severity, 1)
	ON CONFLICT (hour, type, region, source_kind, severity) DO UPDATE SET n = n + 1;
	INSERT INTO camera_events_hourly (hour, camera, type, region, n)
	SELECT NEW.time - NEW.time % 3600, NEW.camera, NEW.type, NEW.region, 1 WHERE NEW.camera != ''
	ON CONFLICT (hour, camera, type, region) DO UPDATE SET n = n + 1;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER case_events_rollup AFTER INSERT ON case_events BEGIN
	INSERT INTO cases_hourly (hour, category, colour, region, source, opened, closed)
	VALUES (NEW.time - NEW.time % 3600, NEW.category, NEW.colour, NEW.region, NEW.source,
		NEW.seq = 1, NEW.to_state = 'closed')
	ON CONFLICT (hour, category, colour, region, source) DO UPDATE
	SET opened = opened + excluded.opened, closed = closed + excluded.closed;
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE cases_hourly;
DROP TABLE camera_events_hourly;
DROP TABLE events_hourly;
DROP TABLE camera_health;
DROP TABLE case_events;
DROP TABLE events;

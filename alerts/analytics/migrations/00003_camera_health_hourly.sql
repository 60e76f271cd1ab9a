-- camera_health_hourly: each camera's minutes summed per hour (hours, so
-- that days may begin in any zone): minutes, online and window seconds,
-- intact minutes (online, no fault). Kept by a trigger that fires only for
-- rows actually inserted; the rows already stored are summed in. The worst
-- cameras' faults are then read from camera_health for a few cameras: the
-- index on (camera, minute) finds their minutes (ClickHouse's primary key).

-- +goose Up
CREATE TABLE camera_health_hourly (
	hour INTEGER NOT NULL,
	camera TEXT NOT NULL,
	region TEXT NOT NULL,
	grid TEXT NOT NULL,
	vendor TEXT NOT NULL,
	minutes INTEGER NOT NULL,
	online_sum REAL NOT NULL,
	window_sum REAL NOT NULL,
	intact INTEGER NOT NULL,
	PRIMARY KEY (hour, camera, region, grid, vendor)
) WITHOUT ROWID;

INSERT INTO camera_health_hourly
SELECT minute - minute % 3600 AS hour, camera, region, grid, vendor, count(*), sum(online_seconds), sum(window_seconds),
	sum(online_seconds > 0 AND faults = '[]')
FROM camera_health GROUP BY hour, camera, region, grid, vendor;

CREATE INDEX camera_health_camera ON camera_health (camera, minute);

-- +goose StatementBegin
CREATE TRIGGER camera_health_rollup AFTER INSERT ON camera_health BEGIN
	INSERT INTO camera_health_hourly (hour, camera, region, grid, vendor, minutes, online_sum, window_sum, intact)
	VALUES (NEW.minute - NEW.minute % 3600, NEW.camera, NEW.region, NEW.grid, NEW.vendor, 1, NEW.online_seconds, NEW.window_seconds,
		NEW.online_seconds > 0 AND NEW.faults = '[]')
	ON CONFLICT (hour, camera, region, grid, vendor) DO UPDATE
	SET minutes = minutes + 1, online_sum = online_sum + excluded.online_sum, window_sum = window_sum + excluded.window_sum, intact = intact + excluded.intact;
END;
-- +goose StatementEnd

-- +goose Down
DROP INDEX camera_health_camera;
DROP TRIGGER camera_health_rollup;
DROP TABLE camera_health_hourly;

-- +goose Up
-- Which ingest node pulls each camera when several share the cameras
-- (ingest.cluster): the owner writes its row when its consumer group gives
-- it the camera's partition, and confirms it every announce interval; the
-- other nodes pull the camera from the owner's re-serve. A row replaces
-- another only with a later since, so an old owner's late write cannot
-- undo a hand-over.
CREATE TABLE camera_owners (
	camera_id TEXT PRIMARY KEY,
	node TEXT NOT NULL,      -- the owner's RTSP re-serve, rtsp://host:port
	since BIGINT NOT NULL,   -- when it was given the camera, Unix ms
	seen BIGINT NOT NULL     -- when it last confirmed it, Unix ms
);

-- +goose Down
DROP TABLE camera_owners;

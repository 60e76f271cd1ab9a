// Package analytics carries every event and every case change from the bus
// into a store built for counting, and answers the questions analysts ask
// of it (DOMAIN.md, "What the analysts ask").
//
// # Stores
//
// ClickHouse (clickhouse-go v2 over the native protocol, batch inserts
// only) in production; SQLite, one file in the data directory, as the
// embedded default. Both hold the same tables:
//
//   - events: every event with every field of the schema; attributes as
//     key/value arrays by value type (str_keys/str_values, num_keys/
//     num_values, bool_keys/bool_values; one JSON object in SQLite), the
//     time in seconds plus ms, the bus partition and offset;
//   - case_events: every case change (one row per history entry) with the
//     action, the states, the actor and role, and the case as it stood:
//     category, colour, risk, source, rule, region, grid, level,
//     departments, counts of alerts, urges and escalations, satisfaction,
//     outcome, the milestone times, the deadline and the deadline that was
//     due before the change (late = acted after it);
//   - camera_health: one row per camera per minute from the ingest role's
//     camera.health samples (online seconds, bitrate, frame rate, RTP
//     packets and losses, quality faults, vendor);
//   - rollups, kept by materialized views in ClickHouse and by triggers in
//     SQLite: events_hourly (type, region, source kind, severity),
//     camera_events_hourly (camera, type, region), cases_hourly
//     (category, colour, region, source: opened and closed) and
//     camera_health_hourly (per camera: minutes, online and window
//     seconds, intact minutes). They are hourly so that days, weeks and
//     months can begin in any time zone;
//   - each case as it stands, kept as its case events arrive so that the
//     case questions read one row per case instead of rebuilding it from
//     its history: SQLite's cases_current (one row per case, by a
//     trigger); on ClickHouse, cases_flat (the same columns, one live row
//     per case: after each insert the store cancels the live row of every
//     case the batch touched and writes the case as cases_current now
//     holds it, so rows may arrive in any order and a retried batch
//     repairs a sync cut short), which the case questions read, fed by
//     cases_current (argMax-by-seq and sum states in an
//     AggregatingMergeTree kept by a materialized view) and cases_opened
//     (each case's seq = 1 row, where the questions that need no more
//     choose their cases). Their migrations fill them from the rows
//     already stored;
//   - on ClickHouse, events.type_hash (cityHash64 of the type, written at
//     insert) and event_types naming the hashes: the raw events are
//     grouped by type without reading ten million strings.
//
// ClickHouse's schema keeps to what 18.16 has (no TTL, DateTime64, Map or
// codecs) and adds LowCardinality columns, codecs and TTL where the server
// is new enough; versioned migrations are applied at start and recorded in
// schema_migrations. Tables are partitioned by day; retention drops whole
// days (by TTL where the server has it, by the application otherwise).
//
// # The sink
//
// [Sink] is a consumer group on sharpeye.events and sharpeye.cases. Its
// batches are large (analytics.sink.batch rows or one second) and the bus
// commits a batch only after its insert succeeded. A failed insert is
// retried after a backoff and nothing more is consumed meanwhile, so a
// store that is down holds the sink back and loses nothing; the lag metric
// grows until it returns. Rows are idempotent by id: a batch that may have
// been written before (the first of each partition after a start or
// hand-over, a retried one, and those after a batch that held stored rows)
// is checked against the store and what it already holds is skipped, so
// replays count once in the tables, the rollups and cases_current (the
// views and triggers see only rows actually inserted) and cases_flat
// (whose sync writes nothing for a case already in line). On ClickHouse a
// view is written after its table, not with it, so an insert that failed
// between the two leaves the rows stored and the hourly rollups without
// them: the hours of rows a check finds stored are noted, and once over
// their summed rollups are compared with the raw rows and made up
// (CHStore.RepairRollups, run by the sink every minute). Messages that do
// not decode go to sharpeye.deadletter with the reason, and are counted.
//
// # The questions
//
// [Questions] answers each question the same way on both stores (one
// conformance suite proves it): series of events or cases per bucket split
// and filtered by dimensions, case performance, the daily, weekly and
// monthly reports, the camera fleet against its targets, the worst cameras,
// silent and flapping devices, hot spots, rules, and read-only raw SQL on
// ClickHouse. Every question is limited to the caller's region. [API]
// serves them under /api/v1/analytics as JSON tables or CSV.
package analytics

// Package bench is `sharpeye bench`: the load tool that produces the
// whole-system figures quoted in the README (cameras per core, memory per
// viewer, time to first frame, added latency), on whatever machine it runs.
//
//	sharpeye bench ingest  [--cameras 50,200,500] [--fixture square-1080p.h264] [--transport tcp] [--warmup 5s] [--duration 20s]
//	sharpeye bench relay   [--viewers 1,10,50,100,200] [--fixture F] [--warmup 5s] [--duration 20s]
//	sharpeye bench ttff    [--trials 20] [--fixture F]
//	sharpeye bench latency [--duration 20s] [--fixture F]
//	sharpeye bench all     every flag above; each section in a process of its own
//	sharpeye bench analytics generate [--driver sqlite|clickhouse] [--clickhouse ADDR] [--database NAME] [--sqlite FILE]
//	                                  [--days 90] [--cameras 2000] [--devices 500] [--events-per-day 111112]
//	                                  [--cases-per-day 2222] [--health-days 2] [--seed 1] [--end DATE] [--batch 100000] [--replace]
//	sharpeye bench analytics sink     [--events 2000000] [--partitions 8] [--consumers 1] [--batch 20000]
//	                                  [--driver clickhouse,sqlite,none] [--clickhouse ADDR] [--timeout 10m] [--keep]
//	sharpeye bench analytics query    [--driver ...] [--clickhouse ADDR] [--database NAME] [--sqlite FILE] [--runs 7]
//
// Every subcommand prints a table and the machine it ran on (--json: one
// JSON document instead); --quick shrinks every size for a smoke run.
// Everything listens on and connects to 127.0.0.1 only.
//
// # What is measured, and where
//
// The figures are those of the process that runs Sharpeye's code (the
// "measuring process": the ingest role, the relay and its HTTP server, built
// from the same packages as `sharpeye run`). What only loads it runs in
// other processes, so that its CPU is not counted: the simulated cameras in
// `sharpeye bench camera-server` and the WebRTC viewers in `sharpeye bench
// viewers` (both hidden subcommands; the bench re-executes its own binary).
// A child serves until its standard input closes, so it dies with the
// bench, however the bench ends. Children report their own CPU use over the
// measurement window, printed next to the figures: on a machine with few
// cores, a busy child slows the measuring process down.
//
// Over a measurement window (after a warm-up):
//
//   - cores: the process's user+system CPU time (getrusage(RUSAGE_SELF))
//     divided by wall time;
//   - RSS: VmRSS from /proc/self/status at the end of the window (and its
//     peak, sampled every second); Go heap: runtime.MemStats.HeapInuse at
//     the end of the window; "live": heap and stacks in use after a forced
//     GC once the window is over (what the relay's per-viewer figure in its
//     package documentation measures);
//   - delivery: access units received per second from all cameras (hub
//     counters) against cameras × frame rate, RTP packets lost, and
//     cameras that delivered nothing; for viewers, frames per second of
//     each viewer (counted by the viewer).
//
// ingest pulls N cameras with fresh pullers for each N (the process's
// memory is returned to the OS between rows). relay measures the process
// with one camera and no viewer first (the baseline), then with V viewers
// for each V on a fresh relay; per-viewer figures are the difference from
// the baseline divided by V.
//
// ttff is the time from the WHEP POST to the first complete keyframe
// depacketized by a fresh pion viewer (relay.Viewer.FirstKeyframe), trial
// after trial, each started after a random pause of up to one keyframe
// interval so that trials fall at random phases of the camera's GOP.
//
// latency runs the camera, Sharpeye and the viewer in one process, so that
// they share one clock: the camera records when it sends each access unit
// (simcam.Config.OnUnitSent), the viewer when it has received each one.
// The relay rewrites RTP timestamps by a constant offset within a camera
// session once the viewer is live, so the offset is found by matching the
// viewer's keyframes with the camera's (the only keyframe sent less than a
// second before), and each later frame is then paired with the unit it
// came from. The initial burst (the cached GOP sent at once when the viewer
// joins, with compressed timestamps) is excluded: frames count from the
// viewer's second keyframe on.
//
// # Analytics
//
// `bench analytics` measures the analytics store (ClickHouse by default,
// --driver sqlite for the embedded one; ClickHouse on 127.0.0.1:19000, as
// .ci/clickhouse-start starts it) with a generated county's history
// (package alerts/analytics/gen: 2,000 cameras, 500 devices, 111,112 events
// and 2,222 cases a day, camera health for the last two days). It is not
// part of `bench all`, which needs nothing installed.
//
// generate fills a store (analytics.Open, migrated) with --days of history
// ending with yesterday (--end), in inserts of --batch rows, generating
// while it inserts (two batches ahead). It prints the rows per table, rows/s
// over the wall time and over the time spent in Store.Insert (what the
// store takes; on a loaded machine the generator and the inserts compete
// for the cores), the time the generator was busy, this process's CPU and
// the store's size on disk. It refuses a store that already holds events
// unless --replace, which drops the database (deletes the SQLite file)
// first. --profile FILE writes a CPU profile of the run.
//
// sink is the figure of the README's "events per second from Kafka to
// ClickHouse". A kfake cluster of one broker runs in a child process
// (`sharpeye bench analytics-kafka`, hidden), so that its CPU is not
// counted; --events generated events (no camera health, no cases; about
// 520 bytes each) are produced to sharpeye.events (--partitions) with the
// Kafka bus beforehand. Then, each with a consumer group of its own reading
// from the start:
//
//   - consumer: the Kafka bus's consumer alone (kafka-go's reader, batches
//     of --batch handed to a handler that does nothing): what Kafka and
//     the client can deliver, so that it is not the bottleneck measured;
//   - nop: --consumers analytics sinks on a store that writes nothing:
//     decoding, rows and batching;
//   - clickhouse, sqlite (--driver): the sinks into a fresh database (file),
//     dropped afterwards unless --keep.
//
// Each run is timed from its start to the last event stored (count() of
// events polled every 100 ms); "sustained" leaves out the time to join
// the group and fetch the first batch (from the first event stored to the
// last). Next to it: this process's cores and CPU per event, the broker
// process's cores, ClickHouse's query threads' cores (from system.events;
// background merges are not counted), the inserts the sinks made, their
// mean rows and mean time. The target is 200,000 events/s sustained into
// ClickHouse.
//
// query opens a filled store and asks every analytics question
// (analytics.Questions: series by type, township, camera, grid, category,
// state and colour, from the rollups and from the raw tables; performance
// by department and category; rules; cameras by township and vendor; the
// worst cameras; devices; hot spots of events and cases; the daily, weekly
// and monthly reports) over the last day, week, month and quarter of its
// data, --runs times after one warm-up, and prints each question's
// median, 90th percentile, minimum and maximum latency and the rows of
// its answer.
package bench

// Package bench is `sharpeye bench`: the load tool that produces the
// whole-system figures quoted in the README (cameras per core, memory per
// viewer, time to first frame, added latency), on whatever machine it runs.
//
//	sharpeye bench ingest  [--cameras 50,200,500] [--fixture square-1080p.h264] [--transport tcp] [--warmup 5s] [--duration 20s]
//	sharpeye bench relay   [--viewers 1,10,50,100,200] [--fixture F] [--warmup 5s] [--duration 20s]
//	sharpeye bench ttff    [--trials 20] [--fixture F]
//	sharpeye bench latency [--duration 20s] [--fixture F]
//	sharpeye bench all     every flag above; each section in a process of its own
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
package bench

// Package detect holds Sharpeye's built-in video detectors. They watch
// every camera of the ingest role without decoding every frame, and turn
// what they see into events on the bus:
//
//   - health, from the puller's status: the camera goes offline, comes
//     back, or degrades (its frame rate or bitrate collapses against its
//     own baseline, or it loses RTP packets) — the raw material of the
//     online rate (在线率);
//   - motion, in the compressed domain: P-frames grow when something
//     moves, and nothing is decoded;
//   - video quality diagnosis (视频质量诊断), the intact rate (完好率):
//     one keyframe every couple of seconds is decoded, scaled to 320x180,
//     and checked for a frozen, dark, bright, covered, blurred or
//     colour-cast picture;
//   - snapshots: a JPEG of the latest keyframe on demand, and attached to
//     every event (stored in the blob store, referenced with its SHA-256).
//
// # Wiring
//
// One Manager per node, one Detector per camera, each run by its owner:
//
//	m, err := detect.NewManager(cfg.Detect, producer, blobs, reg, log)
//	go m.Run(ctx) // the shared keyframe decoders
//
//	// per camera, next to its puller, on the same hub:
//	d, err := m.NewDetector(cam.ID, detect.Meta{Name: cam.Name, Region: cam.Region,
//		Grid: cam.Grid, Lat: cam.Lat, Lon: cam.Lon, Tags: cam.Tags}, hub, puller.Status)
//	go d.Run(cameraCtx) // returns when cameraCtx ends or the hub is closed
//
//	// GET /api/v1/cameras/{id}/snapshot, after checking the caller may see the camera:
//	jpeg, err := d.Snapshot(r.Context()) // ErrNoPicture: 404 or 503; ErrNoFFmpeg: 501
//
// A camera whose record changes gets a new Detector (the old one's
// context is cancelled). A detector subscribes to the hub passively: it
// counts as nobody watching, and of an on-demand camera it sees the
// stream while a viewer has the camera pulled and never keeps it pulled
// itself; health does not call an idle on-demand camera offline.
//
// # Events
//
// Every event has the camera as its source (kind camera, its id and
// name), its region, grid and coordinates as location, its tags, and a
// snapshot as evidence when ffmpeg and a blob store are there. An event
// that ends a condition also carries the event that raised it as evidence
// (kind event).
//
//	type                      severity  attributes
//	camera.offline            major     silent_seconds, offline_after_seconds, last_packet, state, reason
//	camera.online             info      offline_seconds
//	camera.degraded           minor     reason (frame_rate, bitrate, packet_loss), frame_rate, frame_rate_baseline,
//	                                    bitrate, bitrate_baseline, loss_percent, and the thresholds
//	camera.degraded.cleared   info      the same, degraded_seconds
//	motion                    info      score, threshold, sensitivity, frame_bytes, baseline_bytes
//	motion.end                info      duration_seconds, peak_score, threshold, reason (quiet, schedule,
//	                                    max_duration, stream_restarted)
//	video.frozen              major     difference, frozen_diff, frozen_after_seconds
//	video.covered             major     luma_mean, luma_stddev, covered_stddev, covered_clear_stddev
//	video.dark, video.bright  minor     luma_mean, luma_stddev, and their thresholds
//	video.blur                minor     sharpness, sharpness_baseline, blur_sharpness, blur_ratio
//	video.colour_cast         minor     chroma_u, chroma_v, cast, cast_chroma, cast_clear_chroma
//	video.*.cleared           info      the same, duration_seconds
//
// Motion is reported twice: motion when it has lasted min_duration (the
// event's time is when it began, its snapshot a keyframe received since),
// and motion.end when it is over, with its duration. A rule can act on
// the first at once and close its case on the second.
//
// Every condition has hysteresis: it is raised when its enter threshold
// has held for a while and cleared when a stricter clear threshold has,
// and it changes at most once per min_hold, so a flapping camera yields a
// bounded number of events.
//
// # Clocks
//
// Motion and quality judge durations on the units' arrival times
// (stream.Unit.Received), health on the wall clock (it looks for units
// that do not come). In production the two are the same; in tests, units
// can carry times of their own and be published faster than real time.
//
// # Cost
//
// Measured on a 2-core Xeon VM (BenchmarkDetectorsCPU1080p, 8 cameras
// looping a 2 Mb/s 1080p clip with an IDR every 2 s, each keyframe
// decoded): 0.56 % of a core per camera in ffmpeg and 0.19 % in this
// process (most of it the simulated cameras feeding the hubs), 0.74 % in
// all. Motion costs about 70 ns per access unit, the whole detector about
// 280 ns, a health check 300 ns a second; a snapshot about 110 ms of CPU
// (rate-limited to one per camera per snapshot.min_interval). See
// decoder.go for why the decoders are shared rather than one per camera.
//
// # Configuration
//
// The ingest.detect section (Config); every key of health, motion and
// quality can be overridden per camera under cameras.<id>:
//
//	detect:
//	  ffmpeg: ffmpeg
//	  decoders: 0              # per codec; 0: NumCPU/2, 1 to 4
//	  time_zone: Asia/Shanghai
//	  health:   {enabled: true, offline_after: 15s, online_after: 5s, min_hold: 1m, baseline: 10m,
//	             degraded_after: 30s, frame_rate_drop: 0.3, bitrate_drop: 0.3, recover: 0.6,
//	             loss_percent: 5, loss_clear_percent: 2, loss_window: 1m}
//	  motion:   {enabled: true, sensitivity: 0.5, min_duration: 1s, end_after: 3s, cooldown: 10s,
//	             max_duration: 10m, schedules: []}
//	  quality:  {enabled: true, checks: [frozen, dark, bright, covered, blur, colour_cast],
//	             interval: 2s, raise_after: 10s, clear_after: 10s, min_hold: 1m,
//	             frozen_after: 30s, frozen_diff: 0.5, frozen_clear_diff: 1,
//	             dark_luma: 40, dark_clear_luma: 50, bright_luma: 225, bright_clear_luma: 215,
//	             covered_stddev: 6, covered_clear_stddev: 10,
//	             blur_sharpness: 0.01, blur_clear_sharpness: 0.02, blur_ratio: 0.3, blur_clear_ratio: 0.5,
//	             cast_chroma: 20, cast_clear_chroma: 14}
//	  snapshot: {enabled: true, min_interval: 10s, max_concurrent: 2, timeout: 10s, quality: 5, motion_wait: 3s}
//	  cameras:
//	    cam-0042:
//	      motion: {sensitivity: 0.8, schedules: ["mon-fri 22:00-06:00", "sat,sun"]}
//	      quality: {checks: [frozen, covered, blur]}   # dark at night is normal here
//
// # Limits
//
// Motion from frame sizes needs a variable-bitrate camera (most are, with
// a cap); under strict CBR frames keep their size and little shows. A
// camera switching to night mode changes its frame sizes for good: motion
// until max_duration, which then takes it as the new normal. A perfectly
// still scene with no noise and no on-screen clock cannot be told from a
// frozen one. Blur is judged on the 320x180 picture: only strong defocus
// shows on a 1080p camera.
//
// # State across restarts
//
// Each camera's raised conditions (with the event that raised each) and
// its learnt baselines (frame rate, bitrate, sharpness) are kept in
// <data_dir>/detect/<camera>.json, replaced atomically on every raise and
// clear and every minute. After a restart a condition that persists is
// not raised again, its clearing event still points to the event that
// raised it, and the baselines are taken up where they were; a motion under
// way when the process stopped is ended (reason stream_restarted). The
// motion baselines are per stream session and are relearnt. A file that
// cannot be read is reported (sharpeye_detect_state_errors_total) and the
// detector starts afresh.
package detect

// Package simcam simulates IP cameras: an in-process RTSP server (gortsplib)
// that loops H.264 and H.265 clips in real time, for `sharpeye demo`, tests
// and load benchmarks of the ingest role.
//
// # Clips
//
// Four fixtures are embedded (see fixtures/README.md), at 25 fps with a
// keyframe every 2 s and no B-frames:
//
//	street-360p       H.264 640x360,   10 s, ~1 Mb/s
//	gate-720p         H.264 1280x720,  10 s, ~1.5 Mb/s
//	square-1080p      H.264 1920x1080, 10 s, 2 Mb/s: the load tests' "2 Mb/s camera"
//	street-360p-h265  H.265 640x360,   4 s,  ~0.5 Mb/s
//
// [Load] returns one, split into access units; [LoadFile], [Parse] (H.264)
// and [ParseH265] read any other Annex-B stream. A clip is shared, read-only, by every camera that
// loops it: 500 cameras of one clip hold one copy of it and of its RTP
// packets.
//
// # Serving
//
//	srv, err := simcam.NewServer(simcam.Config{UDPRTPAddress: "127.0.0.1:0"}, log)
//	...
//	err = srv.Start()
//	clip, err := simcam.Load("square-1080p")
//	err = srv.Add(simcam.NewCamera("cam01", clip))
//	url := srv.URL("cam01") // rtsp://127.0.0.1:port/cam01
//	...
//	srv.Close()
//
// Each camera sends unit i of its endless loop at start + i/FPS, with RTP
// timestamps (90 kHz) and RTCP sender-report times that keep growing across
// loops, in packets of at most [MaxPayloadSize] bytes (H.264: RFC 6184 mode
// 1; H.265: RFC 7798).
// A camera can be paused (a hung camera: packets stop, sessions stay), made
// to send garbage payloads, or removed (sessions end, DESCRIBE answers 404).
//
// # Cost
//
// All cameras are sent by one goroutine, which keeps them in a min-heap by
// due time and sleeps on one timer until the earliest is due; units due
// within 2 ms of each other go out in the same wake-up. gortsplib adds one
// goroutine per camera of its own (the RTCP sender-report ticker of each
// ServerStream), and per reader session.
package simcam

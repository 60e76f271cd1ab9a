package simcam_test

import (
	"fmt"
	"log"
	"log/slog"

	"sharpeye/ingest/simcam"
)

// Eight cameras of the demo, all looping shared clips, readable over TCP and
// UDP at rtsp://127.0.0.1:PORT/camNN.
func Example() {
	srv, err := simcam.NewServer(simcam.Config{UDPRTPAddress: "127.0.0.1:0"}, slog.Default())
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	names := simcam.Fixtures()
	for i := range 8 {
		clip, err := simcam.Load(names[i%len(names)])
		if err != nil {
			log.Fatal(err)
		}
		if err := srv.Add(simcam.NewCamera(fmt.Sprintf("cam%02d", i+1), clip)); err != nil {
			log.Fatal(err)
		}
	}
	// Readers pull srv.URL("cam01"): rtsp://127.0.0.1:PORT/cam01.
	fmt.Println(len(srv.Paths()), "cameras")
	// Output: 8 cameras
}

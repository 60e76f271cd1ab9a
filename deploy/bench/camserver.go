package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"sharpeye/ingest/simcam"
)

// cameraServerInfo is the camera server's first answer: where its cameras
// are.
type cameraServerInfo struct {
	// Paths are the cameras' ids (cam000, cam001, ...) and URLs their
	// rtsp:// addresses, in the same order.
	Paths []string `json:"paths"`
	URLs  []string `json:"urls"`
}

// cameraServerReport is the camera server's answer to "stop": what it did
// since "start".
type cameraServerReport struct {
	Cores float64 `json:"cores"`
	// Units are the access units sent (once per camera, whatever the
	// number of readers); Skipped those dropped because the server fell
	// more than a second behind; ReaderErrors packets that could not be
	// queued to a reader.
	Units        uint64 `json:"units"`
	Skipped      uint64 `json:"skipped"`
	ReaderErrors uint64 `json:"reader_errors"`
	Readers      int    `json:"readers"`
}

// cmdCameraServer is `sharpeye bench camera-server --cameras N --fixture F
// [--udp]`: N simulated cameras looping F, their keyframes spread over the
// clip's keyframe interval, until standard input closes.
func cmdCameraServer(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("camera-server", stderr)
	n := fs.Int("cameras", 1, "number of cameras")
	fixture := fs.String("fixture", defaultFixture, "clip the cameras loop")
	udp := fs.Bool("udp", false, "offer RTP over UDP as well as TCP")
	level := fs.String("log-level", "warn", "log level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 {
		return fmt.Errorf("--cameras: must be at least 1")
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	_, commands := control(stdin)
	clip, err := simcam.Load(*fixture)
	if err != nil {
		return err
	}
	cfg := simcam.Config{Address: "127.0.0.1:0"}
	if *udp {
		cfg.UDPRTPAddress = "127.0.0.1:0"
	}
	srv, err := simcam.NewServer(cfg, log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()
	gop := keyframeInterval(clip)
	var info cameraServerInfo
	for i := range *n {
		path := cameraID(i)
		// Spread the keyframes: all at once they would make the load
		// lumpy every GOP.
		cam := simcam.Camera{Path: path, Clip: clip, ParamsInSDP: true, Delay: gop * time.Duration(i) / time.Duration(*n)}
		if err := srv.Add(cam); err != nil {
			return err
		}
		info.Paths = append(info.Paths, path)
		info.URLs = append(info.URLs, srv.URL(path))
	}
	if err := answer(stdout, info); err != nil {
		return err
	}

	var u0 usage
	var base cameraServerReport
	totals := func() cameraServerReport {
		var r cameraServerReport
		for _, p := range info.Paths {
			st, _ := srv.Camera(p)
			r.Units += st.Units
			r.Skipped += st.Skipped
			r.ReaderErrors += st.ReaderErrors
			r.Readers += st.Readers
		}
		return r
	}
	for cmd := range commands {
		switch cmd {
		case "start":
			if u0, err = readUsage(); err != nil {
				return err
			}
			base = totals()
		case "stop":
			u1, err := readUsage()
			if err != nil {
				return err
			}
			r := totals()
			r.Cores = u1.coresSince(u0)
			r.Units -= base.Units
			r.Skipped -= base.Skipped
			r.ReaderErrors -= base.ReaderErrors
			if err := answer(stdout, r); err != nil {
				return err
			}
		default:
			return fmt.Errorf("camera-server: %w %q", errUnknownCommand, cmd)
		}
	}
	return nil
}

// cameraServer is a camera-server child seen from the bench.
type cameraServer struct {
	*child
	info cameraServerInfo
}

// startCameraServer runs n cameras looping fixture in a child process.
func startCameraServer(ctx context.Context, o *options, n int, udp bool, stderr io.Writer) (*cameraServer, error) {
	args := []string{"camera-server", "--cameras", strconv.Itoa(n), "--fixture", o.fixture, "--log-level", o.logLevel}
	if udp {
		args = append(args, "--udp")
	}
	c, err := startChild(ctx, stderr, args...)
	if err != nil {
		return nil, err
	}
	cs := &cameraServer{child: c}
	if err := c.recv(ctx, &cs.info, 30*time.Second); err != nil {
		c.close()
		return nil, err
	}
	if len(cs.info.URLs) != n || len(cs.info.Paths) != n {
		c.close()
		return nil, fmt.Errorf("camera-server: %d cameras announced, want %d", len(cs.info.URLs), n)
	}
	return cs, nil
}

// report asks for the counters since "start".
func (cs *cameraServer) report(ctx context.Context) (cameraServerReport, error) {
	var r cameraServerReport
	if err := cs.send("stop"); err != nil {
		return r, err
	}
	err := cs.recv(ctx, &r, 30*time.Second)
	return r, err
}

// cameraID is the id and path of the i-th simulated camera.
func cameraID(i int) string { return fmt.Sprintf("cam%03d", i) }

// keyframeInterval is the time between the clip's first two keyframes (the
// clip's length if it has one).
func keyframeInterval(clip *simcam.Clip) time.Duration {
	fps := clip.FPS
	if fps <= 0 {
		fps = simcam.DefaultFPS
	}
	for i := 1; i < len(clip.Units); i++ {
		if clip.Units[i].IDR {
			return time.Duration(i) * time.Second / time.Duration(fps)
		}
	}
	return clip.Duration()
}

// newLogger logs at level to w.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

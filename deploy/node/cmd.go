package node

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sharpeye/configs/conf"
	"sharpeye/console/auth"
	"sharpeye/deploy/bench"
)

const usage = `Sharpeye: video-surveillance and sensing ingestion for governance centres.

Usage:
  sharpeye demo  [--data DIR] [--listen ADDR]       everything in one process on embedded defaults
  sharpeye run   -c FILE [--roles ingest,relay,alerts,console]
  sharpeye check -c FILE [--print]                  validate a configuration, print every error
  sharpeye bench ingest|relay|ttff|latency|all      load and latency figures on this machine
  sharpeye version

Common flags: --log-format auto|text|json, --log-level debug|info|warn|error.
Every configuration key can also be set as SHARPEYE_<PATH>, e.g. SHARPEYE_HTTP_LISTEN.
`

// stopTimeout is how long the process has to stop after a signal.
const stopTimeout = 10 * time.Second

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer, environ []string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "demo":
		err = cmdDemo(rest, stdout, stderr, environ)
	case "run":
		err = cmdRun(rest, stderr, environ)
	case "check":
		err = cmdCheck(rest, stdout, environ)
	case "bench":
		err = bench.Main(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "sharpeye", Version())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "sharpeye: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	var ce conf.Errors
	if errors.As(err, &ce) {
		for _, e := range ce {
			fmt.Fprintln(stderr, e.Error())
		}
		fmt.Fprintf(stderr, "sharpeye: %d configuration error(s)\n", len(ce))
		return 1
	}
	fmt.Fprintf(stderr, "sharpeye: %v\n", conf.RedactURLs(err.Error()))
	return 1
}

type logFlags struct{ format, level string }

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "", "log format: auto, text or json (overrides log.format)")
	fs.StringVar(&l.level, "log-level", "", "log level: debug, info, warn or error (overrides log.level)")
}

func (l *logFlags) apply(cfg *Config) error {
	if l.format != "" {
		cfg.Log.Format = l.format
	}
	if l.level != "" {
		cfg.Log.Level = l.level
	}
	switch cfg.Log.Format {
	case "auto", "text", "json":
	default:
		return fmt.Errorf("--log-format: must be auto, text or json, not %q", cfg.Log.Format)
	}
	if _, err := parseLevel(cfg.Log.Level); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	return nil
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sharpeye "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func cmdRun(args []string, stderr io.Writer, environ []string) error {
	fs := newFlagSet("run", stderr)
	path := fs.String("c", "", "configuration file (required)")
	roles := fs.String("roles", strings.Join(AllRoles, ","), "roles to run, comma-separated")
	var lf logFlags
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("run: -c FILE is required (see configs/sharpeye.yml)")
	}
	list, err := ParseRoles(*roles)
	if err != nil {
		return fmt.Errorf("--roles: %w", err)
	}
	cfg, err := LoadFile(*path, environ)
	if err != nil {
		return err
	}
	if err := lf.apply(&cfg); err != nil {
		return err
	}
	logs := NewLogs(cfg.Log, stderr)
	applyMemoryLimit(cfg.MemoryLimit, environ, logs.For("node"))
	n := New(cfg, Options{Roles: list}, logs)
	return runUntilSignal(n, nil)
}

func cmdDemo(args []string, stdout, stderr io.Writer, environ []string) error {
	fs := newFlagSet("demo", stderr)
	data := fs.String("data", "", "data directory (default ./sharpeye-data)")
	listen := fs.String("listen", "", "HTTP listen address (default 127.0.0.1:8080)")
	var lf logFlags
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := LoadFile("", environ)
	if err != nil {
		return err
	}
	if *data != "" {
		cfg.DataDir = *data
	}
	if *listen != "" {
		cfg.HTTP.Listen = *listen
	}
	if err := lf.apply(&cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	password := lookupEnv(environ, "SHARPEYE_ADMIN_PASSWORD")
	logs := NewLogs(cfg.Log, stderr)
	applyMemoryLimit(cfg.MemoryLimit, environ, logs.For("node"))
	sim, cams, err := startDemoCameras(logs.For("simcam"))
	if err != nil {
		return err
	}
	defer sim.Close()
	cfg.Cameras = append(cfg.Cameras, cams...)
	devices := demoDeviceRecords()
	cfg.Devices = append(cfg.Devices, devices...)
	if err := demoAlerts(&cfg.Alerts); err != nil {
		return err
	}
	n := New(cfg, Options{}, logs)
	return runUntilSignal(n, func(ctx context.Context) error {
		pw := password
		if pw == "" {
			pw = rand.Text()[:16]
		}
		if _, err := n.Auth().EnsureUser(ctx, auth.NewUser{Username: "admin", DisplayName: "Administrator", Password: pw, Role: auth.Admin}); err != nil {
			return fmt.Errorf("demo admin: %w", err)
		}
		abs, _ := filepath.Abs(cfg.DataDir)
		fmt.Fprintf(stdout, "\nSharpeye demo is running (data in %s).\n", abs)
		fmt.Fprintf(stdout, "  Console:  %s/\n", n.URL())
		if password != "" {
			fmt.Fprintf(stdout, "  Login:    admin / (the password in SHARPEYE_ADMIN_PASSWORD)\n")
		} else {
			fmt.Fprintf(stdout, "  Login:    admin / %s   (set SHARPEYE_ADMIN_PASSWORD to choose it)\n", pw)
		}
		fmt.Fprintf(stdout, "  Cameras:  %d simulated, e.g. %s/play/%s\n", len(cams), n.URL(), cams[0].ID)
		fmt.Fprintf(stdout, "  Wall:     %s\n", demoWallURL(n.URL(), cams))
		if addr := n.Ingest().RTSPAddr(); addr != "" {
			fmt.Fprintf(stdout, "  RTSP:     rtsp://admin:<password or API token>@%s/%s\n", addr, cams[0].ID)
		}
		if addr := n.MQTTAddr(); addr != "" {
			fmt.Fprintf(stdout, "  MQTT:     %s (%d simulated sensors and an AI box publishing)\n", addr, len(devices))
			go runDemoSensors(ctx, addr, devices, logs.For("demo-sensors"))
		}
		if s := n.Analytics(); s != nil {
			fmt.Fprintf(stdout, "  History:  %d days of simulated analytics history load in the background (Analytics 研判)\n", demoHistoryDays)
			go fillDemoHistory(ctx, s, logs.For("demo-history"))
		}
		fmt.Fprintf(stdout, "  Stop:     Ctrl-C\n\n")
		return nil
	})
}

// runUntilSignal starts the node, calls started, and runs until SIGINT or
// SIGTERM; a second signal, or 10 s without stopping, ends the process.
func runUntilSignal(n *Node, started func(ctx context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Start(ctx); err != nil {
		return err
	}
	if started != nil {
		if err := started(ctx); err != nil {
			n.close()
			return err
		}
	}
	go func() {
		<-ctx.Done()
		stop() // a second signal now kills the process the default way
		t := time.NewTimer(stopTimeout)
		defer t.Stop()
		<-t.C
		fmt.Fprintln(os.Stderr, "sharpeye: did not stop within 10s; exiting")
		os.Exit(1)
	}()
	return n.Run(ctx)
}

func cmdCheck(args []string, stdout io.Writer, environ []string) error {
	fs := newFlagSet("check", stdout)
	path := fs.String("c", "", "configuration file (required)")
	print := fs.Bool("print", false, "print the effective configuration, secrets redacted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("check: -c FILE is required")
	}
	cfg, err := LoadFile(*path, environ)
	if err != nil {
		return err
	}
	if *print {
		out, err := conf.Marshal(&cfg)
		if err != nil {
			return err
		}
		stdout.Write(out)
		return nil
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return nil
}

func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

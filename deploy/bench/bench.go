package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sharpeye/configs/conf"
	"sharpeye/ingest"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/simcam"
)

const usageText = `sharpeye bench: load and latency figures of this build on this machine.

Usage:
  sharpeye bench ingest  [--cameras 50,200,500] [--fixture F] [--transport tcp|udp|auto] [--warmup 5s] [--duration 20s]
  sharpeye bench relay   [--viewers 1,10,50,100,200] [--fixture F] [--warmup 5s] [--duration 20s]
  sharpeye bench ttff    [--trials 20] [--fixture F]
  sharpeye bench latency [--duration 20s] [--fixture F]
  sharpeye bench all     [any flag above]     every section, each in a process of its own
  sharpeye bench analytics generate|sink|query [flags]   the analytics store (see bench analytics help)
  sharpeye bench alerts  [--rate 5000] [--duration 60s] [--rules FILE]   event on the bus to case in the API (see bench alerts help)

  ingest   CPU and memory to pull N simulated cameras (in another process)
  relay    CPU and memory to serve V WebRTC viewers of one camera
  ttff     time from WHEP POST to the first keyframe at a fresh viewer
  latency  added latency from camera to viewer
  analytics  rows/s into the analytics store, events/s from Kafka through the sink, question latency
  alerts   time from an event on the bus to the case it opens, visible through the API

Common flags: --json (one JSON document instead of tables), --quick (cameras
10,50; viewers 1,10; 5 trials; 2s warm-up; 5s measured), --log-level LEVEL
(logs of the components under test, default warn). ingest and relay:
--profile DIR writes pprof profiles of each measured window. Fixtures: %s.
Everything runs on 127.0.0.1. The default fixture is the 2 Mb/s 1080p camera.
`

// Sections in the order `bench all` runs them.
var sections = []string{"ingest", "relay", "ttff", "latency"}

// defaultFixture is the load tests' "2 Mb/s camera".
const defaultFixture = "square-1080p.h264"

// Main runs `sharpeye bench` with args (after "bench").
func Main(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintf(stderr, usageText, strings.Join(simcam.Fixtures(), ", "))
		return flag.ErrHelp
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "ingest", "relay", "ttff", "latency", "all":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		// A second Ctrl-C kills the bench the default way.
		context.AfterFunc(ctx, stop)
		if cmd == "all" {
			return runAll(ctx, rest, stdout, stderr)
		}
		return runSection(ctx, cmd, rest, stdout, stderr)
	case "analytics":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		context.AfterFunc(ctx, stop)
		return runAnalytics(ctx, rest, stdout, stderr)
	case "alerts":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		context.AfterFunc(ctx, stop)
		return runAlertsBench(ctx, rest, stdout, stderr)
	case "alerts-node":
		return cmdAlertsNode(rest, os.Stdin, stdout, stderr)
	case "analytics-kafka":
		return cmdAnalyticsKafka(rest, os.Stdin, stdout, stderr)
	case "camera-server":
		return cmdCameraServer(rest, os.Stdin, stdout, stderr)
	case "viewers":
		return cmdViewers(rest, os.Stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintf(stdout, usageText, strings.Join(simcam.Fixtures(), ", "))
		return nil
	default:
		fmt.Fprintf(stderr, usageText, strings.Join(simcam.Fixtures(), ", "))
		return fmt.Errorf("bench: unknown subcommand %q", cmd)
	}
}

// withMemoryLimit sets the process's Go memory limit to o's for the
// length of a section, and returns the limit in force (0: none; it may
// come from GOMEMLIMIT) and what undoes it.
func (o *options) withMemoryLimit() (int64, func()) {
	undo := func() {}
	if o.memLimit > 0 {
		prev := debug.SetMemoryLimit(int64(o.memLimit))
		undo = func() { debug.SetMemoryLimit(prev) }
	}
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		return limit, undo
	}
	return 0, undo
}

// options are the flags of every section.
type options struct {
	cameras   intList
	viewers   intList
	trials    int
	fixture   string
	transport string
	// gopTotal is ingest.gop_total_bytes.
	gopTotal int64
	// memLimit is the measuring process's Go memory limit (the node's
	// memory_limit; 0: none).
	memLimit conf.MemoryLimit
	warmup   time.Duration
	duration time.Duration
	json     bool
	quick    bool
	logLevel string
	// profile is a directory for pprof profiles of each measured window.
	profile string
	// lifeline: stop when standard input closes (a section run by `bench
	// all`, which dies with it).
	lifeline bool
}

// register adds the flags section uses ("all": every flag) to fs.
func (o *options) register(fs *flag.FlagSet, section string) {
	*o = options{
		cameras: intList{50, 200, 500}, viewers: intList{1, 10, 50, 100, 200}, trials: 20,
		fixture: defaultFixture, transport: camera.TransportTCP, gopTotal: ingest.Defaults().GOPTotalBytes,
		warmup: 5 * time.Second, duration: 20 * time.Second, logLevel: "warn",
	}
	uses := func(s ...string) bool { return section == "all" || slices.Contains(s, section) }
	if uses("ingest") {
		fs.Var(&o.cameras, "cameras", "numbers of cameras, one row each")
		fs.StringVar(&o.transport, "transport", o.transport, "RTSP transport of the pullers: tcp, udp or auto")
		fs.Int64Var(&o.gopTotal, "gop-total-bytes", o.gopTotal, "ingest.gop_total_bytes, the bound of all cameras' cached GOPs together (0: none)")
	}
	if uses("relay") {
		fs.Var(&o.viewers, "viewers", "numbers of viewers, one row each")
	}
	if uses("ttff") {
		fs.IntVar(&o.trials, "trials", o.trials, "number of viewers timed, one after another")
	}
	if uses("ingest", "relay") {
		fs.DurationVar(&o.warmup, "warmup", o.warmup, "time left to settle before each measurement")
		fs.TextVar(&o.memLimit, "memory-limit", conf.MemoryLimit(0), "Go memory limit of the measured process (the node's memory_limit), a size such as 110MiB")
		fs.StringVar(&o.profile, "profile", "", "write a CPU profile of each measured window and a heap profile at its end to this directory (costs a few percent of CPU)")
	}
	if uses("ingest", "relay", "latency") {
		fs.DurationVar(&o.duration, "duration", o.duration, "measurement window")
	}
	fs.StringVar(&o.fixture, "fixture", o.fixture, "clip the simulated cameras loop: "+strings.Join(simcam.Fixtures(), ", "))
	fs.BoolVar(&o.json, "json", false, "print one JSON document instead of tables")
	fs.BoolVar(&o.quick, "quick", false, "small sizes for a smoke run (cameras 10,50; viewers 1,10; 5 trials; 2s warm-up, 5s windows)")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "log level of the components under test: debug, info, warn or error")
	fs.BoolVar(&o.lifeline, "lifeline", false, "(internal) stop when standard input closes")
}

// parse parses args and applies --quick to the flags not given.
func (o *options) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"cameras":  func() { o.cameras = intList{10, 50} },
			"viewers":  func() { o.viewers = intList{1, 10} },
			"trials":   func() { o.trials = 5 },
			"warmup":   func() { o.warmup = 2 * time.Second },
			"duration": func() { o.duration = 5 * time.Second },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	return o.validate()
}

func (o *options) validate() error {
	switch {
	case o.trials < 1:
		return errors.New("--trials: must be at least 1")
	case o.warmup < 0:
		return errors.New("--warmup: must not be negative")
	case o.duration < time.Second:
		return errors.New("--duration: must be at least 1s")
	case o.duration > time.Hour || o.warmup > time.Hour:
		return errors.New("--duration and --warmup: at most 1h")
	}
	if problem := ingest.CheckGOPTotal(o.gopTotal); problem != "" {
		return fmt.Errorf("--gop-total-bytes: %s", problem)
	}
	if o.memLimit == conf.MemoryLimitAuto {
		return errors.New("--memory-limit: auto reads a cgroup's limit, which a benchmark has none of; give a size")
	}
	switch o.transport {
	case camera.TransportTCP, camera.TransportUDP, camera.TransportAuto:
	default:
		return fmt.Errorf("--transport: must be tcp, udp or auto, not %q", o.transport)
	}
	if _, err := simcam.Load(o.fixture); err != nil {
		return fmt.Errorf("--fixture: %w (fixtures: %s)", err, strings.Join(simcam.Fixtures(), ", "))
	}
	if _, err := newLogger(io.Discard, o.logLevel); err != nil {
		return err
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return fmt.Errorf("--profile: %w", err)
		}
	}
	return nil
}

// profilePrefix is where the profiles of a row go ("" when not asked for).
func (o *options) profilePrefix(section string, n int) string {
	if o.profile == "" {
		return ""
	}
	return filepath.Join(o.profile, fmt.Sprintf("%s-%d", section, n))
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sharpeye bench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// intList is a flag of comma-separated positive numbers.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, n := range *l {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out intList
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 100000 {
			return fmt.Errorf("%q is not a number from 1 to 100000", f)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}

// runSection runs one section in this process and prints its report.
func runSection(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(name, stderr)
	var o options
	o.register(fs, name)
	if err := o.parse(fs, args); err != nil {
		return err
	}
	if o.lifeline {
		stdinClosed, commands := control(os.Stdin)
		go func() {
			for range commands { // none expected
			}
		}()
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		context.AfterFunc(stdinClosed, cancel)
	}
	log, _ := newLogger(stderr, o.logLevel)
	rep := &Report{Machine: describeMachine()}
	err := runOne(ctx, name, &o, rep, stderr, log)
	if err != nil {
		rep.Errors = append(rep.Errors, name+": "+err.Error())
		err = fmt.Errorf("%s: %w", name, err)
	}
	rep.Machine.LoadEnd = loadAverage()
	if o.json {
		if werr := writeJSON(stdout, rep); werr != nil {
			return werr
		}
	} else {
		writeText(stdout, rep)
	}
	return err
}

// runOne runs section name into rep.
func runOne(ctx context.Context, name string, o *options, rep *Report, progress io.Writer, log *slog.Logger) error {
	var err error
	switch name {
	case "ingest":
		rep.Ingest, err = runIngest(ctx, o, progress, log)
	case "relay":
		rep.Relay, err = runRelay(ctx, o, progress, log)
	case "ttff":
		rep.TTFF, err = runTTFF(ctx, o, progress, log)
	case "latency":
		rep.Latency, err = runLatency(ctx, o, progress, log)
	default:
		err = fmt.Errorf("unknown section %q", name)
	}
	return err
}

// runAll runs every section, each in a child process so that each starts
// with a fresh heap and none inherits another's memory, and prints them
// together.
func runAll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("all", stderr)
	var o options
	o.register(fs, "all")
	if err := o.parse(fs, args); err != nil {
		return err
	}
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })

	rep := &Report{Machine: describeMachine()}
	var failed []string
	for _, name := range sections {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stderr, "bench all: %s\n", name)
		part, err := runChildSection(ctx, name, sectionArgs(name, given), stderr)
		if part != nil {
			rep.Ingest = latest(rep.Ingest, part.Ingest)
			rep.Relay = latest(rep.Relay, part.Relay)
			rep.TTFF = latest(rep.TTFF, part.TTFF)
			rep.Latency = latest(rep.Latency, part.Latency)
			rep.Errors = append(rep.Errors, part.Errors...)
		}
		if err != nil {
			failed = append(failed, name)
			if part == nil || len(part.Errors) == 0 {
				rep.Errors = append(rep.Errors, name+": "+err.Error())
			}
		}
	}
	rep.Machine.LoadEnd = loadAverage()
	if o.json {
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		writeText(stdout, rep)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench all: %s failed", strings.Join(failed, ", "))
	}
	return nil
}

// latest returns b if it is set, else a.
func latest[T any](a, b *T) *T {
	if b != nil {
		return b
	}
	return a
}

// sectionArgs are the arguments of section name run by `bench all`: the
// flags given to all that the section knows, and --json.
func sectionArgs(name string, given map[string]string) []string {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var o options
	o.register(fs, name)
	args := []string{name, "--json", "--lifeline"}
	keys := make([]string, 0, len(given))
	for k := range given {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "json" || k == "lifeline" || fs.Lookup(k) == nil {
			continue
		}
		args = append(args, "--"+k+"="+given[k])
	}
	return args
}

// runChildSection runs `bench <args>` in a child process and reads its
// JSON report. The report may come with an error (a section that failed
// part-way).
func runChildSection(ctx context.Context, name string, args []string, stderr io.Writer) (*Report, error) {
	c, err := startChild(ctx, stderr, args...)
	if err != nil {
		return nil, err
	}
	// The report is one indented JSON document: gather every line.
	var out bytes.Buffer
	for line := range c.linesUntilEOF() {
		out.Write(line)
		out.WriteByte('\n')
	}
	werr := c.close()
	var rep Report
	if out.Len() == 0 {
		if werr == nil {
			werr = errors.New("no report")
		}
		return nil, werr
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("%s: unreadable report: %w", name, err)
	}
	return &rep, werr
}

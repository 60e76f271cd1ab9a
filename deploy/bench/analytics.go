package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/gen"
	"sharpeye/configs/conf"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/bus/kafka"
)

const analyticsUsage = `sharpeye bench analytics: the analytics store's load figures on this machine.

Usage:
  sharpeye bench analytics generate [store flags] [--days 90] [--cameras 2000] [--devices 500]
                                    [--events-per-day 111112] [--cases-per-day 2222] [--health-days 2]
                                    [--seed 1] [--end YYYY-MM-DD] [--batch 100000] [--replace]
  sharpeye bench analytics sink     [--events 2000000] [--partitions 8] [--consumers 1] [--batch 20000]
                                    [--driver clickhouse,sqlite,none] [--clickhouse ADDR] [--timeout 10m]
                                    [--clickhouse-http ADDR]
  sharpeye bench analytics query    [store flags] [--runs 7]

  generate  fills a store with a generated county's history; prints rows/s inserted
  sink      Kafka (an in-process kfake cluster in another process) to the store through the
            analytics sink; prints events/s, with the consumer alone and a no-op store for comparison,
            ClickHouse alone with --clickhouse-http, and what the target rate would take of the machine
  query     runs each analytics question over a filled store; prints median and p90 latency

Store flags: --driver sqlite|clickhouse (default clickhouse), --clickhouse 127.0.0.1:19000,
--database sharpeye_bench, --sqlite FILE (default sharpeye-bench-analytics.db in the temporary
directory). Common flags: --json, --quick (a small smoke run), --log-level LEVEL.
`

// AnalyticsReport is what `bench analytics` prints (--json: this document).
type AnalyticsReport struct {
	Machine  Machine         `json:"machine"`
	Generate *GenerateResult `json:"generate,omitempty"`
	Sink     *SinkResult     `json:"sink,omitempty"`
	Query    *QueryResult    `json:"query,omitempty"`
	Errors   []string        `json:"errors,omitempty"`
}

// runAnalytics is `sharpeye bench analytics <sub> [flags]`.
func runAnalytics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, analyticsUsage)
		return flag.ErrHelp
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "generate", "sink", "query":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, analyticsUsage)
		return nil
	default:
		fmt.Fprint(stderr, analyticsUsage)
		return fmt.Errorf("bench analytics: unknown subcommand %q", sub)
	}
	fs := newFlagSet("analytics "+sub, stderr)
	var o analyticsOptions
	o.register(fs, sub)
	if err := o.parse(fs, rest); err != nil {
		return err
	}
	log, err := newLogger(stderr, o.logLevel)
	if err != nil {
		return err
	}
	rep := &AnalyticsReport{Machine: describeMachine()}
	if o.profile != "" {
		f, err := os.Create(o.profile)
		if err != nil {
			return fmt.Errorf("--profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	switch sub {
	case "generate":
		rep.Generate, err = runGenerate(ctx, &o, stderr, log)
	case "sink":
		rep.Sink, err = runSinkBench(ctx, &o, stderr, log)
	case "query":
		rep.Query, err = runQueryBench(ctx, &o, stderr, log)
	}
	if err != nil {
		rep.Errors = append(rep.Errors, sub+": "+err.Error())
		err = fmt.Errorf("analytics %s: %w", sub, err)
	}
	rep.Machine.LoadEnd = loadAverage()
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(rep); werr != nil {
			return werr
		}
	} else {
		writeAnalytics(stdout, rep)
	}
	return err
}

// analyticsOptions are the flags of the analytics subcommands.
type analyticsOptions struct {
	// the store
	driver, clickhouse, database, sqlite string
	// generate
	days, cameras, devices, eventsPerDay, casesPerDay, healthDays int
	seed                                                          int64
	end                                                           string
	batch                                                         int
	replace                                                       bool
	// sink
	events, partitions, consumers, sinkBatch int
	timeout                                  time.Duration
	keep                                     bool
	clickhouseHTTP                           string
	// query
	runs int
	// profile is a CPU profile file of the run (generate, sink).
	profile string

	json, quick bool
	logLevel    string
}

func (o *analyticsOptions) register(fs *flag.FlagSet, sub string) {
	g := gen.Benchmark()
	*o = analyticsOptions{
		driver: analytics.ClickHouse, clickhouse: "127.0.0.1:19000", database: "sharpeye_bench",
		sqlite: filepath.Join(os.TempDir(), "sharpeye-bench-analytics.db"),
		days:   g.Days, cameras: g.Cameras, devices: g.Devices, eventsPerDay: g.EventsPerDay, casesPerDay: g.CasesPerDay,
		healthDays: g.HealthDays, seed: g.Seed, batch: 100_000,
		events: 2_000_000, partitions: 8, consumers: 1, sinkBatch: analytics.Defaults().Sink.Batch, timeout: 10 * time.Minute,
		runs: 7, logLevel: "warn",
	}
	switch sub {
	case "sink":
		fs.StringVar(&o.driver, "driver", o.driver, "stores to carry the events into, comma-separated: clickhouse, sqlite, none (the consumer and a no-op store run anyway)")
	default:
		fs.StringVar(&o.driver, "driver", o.driver, "store: sqlite or clickhouse")
		fs.StringVar(&o.database, "database", o.database, "ClickHouse database")
		fs.StringVar(&o.sqlite, "sqlite", o.sqlite, "SQLite file")
	}
	fs.StringVar(&o.clickhouse, "clickhouse", o.clickhouse, "ClickHouse native protocol address host:port")
	switch sub {
	case "generate":
		fs.IntVar(&o.days, "days", o.days, "days of history")
		fs.IntVar(&o.cameras, "cameras", o.cameras, "cameras in the county")
		fs.IntVar(&o.devices, "devices", o.devices, "devices (sensors, alarm buttons, AI boxes)")
		fs.IntVar(&o.eventsPerDay, "events-per-day", o.eventsPerDay, "events a day (camera health aside)")
		fs.IntVar(&o.casesPerDay, "cases-per-day", o.casesPerDay, "cases opened a day (a county takes about 86)")
		fs.IntVar(&o.healthDays, "health-days", o.healthDays, "last days with camera health samples (one row per camera per minute)")
		fs.Int64Var(&o.seed, "seed", o.seed, "seed of the history")
		fs.StringVar(&o.end, "end", "", "last day of the history, YYYY-MM-DD (default: yesterday)")
		fs.IntVar(&o.batch, "batch", o.batch, "rows per insert")
		fs.BoolVar(&o.replace, "replace", false, "drop the database (delete the SQLite file) first if it holds rows")
	case "sink":
		fs.IntVar(&o.events, "events", o.events, "events produced to Kafka, then consumed")
		fs.IntVar(&o.partitions, "partitions", o.partitions, "partitions of sharpeye.events")
		fs.IntVar(&o.consumers, "consumers", o.consumers, "sinks in the consumer group (one is one alerts role)")
		fs.IntVar(&o.sinkBatch, "batch", o.sinkBatch, "the sink's batch (analytics.sink.batch)")
		fs.DurationVar(&o.timeout, "timeout", o.timeout, "longest wait for one run to store every event")
		fs.BoolVar(&o.keep, "keep", false, "keep the ClickHouse database and SQLite file the runs filled")
		fs.StringVar(&o.clickhouseHTTP, "clickhouse-http", "", "ClickHouse's HTTP interface host:port: after the ClickHouse run, its inserts are replayed there in ClickHouse's native format, one per core at a time, to measure the server alone (empty: not measured)")
	case "query":
		fs.IntVar(&o.runs, "runs", o.runs, "times each question is asked (after one warm-up)")
	}
	if sub != "query" {
		fs.StringVar(&o.profile, "profile", "", "write a CPU profile of the run to this file")
	}
	fs.BoolVar(&o.json, "json", false, "print one JSON document instead of tables")
	fs.BoolVar(&o.quick, "quick", false, "a small smoke run (generate: 3 days of 200 cameras; sink: 50,000 events; query: 3 runs)")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "log level of the components under test")
}

func (o *analyticsOptions) parse(fs *flag.FlagSet, args []string) error {
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
			"days": func() { o.days = 3 }, "cameras": func() { o.cameras = 200 }, "devices": func() { o.devices = 50 },
			"events-per-day": func() { o.eventsPerDay = 20_000 }, "cases-per-day": func() { o.casesPerDay = 200 },
			"health-days": func() { o.healthDays = 1 }, "batch": func() { o.batch = 20_000 },
			"events": func() { o.events = 50_000 }, "partitions": func() { o.partitions = 4 }, "runs": func() { o.runs = 3 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	if _, err := newLogger(io.Discard, o.logLevel); err != nil {
		return err
	}
	switch {
	case o.days < 1 || o.days > 3660:
		return errors.New("--days: 1 to 3660")
	case o.healthDays < 0 || o.healthDays > o.days:
		return errors.New("--health-days: 0 to --days")
	case o.batch < 1 || o.sinkBatch < 1:
		return errors.New("--batch: must be positive")
	case o.events < 1 || o.events > 100_000_000:
		return errors.New("--events: 1 to 100000000")
	case o.partitions < 1 || o.partitions > 1000:
		return errors.New("--partitions: 1 to 1000")
	case o.consumers < 1 || o.consumers > o.partitions:
		return errors.New("--consumers: 1 to --partitions")
	case o.runs < 1:
		return errors.New("--runs: at least 1")
	}
	return nil
}

// storeConfig is the analytics configuration of the store the flags name.
func (o *analyticsOptions) storeConfig(driver string) (analytics.Config, error) {
	cfg := analytics.Defaults()
	cfg.Driver = driver
	cfg.SQLite = o.sqlite
	cfg.ClickHouse.Addr = []string{o.clickhouse}
	cfg.ClickHouse.Database = o.database
	cfg.Sink.InsertTimeout = conf.Duration(5 * time.Minute)
	cfg.Query.Timeout = conf.Duration(time.Minute)
	if err := conf.Load(&cfg, nil, "", nil); err != nil {
		return cfg, fmt.Errorf("store flags: %w", err)
	}
	return cfg, nil
}

// where names a store for the report.
func where(cfg analytics.Config) string {
	if cfg.Driver == analytics.ClickHouse {
		return cfg.ClickHouse.Addr[0] + "/" + cfg.ClickHouse.Database
	}
	return cfg.SQLite
}

// openStore opens (creating and migrating) the store cfg names.
func openStore(ctx context.Context, cfg analytics.Config, log *slog.Logger) (analytics.Store, error) {
	return analytics.Open(ctx, cfg, os.TempDir(), log.With("component", "analytics"))
}

// dropStore removes the database or file cfg names.
func dropStore(ctx context.Context, cfg analytics.Config) error {
	if cfg.Driver == analytics.SQLite {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(cfg.SQLite + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: cfg.ClickHouse.Addr,
		Auth: clickhouse.Auth{Database: "default", Username: cfg.ClickHouse.Username, Password: cfg.ClickHouse.Password.Reveal()}})
	if err != nil {
		return err
	}
	defer conn.Close()
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return conn.Exec(dctx, "DROP DATABASE IF EXISTS "+cfg.ClickHouse.Database)
}

// count counts a table's rows.
func count(ctx context.Context, s analytics.Store, table string) (int64, error) {
	var n int64
	err := s.DB().QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}

// storeBytes is the store's size on disk (0 if unknown).
func storeBytes(ctx context.Context, s analytics.Store, cfg analytics.Config) int64 {
	if cfg.Driver == analytics.SQLite {
		var n int64
		for _, suffix := range []string{"", "-wal"} {
			if fi, err := os.Stat(cfg.SQLite + suffix); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	var n uint64
	if err := s.DB().QueryRowContext(ctx, "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = ? AND active",
		cfg.ClickHouse.Database).Scan(&n); err != nil {
		return 0
	}
	return int64(n)
}

// errNoServerCPU: the store is not ClickHouse.
var errNoServerCPU = errors.New("no server CPU figures")

// serverCPU is the CPU time ClickHouse's query threads have used since it
// started, in seconds (the user and system time system.events counts;
// background merges are not counted).
func serverCPU(ctx context.Context, s analytics.Store) (float64, error) {
	if s == nil || s.Driver() != analytics.ClickHouse {
		return 0, errNoServerCPU
	}
	var us uint64
	err := s.DB().QueryRowContext(ctx, "SELECT sum(value) FROM system.events WHERE event IN ('UserTimeMicroseconds', 'SystemTimeMicroseconds')").Scan(&us)
	return float64(us) / 1e6, err
}

// GenerateResult is `bench analytics generate`: a store filled with a
// generated county's history.
type GenerateResult struct {
	Driver       string    `json:"driver"`
	Store        string    `json:"store"`
	From         time.Time `json:"from"`
	To           time.Time `json:"to"`
	Days         int       `json:"days"`
	Cameras      int       `json:"cameras"`
	Devices      int       `json:"devices"`
	EventsPerDay int       `json:"events_per_day"`
	CasesPerDay  int       `json:"cases_per_day"`
	HealthDays   int       `json:"health_days"`
	// Rows written, per table; Cases counts the cases opened.
	Events     int64 `json:"events"`
	CaseEvents int64 `json:"case_events"`
	Cases      int64 `json:"cases"`
	Health     int64 `json:"camera_health"`
	// Seconds is the wall time, generation and insertion overlapping;
	// InsertSeconds the time spent in Store.Insert.
	Seconds       float64 `json:"seconds"`
	RowsPerSecond float64 `json:"rows_per_second"`
	InsertSeconds float64 `json:"insert_seconds"`
	// InsertRowsPerSecond is rows over the time spent inserting: what the
	// store takes.
	InsertRowsPerSecond float64 `json:"insert_rows_per_second"`
	Inserts             int     `json:"inserts"`
	// GeneratorSeconds is the time the generator was busy (not waiting
	// for the inserts).
	GeneratorSeconds float64 `json:"generator_seconds"`
	// Cores is this process's CPU (generator and client) over the run;
	// MicrosPerRow the same per row written.
	Cores        float64 `json:"cores"`
	MicrosPerRow float64 `json:"cpu_us_per_row"`
	// ServerCores is ClickHouse's query threads' CPU over the run (from
	// system.events; background merges not counted); ServerMicrosPerRow
	// the same per row.
	ServerCores        float64 `json:"server_cores,omitempty"`
	ServerMicrosPerRow float64 `json:"server_cpu_us_per_row,omitempty"`
	// StoreBytes is the store's size on disk at the end.
	StoreBytes int64 `json:"store_bytes"`
	// Compacted is the settled days' partitions merged into one part each
	// after the fill (ClickHouse), as the sink's hourly compaction would
	// have by the time the history was this old; CompactSeconds how long
	// it took.
	Compacted      int     `json:"compacted_partitions,omitempty"`
	CompactSeconds float64 `json:"compact_seconds,omitempty"`
}

// genConfig is the history the flags describe.
func (o *analyticsOptions) genConfig() (gen.Config, error) {
	gc := gen.Benchmark()
	gc.Seed, gc.Days, gc.Cameras, gc.Devices = o.seed, o.days, o.cameras, o.devices
	gc.EventsPerDay, gc.CasesPerDay, gc.HealthDays = o.eventsPerDay, o.casesPerDay, o.healthDays
	loc := gc.Location()
	end := time.Now().In(loc).AddDate(0, 0, -1)
	if o.end != "" {
		t, err := time.ParseInLocation("2006-01-02", o.end, loc)
		if err != nil {
			return gc, fmt.Errorf("--end: %w", err)
		}
		end = t
	}
	gc.Start = end.AddDate(0, 0, 1-o.days)
	return gc, gc.Validate()
}

func runGenerate(ctx context.Context, o *analyticsOptions, progress io.Writer, log *slog.Logger) (*GenerateResult, error) {
	cfg, err := o.storeConfig(o.driver)
	if err != nil {
		return nil, err
	}
	gc, err := o.genConfig()
	if err != nil {
		return nil, err
	}
	res := &GenerateResult{Driver: cfg.Driver, Store: where(cfg), From: gc.Begin(), To: gc.End(), Days: gc.Days, Cameras: gc.Cameras,
		Devices: gc.Devices, EventsPerDay: gc.EventsPerDay, CasesPerDay: gc.CasesPerDay, HealthDays: gc.HealthDays}
	if o.replace {
		if err := dropStore(ctx, cfg); err != nil {
			return res, fmt.Errorf("drop %s: %w", where(cfg), err)
		}
	}
	store, err := openStore(ctx, cfg, log)
	if err != nil {
		return res, err
	}
	defer store.Close()
	if n, err := count(ctx, store, "events"); err != nil {
		return res, err
	} else if n > 0 {
		return res, fmt.Errorf("%s already holds %d events; give --replace to drop it first", where(cfg), n)
	}
	fmt.Fprintf(progress, "bench analytics generate: %d days (%s to %s) into %s\n", gc.Days,
		res.From.Format("2006-01-02"), res.To.AddDate(0, 0, -1).Format("2006-01-02"), where(cfg))
	s0, serr := serverCPU(ctx, store)
	st, err := fill(ctx, store, gc, o.batch, progress)
	if s1, serr1 := serverCPU(ctx, store); serr == nil && serr1 == nil && st.wall > 0 {
		res.ServerCores = (s1 - s0) / st.wall.Seconds()
		if rows := st.events + st.cases + st.health; rows > 0 {
			res.ServerMicrosPerRow = (s1 - s0) / float64(rows) * 1e6
		}
	}
	res.Events, res.CaseEvents, res.Cases, res.Health = st.events, st.cases, st.opened, st.health
	res.Seconds, res.InsertSeconds, res.Inserts = st.wall.Seconds(), st.insert.Seconds(), st.inserts
	res.GeneratorSeconds, res.Cores = st.generator.Seconds(), st.cores
	rows := float64(st.events + st.cases + st.health)
	if res.Seconds > 0 {
		res.RowsPerSecond = rows / res.Seconds
	}
	if rows > 0 {
		res.MicrosPerRow = res.Cores * res.Seconds / rows * 1e6
	}
	if res.InsertSeconds > 0 {
		res.InsertRowsPerSecond = rows / res.InsertSeconds
	}
	if c, ok := store.(*analytics.CHStore); ok && err == nil {
		fmt.Fprintf(progress, "bench analytics generate: merging the settled days' parts\n")
		start := time.Now()
		res.Compacted, _, err = c.Compact(ctx, time.Now(), 0)
		res.CompactSeconds = time.Since(start).Seconds()
	}
	res.StoreBytes = storeBytes(ctx, store, cfg)
	return res, err
}

// fillStats is what fill did.
type fillStats struct {
	events, cases, opened, health int64
	inserts                       int
	wall, insert, generator       time.Duration
	cores                         float64
}

// fill generates gc's history into store, in inserts of about batch
// rows (a little more: they end at a minute); the generator runs ahead of
// the inserts by two batches.
func fill(ctx context.Context, store analytics.Store, gc gen.Config, batch int, progress io.Writer) (fillStats, error) {
	var st fillStats
	u0, err := readUsage()
	if err != nil {
		return st, err
	}
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *analytics.Batch, 2)
	var genErr error
	var blocked time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(batches)
		// The generator's batches are the inserts: they end at a minute
		// boundary once they hold batch rows.
		gc.Batch = batch
		genErr = gen.Generate(gctx, gc, func(b *analytics.Batch) error {
			t := time.Now()
			select {
			case batches <- b:
			case <-gctx.Done():
				return gctx.Err()
			}
			blocked += time.Since(t)
			return nil
		})
	}()
	start, last := time.Now(), time.Now()
	var insErr error
	for b := range batches {
		if insErr != nil {
			continue // drain until the generator stops
		}
		for _, r := range b.Cases {
			if r.Seq == 1 {
				st.opened++
			}
		}
		t := time.Now()
		n, err := store.Insert(ctx, b, false)
		st.insert += time.Since(t)
		if err != nil {
			insErr = err
			cancel()
			continue
		}
		st.events, st.cases, st.health = st.events+int64(n.Events), st.cases+int64(n.Cases), st.health+int64(n.Health)
		st.inserts++
		if time.Since(last) >= 5*time.Second {
			last = time.Now()
			rows := st.events + st.cases + st.health
			fmt.Fprintf(progress, "  %d rows (%d events, %d case events, %d health) in %.0fs: %.0f rows/s; inserting %.0f rows/s\n",
				rows, st.events, st.cases, st.health, time.Since(start).Seconds(), float64(rows)/time.Since(start).Seconds(),
				float64(rows)/st.insert.Seconds())
		}
	}
	<-done
	st.wall = time.Since(start)
	st.generator = st.wall - blocked
	if u1, err := readUsage(); err == nil {
		st.cores = u1.coresSince(u0)
	}
	if insErr != nil {
		return st, insErr
	}
	return st, genErr
}

// SinkResult is `bench analytics sink`: events from Kafka into the store
// through the analytics sink.
type SinkResult struct {
	Events     int `json:"events"`
	Partitions int `json:"partitions"`
	Consumers  int `json:"consumers"`
	// Batch is the sink's batch size (analytics.sink.batch).
	Batch int `json:"batch"`
	// MessageBytes is the mean size of an encoded event.
	MessageBytes float64 `json:"message_bytes"`
	// ProducedPerSecond is how fast the events were produced (before the
	// runs; not measured against a target).
	ProducedPerSecond float64       `json:"produced_per_second"`
	Runs              []SinkRun     `json:"runs"`
	Targets           []TargetCheck `json:"targets"`
	// Budget is what the target rate would take of this machine, from
	// the figures of the ClickHouse run.
	Budget *SinkBudget `json:"budget,omitempty"`
}

// SinkBudget is the CPU the target rate would take, each part at the cost
// per event measured in the runs: ClickHouse (its whole process where the
// bench can read it, else its query threads, a floor since merges are not
// counted), the broker, the sink's process, and the Kafka consumer alone
// (the part of the sink's figure that fetches and parses the messages and
// nothing more).
type SinkBudget struct {
	Rate         float64 `json:"events_per_second"`
	MachineCores int     `json:"machine_cores"`
	Server       Share   `json:"server"`
	Broker       Share   `json:"broker"`
	Sink         Share   `json:"sink"`
	Consumer     Share   `json:"consumer"`
	// Cores is server, broker and sink together.
	Cores float64 `json:"cores"`
	// ServerWhole: Server is the server process's whole CPU (merges
	// included), not its query threads'.
	ServerWhole bool `json:"server_whole_process,omitempty"`
	// Alone is the events/s of ClickHouse alone (0: not measured).
	Alone float64 `json:"clickhouse_alone_per_second,omitempty"`
	// AloneMicros is the server process's whole CPU per event then (0:
	// not known).
	AloneMicros float64 `json:"clickhouse_alone_cpu_us_per_event,omitempty"`
	// Floor is the least the rate could take: ClickHouse at its cost
	// alone, the broker and the Kafka consumer alone, with no decoding
	// and no columns built (0: not known).
	Floor float64 `json:"floor_cores,omitempty"`
}

// Share is one part's CPU per event and what the rate makes of it.
type Share struct {
	Micros float64 `json:"cpu_us_per_event"`
	Cores  float64 `json:"cores"`
}

// sinkBudget prices the target rate from the ClickHouse run and the
// consumer-alone run; nil without a ClickHouse run.
func sinkBudget(runs []SinkRun, rate float64, cpus int) *SinkBudget {
	var ch, consumer, alone *SinkRun
	for i := range runs {
		switch r := &runs[i]; {
		case r.Error != "" || r.Sustained <= 0:
		case r.Name == analytics.ClickHouse:
			ch = r
		case r.Name == "consumer":
			consumer = r
		case r.Name == aloneRun:
			alone = r
		}
	}
	if ch == nil || ch.ServerCores <= 0 {
		return nil
	}
	whole := ch.ServerProcessCores > ch.ServerCores
	server := ch.ServerCores
	if whole {
		server = ch.ServerProcessCores
	}
	share := func(micros float64) Share { return Share{Micros: micros, Cores: micros * rate / 1e6} }
	perEvent := func(cores float64) float64 { return cores / ch.Sustained * 1e6 }
	b := &SinkBudget{Rate: rate, MachineCores: cpus,
		Server: share(perEvent(server)), ServerWhole: whole,
		Broker: share(perEvent(ch.BrokerCores)),
		Sink:   share(ch.MicrosPerEvent)}
	if consumer != nil {
		b.Consumer = share(consumer.MicrosPerEvent)
	}
	b.Cores = b.Server.Cores + b.Broker.Cores + b.Sink.Cores
	if alone != nil {
		b.Alone = alone.Sustained
		b.AloneMicros = alone.ServerProcessCores / alone.Sustained * 1e6
		if b.AloneMicros > 0 && b.Consumer.Micros > 0 {
			b.Floor = b.AloneMicros*rate/1e6 + b.Broker.Cores + b.Consumer.Cores
		}
	}
	return b
}

// SinkRun is one consumer group reading every event from the start.
type SinkRun struct {
	// Name is consumer (the Kafka consumer alone, handler doing nothing),
	// nop (the sink with a store that writes nothing), clickhouse or
	// sqlite.
	Name string `json:"name"`
	What string `json:"what"`
	// Seconds is from the start of the consumer to the last event stored;
	// PerSecond is events over that.
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	// Sustained is the rate from the first event stored to the last
	// (the group's join and the first fetch left out).
	Sustained float64 `json:"sustained_per_second"`
	// Cores is this process's CPU (consumer, sink, store client); Broker
	// the kfake process's; Server ClickHouse's query threads' (its
	// merges are not counted).
	Cores       float64 `json:"cores"`
	BrokerCores float64 `json:"broker_cores"`
	// MicrosPerEvent is this process's CPU per event, in microseconds:
	// what the figure costs, whatever else the machine was doing.
	MicrosPerEvent float64 `json:"cpu_us_per_event"`
	ServerCores    float64 `json:"server_cores,omitempty"`
	// ServerProcessCores is the clickhouse-server process's whole CPU,
	// merges included, when the server is on this machine's loopback and
	// exactly one runs here (else 0).
	ServerProcessCores float64 `json:"server_process_cores,omitempty"`
	// Batches are the inserts the sink made and MeanBatch their mean
	// rows; InsertMs the mean time of one insert.
	Batches   int     `json:"batches,omitempty"`
	MeanBatch float64 `json:"mean_batch,omitempty"`
	InsertMs  float64 `json:"mean_insert_ms,omitempty"`
	Error     string  `json:"error,omitempty"`
}

// sinkTarget: the README's figure.
const sinkTarget = 200_000

// kafkaInfo is the broker child's first answer.
type kafkaInfo struct {
	Brokers []string `json:"brokers"`
}

// kafkaUsage is the broker child's answer to "usage": its CPU so far.
type kafkaUsage struct {
	CPUSeconds float64 `json:"cpu_seconds"`
}

// cmdAnalyticsKafka is `sharpeye bench analytics-kafka --partitions N`: a
// kfake cluster of one broker on 127.0.0.1, serving until standard input
// closes; "usage" answers its CPU time.
func cmdAnalyticsKafka(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("analytics-kafka", stderr)
	parts := fs.Int("partitions", 8, "partitions of topics created without a number")
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, commands := control(stdin)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(*parts))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := answer(stdout, kafkaInfo{Brokers: c.ListenAddrs()}); err != nil {
		return err
	}
	for cmd := range commands {
		switch cmd {
		case "usage":
			cpu, err := cpuTime()
			if err != nil {
				return err
			}
			if err := answer(stdout, kafkaUsage{CPUSeconds: cpu.Seconds()}); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w %q", errUnknownCommand, cmd)
		}
	}
	return nil
}

// broker is the kfake child, seen from the bench.
type broker struct {
	*child
	brokers []string
}

func (b *broker) cpu(ctx context.Context) (float64, error) {
	if err := b.send("usage"); err != nil {
		return 0, err
	}
	var u kafkaUsage
	err := b.recv(ctx, &u, 10*time.Second)
	return u.CPUSeconds, err
}

func runSinkBench(ctx context.Context, o *analyticsOptions, progress io.Writer, log *slog.Logger) (*SinkResult, error) {
	drivers := strings.Split(o.driver, ",")
	for _, d := range drivers {
		switch d {
		case analytics.ClickHouse, analytics.SQLite, "none":
		default:
			return nil, fmt.Errorf("--driver: %q is not clickhouse, sqlite or none", d)
		}
	}
	res := &SinkResult{Events: o.events, Partitions: o.partitions, Consumers: o.consumers, Batch: o.sinkBatch}
	c, err := startChild(ctx, progress, "analytics-kafka", fmt.Sprintf("--partitions=%d", o.partitions))
	if err != nil {
		return res, err
	}
	defer c.close()
	var info kafkaInfo
	if err := c.recv(ctx, &info, 30*time.Second); err != nil {
		return res, err
	}
	br := &broker{child: c, brokers: info.Brokers}

	kcfg := kafka.Defaults()
	kcfg.Brokers, kcfg.ClientID = br.brokers, "sharpeye-bench"
	kcfg.Replication, kcfg.Partitions = 1, o.partitions
	kcfg.BatchTimeout = conf.Duration(2 * time.Millisecond)
	kcfg.MemoryBuffer = 200_000
	kcfg.SessionTimeout = conf.Duration(10 * time.Second)
	kcfg.HeartbeatInterval = conf.Duration(time.Second)
	kcfg.RetryBackoffMin = conf.Duration(50 * time.Millisecond)
	kcfg.RetryBackoffMax = conf.Duration(time.Second)
	dir, err := os.MkdirTemp("", "sharpeye-bench-sink-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	kb, err := kafka.New(kcfg, dir, prometheus.NewRegistry(), log)
	if err != nil {
		return res, err
	}
	bctx, stopBus := context.WithCancel(context.WithoutCancel(ctx))
	busDone := make(chan error, 1)
	go func() { busDone <- kb.Run(bctx) }()
	defer func() {
		stopBus()
		<-busDone
	}()

	fmt.Fprintf(progress, "bench analytics sink: producing %d events to %s (%d partitions)\n", o.events, bus.TopicEvents, o.partitions)
	n, bytes, secs, err := produce(ctx, kb, o.events)
	if err != nil {
		return res, fmt.Errorf("produce: %w", err)
	}
	res.MessageBytes, res.ProducedPerSecond = float64(bytes)/float64(max(n, 1)), float64(n)/secs
	fmt.Fprintf(progress, "  %d events (%.0f bytes each) in %.1fs: %.0f/s\n", n, res.MessageBytes, secs, res.ProducedPerSecond)

	runs := []string{"consumer", "nop"}
	for _, d := range drivers {
		if d != "none" {
			runs = append(runs, d)
		}
	}
	for _, name := range runs {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(progress, "bench analytics sink: %s\n", name)
		var alone *SinkRun
		after := func(store analytics.Store, cfg analytics.Config) {
			if name == analytics.ClickHouse && o.clickhouseHTTP != "" {
				fmt.Fprintf(progress, "bench analytics sink: ClickHouse alone\n")
				r := replayAlone(ctx, o, store, cfg)
				alone = &r
			}
		}
		run := sinkRun(ctx, o, kb, br, name, after, log)
		if run.Error != "" {
			fmt.Fprintf(progress, "  %s failed: %s\n", name, run.Error)
		} else {
			fmt.Fprintf(progress, "  %.0f events/s sustained, %.2f cores\n", run.Sustained, run.Cores)
		}
		res.Runs = append(res.Runs, run)
		if alone != nil {
			res.Runs = append(res.Runs, *alone)
		}
	}
	t := TargetCheck{What: fmt.Sprintf("%d events/s sustained from Kafka to ClickHouse", sinkTarget)}
	for _, r := range res.Runs {
		if r.Name == analytics.ClickHouse && r.Error == "" {
			t.check(r.Sustained >= sinkTarget, "%.0f events/s with %d consumer(s), %.2f cores in the sink's process", r.Sustained, o.consumers, r.Cores)
		}
	}
	if t.Met == nil {
		t.Measured = "not measured (no ClickHouse run)"
	}
	res.Targets = []TargetCheck{t}
	res.Budget = sinkBudget(res.Runs, sinkTarget, runtime.NumCPU())
	return res, ctx.Err()
}

// produce publishes n generated events (no camera health, no cases) to
// sharpeye.events, generating and publishing in parallel.
func produce(ctx context.Context, b bus.Producer, n int) (int, int64, float64, error) {
	gc := gen.Benchmark()
	gc.CasesPerDay, gc.HealthDays, gc.Batch = 0, 0, 5000
	gc.Days = min(n/gc.EventsPerDay+2, 3660)
	gc.Start = time.Now().AddDate(0, 0, -gc.Days)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan []bus.Message, 8)
	var genErr error
	go func() {
		defer close(ch)
		left := n
		genErr = gen.Messages(pctx, gc, func(ms []bus.Message) error {
			ms = ms[:min(len(ms), left)]
			left -= len(ms)
			select {
			case ch <- ms:
			case <-pctx.Done():
				return pctx.Err()
			}
			if left == 0 {
				return gen.ErrStop
			}
			return nil
		})
	}()
	start := time.Now()
	var sent, bytes atomic.Int64
	var wg sync.WaitGroup
	var pubErr error
	var once sync.Once
	for range 4 {
		wg.Go(func() {
			for ms := range ch {
				if err := b.Publish(pctx, ms...); err != nil {
					once.Do(func() { pubErr = err })
					cancel()
					continue
				}
				sent.Add(int64(len(ms)))
				for _, m := range ms {
					bytes.Add(int64(len(m.Value)))
				}
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if pubErr != nil {
		return int(sent.Load()), bytes.Load(), secs, pubErr
	}
	if genErr != nil {
		return int(sent.Load()), bytes.Load(), secs, genErr
	}
	if int(sent.Load()) != n {
		return int(sent.Load()), bytes.Load(), secs, fmt.Errorf("produced %d events of %d", sent.Load(), n)
	}
	return n, bytes.Load(), secs, nil
}

// nopStore is a store that writes nothing: the sink's cost without the
// store's.
type nopStore struct{ rows atomic.Int64 }

func (s *nopStore) Driver() string { return "none" }
func (s *nopStore) Insert(_ context.Context, b *analytics.Batch, _ bool) (analytics.Inserted, error) {
	s.rows.Add(int64(b.Len()))
	return analytics.Inserted{Events: len(b.Events), Cases: len(b.Cases), Health: len(b.Health)}, nil
}
func (s *nopStore) Expire(context.Context, time.Time) error { return nil }
func (s *nopStore) DB() *sql.DB                             { return nil }
func (s *nopStore) ReadOnly() *sql.DB                       { return nil }
func (s *nopStore) Close() error                            { return nil }

var _ analytics.Store = (*nopStore)(nil)

// sinkRun reads every event with a new consumer group: the consumer alone
// (name "consumer"), the sink on a no-op store ("nop") or on a fresh store
// of driver name. after (may be nil) is given that store once the run has
// succeeded, before it is closed and dropped.
func sinkRun(ctx context.Context, o *analyticsOptions, kb *kafka.Bus, br *broker, name string, after func(analytics.Store, analytics.Config), log *slog.Logger) SinkRun {
	run := SinkRun{Name: name}
	fail := func(err error) SinkRun {
		run.Error = err.Error()
		return run
	}
	want := int64(o.events)
	var stored func(context.Context) (int64, error)
	var store analytics.Store
	var cfg analytics.Config
	switch name {
	case "consumer":
		run.What = "Kafka consumer alone (kafka-go reader, batches handed to a handler that does nothing)"
	case "nop":
		run.What = "the analytics sink with a store that writes nothing (decoding, rows, batching)"
		ns := &nopStore{}
		store = ns
		stored = func(context.Context) (int64, error) { return ns.rows.Load(), nil }
	default:
		var err error
		if cfg, err = o.storeConfig(name); err != nil {
			return fail(err)
		}
		suffix := strings.ToLower(rand.Text()[:8])
		cfg.ClickHouse.Database = o.database + "_sink_" + suffix
		cfg.SQLite = filepath.Join(os.TempDir(), "sharpeye-bench-sink-"+suffix+".db")
		run.What = "the analytics sink into " + name + " (" + where(cfg) + ")"
		if store, err = openStore(ctx, cfg, log); err != nil {
			return fail(err)
		}
		defer func() {
			if after != nil && run.Error == "" {
				after(store, cfg)
			}
			store.Close()
			if !o.keep {
				_ = dropStore(context.WithoutCancel(ctx), cfg)
			}
		}()
		stored = func(ctx context.Context) (int64, error) { return count(ctx, store, "events") }
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	group := "bench-" + name + "-" + strings.ToLower(rand.Text()[:6])
	var consumed atomic.Int64
	regs := make([]*prometheus.Registry, o.consumers)
	errs := make(chan error, o.consumers)
	b0, _ := br.cpu(ctx)
	s0, serr := serverCPU(ctx, store)
	var whole serverWhole
	if store != nil && store.Driver() == analytics.ClickHouse {
		whole = startServerWhole(cfg.ClickHouse.Addr[0])
	}
	u0, err := readUsage()
	if err != nil {
		return fail(err)
	}
	for i := range o.consumers {
		regs[i] = prometheus.NewRegistry()
		if store == nil {
			stored = func(context.Context) (int64, error) { return consumed.Load(), nil }
			go func() {
				errs <- kb.Consume(rctx, group, []string{bus.TopicEvents}, o.sinkBatch, time.Second, func(_ context.Context, ms []bus.Message) error {
					consumed.Add(int64(len(ms)))
					return nil
				})
			}()
			continue
		}
		acfg := analytics.Defaults()
		acfg.Sink.Group, acfg.Sink.Batch = group, o.sinkBatch
		acfg.Sink.InsertTimeout = conf.Duration(5 * time.Minute)
		sink := analytics.NewSink(acfg, store, kb, regs[i], log.With("component", "analytics-sink"))
		go func() { errs <- sink.Run(rctx) }()
	}
	var first time.Time
	var firstN int64
	deadline := time.Now().Add(o.timeout)
	for {
		n, err := stored(ctx)
		if err != nil {
			return fail(err)
		}
		if n > 0 && first.IsZero() {
			first, firstN = time.Now(), n
		}
		if n >= want {
			break
		}
		select {
		case err := <-errs:
			return fail(fmt.Errorf("consumer stopped: %v", err))
		default:
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("%d of %d events stored after %v", n, want, o.timeout))
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return fail(err)
		}
	}
	u1, err := readUsage()
	if err != nil {
		return fail(err)
	}
	b1, _ := br.cpu(ctx)
	if s1, serr1 := serverCPU(ctx, store); serr == nil && serr1 == nil {
		run.ServerCores = (s1 - s0) / u1.wall.Sub(u0.wall).Seconds()
	}
	run.ServerProcessCores = whole.cores(u1.wall.Sub(u0.wall).Seconds())
	cancel()
	// The counters of the last batch are written after its insert: wait
	// for the consumers to return.
	for range o.consumers {
		select {
		case <-errs:
		case <-time.After(30 * time.Second):
		}
	}
	run.Seconds = u1.wall.Sub(u0.wall).Seconds()
	run.PerSecond = float64(want) / run.Seconds
	if d := u1.wall.Sub(first).Seconds(); d > 0 && want > firstN {
		run.Sustained = float64(want-firstN) / d
	} else {
		run.Sustained = run.PerSecond
	}
	run.Cores = u1.coresSince(u0)
	run.BrokerCores = (b1 - b0) / run.Seconds
	run.MicrosPerEvent = (u1.cpu - u0.cpu).Seconds() / float64(want) * 1e6
	var batches, rows, insertSum, insertCount float64
	for _, reg := range regs {
		batches += metric(reg, "sharpeye_analytics_batches_total")
		rows += metric(reg, "sharpeye_analytics_rows_total")
		insertSum += metricSum(reg, "sharpeye_analytics_insert_seconds")
		insertCount += metric(reg, "sharpeye_analytics_insert_seconds")
	}
	if batches > 0 {
		run.Batches, run.MeanBatch = int(batches), rows/batches
	}
	if insertCount > 0 {
		run.InsertMs = 1000 * insertSum / insertCount
	}
	return run
}

// metric is the sum of a counter's series, or a histogram's count.
func metric(reg *prometheus.Registry, name string) float64 {
	return gather(reg, name, func(m *dto.Metric) float64 {
		if h := m.GetHistogram(); h != nil {
			return float64(h.GetSampleCount())
		}
		return m.GetCounter().GetValue() + m.GetGauge().GetValue()
	})
}

// metricSum is the sum of a histogram's observations.
func metricSum(reg *prometheus.Registry, name string) float64 {
	return gather(reg, name, func(m *dto.Metric) float64 { return m.GetHistogram().GetSampleSum() })
}

func gather(reg *prometheus.Registry, name string, f func(*dto.Metric) float64) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.Metric {
				v += f(m)
			}
		}
	}
	return v
}

// writeAnalytics prints the report as tables.
func writeAnalytics(w io.Writer, r *AnalyticsReport) {
	writeText(w, &Report{Machine: r.Machine})
	if g := r.Generate; g != nil {
		fmt.Fprintf(w, "\nAnalytics generate: a county's history into %s (%s)\n", g.Driver, g.Store)
		fmt.Fprintf(w, "(%d days %s to %s; %d cameras, %d devices; %d events and %d cases a day; camera health for the last %d days)\n\n",
			g.Days, g.From.Format("2006-01-02"), g.To.AddDate(0, 0, -1).Format("2006-01-02"), g.Cameras, g.Devices,
			g.EventsPerDay, g.CasesPerDay, g.HealthDays)
		tw := table(w)
		fmt.Fprintln(tw, "events\tcase events\tcases\tcamera health\tseconds\trows/s\tinserting\tinserts\trows/s inserting\tgenerator busy\tcores\tCPU/row\tserver cores\tserver CPU/row\ton disk\t")
		server := "-\t-"
		if g.Driver == analytics.ClickHouse {
			server = fmt.Sprintf("%.2f\t%.2f µs", g.ServerCores, g.ServerMicrosPerRow)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.1f\t%.0f\t%.1f s\t%d\t%.0f\t%.1f s\t%.2f\t%.2f µs\t%s\t%s\t\n", g.Events, g.CaseEvents, g.Cases, g.Health,
			g.Seconds, g.RowsPerSecond, g.InsertSeconds, g.Inserts, g.InsertRowsPerSecond, g.GeneratorSeconds, g.Cores, g.MicrosPerRow,
			server, mib(float64(g.StoreBytes)))
		tw.Flush()
		if g.Compacted > 0 {
			fmt.Fprintf(w, "%d settled day partitions merged into one part each in %.1f s (what the sink does every hour)\n", g.Compacted, g.CompactSeconds)
		}
	}
	if s := r.Sink; s != nil {
		fmt.Fprintf(w, "\nAnalytics sink: %d events (%.0f bytes each) from Kafka (kfake, in another process) through the sink\n", s.Events, s.MessageBytes)
		fmt.Fprintf(w, "(%d partitions, %d consumer(s), sink batch %d; produced beforehand at %.0f events/s)\n\n", s.Partitions, s.Consumers, s.Batch, s.ProducedPerSecond)
		tw := table(w)
		fmt.Fprintln(tw, "run\tseconds\tevents/s\tsustained\tcores\tCPU/event\tbroker cores\tserver cores\tserver CPU/event\tserver process\tinserts\tmean batch\tmean insert\t")
		for _, x := range s.Runs {
			if x.Error != "" {
				fmt.Fprintf(tw, "%s\tfailed\t\t\t\t\t\t\t\t\t\t\t\t\n", x.Name)
				continue
			}
			server, inserts := "-\t-\t-", "-\t-\t-"
			if x.ServerCores > 0 {
				process := "-"
				if x.ServerProcessCores > 0 {
					process = fmt.Sprintf("%.2f (%.1f µs)", x.ServerProcessCores, x.ServerProcessCores/x.Sustained*1e6)
				}
				server = fmt.Sprintf("%.2f\t%.1f µs\t%s", x.ServerCores, x.ServerCores/x.Sustained*1e6, process)
			}
			if x.Batches > 0 {
				inserts = fmt.Sprintf("%d\t%.0f\t%.0f ms", x.Batches, x.MeanBatch, x.InsertMs)
			}
			fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%.0f\t%.2f\t%.1f µs\t%.2f\t%s\t%s\t\n", x.Name, x.Seconds, x.PerSecond, x.Sustained,
				x.Cores, x.MicrosPerEvent, x.BrokerCores, server, inserts)
		}
		tw.Flush()
		for _, x := range s.Runs {
			fmt.Fprintf(w, "  %s: %s", x.Name, x.What)
			if x.Error != "" {
				fmt.Fprintf(w, ": FAILED: %s", x.Error)
			}
			fmt.Fprintln(w)
		}
		writeTargets(w, s.Targets)
		if b := s.Budget; b != nil {
			merges := "its merges not counted"
			if b.ServerWhole {
				merges = "its merges included"
			}
			fmt.Fprintf(w, "At %.0f events/s, at the costs per event measured above: ClickHouse %.2f cores (%.1f µs, %s), the broker %.2f (%.1f µs), the sink's process %.2f (%.1f µs): %.2f cores of the machine's %d",
				b.Rate, b.Server.Cores, b.Server.Micros, merges, b.Broker.Cores, b.Broker.Micros, b.Sink.Cores, b.Sink.Micros, b.Cores, b.MachineCores)
			if b.Consumer.Micros > 0 {
				fmt.Fprintf(w, "; the Kafka consumer alone, decoding nothing, %.2f (%.1f µs)", b.Consumer.Cores, b.Consumer.Micros)
			}
			fmt.Fprintln(w)
			if b.Alone > 0 {
				fmt.Fprintf(w, "ClickHouse alone, fed the sink's inserts with nothing else to do: %.0f events/s", b.Alone)
				if b.AloneMicros > 0 {
					fmt.Fprintf(w, " at %.1f µs of its CPU per event, merges included", b.AloneMicros)
				}
				fmt.Fprintln(w)
			}
			if b.Floor > 0 {
				fmt.Fprintf(w, "The least %.0f events/s could take: ClickHouse at its cost alone %.2f cores, the broker %.2f, the Kafka consumer decoding nothing %.2f: %.2f cores of the machine's %d\n",
					b.Rate, b.AloneMicros*b.Rate/1e6, b.Broker.Cores, b.Consumer.Cores, b.Floor, b.MachineCores)
			}
		}
	}
	if q := r.Query; q != nil {
		writeQuery(w, q)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nFAILED: %s\n", e)
	}
}

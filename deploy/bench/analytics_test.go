package bench

import (
	"bytes"
	"os"
	"runtime"
	"testing"

	"sharpeye/alerts/analytics"
	"sharpeye/alerts/analytics/analyticstest"
)

// TestAnalyticsSmoke fills each store with a tiny history, asks every
// question over it, and carries events from Kafka through the sink into
// it. Timings are not checked: the machine is shared.
func TestAnalyticsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kafka-protocol broker in a child process and runs for seconds")
	}
	for _, driver := range analyticstest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			cfg := analyticstest.Config(t, driver) // a fresh file or database, removed at the end
			store := []string{"--driver", driver, "--sqlite", cfg.SQLite, "--database", cfg.ClickHouse.Database}
			if driver == analytics.ClickHouse {
				store = append(store, "--clickhouse", cfg.ClickHouse.Addr[0])
			}

			rep := runJSON[AnalyticsReport](t, append([]string{"analytics", "generate", "--quick", "--days", "2", "--cameras", "40", "--devices", "20",
				"--events-per-day", "5000", "--cases-per-day", "100", "--health-days", "1"}, store...)...)
			g := rep.Generate
			if g == nil || g.Events < 9000 || g.Events > 11000 || g.Cases < 150 || g.CaseEvents < 4*g.Cases || g.Health != 40*1440 {
				t.Fatalf("generate: %+v", g)
			}
			if g.Inserts == 0 || g.InsertRowsPerSecond <= 0 || g.StoreBytes <= 0 {
				t.Errorf("generate did not measure the store: %+v", g)
			}
			// A second fill into the same store is refused without --replace.
			var out bytes.Buffer
			if err := Main(append([]string{"analytics", "generate", "--quick", "--json"}, store...), &out, &syncBuffer{}); err == nil {
				t.Error("generate into a store holding events succeeded without --replace")
			}

			rep = runJSON[AnalyticsReport](t, append([]string{"analytics", "query", "--quick"}, store...)...)
			q := rep.Query
			if q == nil || len(q.Questions) < 15 || q.Events != g.Events || q.CaseEvents != g.CaseEvents || q.Health != g.Health {
				t.Fatalf("query: %+v (generated %+v)", q, g)
			}
			for _, x := range q.Questions {
				if x.Error != "" || x.Median <= 0 {
					t.Errorf("question %s: %+v", x.Name, x)
				}
				if x.Rows == 0 && x.Name != "devices" && x.Name != "hotspots-cases" && x.Name != "hotspots-events" {
					t.Errorf("question %s (%s) answered no rows", x.Name, x.Question)
				}
			}

			sink := []string{"analytics", "sink", "--quick", "--events", "5000", "--partitions", "2", "--batch", "1000",
				"--driver", driver, "--clickhouse", cfg.ClickHouse.Addr[0], "--timeout", "2m"}
			runs := 3
			if driver == analytics.ClickHouse {
				sink = append(sink, "--clickhouse-http", analyticstest.HTTPAddr(cfg.ClickHouse.Addr[0]))
				runs++
			}
			rep = runJSON[AnalyticsReport](t, sink...)
			s := rep.Sink
			if s == nil || len(s.Runs) != runs {
				t.Fatalf("sink: want the consumer, no-op and %s runs (and ClickHouse alone), got %+v", driver, s)
			}
			for _, r := range s.Runs {
				if r.Error != "" || r.Sustained <= 0 || r.Seconds <= 0 {
					t.Errorf("sink run %s: %+v", r.Name, r)
				}
				if r.Name == aloneRun && (r.Batches < 5 || r.MeanBatch != 1000 || r.ServerCores <= 0) {
					t.Errorf("ClickHouse alone: %d inserts of %.0f rows, server %.2f cores; want 5 or more of 1000", r.Batches, r.MeanBatch, r.ServerCores)
				}
				if r.Name != "consumer" && (r.Batches == 0 || r.MeanBatch > 1000) {
					t.Errorf("sink run %s: %d inserts of %.0f rows on average, want batches of at most 1000", r.Name, r.Batches, r.MeanBatch)
				}
			}
			if len(s.Targets) != 1 || (driver == analytics.ClickHouse) != (s.Targets[0].Met != nil) {
				t.Errorf("the ClickHouse target must be judged exactly when ClickHouse ran: %+v", s.Targets)
			}
			if b := s.Budget; (driver == analytics.ClickHouse) != (b != nil) {
				t.Errorf("the budget must be priced exactly when ClickHouse ran: %+v", b)
			} else if b != nil && (b.Server.Micros <= 0 || b.Sink.Micros <= 0 || b.Consumer.Micros <= 0 || b.Cores <= b.Server.Cores || b.Alone <= 0) {
				t.Errorf("budget: %+v", b)
			}
		})
	}
}

// The budget prices the target rate at the runs' costs per event.
func TestSinkBudget(t *testing.T) {
	runs := []SinkRun{
		{Name: "consumer", Sustained: 400_000, MicrosPerEvent: 4},
		{Name: "nop", Sustained: 150_000, MicrosPerEvent: 12},
		{Name: analytics.ClickHouse, Sustained: 50_000, MicrosPerEvent: 20, ServerCores: 0.35, BrokerCores: 0.05},
		{Name: aloneRun, Sustained: 300_000, ServerCores: 1, ServerProcessCores: 1.8},
	}
	b := sinkBudget(runs, 200_000, 2)
	near := func(got, want float64) bool { return got > want-1e-9 && got < want+1e-9 }
	if b == nil || !near(b.Server.Micros, 7) || !near(b.Server.Cores, 1.4) || !near(b.Broker.Micros, 1) || !near(b.Broker.Cores, 0.2) ||
		!near(b.Sink.Cores, 4) || !near(b.Consumer.Cores, 0.8) || !near(b.Cores, 5.6) || b.MachineCores != 2 || b.ServerWhole {
		t.Fatalf("budget %+v", b)
	}
	// ClickHouse alone at 6 µs per event: 1.2 cores at the rate, with the
	// broker's 0.2 and the consumer's 0.8 the floor is 2.2.
	if !near(b.Alone, 300_000) || !near(b.AloneMicros, 6) || !near(b.Floor, 2.2) {
		t.Fatalf("budget with ClickHouse alone %+v", b)
	}
	// The whole server process, where known, is the server's share.
	runs[2].ServerProcessCores = 0.5
	if b := sinkBudget(runs, 200_000, 2); b == nil || !near(b.Server.Micros, 10) || !b.ServerWhole {
		t.Fatalf("budget with the server's whole CPU %+v", b)
	}
	runs[2].ServerProcessCores = 0
	runs[2].Error = "ClickHouse down"
	if b := sinkBudget(runs, 200_000, 2); b != nil {
		t.Fatalf("a failed ClickHouse run priced: %+v", b)
	}
	if b := sinkBudget(runs[:2], 200_000, 2); b != nil {
		t.Fatalf("priced without a ClickHouse run: %+v", b)
	}
}

// The server's whole CPU is read from /proc only for a server on this
// machine's loopback, and /proc's figure agrees with the process's own.
func TestServerProcessCPU(t *testing.T) {
	for _, addr := range []string{"10.1.2.3:9000", "clickhouse.example:9000", "no port"} {
		if pid := serverProcess(addr); pid != 0 {
			t.Errorf("%s: process %d taken for a server elsewhere", addr, pid)
		}
	}
	x := 0
	for i := range 50_000_000 { // some CPU to read
		x ^= i * i
	}
	own, err := cpuTime()
	if err != nil {
		t.Fatal(err)
	}
	got, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in hundredths of a second, rounded down per thread.
	if diff := own.Seconds() - got; diff < -0.05 || diff > 0.05*float64(runtime.NumCPU()+8) || got <= 0 {
		t.Fatalf("/proc says %.2f s of CPU, getrusage %.2f s (x %d)", got, own.Seconds(), x)
	}
}

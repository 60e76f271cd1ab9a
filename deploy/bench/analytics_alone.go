package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"sharpeye/alerts/analytics"
)

// aloneRun names the run of ClickHouse alone.
const aloneRun = "clickhouse-alone"

// aloneMin is the shortest run of ClickHouse alone (but with --quick).
const aloneMin = 10 * time.Second

// replayAlone measures ClickHouse with nothing in front of it: one of the
// sink's inserts, read back from the events table in ClickHouse's native
// format, is sent again and again over the HTTP interface, one insert per
// core at a time, until as many events as the sink carried have gone in
// and at least aloneMin has passed (so that its merges run meanwhile, as
// they do under a sustained load).
// The same table, materialized views and insert size as the sink's, and
// like a sink's batch the insert is a contiguous stretch of time (the
// earliest events: some hours of one day); no Kafka, no decoding, no
// columns to build. Repeated events are merged away by the table's key, as
// a retried batch is.
func replayAlone(ctx context.Context, o *analyticsOptions, store analytics.Store, cfg analytics.Config) SinkRun {
	run := SinkRun{Name: aloneRun, What: fmt.Sprintf(
		"ClickHouse alone: one of the sink's inserts replayed over HTTP (%s) in the native format, %d at a time, into the same tables", o.clickhouseHTTP, runtime.NumCPU())}
	fail := func(err error) SinkRun {
		run.Error = err.Error()
		return run
	}
	stored, err := count(ctx, store, "events")
	if err != nil {
		return fail(err)
	}
	rows := min(int64(o.sinkBatch), stored)
	if rows == 0 {
		return fail(errors.New("no events to replay"))
	}
	ch := &chHTTP{base: "http://" + o.clickhouseHTTP + "/", database: cfg.ClickHouse.Database, client: &http.Client{Timeout: 5 * time.Minute}}
	block, err := ch.query(ctx, fmt.Sprintf("SELECT * FROM events ORDER BY time LIMIT %d FORMAT Native", rows), nil)
	if err != nil {
		return fail(fmt.Errorf("reading a batch back: %w", err))
	}
	inserts := (int64(o.events) + rows - 1) / rows
	least := aloneMin
	if o.quick {
		least = 0
	}

	s0, serr := serverCPU(ctx, store)
	whole := startServerWhole(cfg.ClickHouse.Addr[0])
	u0, err := readUsage()
	if err != nil {
		return fail(err)
	}
	var next, done, insertNanos atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range runtime.NumCPU() {
		g.Go(func() error {
			for {
				n, since := next.Add(1), time.Since(u0.wall)
				if since >= o.timeout || (n > inserts && since >= least) {
					return nil
				}
				t := time.Now()
				if _, err := ch.query(gctx, "INSERT INTO events FORMAT Native", block); err != nil {
					return err
				}
				insertNanos.Add(int64(time.Since(t)))
				done.Add(1)
			}
		})
	}
	if err := g.Wait(); err != nil {
		return fail(fmt.Errorf("replaying: %w", err))
	}
	u1, err := readUsage()
	if err != nil {
		return fail(err)
	}
	run.Seconds = u1.wall.Sub(u0.wall).Seconds()
	inserts = done.Load()
	events := float64(rows) * float64(inserts)
	run.PerSecond = events / run.Seconds
	run.Sustained = run.PerSecond
	run.Cores = u1.coresSince(u0)
	run.MicrosPerEvent = (u1.cpu - u0.cpu).Seconds() / events * 1e6
	if s1, serr1 := serverCPU(ctx, store); serr == nil && serr1 == nil {
		run.ServerCores = (s1 - s0) / run.Seconds
	}
	run.ServerProcessCores = whole.cores(run.Seconds)
	run.Batches, run.MeanBatch = int(inserts), float64(rows)
	run.InsertMs = float64(insertNanos.Load()) / float64(inserts) / 1e6
	return run
}

// chHTTP is ClickHouse's HTTP interface, as the default user.
type chHTTP struct {
	base, database string
	client         *http.Client
}

// maxAnswer bounds what query reads of an answer (a batch in the native
// format is some megabytes).
const maxAnswer = 1 << 30

// query posts q with body (nil: none) and returns the answer; an answer
// other than 200 is an error carrying ClickHouse's message.
func (c *chHTTP) query(ctx context.Context, q string, body []byte) ([]byte, error) {
	u := c.base + "?" + url.Values{"database": {c.database}, "query": {q}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ClickHouse answered %s: %s", resp.Status, bytes.TrimSpace(b[:min(len(b), 500)]))
	}
	return b, nil
}

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, 100 on
// Linux whatever the kernel's tick).
const userHZ = 100

// serverProcess finds the clickhouse-server process at addr: the one of
// this machine when addr is a loopback address (0 when addr is not, when
// there is no such process or more than one, or no /proc). Its whole CPU
// counts the background merges, which system.events does not.
func serverProcess(addr string) int {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	if ip, err := netip.ParseAddr(host); (err != nil || !ip.IsLoopback()) && host != "localhost" {
		return 0
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	found := 0
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.HasPrefix(string(comm), "clickhouse-serv") {
			if found != 0 {
				return 0
			}
			found = pid
		}
	}
	return found
}

// processCPU is pid's user and system CPU time in seconds.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command (which may hold spaces) start after
	// its closing parenthesis; utime and stime are the 12th and 13th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return float64(ut+st) / userHZ, nil
}

// serverWhole reads the local server's whole CPU, when there is one.
type serverWhole struct {
	pid int
	t0  float64
}

func startServerWhole(addr string) serverWhole {
	w := serverWhole{pid: serverProcess(addr)}
	if w.pid != 0 {
		var err error
		if w.t0, err = processCPU(w.pid); err != nil {
			w.pid = 0
		}
	}
	return w
}

// cores is the server's whole CPU since the start over seconds (0: not
// known).
func (w serverWhole) cores(seconds float64) float64 {
	if w.pid == 0 || seconds <= 0 {
		return 0
	}
	t1, err := processCPU(w.pid)
	if err != nil {
		return 0
	}
	return (t1 - w.t0) / seconds
}

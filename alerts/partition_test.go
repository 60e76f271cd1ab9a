package alerts

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb"
	"sharpeye/alerts/casedb/casedbtest"
	"sharpeye/alerts/rules"
	"sharpeye/configs/conf"
	"sharpeye/console/api/apitest"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/bus/kafka/kafkatest"
	"sharpeye/ingest/event"
)

// crowdRule fires when three cameras of one grid see motion within 60s.
var crowdRule = rules.Rule{ID: "crowd", Name: "聚集", Match: rules.Match{Types: []string{"camera.motion"}},
	Count: 3, Window: conf.Duration(60 * time.Second), GroupBy: []string{"grid"},
	Case: rules.Case{Category: "public_order", Risk: 60, Title: "聚集"}}

// cluster is alerts nodes in one process sharing a bus and a case
// database, as separate machines would.
type cluster struct {
	t     *testing.T
	db    *casedb.DB
	bus   bus.Bus
	parts int // of each topic
}

// buses are the buses the cluster tests run on: the embedded one, and
// Kafka (kafka-go against an in-process Kafka-protocol cluster), as
// several machines would share.
var buses = []string{"embedded", "kafka"}

func newCluster(t *testing.T, driver, kind string) *cluster {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if kind == "kafka" {
		b, parts := kafkaBus(t)
		return &cluster{t: t, db: casedbtest.Open(t, driver), bus: b, parts: parts}
	}
	b, err := bus.NewMemory(bus.Defaults(), prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go b.Run(ctx)
	t.Cleanup(func() { cancel(); <-b.Done() })
	return &cluster{t: t, db: casedbtest.Open(t, driver), bus: b, parts: bus.Defaults().Partitions}
}

// node is one running alerts node.
type node struct {
	a    *Alerts
	reg  *prometheus.Registry
	stop func()
}

// start runs a partitioned alerts node until stop or the end of the test.
func (c *cluster) start(name string) *node {
	t := c.t
	t.Helper()
	cfg := Defaults()
	cfg.PartitionBy = "grid"
	cfg.Rules = rules.Rules{crowdRule}
	cfg.BatchWait = conf.Duration(10 * time.Millisecond)
	cfg.Poll = conf.Duration(50 * time.Millisecond)
	reg := prometheus.NewRegistry()
	a, err := New(cfg, c.db, c.bus, reg, slog.New(slog.NewTextHandler(io.Discard, nil)).With("node", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node %s: %v", name, err)
		}
	})
	t.Cleanup(stop)
	return &node{a: a, reg: reg, stop: stop}
}

// publish sends events to sharpeye.events keyed by source, as ingest does.
func (c *cluster) publish(evs ...*event.Event) {
	c.t.Helper()
	if err := c.bus.Publish(context.Background(), messages(c.t, evs...)...); err != nil {
		c.t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// owned waits until the nodes hold every partition of TopicEvents between
// them, each some, and returns the owner of each partition.
func (c *cluster) owned(nodes ...*node) map[int]*node {
	t := c.t
	var owner map[int]*node
	waitFor(t, "the partitions to be divided among the nodes", func() bool {
		owner = map[int]*node{}
		for _, n := range nodes {
			parts := n.a.Engine().Owned()
			if len(parts) == 0 {
				return false
			}
			for _, p := range parts {
				if owner[p] != nil {
					return false
				}
				owner[p] = n
			}
		}
		return len(owner) == c.parts
	})
	return owner
}

func motionIn(cam, grid string, at time.Time) *event.Event {
	e := event.New(event.SourceCamera, cam, "camera.motion")
	e.Time = event.NewTime(at)
	e.Location = event.Location{Region: "lanxi/dongcheng/v1", Grid: grid}
	return e
}

// caseEvents returns, for each case of rule crowd by group key, the ids of
// its events in order.
func caseEvents(t *testing.T, db *casedb.DB) map[string][]string {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT c.group_key, e.event_id FROM cases c JOIN case_evidence e ON e.case_id = c.id
		WHERE c.rule_id = 'crowd' AND e.kind = 'event' ORDER BY c.group_key, e.event_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var k, id string
		if err := rows.Scan(&k, &id); err != nil {
			t.Fatal(err)
		}
		out[k] = append(out[k], id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func countCases(t *testing.T, db *casedb.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT COUNT(*) FROM cases WHERE rule_id = 'crowd'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// stateRow is a group's stored state.
type stateRow struct {
	part int
	seen []string
}

func storedState(t *testing.T, db *casedb.DB, key string) (stateRow, bool) {
	t.Helper()
	var (
		st string
		r  stateRow
	)
	err := db.QueryRow(context.Background(), "SELECT state, part FROM rule_state WHERE rule_id = 'crowd' AND group_key = ?", key).Scan(&st, &r.part)
	if err != nil {
		return r, false
	}
	var g struct {
		Seen []string `json:"seen"`
	}
	if err := json.Unmarshal([]byte(st), &g); err != nil {
		t.Fatal(err)
	}
	r.seen = g.Seen
	return r, true
}

func ids(evs ...*event.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID.String()
	}
	slices.Sort(out)
	return out
}

// TestPartitionedNodesOneCasePerGrid: two partitioned alerts nodes; three
// cameras of one grid (three source keys on sharpeye.events) open exactly
// one case holding the three events, and each grid's state lies with the
// node holding its partition of sharpeye.alerts.events.
func TestPartitionedNodesOneCasePerGrid(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		for _, kind := range buses {
			t.Run(driver+"/"+kind, func(t *testing.T) {
				c := newCluster(t, driver, kind)
				a, b := c.start("a"), c.start("b")
				owner := c.owned(a, b)

				now := time.Now()
				grids := []string{"g-1", "g-2", "g-3", "g-4", "g-5", "g-6"}
				want := map[string][]string{}
				for i, g := range grids {
					evs := []*event.Event{
						motionIn("cam-"+g+"-a", g, now.Add(time.Duration(i)*time.Second)),
						motionIn("cam-"+g+"-b", g, now.Add(time.Duration(i)*time.Second+time.Second)),
						motionIn("cam-"+g+"-c", g, now.Add(time.Duration(i)*time.Second+2*time.Second)),
					}
					c.publish(evs...)
					want["crowd|grid="+g] = ids(evs...)
				}
				waitFor(t, "a case per grid", func() bool { return len(caseEvents(t, c.db)) == len(grids) })
				if got := caseEvents(t, c.db); !mapsEqual(got, want) {
					t.Fatalf("cases' events %v, want %v", got, want)
				}
				if n := countCases(t, c.db); n != len(grids) {
					t.Fatalf("%d cases, want %d", n, len(grids))
				}

				// Each grid's state is stored with its partition (once the
				// batch is done: the case opens first), and held by the node
				// that owns it.
				waitFor(t, "every grid's state stored", func() bool {
					for _, g := range grids {
						if r, ok := storedState(t, c.db, "crowd|grid="+g); !ok || len(r.seen) != 3 {
							return false
						}
					}
					return true
				})
				held := map[*node]int{}
				for _, g := range grids {
					r, ok := storedState(t, c.db, "crowd|grid="+g)
					if !ok || owner[r.part] == nil {
						t.Fatalf("state of %s: %+v, %v", g, r, ok)
					}
					held[owner[r.part]]++
				}
				for name, n := range map[string]*node{"a": a, "b": b} {
					if got := apitest.Metric(t, n.reg, "sharpeye_rules_state_entries"); int(got) != held[n] {
						t.Errorf("node %s holds %v groups, want %d (those of its partitions %v)", name, got, held[n], n.a.Engine().Owned())
					}
					if got := apitest.Metric(t, n.reg, "sharpeye_alerts_partitions"); int(got) != len(n.a.Engine().Owned()) {
						t.Errorf("node %s partitions gauge %v", name, got)
					}
				}
				routed := apitest.Metric(t, a.reg, "sharpeye_alerts_events_routed_total") + apitest.Metric(t, b.reg, "sharpeye_alerts_events_routed_total")
				if routed != float64(3*len(grids)) {
					t.Errorf("routed %v events, want %d", routed, 3*len(grids))
				}
			})
		}
	}
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestPartitionMovesWithItsState: the node holding a half-filled window
// stops; the other is given its partition, loads the state, and the next
// event completes the window: one case with the three events.
func TestPartitionMovesWithItsState(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		for _, kind := range buses {
			t.Run(driver+"/"+kind, func(t *testing.T) {
				c := newCluster(t, driver, kind)
				a, b := c.start("a"), c.start("b")
				owner := c.owned(a, b)

				now := time.Now()
				first := []*event.Event{motionIn("cam-1", "g-9", now), motionIn("cam-2", "g-9", now.Add(time.Second))}
				c.publish(first...)
				var r stateRow
				waitFor(t, "the two events in the window's state", func() bool {
					var ok bool
					r, ok = storedState(t, c.db, "crowd|grid=g-9")
					return ok && len(r.seen) == 2
				})
				from, to := owner[r.part], a
				if from == a {
					to = b
				}
				from.stop()
				waitFor(t, "the other node to be given the partition", func() bool {
					return slices.Contains(to.a.Engine().Owned(), r.part)
				})

				third := motionIn("cam-3", "g-9", now.Add(2*time.Second))
				c.publish(third)
				waitFor(t, "the case", func() bool { return countCases(t, c.db) > 0 })
				waitFor(t, "the third event in the stored state", func() bool {
					r, _ := storedState(t, c.db, "crowd|grid=g-9")
					return slices.Contains(r.seen, third.ID.String())
				})
				want := map[string][]string{"crowd|grid=g-9": ids(append(first, third)...)}
				if got := caseEvents(t, c.db); !mapsEqual(got, want) {
					t.Fatalf("cases' events %v, want %v", got, want)
				}
				if n := countCases(t, c.db); n != 1 {
					t.Fatalf("%d cases, want 1", n)
				}
			})
		}
	}
}

// TestPartitionedRefusesSpanningRules: in the partitioned mode a rule
// whose groups span localities is refused, by the configuration check and
// by New.
func TestPartitionedRefusesSpanningRules(t *testing.T) {
	const yml = `
partition_by: grid
rules:
  - id: plates
    name: 车牌布控
    match: {types: [detection.plate]}
    group_by: [attr.plate]
    case: {category: public_order, risk: 40}
`
	cfg := Defaults()
	err := conf.Load(&cfg, []byte(yml), "alerts.yml", nil)
	const want = `rule "plates": grouping by attr.plate can gather events of several grid localities`
	if err == nil || !strings.Contains(err.Error(), "rules[0].group_by") || !strings.Contains(err.Error(), want) {
		t.Fatalf("configuration check: %v, want rules[0].group_by: %q", err, want)
	}

	cfg.PartitionBy = "region:0"
	if err := conf.Load(&cfg, []byte("partition_by: region:0\n"), "alerts.yml", nil); err == nil || !strings.Contains(err.Error(), "partition_by") {
		t.Fatalf("bad partition_by: %v", err)
	}

	cfg = Defaults()
	cfg.PartitionBy = "grid"
	cfg.Rules = rules.Rules{{ID: "plates", Name: "车牌布控", Match: rules.Match{Types: []string{"detection.plate"}},
		GroupBy: []string{"attr.plate"}, Case: rules.Case{Category: "public_order", Risk: 40}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := bus.NewMemory(bus.Defaults(), prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, casedbtest.Open(t, casedb.SQLite), b, prometheus.NewRegistry(), log)
	if err == nil || !strings.Contains(err.Error(), "grouping by attr.plate") {
		t.Fatalf("New: %v", err)
	}
	// The same rule is fine on a single node.
	cfg.PartitionBy = ""
	if _, err := New(cfg, casedbtest.Open(t, casedb.SQLite), b, prometheus.NewRegistry(), log); err != nil {
		t.Fatalf("New, not partitioned: %v", err)
	}
}

// kafkaBus runs a Kafka bus (kafka-go) against an in-process
// Kafka-protocol cluster, and returns it with its topics' partition count.
func kafkaBus(t *testing.T) (bus.Bus, int) {
	t.Helper()
	const parts = 6
	return kafkatest.Start(t, kafkatest.Cluster(t, parts)), parts
}

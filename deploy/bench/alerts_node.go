package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"

	"sharpeye/alerts"
	"sharpeye/alerts/alertsim"
	"sharpeye/alerts/casedb"
	"sharpeye/alerts/rules"
	"sharpeye/configs/conf"
	"sharpeye/console/api"
	"sharpeye/console/auth"
	"sharpeye/console/web"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/event"
)

// benchAlertRules are the rules of `bench alerts` unless --rules names
// others: the demo's (deploy/node/demo/alerts.yml) over the bench's county,
// and two county-wide rules on the commonest events.
const benchAlertRules = `
- {id: smoke-high, name: 烟感浓度持续超标, match: {types: [telemetry], device_kinds: [smoke]}, when: 'attr.smoke > 0.3', for: 10s, group_by: [device], cooldown: 10m, case: {category: public_safety, risk: 85, title: '{{.Source.ID}}：烟感浓度 {{attr "smoke"}}'}}
- {id: water-high, name: 水位超警戒, match: {types: [telemetry], device_kinds: [water_level]}, when: 'attr.water_level > 3.0', count: 2, window: 1m, group_by: [device], cooldown: 15m, case: {category: public_safety, risk: 70, risk_per_repeat: 5}}
- {id: alarm-button, name: 一键报警, match: {types: [sensor.alarm_button.pressed]}, group_by: [device], cooldown: 5m, case: {category: public_order, risk: 80, title: '{{.Source.ID}}：一键报警'}}
- {id: alarm-with-people, name: 报警且画面有人, match: {types: [sensor.alarm_button.pressed]}, correlate: {match: {types: [detection.person, detection.crowd]}, within: 2m}, group_by: [grid], cooldown: 10m, case: {category: key_place, risk: 95}}
- {id: gate-forced, name: 门磁多次报警, match: {types: [sensor.door.forced]}, count: 2, window: 5m, group_by: [device], cooldown: 10m, case: {category: key_place, risk: 60}}
- {id: fall, name: 人员跌倒, match: {types: [detection.fall], min_confidence: 0.6}, group_by: [camera], cooldown: 10m, case: {category: public_safety, risk: 65, title: '{{attr "camera"}} 画面检测到人员跌倒'}}
- {id: crowd, name: 人员聚集, match: {types: [detection.crowd]}, when: 'attr.count >= 20', count: 3, window: 5m, group_by: [camera], cooldown: 10m, case: {category: public_order, risk: 40, risk_per_repeat: 5}}
- {id: night-intrusion, name: 夜间校门有人, match: {types: [detection.person], sources: [lx-aibox-*], tags: [school]}, when: 'attr.confidence > 0.7', schedule: {periods: [{from: "22:00", to: "06:00"}]}, group_by: [camera], cooldown: 30m, case: {category: key_place, risk: 70}}
- {id: camera-offline, name: 摄像机离线, match: {types: [camera.offline]}, group_by: [camera], cooldown: 30m, case: {category: equipment_fault, risk: 30, title: '摄像机 {{.Source.ID}} 离线'}}
- {id: camera-quality, name: 画面异常, match: {types: [video.frozen, video.dark, video.bright, video.covered, video.blur]}, group_by: [camera, type], cooldown: 30m, case: {category: equipment_fault, risk: 25}}
- {id: village-network-down, name: 片区网络中断, match: {types: [camera.offline]}, count: 3, window: 2m, group_by: [region], cooldown: 30m, inhibits: {rules: [camera-offline], equal: [region], hold: 30m}, case: {category: equipment_fault, risk: 50}}
- {id: motion-burst, name: 频繁移动, match: {types: [camera.motion]}, count: 60, window: 1m, group_by: [camera], cooldown: 10m, case: {category: public_order, risk: 30}}
- {id: market-night, name: 市场夜间活动, match: {types: ["detection.*"], tags: [market]}, when: 'hour >= 23 || hour < 5', group_by: [grid], cooldown: 30m, case: {category: key_place, risk: 50}}
`

// loadAlertRules reads a YAML list of rules (the form of alerts.rules and
// of deploy/node/demo/alerts.yml) from file, or the bench's own rules.
func loadAlertRules(file string) (rules.Rules, error) {
	src := []byte(benchAlertRules)
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--rules: %w", err)
		}
		src = b
	}
	var rs rules.Rules
	if err := yaml.Unmarshal(src, &rs); err != nil {
		return nil, fmt.Errorf("--rules %s: %w", file, err)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("--rules %s: no rules", file)
	}
	return rs, nil
}

// alertsConfig is the alerts section of the node: the defaults with the
// rules of file (see loadAlertRules), checked as the configuration loader
// checks them (alerts.rules[2].when: ...).
func alertsConfig(file string) (alerts.Config, error) {
	rs, err := loadAlertRules(file)
	if err != nil {
		return alerts.Config{}, err
	}
	cfg := alerts.Defaults()
	cfg.Rules = rs
	if err := conf.Load(&cfg, nil, "", nil); err != nil {
		return alerts.Config{}, fmt.Errorf("--rules %s: %w", cmp.Or(file, "(built in)"), err)
	}
	return cfg, nil
}

// alertsNodeInfo is the node's first answer: where its API is.
type alertsNodeInfo struct {
	URL   string `json:"url"`
	Token string `json:"token"`
	Rules int    `json:"rules"`
}

// alertsNodeWindow is the node's answer at the end of the publishing
// window.
type alertsNodeWindow struct {
	Published int64   `json:"published"`
	Seconds   float64 `json:"seconds"`
	// PublishWait is the time spent in Publish (durable writes, and
	// waiting for room when the alerts role falls behind).
	PublishWait float64 `json:"publish_wait_seconds"`
	// Consumed is what the alerts role had handled and committed at the
	// end of the window.
	Consumed int64   `json:"consumed"`
	Process  Process `json:"process"`
}

// alertsNodeDrained is the node's last answer, once the alerts role has
// handled every event published (or the wait ran out).
type alertsNodeDrained struct {
	Consumed int64   `json:"consumed"`
	After    float64 `json:"drained_after_seconds"`
	Drained  bool    `json:"drained"`
	// Outcomes counts the firings the case workflow took, by outcome
	// (sharpeye_cases_alerts_total): opened, attached, suppressed...
	Outcomes map[string]int64 `json:"outcomes"`
}

// cmdAlertsNode is `sharpeye bench alerts-node --rate R --duration D
// [--rules FILE]`: the Sharpeye under test of `bench alerts`, built as
// `sharpeye run --roles alerts,console` builds it (embedded bus, SQLite case
// database in a temporary directory, the real authentication and HTTP
// server), and the county's sensors publishing onto its bus as the ingest
// role does. On "start" it publishes for the duration, then waits for the
// alerts role to handle everything, answering after each; it stops when
// its standard input closes.
func cmdAlertsNode(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("alerts-node", stderr)
	rate := fs.Int("rate", 5000, "events per second")
	duration := fs.Duration("duration", time.Minute, "publishing window")
	file := fs.String("rules", "", "rules file (YAML list); default the bench's")
	drain := fs.Duration("drain-timeout", 2*time.Minute, "longest wait for the alerts role to catch up")
	level := fs.String("log-level", "warn", "log level")
	profile := fs.String("profile", "", "CPU profile of the window to this file")
	postgres := fs.String("postgres", "", "case database URL (PostgreSQL); default SQLite in a temporary directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	stopped, commands := control(stdin)
	ctx, cancel := context.WithCancel(stopped)
	defer cancel()

	dir, err := os.MkdirTemp("", "sharpeye-bench-alerts-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dbc := casedb.Defaults()
	if *postgres != "" {
		dbc.Driver, dbc.DSN = casedb.Postgres, conf.Secret(*postgres)
	}
	n, err := startAlertsNode(ctx, dir, *file, dbc, log)
	if err != nil {
		return err
	}
	defer n.close()
	if err := answer(stdout, n.info); err != nil {
		return err
	}
	for cmd := range commands {
		if cmd != "start" {
			return fmt.Errorf("alerts-node: %w %q", errUnknownCommand, cmd)
		}
		w, err := n.publish(ctx, *rate, *duration, strings.TrimSuffix(*profile, ".cpu.pprof"))
		if err != nil {
			return err
		}
		if err := answer(stdout, w); err != nil {
			return err
		}
		d := n.waitDrained(ctx, w.Published, *drain)
		if err := answer(stdout, d); err != nil {
			return err
		}
	}
	return nil
}

// alertsNode is the running node of cmdAlertsNode.
type alertsNode struct {
	info   alertsNodeInfo
	reg    *prometheus.Registry
	bus    bus.Bus
	db     *casedb.DB
	county *alertsim.County
	cancel context.CancelFunc
	g      *errgroup.Group
}

func startAlertsNode(ctx context.Context, dir, rulesFile string, dbc casedb.Config, log *slog.Logger) (*alertsNode, error) {
	cfg, err := alertsConfig(rulesFile)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	db, err := casedb.Open(ctx, dbc, dir, log.With("component", "casedb"))
	if err != nil {
		return nil, fmt.Errorf("casedb: %w", err)
	}
	n := &alertsNode{reg: reg, db: db, county: alertsim.NewCounty(1)}
	ok := false
	defer func() {
		if !ok {
			db.Close()
		}
	}()
	as, err := auth.NewService(auth.Defaults(), db, false, reg, log.With("component", "auth"))
	if err != nil {
		return nil, err
	}
	u, err := as.EnsureUser(ctx, auth.NewUser{Username: "bench", DisplayName: "sharpeye bench", Password: rand.Text(), Role: auth.Admin})
	if err != nil {
		return nil, fmt.Errorf("bench user: %w", err)
	}
	token, _, err := as.CreateToken(ctx, u.ID, "bench", 24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("bench token: %w", err)
	}
	b, err := bus.NewEmbedded(bus.Defaults(), dir, reg, log)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	n.bus = b
	a, err := alerts.New(cfg, db, b, reg, log.With("component", "alerts"))
	if err != nil {
		return nil, err
	}
	if err := a.Start(ctx); err != nil {
		return nil, err
	}

	hcfg := api.Defaults()
	hcfg.Listen = "127.0.0.1:0"
	router := api.NewRouter(hcfg.MaxBodyBytes, hcfg.RequestTimeout.D())
	router.SetAuthenticator(as)
	as.Routes(router)
	web.Routes(router)
	a.Routes(router)
	health := api.NewHealth(reg)
	srv := api.NewServer(hcfg, router, health, reg, log.With("component", "http"), func(h http.Handler) http.Handler {
		return auth.RequireHandler(h, auth.Admin)
	})
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	ctx, n.cancel = context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	n.g = g
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return b.Run(gctx) })
	g.Go(func() error { return as.Run(gctx) })
	g.Go(func() error { return a.Run(gctx) })
	select {
	case <-a.Consuming():
	case <-gctx.Done():
		n.close()
		return nil, fmt.Errorf("alerts role did not start: %w", context.Cause(gctx))
	}
	n.info = alertsNodeInfo{URL: srv.URL(), Token: token, Rules: len(cfg.Rules)}
	ok = true
	return n, nil
}

// close stops the node and waits for it.
func (n *alertsNode) close() error {
	if n.cancel != nil {
		n.cancel()
		err := n.g.Wait()
		n.cancel = nil
		n.db.Close()
		return err
	}
	return nil
}

// publish publishes the county's events at rate for d, in one Publish
// every 10 ms as a busy MQTT intake does, each event timed when its batch
// is published (so a case's latency is measured from its events' time).
func (n *alertsNode) publish(ctx context.Context, rate int, d time.Duration, profile string) (alertsNodeWindow, error) {
	var w alertsNodeWindow
	measured := make(chan error, 1)
	go func() {
		var err error
		w.Process, err = measure(ctx, window{d: d, profile: profile})
		measured <- err
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var wait time.Duration
	msgs := make([]bus.Message, 0, rate/50+1)
	for {
		elapsed := time.Since(start)
		if elapsed >= d {
			break
		}
		due := int64(elapsed.Seconds()*float64(rate)) - w.Published
		msgs = msgs[:0]
		now := event.Now()
		for range due {
			e := n.county.Next()
			e.Time = now
			v, err := e.Encode()
			if err != nil {
				return w, err
			}
			msgs = append(msgs, bus.Message{Topic: bus.TopicEvents, Key: e.PartitionKey(), Value: v, Time: now.Time})
		}
		if len(msgs) > 0 {
			t := time.Now()
			if err := n.bus.Publish(ctx, msgs...); err != nil {
				return w, fmt.Errorf("publish: %w", err)
			}
			wait += time.Since(t)
			w.Published += int64(len(msgs))
		}
		select {
		case <-ctx.Done():
			return w, ctx.Err()
		case <-tick.C:
		}
	}
	w.Seconds = time.Since(start).Seconds()
	w.PublishWait = wait.Seconds()
	w.Consumed = n.consumed()
	if err := <-measured; err != nil {
		return w, err
	}
	return w, nil
}

// waitDrained waits until the alerts role has handled and committed
// published events, or timeout.
func (n *alertsNode) waitDrained(ctx context.Context, published int64, timeout time.Duration) alertsNodeDrained {
	start := time.Now()
	err := waitUntil(ctx, timeout, 20*time.Millisecond, func() bool { return n.consumed() >= published })
	d := alertsNodeDrained{Consumed: n.consumed(), After: time.Since(start).Seconds(), Drained: err == nil, Outcomes: map[string]int64{}}
	for _, m := range n.metric("sharpeye_cases_alerts_total") {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outcome" {
				d.Outcomes[l.GetValue()] = int64(m.GetCounter().GetValue())
			}
		}
	}
	return d
}

// consumed is what the alerts role's consumer group has committed.
func (n *alertsNode) consumed() int64 {
	var v float64
	for _, m := range n.metric("sharpeye_bus_consumed_messages_total") {
		for _, l := range m.GetLabel() {
			if l.GetName() == "group" && l.GetValue() == alerts.Defaults().Group {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return int64(v)
}

// metric returns the series of the metric name.
func (n *alertsNode) metric(name string) []*dto.Metric {
	mfs, err := n.reg.Gather()
	if err != nil && len(mfs) == 0 {
		return nil
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.Metric
		}
	}
	return nil
}

// errNotDrained reports an alerts role that did not catch up in time.
var errNotDrained = errors.New("the alerts role did not handle every event in time")

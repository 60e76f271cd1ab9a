// Package node runs a set of Sharpeye's roles in one process: it builds the
// shared parts every role plugs into (the HTTP listener, metrics registry,
// health, case database and authentication), starts the roles under one
// context and stops them all when one fails or a signal arrives.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"sharpeye/alerts"
	"sharpeye/alerts/analytics"
	"sharpeye/alerts/casedb"
	"sharpeye/console/api"
	"sharpeye/console/auth"
	"sharpeye/console/web"
	"sharpeye/ingest"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/bus/kafka"
	"sharpeye/ingest/device"
	"sharpeye/ingest/mqtt"
	"sharpeye/relay"
)

// The roles.
const (
	Ingest  = "ingest"
	Relay   = "relay"
	Alerts  = "alerts"
	Console = "console"
)

// AllRoles lists every role in start order.
var AllRoles = []string{Ingest, Relay, Alerts, Console}

// ParseRoles checks a comma-separated role list.
func ParseRoles(s string) ([]string, error) {
	var roles []string
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !slices.Contains(AllRoles, r) {
			return nil, fmt.Errorf("unknown role %q (roles: %s)", r, strings.Join(AllRoles, ", "))
		}
		if !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	if len(roles) == 0 {
		return nil, errors.New("no role given (roles: " + strings.Join(AllRoles, ", ") + ")")
	}
	return roles, nil
}

// Options are the command line's choices.
type Options struct {
	// Roles to run; all when empty.
	Roles []string
	// Version is reported in metrics and /api/v1/system.
	Version string
}

// component is one long-running part of a role.
type component struct {
	name string
	run  func(ctx context.Context) error
}

// Node is one Sharpeye process.
type Node struct {
	cfg    Config
	opts   Options
	logs   *Logs
	log    *slog.Logger
	reg    *prometheus.Registry
	health *api.Health
	router *api.Router
	server *api.Server

	db         *casedb.DB
	auth       *auth.Service
	ingest     *ingest.Ingest
	relay      *relay.Relay
	upstream   *ingest.Ingest // the relay role's cameras without the ingest role
	bus        bus.Bus
	devices    *device.Registry
	mqtt       *mqtt.Intake
	alerts     *alerts.Alerts
	analytics  analytics.Store
	sink       *analytics.Sink
	components []component
	started    bool
}

// New builds a node; it opens nothing until Start.
func New(cfg Config, opts Options, logs *Logs) *Node {
	if len(opts.Roles) == 0 {
		opts.Roles = AllRoles
	}
	if opts.Version == "" {
		opts.Version = Version()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sharpeye_build_info",
		Help: "Always 1; the labels say which build and roles run.",
	}, []string{"version", "roles"})
	build.WithLabelValues(opts.Version, strings.Join(opts.Roles, ",")).Set(1)
	reg.MustRegister(build)

	n := &Node{cfg: cfg, opts: opts, logs: logs, log: logs.For("node"), reg: reg}
	n.health = api.NewHealth(reg)
	n.router = api.NewRouter(cfg.HTTP.MaxBodyBytes, cfg.HTTP.RequestTimeout.D())
	n.server = api.NewServer(cfg.HTTP, n.router, n.health, reg, logs.For("http"), func(h http.Handler) http.Handler {
		return auth.RequireHandler(h, auth.Admin, auth.Analyst, auth.ServiceAccount)
	})
	return n
}

// Has reports whether the node runs role.
func (n *Node) Has(role string) bool { return slices.Contains(n.opts.Roles, role) }

// URL is the base URL of the HTTP listener (after Start).
func (n *Node) URL() string { return n.server.URL() }

// Router is the node's HTTP router (for tests and documentation).
func (n *Node) Router() *api.Router { return n.router }

// openBus opens the event bus every role shares: a durable log in the data
// directory, or Kafka.
func (n *Node) openBus() error {
	log := n.logs.For("bus")
	switch n.cfg.Bus.Driver {
	case "kafka":
		b, err := kafka.New(n.cfg.Bus.Kafka, n.cfg.DataDir, n.reg, log)
		if err != nil {
			return fmt.Errorf("bus: %w", err)
		}
		n.bus = b
		n.components = append(n.components, component{"bus", b.Run})
	default:
		b, err := bus.NewEmbedded(n.cfg.Bus.Embedded, n.cfg.DataDir, n.reg, log)
		if err != nil {
			return fmt.Errorf("bus: %w", err)
		}
		n.bus = b
		n.components = append(n.components, component{"bus", b.Run})
	}
	return nil
}

// startDevices builds the device registry and the MQTT/HTTP intake of the
// ingest role.
func (n *Node) startDevices(ctx context.Context) error {
	n.devices = device.NewRegistry(n.cfg.Devices, n.db)
	if err := n.devices.Load(ctx); err != nil {
		return err
	}
	in, err := mqtt.New(n.cfg.MQTT, n.devices, n.bus, mqtt.Cameras(n.ingest.Registry()), n.reg, n.logs.For("mqtt"))
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	if err := in.Start(); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	n.mqtt = in
	device.NewAPI(n.devices, in).Routes(n.router)
	in.Routes(n.router)
	poll := n.cfg.Ingest.RegistryPoll.D()
	n.components = append(n.components,
		component{"devices", func(ctx context.Context) error { return n.devices.Run(ctx, poll) }},
		component{"mqtt", in.Run})
	return nil
}

// MQTTAddr is the embedded broker's address ("" when an external broker is used).
func (n *Node) MQTTAddr() string {
	if n.mqtt == nil {
		return ""
	}
	return n.mqtt.Addr()
}

// Bus is the event bus (after Start).
func (n *Node) Bus() bus.Bus { return n.bus }

// Ingest is the ingest role (after Start, when the node runs it).
func (n *Node) Ingest() *ingest.Ingest { return n.ingest }

// Alerts is the alerts role (after Start, when the node runs it).
func (n *Node) Alerts() *alerts.Alerts { return n.alerts }

// Auth is the authentication service (after Start).
func (n *Node) Auth() *auth.Service { return n.auth }

// Analytics is the analytics store (after Start, when the node runs the
// alerts or console role).
func (n *Node) Analytics() analytics.Store { return n.analytics }

// Sink is the analytics sink (after Start, when the node runs the alerts
// role with the sink enabled).
func (n *Node) Sink() *analytics.Sink { return n.sink }

// openAnalytics opens the analytics store the alerts role fills and the
// console role queries.
func (n *Node) openAnalytics(ctx context.Context) error {
	if n.analytics != nil {
		return nil
	}
	n.health.Starting("analytics")
	s, err := analytics.Open(ctx, n.cfg.Analytics, n.cfg.DataDir, n.logs.For("analytics"))
	if err != nil {
		return err
	}
	n.analytics = s
	n.health.Ready("analytics")
	return nil
}

// Start binds the listener, opens the case database and builds every role,
// so that a busy port or an unreachable database is reported before
// anything runs.
func (n *Node) Start(ctx context.Context) error {
	if n.started {
		return errors.New("node already started")
	}
	n.started = true
	n.health.Starting("http")
	if err := n.server.Listen(); err != nil {
		return err
	}
	n.health.Starting("casedb")
	db, err := casedb.Open(ctx, n.cfg.CaseDB, n.cfg.DataDir, n.logs.For("casedb"))
	if err != nil {
		n.server.Close()
		return fmt.Errorf("casedb: %w", err)
	}
	n.db = db
	n.health.Ready("casedb")
	if n.auth, err = auth.NewService(n.cfg.Auth, db, n.cfg.HTTP.TLS(), n.reg, n.logs.For("auth")); err != nil {
		n.close()
		return err
	}
	n.router.SetAuthenticator(n.auth)
	n.components = append(n.components, component{"auth", n.auth.Run})
	if err := n.openBus(); err != nil {
		n.close()
		return err
	}

	for _, role := range n.opts.Roles {
		if err := n.buildRole(ctx, role); err != nil {
			n.close()
			return fmt.Errorf("%s: %w", role, err)
		}
	}
	n.registerSystem()
	return nil
}

// buildRole registers a role's routes and components.
func (n *Node) buildRole(ctx context.Context, role string) error {
	switch role {
	case Console:
		n.auth.Routes(n.router)
		web.Routes(n.router)
		if err := n.openAnalytics(ctx); err != nil {
			return err
		}
		analytics.NewAPI(analytics.NewQuestions(n.cfg.Analytics, n.analytics, n.reg), n.logs.For("analytics")).Routes(n.router)
		n.health.Ready(Console)
	case Ingest:
		n.ingest = ingest.New(n.cfg.Ingest, n.cfg.Cameras, n.db, n.auth, n.reg, n.logs.For(Ingest))
		if err := n.ingest.EnableDetectors(n.bus, n.cfg.DataDir, n.reg); err != nil {
			return err
		}
		if n.cfg.Ingest.Cluster.Enabled {
			// A relay-only node follows the cluster on any bus; an ingest
			// node shares the cameras through Kafka's group membership.
			if n.cfg.Bus.Driver != "kafka" {
				return errors.New("ingest.cluster.enabled needs bus.driver kafka on a node with the ingest role: the ingest nodes share the cameras through a Kafka consumer group (the embedded bus is one node's)")
			}
			if err := n.ingest.JoinCluster(n.bus); err != nil {
				return err
			}
		}
		if err := n.ingest.Start(ctx); err != nil {
			return err
		}
		n.ingest.Routes(n.router)
		n.components = append(n.components, component{Ingest, n.ingest.Run})
		if err := n.startDevices(ctx); err != nil {
			return err
		}
		n.health.Ready(Ingest)
	case Relay:
		var cams relay.Cameras = n.ingest
		if n.ingest == nil {
			up, err := n.startUpstream(ctx)
			if err != nil {
				return err
			}
			cams = up
		}
		r, err := relay.New(n.cfg.Relay, cams, n.reg, n.logs.For(Relay))
		if err != nil {
			return err
		}
		n.relay = r
		r.Routes(n.router)
		n.runUntilReady(Relay, r.Run, r.Ready())
	case Alerts:
		a, err := alerts.New(n.cfg.Alerts, n.db, n.bus, n.reg, n.logs.For(Alerts))
		if err != nil {
			return err
		}
		// Cases opened by alerts take the sensor readings around them from
		// the analytics store: filled by this node's sink, or by another
		// node's when the store is ClickHouse.
		if n.cfg.Analytics.Sink.Enabled || n.cfg.Analytics.Driver == analytics.ClickHouse {
			if err := n.openAnalytics(ctx); err != nil {
				return err
			}
			a.SetReadings(analytics.NewReadings(n.analytics))
		}
		if err := a.Start(ctx); err != nil {
			return err
		}
		n.alerts = a
		a.Routes(n.router)
		n.runUntilReady(Alerts, a.Run, a.Consuming())
		if n.cfg.Analytics.Sink.Enabled {
			n.sink = analytics.NewSink(n.cfg.Analytics, n.analytics, n.bus, n.reg, n.logs.For("analytics-sink"))
			n.components = append(n.components, component{"analytics-sink", n.sink.Run})
		}
	}
	return nil
}

// startUpstream is the relay role's camera source on a node without the
// ingest role: every camera of the registry pulled on demand from an
// ingest node's RTSP re-serve (relay.upstream), without detectors or a
// re-serve of its own.
func (n *Node) startUpstream(ctx context.Context) (*ingest.Ingest, error) {
	u := n.cfg.Relay.Upstream
	if u.URL == "" && !n.cfg.Ingest.Cluster.Enabled {
		return nil, errors.New("the relay role needs the ingest role in the same process, relay.upstream.url (an ingest node's RTSP re-serve to pull the cameras from) or ingest.cluster.enabled (pull each camera from the ingest node that owns it)")
	}
	cfg := n.cfg.Ingest
	cfg.RTSPServer.Listen = ""
	cfg.HealthReport = 0
	up := ingest.New(cfg, n.cfg.Cameras, n.db, nil, n.reg, n.logs.For(Relay).With("component", "upstream"))
	if u.URL != "" {
		up.PullFrom(u)
	} else if err := up.FollowCluster(); err != nil {
		return nil, err
	}
	if err := up.Start(ctx); err != nil {
		return nil, err
	}
	n.components = append(n.components, component{Relay + "-upstream", up.Run})
	n.upstream = up
	return up, nil
}

// runUntilReady adds a role's component, reported starting until ready
// is closed.
func (n *Node) runUntilReady(role string, run func(context.Context) error, ready <-chan struct{}) {
	n.health.Starting(role)
	n.components = append(n.components, component{role, run}, component{role + "-ready", func(ctx context.Context) error {
		select {
		case <-ready:
			n.health.Ready(role)
		case <-ctx.Done():
		}
		return nil
	}})
}

func (n *Node) close() {
	n.server.Close()
	if n.analytics != nil {
		n.analytics.Close()
	}
	if n.db != nil {
		n.db.Close()
	}
}

// Run runs every component until ctx is cancelled or one of them fails,
// then stops them all and releases the listener and the database. It
// returns the first failure, named after its component.
func (n *Node) Run(ctx context.Context) error {
	if !n.started {
		if err := n.Start(ctx); err != nil {
			return err
		}
	}
	defer n.close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		n.health.Ready("http")
		if err := n.server.Run(gctx); err != nil {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	for _, c := range n.components {
		g.Go(func() error {
			if err := c.run(gctx); err != nil && gctx.Err() == nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			return nil
		})
	}
	n.log.Info("sharpeye running", "roles", strings.Join(n.opts.Roles, ","), "url", n.URL(), "version", n.opts.Version, "casedb", n.cfg.CaseDB.Driver)
	err := g.Wait()
	n.log.Info("sharpeye stopped")
	return err
}

// Version is the module version of this build, or "dev".
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

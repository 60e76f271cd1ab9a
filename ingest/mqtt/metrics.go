package mqtt

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/ingest/device"
)

// metrics are the intake's Prometheus metrics. Labels are message kinds,
// reason classes and device states: never a device id or a topic, so that
// their number stays fixed however many devices there are.
type metrics struct {
	received    *prometheus.CounterVec // transport, kind
	rejected    *prometheus.CounterVec // reason
	published   prometheus.Counter
	deadLetters prometheus.Counter
	ackLatency  prometheus.Histogram
	batchSize   prometheus.Histogram
	busErrors   prometheus.Counter
	aclDenied   *prometheus.CounterVec // action
	authFailed  *prometheus.CounterVec // reason
	clockSkew   prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_intake_messages_received_total",
			Help: "Messages received from devices and analysers, by transport (mqtt, http) and kind (telemetry, event, status, detections, other); over HTTP each detection counts.",
		}, []string{"transport", "kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_intake_messages_rejected_total",
			Help: "Messages (or detections of an HTTP batch) refused and dead-lettered, by reason class.",
		}, []string{"reason"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_intake_events_published_total",
			Help: "Events made durable on the bus.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_intake_dead_letters_published_total",
			Help: "Dead letters made durable on the bus.",
		}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sharpeye_intake_ack_latency_seconds",
			Help:    "Time from a message's arrival to its being durable on the bus (when its source is acknowledged).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sharpeye_intake_batch_messages",
			Help:    "Messages per publish to the bus.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
		busErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_intake_bus_errors_total",
			Help: "Publishes to the bus that failed and were retried.",
		}),
		aclDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_mqtt_acl_denied_total",
			Help: "Publishes and subscriptions the embedded broker refused (a device using another's topics), by action.",
		}, []string{"action"}),
		authFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_mqtt_auth_failures_total",
			Help: "Connections the embedded broker refused, by reason (unknown_user, bad_password, disabled, no_password, client_id, will).",
		}, []string{"reason"}),
		clockSkew: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_intake_clock_skew_total",
			Help: "Messages whose timestamp was implausible (a device clock off by more than 30 days back or 10 minutes ahead) and was replaced by the arrival time.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.received, m.rejected, m.published, m.deadLetters, m.ackLatency, m.batchSize, m.busErrors, m.aclDenied, m.authFailed, m.clockSkew}
}

// collector exports the devices by state and the broker's clients at scrape
// time.
type collector struct{ in *Intake }

var (
	descDevices = prometheus.NewDesc("sharpeye_devices", "Devices by liveness state (unknown, online, offline, disabled).", []string{"state"}, nil)
	descClients = prometheus.NewDesc("sharpeye_mqtt_clients_connected", "Clients connected to the embedded broker.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDevices
	ch <- descClients
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counts := map[device.State]int{device.StateUnknown: 0, device.StateOnline: 0, device.StateOffline: 0, device.StateDisabled: 0}
	for _, e := range c.in.devices.All() {
		st, _ := c.in.DeviceStatus(e.ID)
		counts[st.State]++
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(descDevices, prometheus.GaugeValue, float64(n), string(s))
	}
	if c.in.broker != nil {
		ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(c.in.broker.connected()))
	}
}

// problemLog logs a recurring problem at most once per interval, with the
// number of occurrences since the last line: per-message problems are
// counted, not logged one by one.
type problemLog struct {
	log      *slog.Logger
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newProblemLog(log *slog.Logger, interval time.Duration) *problemLog {
	return &problemLog{log: log, interval: interval}
}

// report logs msg with args unless a line was logged within the interval.
func (p *problemLog) report(msg string, args ...any) {
	p.mu.Lock()
	now := time.Now()
	if now.Sub(p.last) < p.interval {
		p.suppressed++
		p.mu.Unlock()
		return
	}
	n := p.suppressed
	p.last, p.suppressed = now, 0
	p.mu.Unlock()
	if n > 0 {
		args = append(args, "more_since_last_report", n)
	}
	p.log.Warn(msg, args...)
}

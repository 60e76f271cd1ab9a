package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the dispatcher's; the sink label is "bus" or
// "webhook:<name>".
type metrics struct {
	pending      *prometheus.GaugeVec
	lagSeconds   *prometheus.GaugeVec
	delivered    *prometheus.CounterVec
	failures     *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	pruned       prometheus.Counter
	leader       prometheus.Gauge
}

// newMetrics registers the dispatcher's metrics and dead, the dead letters
// held.
func newMetrics(reg prometheus.Registerer, dead prometheus.Collector) (*metrics, error) {
	m := &metrics{
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sharpeye_outbox_pending_records", Help: "Outbox records a sink has yet to deliver.",
		}, []string{"sink"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sharpeye_outbox_lag_seconds", Help: "Age of the oldest record a sink has yet to deliver; 0 when it is up to date.",
		}, []string{"sink"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_outbox_delivered_records_total", Help: "Outbox records delivered by a sink (skipped by type not counted).",
		}, []string{"sink"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_outbox_delivery_failures_total", Help: "Failed delivery attempts, to be retried.",
		}, []string{"sink"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_outbox_dead_lettered_total", Help: "Records a webhook subscriber refused for good (4xx), kept in outbox_dead_letters.",
		}, []string{"sink"}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_outbox_pruned_records_total", Help: "Records deleted after every sink delivered them and retention passed.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sharpeye_outbox_lease_held", Help: "1 while this node holds the outbox lease and delivers.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.pending, m.lagSeconds, m.delivered, m.failures, m.deadLettered, m.pruned, m.leader, dead} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register outbox metrics: %w", err)
		}
	}
	return m, nil
}

// deadLetters reports sharpeye_outbox_dead_letters, read from the database
// at scrape time: the same on every node sharing it (aggregate with max,
// not sum). Each configured webhook sink is reported, 0 when it holds
// none, and so is a sink no longer configured that still holds some. When
// the database does not answer within collectTimeout, nothing is reported.
type deadLetters struct {
	store store
	sinks []string
}

var descDeadLetters = prometheus.NewDesc("sharpeye_outbox_dead_letters",
	"Dead letters held (records a webhook subscriber refused for good), until an admin retries or discards them.", []string{"sink"}, nil)

// collectTimeout bounds the count at scrape time.
const collectTimeout = 2 * time.Second

func (c *deadLetters) Describe(ch chan<- *prometheus.Desc) { ch <- descDeadLetters }

func (c *deadLetters) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	counts, err := c.store.deadLetterCounts(ctx)
	if err != nil {
		return
	}
	for _, sink := range c.sinks {
		if _, ok := counts[sink]; !ok {
			counts[sink] = 0
		}
	}
	for sink, n := range counts {
		ch <- prometheus.MustNewConstMetric(descDeadLetters, prometheus.GaugeValue, float64(n), sink)
	}
}

var _ prometheus.Collector = (*deadLetters)(nil)

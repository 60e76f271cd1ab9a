package bus

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the embedded bus's counters; the log's size and the groups'
// lag are read at scrape time.
type metrics struct {
	published         prometheus.Counter
	publishSeconds    prometheus.Histogram
	groupCommit       prometheus.Histogram
	blocked           prometheus.Counter
	consumed          *prometheus.CounterVec
	handlerErrors     *prometheus.CounterVec
	commitErrors      *prometheus.CounterVec
	trimmed           *prometheus.CounterVec
	expiredUnconsumed prometheus.Counter
	deletedUnread     prometheus.Counter
	corrupt           prometheus.Counter
}

var (
	descBytes    = prometheus.NewDesc("sharpeye_bus_log_bytes", "Bytes held in the embedded bus log (counted against max_bytes).", nil, nil)
	descMessages = prometheus.NewDesc("sharpeye_bus_log_messages", "Messages held in the embedded bus log.", nil, nil)
	descLag      = prometheus.NewDesc("sharpeye_bus_consumer_lag", "Messages a consumer group has not committed yet.", []string{"group", "topic"}, nil)
	descMembers  = prometheus.NewDesc("sharpeye_bus_consumer_members", "Consume calls running in a consumer group.", []string{"group"}, nil)
)

func newMetrics(reg prometheus.Registerer, e *Embedded) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_bus_published_messages_total", Help: "Messages stored by Publish.",
		}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sharpeye_bus_publish_seconds", Help: "Time Publish took, waiting for room included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		groupCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sharpeye_bus_publish_group_size", Help: "Publish calls written together in one transaction (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_bus_publish_blocked_total", Help: "Publish calls that waited for consumers to make room (back-pressure).",
		}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_bus_consumed_messages_total", Help: "Messages handled and committed by a consumer group.",
		}, []string{"group"}),
		handlerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_bus_handler_errors_total", Help: "Batches a handler refused, to be delivered again.",
		}, []string{"group"}),
		commitErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_bus_commit_errors_total", Help: "Offset commits that failed (the batch is delivered again).",
		}, []string{"group"}),
		trimmed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_bus_deleted_messages_total", Help: "Messages deleted from the log, for size (all groups had committed them) or age.",
		}, []string{"reason"}),
		expiredUnconsumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_bus_expired_unconsumed_total", Help: "Messages deleted for age before every consumer group had committed them.",
		}),
		deletedUnread: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_bus_deleted_unread_total", Help: "Messages of topics no consumer group reads, deleted to keep the log within max_bytes.",
		}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_bus_corrupt_total", Help: "Corrupt rows found in the bus database (skipped or repaired).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.published, m.publishSeconds, m.groupCommit, m.blocked, m.consumed, m.handlerErrors,
		m.commitErrors, m.trimmed, m.expiredUnconsumed, m.deletedUnread, m.corrupt, &collector{e}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register embedded bus metrics: %w", err)
		}
	}
	return m, nil
}

// collector reads the log's size and the groups' lag at scrape time.
type collector struct{ e *Embedded }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBytes
	ch <- descMessages
	ch <- descLag
	ch <- descMembers
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(e.bytes))
	ch <- prometheus.MustNewConstMetric(descMessages, prometheus.GaugeValue, float64(e.count))
	for _, g := range e.groups {
		lag := map[string]int64{}
		for tp, off := range g.committed {
			n := int64(0)
			if pl := e.logs[tp]; pl != nil {
				n = pl.next - max(off, pl.start)
			}
			lag[tp.topic] += n
		}
		for topic, n := range lag {
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(n), g.name, topic)
		}
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(len(g.members)), g.name)
	}
}

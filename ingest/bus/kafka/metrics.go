package kafka

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Kafka bus's; the spool's size is read at scrape time.
type metrics struct {
	produced       *prometheus.CounterVec // by path: direct or spool
	publishSeconds *prometheus.HistogramVec
	blocked        *prometheus.CounterVec // by reason: memory or spool
	spoolWrites    prometheus.Counter
	spooled        prometheus.Counter
	spoolCorrupt   prometheus.Counter
	rejected       prometheus.Counter
	deliveryErrors prometheus.Counter

	consumed      *prometheus.CounterVec
	handlerErrors *prometheus.CounterVec
	commitErrors  *prometheus.CounterVec
	fetchErrors   *prometheus.CounterVec
	lag           *prometheus.GaugeVec
}

var (
	descSpoolBytes    = prometheus.NewDesc("sharpeye_kafka_spool_bytes", "Bytes in the spool's segment files.", nil, nil)
	descSpoolMessages = prometheus.NewDesc("sharpeye_kafka_spool_messages", "Messages in the spool waiting for Kafka.", nil, nil)
)

func newMetrics(reg prometheus.Registerer, b *Bus) (*metrics, error) {
	m := &metrics{
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_kafka_produced_messages_total", Help: "Messages Kafka acknowledged, sent directly by Publish or from the spool.",
		}, []string{"path"}),
		publishSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sharpeye_kafka_publish_seconds", Help: "Time Publish took, until Kafka acknowledged (direct) or the spool synced (spool).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"path"}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_kafka_publish_blocked_total", Help: "Publish calls that waited for room (back-pressure): in the memory buffer or the spool.",
		}, []string{"reason"}),
		spoolWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_kafka_spool_writes_total", Help: "Synced writes to the spool (one per Publish that spooled).",
		}),
		spooled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_kafka_spooled_messages_total", Help: "Messages written to the spool.",
		}),
		spoolCorrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_kafka_spool_corrupt_total", Help: "Corrupt spool records or tails found and skipped.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_kafka_spool_rejected_total", Help: "Spooled messages Kafka refused for good (too large, bad topic), set aside in spool_dir/rejected.",
		}),
		deliveryErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_kafka_delivery_errors_total", Help: "Produce requests that failed (each attempt).",
		}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_kafka_consumed_messages_total", Help: "Messages handled and committed by a consumer group.",
		}, []string{"group"}),
		handlerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_kafka_handler_errors_total", Help: "Batches a handler refused, to be delivered again.",
		}, []string{"group"}),
		commitErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_kafka_commit_errors_total", Help: "Offset commits that failed (the batch may be delivered again).",
		}, []string{"group"}),
		fetchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_kafka_fetch_errors_total", Help: "Errors fetching messages.",
		}, []string{"group"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sharpeye_kafka_consumer_lag", Help: "Messages after the last one a consumer group handled, per partition, as of its last batch.",
		}, []string{"group", "topic", "partition"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.produced, m.publishSeconds, m.blocked, m.spoolWrites, m.spooled, m.spoolCorrupt,
		m.rejected, m.deliveryErrors, m.consumed, m.handlerErrors, m.commitErrors, m.fetchErrors, m.lag, &collector{b}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register kafka bus metrics: %w", err)
		}
	}
	return m, nil
}

type collector struct{ b *Bus }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSpoolBytes
	ch <- descSpoolMessages
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	bytes, msgs := c.b.spoolStats()
	ch <- prometheus.MustNewConstMetric(descSpoolBytes, prometheus.GaugeValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(descSpoolMessages, prometheus.GaugeValue, float64(msgs))
}

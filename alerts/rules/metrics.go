package rules

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	evaluated  prometheus.Counter
	firings    *prometheus.CounterVec
	tmplErrors *prometheus.CounterVec
	condErrors *prometheus.CounterVec
	late       *prometheus.CounterVec
	duplicates prometheus.Counter
	entries    prometheus.Gauge
	version    prometheus.Gauge
	seconds    prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		evaluated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_rules_events_evaluated_total", Help: "Events evaluated against the alert rules.",
		}),
		firings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_rules_firings_total", Help: "Rule firings by rule and kind (new, repeat, suppressed).",
		}, []string{"rule", "kind"}),
		tmplErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_rules_template_errors_total", Help: "Case title or description templates that failed; the rule name was used instead.",
		}, []string{"rule"}),
		condErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_rules_condition_errors_total", Help: "Matching events whose when condition could not be evaluated (attribute missing or of another type); the event was ignored by the rule.",
		}, []string{"rule"}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_rules_late_events_total", Help: "Events ignored by a rule because they were older than its window (count) or than the group's newest event (for).",
		}, []string{"rule"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_rules_duplicate_events_total", Help: "Events skipped by a rule because they had already been processed (a redelivered batch).",
		}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sharpeye_rules_state_entries", Help: "Rule groups with state (windows, durations, cooldowns).",
		}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sharpeye_rules_set_version", Help: "Version of the rule set in use.",
		}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sharpeye_rules_evaluation_seconds", Help: "Time to evaluate a batch of events and store the state.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.evaluated, m.firings, m.tmplErrors, m.condErrors, m.late, m.duplicates, m.entries, m.version, m.seconds} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

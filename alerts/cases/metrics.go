package cases

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	changes *prometheus.CounterVec
	timers  *prometheus.CounterVec
	alerts  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_cases_changes_total",
			Help: "Case changes committed, by history action.",
		}, []string{"action"}),
		timers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_cases_timers_fired_total",
			Help: "Deadline timers fired, by kind (remind, urge, supervise, escalate, warn, verify, readings).",
		}, []string{"kind"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_cases_alerts_total",
			Help: "Rule firings taken by the case workflow, by outcome (opened, attached, suppressed, duplicate, dropped, refused: no playbook for the category).",
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.changes, m.timers, m.alerts)
	}
	return m
}

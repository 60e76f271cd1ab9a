package detect

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the detectors' counters; the decoders' figures and every
// camera's raised conditions are read at scrape time.
type metrics struct {
	found          *prometheus.CounterVec
	published      *prometheus.CounterVec
	dropped        prometheus.Counter
	snapshots      prometheus.Counter
	snapshotErrors prometheus.Counter
	undecodable    prometheus.Counter
	stateErrors    prometheus.Counter
}

var (
	descFFmpeg     = prometheus.NewDesc("sharpeye_detect_ffmpeg_available", "1 when ffmpeg was found: without it there are no video quality checks and no snapshots.", nil, nil)
	descDecFrames  = prometheus.NewDesc("sharpeye_detect_keyframes_decoded_total", "Keyframes decoded for the video quality checks.", nil, nil)
	descDecDropped = prometheus.NewDesc("sharpeye_detect_keyframes_dropped_total", "Keyframes not decoded because the decoders were busy.", nil, nil)
	descDecFailed  = prometheus.NewDesc("sharpeye_detect_keyframes_failed_total", "Keyframes that could not be decoded, or decoders that could not start.", nil, nil)
	descDecRestart = prometheus.NewDesc("sharpeye_detect_decoder_restarts_total", "Keyframe decoders (ffmpeg) that exited or were stuck and were restarted.", nil, nil)
	descDecFlush   = prometheus.NewDesc("sharpeye_detect_decoder_flushes_total", "Keyframes written twice to push a decoded frame out of an idle decoder.", nil, nil)
	descDecProcs   = prometheus.NewDesc("sharpeye_detect_decoder_processes", "Keyframe decoder processes (ffmpeg) running.", nil, nil)
	descDecCPU     = prometheus.NewDesc("sharpeye_detect_decoder_cpu_seconds_total", "CPU time used by keyframe decoder processes that have exited.", nil, nil)
	descCondition  = prometheus.NewDesc("sharpeye_detect_condition", "1 while the condition is raised on the camera (offline, degraded, motion, frozen...).", []string{"camera", "region", "condition"}, nil)
)

// conditions are the raised states a camera is reported in, by the event
// type that raises them.
var conditions = []struct{ name, typ string }{
	{"offline", TypeOffline}, {"degraded", TypeDegraded}, {"motion", TypeMotion},
	{"frozen", TypeFrozen}, {"dark", TypeDark}, {"bright", TypeBright},
	{"covered", TypeCovered}, {"blur", TypeBlur}, {"colour_cast", TypeColourCast},
}

func newMetrics(m *Manager, reg prometheus.Registerer) (*metrics, error) {
	mt := &metrics{
		found: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_detect_findings_total", Help: "Events raised by the detectors, by type.",
		}, []string{"type"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_detect_events_published_total", Help: "Detector events published on the bus, by type.",
		}, []string{"type"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_detect_events_dropped_total", Help: "Detector events dropped: the bus blocked too long, or the event could not be encoded.",
		}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_detect_snapshots_total", Help: "Snapshots encoded (one ffmpeg run each).",
		}),
		snapshotErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_detect_snapshot_errors_total", Help: "Snapshots that could not be made or stored.",
		}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_detect_keyframes_undecodable_total", Help: "Keyframes not sent to a decoder: no parameter sets, no IDR slice, or an SPS that does not parse.",
		}),
		stateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_detect_state_errors_total", Help: "Detector state files that could not be written or read (a restart may then raise an ongoing condition again).",
		}),
	}
	if reg == nil {
		return mt, nil
	}
	for _, c := range []prometheus.Collector{mt.found, mt.published, mt.dropped, mt.snapshots, mt.snapshotErrors, mt.undecodable, mt.stateErrors, &collector{m}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register detector metrics: %w", err)
		}
	}
	return mt, nil
}

type collector struct{ m *Manager }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFFmpeg, descDecFrames, descDecDropped, descDecFailed, descDecRestart, descDecFlush, descDecProcs, descDecCPU, descCondition} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	if c.m.dec != nil {
		gauge(descFFmpeg, 1)
		dec := c.m.dec
		counter(descDecFrames, float64(dec.frames.Load()))
		counter(descDecDropped, float64(dec.dropped.Load()))
		counter(descDecFailed, float64(dec.failed.Load()))
		counter(descDecRestart, float64(dec.restarts.Load()))
		counter(descDecFlush, float64(dec.flushes.Load()))
		gauge(descDecProcs, float64(dec.procs.Load()))
		counter(descDecCPU, time.Duration(dec.cpuNanos.Load()).Seconds())
	} else {
		gauge(descFFmpeg, 0)
	}
	c.m.mu.Lock()
	cams := make([]*Detector, 0, len(c.m.cams))
	for d := range c.m.cams {
		cams = append(cams, d)
	}
	c.m.mu.Unlock()
	seen := map[string]bool{}
	for _, d := range cams {
		if seen[d.id] {
			continue // a camera being restarted: its old detector is on its way out
		}
		seen[d.id] = true
		d.stateMu.Lock()
		for _, cd := range conditions {
			v := 0.0
			if _, ok := d.active[cd.typ]; ok {
				v = 1
			}
			gauge(descCondition, v, d.id, d.meta.Region, cd.name)
		}
		d.stateMu.Unlock()
	}
}

var _ prometheus.Collector = (*collector)(nil)

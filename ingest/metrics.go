package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/ingest/rtsp"
)

// collector exports every camera's state and statistics at scrape time,
// so that a removed camera's series go with it. Labels are the camera id
// and region only: never a URL.
type collector struct{ in *Ingest }

var (
	labels       = []string{"camera", "region"}
	descUp       = prometheus.NewDesc("sharpeye_camera_up", "1 when the camera's stream is flowing.", labels, nil)
	descState    = prometheus.NewDesc("sharpeye_camera_state", "The camera's pull state (1 for the current one).", append(labels, "state"), nil)
	descBitrate  = prometheus.NewDesc("sharpeye_camera_bitrate_bits_per_second", "Video bitrate over the last seconds.", labels, nil)
	descFPS      = prometheus.NewDesc("sharpeye_camera_frame_rate", "Frames per second over the last seconds.", labels, nil)
	descKeyInt   = prometheus.NewDesc("sharpeye_camera_keyframe_interval_seconds", "Time between the last two keyframes.", labels, nil)
	descPackets  = prometheus.NewDesc("sharpeye_camera_rtp_packets_received_total", "RTP packets received from the camera.", labels, nil)
	descLost     = prometheus.NewDesc("sharpeye_camera_rtp_packets_lost_total", "RTP packets lost on the way from the camera.", labels, nil)
	descDecode   = prometheus.NewDesc("sharpeye_camera_decode_errors_total", "Packets that could not be decoded.", labels, nil)
	descRecon    = prometheus.NewDesc("sharpeye_camera_reconnects_total", "Sessions that ended and were retried.", labels, nil)
	descConsumer = prometheus.NewDesc("sharpeye_camera_consumers", "Consumers of the camera's stream (viewers, re-serve, detectors).", labels, nil)
	descSlow     = prometheus.NewDesc("sharpeye_camera_slow_consumer_drops_total", "Consumers dropped for falling behind.", labels, nil)
	descPulled   = prometheus.NewDesc("sharpeye_camera_pulled_here", "1 when this node pulls the camera from the camera itself (in a cluster: owns it), 0 when from another node or not at all.", labels, nil)
	descGOPBytes = prometheus.NewDesc("sharpeye_gop_cache_bytes", "Bytes held by the cameras' cached groups of pictures (bounded by ingest.gop_total_bytes).", nil, nil)
	descGOPCams  = prometheus.NewDesc("sharpeye_gop_cache_cameras", "Cameras with a cached group of pictures (a new viewer starts at once); the others' new viewers wait for the next keyframe.", nil, nil)
	descGOPLimit = prometheus.NewDesc("sharpeye_gop_cache_limit_bytes", "ingest.gop_total_bytes (0: no bound).", nil, nil)
	descSessions = prometheus.NewDesc("sharpeye_rtsp_sessions", "RTSP sessions with cameras (or other nodes) running in this process.", nil, nil)
	descReactor  = prometheus.NewDesc("sharpeye_rtsp_reactor_connections", "Camera connections read by a reactor (ingest.pull.read_interval, from 64 sessions on); the others are read through Go's poller.", nil, nil)
	states       = []rtsp.State{rtsp.StateIdle, rtsp.StateConnecting, rtsp.StateOnline, rtsp.StateOffline, rtsp.StateError, rtsp.StateDisabled}
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descState, descBitrate, descFPS, descKeyInt, descPackets, descLost, descDecode, descRecon, descConsumer, descSlow, descPulled, descGOPBytes, descGOPCams, descGOPLimit, descSessions, descReactor} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	bytes, cams, limit := c.in.GOPCache()
	ch <- prometheus.MustNewConstMetric(descGOPBytes, prometheus.GaugeValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(descGOPCams, prometheus.GaugeValue, float64(cams))
	ch <- prometheus.MustNewConstMetric(descGOPLimit, prometheus.GaugeValue, float64(limit))
	ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(rtsp.Sessions()))
	ch <- prometheus.MustNewConstMetric(descReactor, prometheus.GaugeValue, float64(rtsp.ReactorConnections()))
	for _, e := range c.in.reg.All() {
		st, ok := c.in.Status(e.ID)
		if !ok {
			continue
		}
		l := []string{e.ID, e.Region}
		up := 0.0
		if st.Status.State == rtsp.StateOnline {
			up = 1
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
		}
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
		}
		gauge(descUp, up)
		for _, s := range states {
			v := 0.0
			if st.Status.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, e.ID, e.Region, string(s))
		}
		gauge(descBitrate, st.Status.Bitrate)
		gauge(descFPS, st.Status.FrameRate)
		gauge(descKeyInt, st.Status.KeyframeInterval)
		counter(descPackets, st.Status.PacketsReceived)
		counter(descLost, st.Status.PacketsLost)
		counter(descDecode, st.Status.DecodeErrors)
		counter(descRecon, st.Status.Reconnects)
		gauge(descConsumer, float64(st.Stream.Subscribers))
		counter(descSlow, st.Stream.SlowDrops)
		pulled := 0.0
		if st.Pulled == PulledCamera {
			pulled = 1
		}
		gauge(descPulled, pulled)
	}
}

// healthMetrics count the camera.health samples (see event.TypeCameraHealth).
type healthMetrics struct {
	published, failed prometheus.Counter
}

func newHealthMetrics(reg prometheus.Registerer) *healthMetrics {
	m := &healthMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_camera_health_reports_total",
			Help: "camera.health samples published to the bus (one per camera per health_report interval).",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharpeye_camera_health_reports_failed_total",
			Help: "camera.health samples lost: refused by the bus, timed out or not encodable.",
		}),
	}
	reg.MustRegister(m.published, m.failed)
	return m
}

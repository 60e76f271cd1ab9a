package detect

import (
	"math"
	"time"

	"sharpeye/ingest/event"
)

// Health timing that is not configurable.
const (
	// flowGap: packets are flowing while the last one is younger than this.
	flowGap = 2 * time.Second
	// settle: rates are neither judged nor learnt in the first moments of
	// a session, while the puller's measuring windows fill.
	settle = 10 * time.Second
	// baselineReady: the time a baseline must have been learnt before a
	// drop below it counts.
	baselineReady = 30 * time.Second
	// lossMinPackets: packet loss is judged over at least this many
	// packets.
	lossMinPackets = 200
)

// healthInput is what the health state machine observes at one tick.
type healthInput struct {
	now time.Time
	// expected is false while the camera is not meant to stream (an idle
	// on-demand camera, a disabled one): it is then never offline.
	expected bool
	// lastPacket is when the last packet arrived; zero: none yet.
	lastPacket time.Time
	// state and reason are the puller's, for the offline event.
	state, reason string
	// fps and bitrate (bit/s) over the last seconds, when haveRates.
	fps, bitrate float64
	haveRates    bool
	// received and lost are cumulative RTP packet counts, when haveLoss.
	received, lost uint64
	haveLoss       bool
}

// baseline is an exponentially weighted moving average over time.
type baseline struct {
	value   float64
	learnt  time.Duration
	updated time.Time
}

func (b *baseline) add(now time.Time, v float64, tau time.Duration) {
	if b.updated.IsZero() || now.Before(b.updated) {
		b.value, b.updated = v, now
		return
	}
	dt := now.Sub(b.updated)
	if dt > 10*time.Second {
		dt = 10 * time.Second // a long pause is not a long observation
	}
	a := 1 - math.Exp(-dt.Seconds()/tau.Seconds())
	b.value += a * (v - b.value)
	b.learnt += dt
	b.updated = now
}

func (b *baseline) ready() bool { return b.learnt >= baselineReady && b.value > 0 }

// lossSample is one reading of the cumulative packet counters.
type lossSample struct {
	at             time.Time
	received, lost uint64
}

// health watches a camera's packets, frame rate, bitrate and packet loss:
// camera.offline / camera.online and camera.degraded / .cleared.
type health struct {
	cfg     HealthConfig
	started time.Time

	offline, degraded latch
	flowingSince      time.Time
	fps, bitrate      baseline
	loss              []lossSample // within the loss window, oldest first
	reason            string       // why degraded was last raised
}

func newHealth(cfg HealthConfig, started time.Time) *health {
	return &health{cfg: cfg, started: started}
}

// lossPercent returns the RTP loss over the window, and whether enough
// packets were seen to tell.
func (h *health) lossPercent(in healthInput) (float64, bool) {
	if !in.haveLoss {
		return 0, false
	}
	if n := len(h.loss); n > 0 && (in.received < h.loss[n-1].received || in.lost < h.loss[n-1].lost) {
		h.loss = h.loss[:0] // counters restarted
	}
	h.loss = append(h.loss, lossSample{in.now, in.received, in.lost})
	cut := 0
	for cut < len(h.loss)-1 && in.now.Sub(h.loss[cut+1].at) >= h.cfg.LossWindow.D() {
		cut++
	}
	h.loss = h.loss[cut:]
	first := h.loss[0]
	recv, lost := in.received-first.received, in.lost-first.lost
	if recv+lost < lossMinPackets {
		return 0, false
	}
	return 100 * float64(lost) / float64(recv+lost), true
}

// step observes one tick and returns the events it raises.
func (h *health) step(in healthInput) []finding {
	now := in.now
	var out []finding

	flowing := !in.lastPacket.IsZero() && now.Sub(in.lastPacket) < flowGap
	if !flowing {
		h.flowingSince = time.Time{}
	} else if h.flowingSince.IsZero() {
		h.flowingSince = now
	}
	since := h.started
	if in.lastPacket.After(since) {
		since = in.lastPacket
	}
	silent := now.Sub(since)

	if h.offline.update(now, in.expected && silent >= h.cfg.OfflineAfter.D(), flowing, 0, h.cfg.OnlineAfter.D(), h.cfg.MinHold.D()) {
		if h.offline.on {
			f := newFinding(TypeOffline, event.SeverityMajor, now).
				num("offline_after_seconds", h.cfg.OfflineAfter.D().Seconds()).
				num("silent_seconds", silent.Seconds()).
				str("state", in.state).
				str("reason", in.reason)
			if !in.lastPacket.IsZero() {
				f = f.str("last_packet", event.NewTime(in.lastPacket).String())
			}
			out = append(out, f)
		} else {
			out = append(out, newFinding(TypeOnline, event.SeverityInfo, now).
				num("offline_seconds", now.Sub(h.offline.since).Seconds()))
		}
	}

	loss, lossKnown := h.lossPercent(in)
	if h.offline.on || !flowing || !in.expected || !in.haveRates || now.Sub(h.flowingSince) < settle {
		h.degraded.idle()
		return out
	}

	fpsLow := h.fps.ready() && in.fps < h.cfg.FrameRateDrop*h.fps.value
	brLow := h.cfg.BitrateDrop > 0 && h.bitrate.ready() && in.bitrate < h.cfg.BitrateDrop*h.bitrate.value
	lossHigh := h.cfg.LossPercent > 0 && lossKnown && loss > h.cfg.LossPercent
	enter := fpsLow || brLow || lossHigh
	leave := (!h.fps.ready() || in.fps >= h.cfg.Recover*h.fps.value) &&
		(h.cfg.BitrateDrop == 0 || !h.bitrate.ready() || in.bitrate >= h.cfg.Recover*h.bitrate.value) &&
		(h.cfg.LossPercent == 0 || !lossKnown || loss <= h.cfg.LossClearPercent)

	// Learn the baselines while healthy.
	if !h.degraded.on && !enter {
		if in.fps > 0 {
			h.fps.add(now, in.fps, h.cfg.Baseline.D())
		}
		if in.bitrate > 0 {
			h.bitrate.add(now, in.bitrate, h.cfg.Baseline.D())
		}
	}

	if h.degraded.update(now, enter, leave, h.cfg.DegradedAfter.D(), h.cfg.DegradedAfter.D(), h.cfg.MinHold.D()) {
		typ, sev := TypeDegraded, event.SeverityMinor
		if !h.degraded.on {
			typ, sev = TypeDegraded+ClearedSuffix, event.SeverityInfo
		}
		f := newFinding(typ, sev, now).
			num("frame_rate", in.fps).
			num("frame_rate_baseline", h.fps.value).
			num("bitrate", in.bitrate).
			num("bitrate_baseline", h.bitrate.value).
			num("frame_rate_drop", h.cfg.FrameRateDrop).
			num("bitrate_drop", h.cfg.BitrateDrop).
			num("recover", h.cfg.Recover)
		if lossKnown {
			f = f.num("loss_percent", loss).num("loss_threshold_percent", h.cfg.LossPercent)
		}
		if h.degraded.on {
			switch {
			case fpsLow:
				h.reason = "frame_rate"
			case brLow:
				h.reason = "bitrate"
			default:
				h.reason = "packet_loss"
			}
		} else {
			f = f.num("degraded_seconds", now.Sub(h.degraded.since).Seconds())
		}
		out = append(out, f.str("reason", h.reason))
	}
	return out
}

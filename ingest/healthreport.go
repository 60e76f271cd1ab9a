package ingest

import (
	"context"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"sharpeye/ingest/bus"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/detect"
	"sharpeye/ingest/event"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/stream"
)

// The health samples (event.TypeCameraHealth) the ingest role publishes
// to bus.TopicEvents every ingest.health_report (1m by default): one event
// per camera per window, for the analytics sink (one row per camera per
// minute).
//
// Windows are aligned to wall-clock multiples of the interval (10:04:00 to
// 10:05:00 for 1m), and every sample of a window is published in one
// batch just after it ends. Each event has source kind camera, source id
// and name the camera's, severity info, time the END of its window
// (10:05:00.000Z), the camera's region, grid, lat/lon and tags from its
// registry record (left out when the event schema refuses them), and the
// attributes, all numbers float64:
//
//   - window_seconds (number): the length of the window, the interval
//     normally; shorter for the first window after the role starts or a
//     camera is added (it covers only the time watched), longer only if a
//     stalled machine missed a window end.
//   - online_seconds (number, 0 to window_seconds): time the camera was
//     online (media flowing) during the window, from its state changes:
//     a camera online from 10:04:20 counts 40.
//   - bitrate_kbps (number): kilobits received in the window divided by
//     window_seconds (a camera online half the window shows half its
//     bitrate: divide by online_seconds/window_seconds for the rate while
//     online).
//   - fps (number): frames (access units) received in the window divided
//     by window_seconds, likewise.
//   - packets, packets_lost (numbers): RTP packets received and lost in
//     the window.
//   - faults (string): the video quality faults raised at any time in the
//     window (video.frozen, video.dark, video.bright, video.covered,
//     video.blur, video.colour_cast) and camera.degraded, sorted and
//     comma-separated; "" when none (and for cameras without detectors).
//   - vendor (string): the camera's vendor from its record, "" when unset.
//   - state (string): the camera's pull state at the end of the window:
//     connecting, online, offline, error or idle.
//
// Every enabled always-on camera is reported, with online_seconds 0 while
// it is down; an on-demand camera is reported for the windows in which it
// was pulled; disabled cameras are not reported. A camera's RTSP URL and
// credentials are never part of the event.

// healthSource is what the reporter reads of one camera the role runs.
type healthSource struct {
	entry  camera.Entry
	hub    *stream.Hub
	puller *rtsp.Puller
	// active returns the detector's raised conditions; nil without one.
	active func() []string
}

// healthSources lists the cameras to report: every one that is not
// disabled.
func (in *Ingest) healthSources() []healthSource {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]healthSource, 0, len(in.cams))
	for _, r := range in.cams {
		if r.entry.Disabled || r.source != pullDirect {
			continue // another node's camera: its owner reports it
		}
		s := healthSource{entry: r.entry, hub: r.hub, puller: r.puller}
		if r.det != nil {
			s.active = r.det.Active
		}
		out = append(out, s)
	}
	return out
}

// healthReporter publishes the event.TypeCameraHealth events. It samples every camera
// several times a window (at least every 5 s), to catch the faults raised
// in between, and reports at each window end. Its counters are the
// cameras' cumulative ones (online time, RTP packets, hub units and
// bytes), diffed from one window end to the next.
type healthReporter struct {
	sources  func() []healthSource
	out      bus.Producer
	interval time.Duration
	every    time.Duration // between samples
	timeout  time.Duration // to publish one window
	now      func() time.Time
	metrics  *healthMetrics
	log      *slog.Logger

	cams map[string]*healthCam // owned by Run (or a test's calls)
}

// healthCam is one camera's window in progress.
type healthCam struct {
	entry  camera.Entry
	hub    *stream.Hub
	puller *rtsp.Puller
	name   string // what of the record the event schema accepts
	loc    event.Location
	tags   []string

	from   time.Time   // start of the window
	base   healthCount // at from
	last   healthCount // at the last sample
	banked healthCount // of pullers or hubs replaced during the window
	state  rtsp.State  // at the last sample
	pulled bool        // an on-demand camera was pulled in the window
	faults map[string]struct{}
}

// healthCount is a camera's cumulative counters.
type healthCount struct {
	online        time.Duration
	packets, lost uint64 // the puller's
	units, bytes  uint64 // the hub's
}

func newHealthReporter(sources func() []healthSource, out bus.Producer, interval time.Duration, m *healthMetrics, log *slog.Logger) *healthReporter {
	return &healthReporter{
		sources:  sources,
		out:      out,
		interval: interval,
		every:    min(5*time.Second, interval/4),
		timeout:  min(10*time.Second, interval/2),
		now:      time.Now,
		metrics:  m,
		log:      log,
		cams:     map[string]*healthCam{},
	}
}

// nextWindowEnd is the first multiple of interval after t.
func nextWindowEnd(t time.Time, interval time.Duration) time.Time {
	return t.Truncate(interval).Add(interval)
}

// Run samples and reports until ctx ends. The first window starts now.
func (r *healthReporter) Run(ctx context.Context) error {
	r.sample(r.now())
	end := nextWindowEnd(r.now(), r.interval)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		t.Reset(max(0, min(r.every, end.Sub(r.now()))))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := r.now()
		if now.Before(end) {
			r.sample(now)
			continue
		}
		r.report(ctx, end)
		end = nextWindowEnd(r.now(), r.interval)
	}
}

// sample reads every camera's counters and raised faults at now. A camera
// seen for the first time starts its window now; a camera gone is
// forgotten (not reported).
func (r *healthReporter) sample(now time.Time) {
	seen := make(map[string]bool, len(r.cams))
	for _, s := range r.sources() {
		id := s.entry.ID
		seen[id] = true
		st := s.puller.Status()
		hs := s.hub.Stats()
		cur := healthCount{online: s.puller.OnlineTime(now), packets: st.PacketsReceived, lost: st.PacketsLost, units: hs.Units, bytes: hs.Bytes}
		c := r.cams[id]
		switch {
		case c == nil:
			c = &healthCam{hub: s.hub, puller: s.puller, from: now, base: cur, faults: map[string]struct{}{}}
			c.place(s.entry, r.log)
			r.cams[id] = c
		case c.puller != s.puller:
			// The camera was changed: a new puller, counting from zero
			// since it was made, after the last sample.
			c.banked.online += sub(c.last.online, c.base.online)
			c.banked.packets += sub(c.last.packets, c.base.packets)
			c.banked.lost += sub(c.last.lost, c.base.lost)
			c.base.online, c.base.packets, c.base.lost = 0, 0, 0
			c.puller = s.puller
			c.place(s.entry, r.log)
		}
		if c.hub != s.hub {
			c.banked.units += sub(c.last.units, c.base.units)
			c.banked.bytes += sub(c.last.bytes, c.base.bytes)
			c.base.units, c.base.bytes = 0, 0
			c.hub = s.hub
		}
		c.entry, c.last, c.state = s.entry, cur, st.State
		if !s.entry.OnDemand || st.State != rtsp.StateIdle {
			c.pulled = true
		}
		if s.active != nil {
			for _, typ := range s.active() {
				if isFault(typ) {
					c.faults[typ] = struct{}{}
				}
			}
		}
	}
	for id := range r.cams {
		if !seen[id] {
			delete(r.cams, id)
		}
	}
}

// isFault reports whether a detector's condition is a video quality
// fault for the health samples.
func isFault(typ string) bool {
	return strings.HasPrefix(typ, "video.") || typ == detect.TypeDegraded
}

func sub[T time.Duration | uint64](a, b T) T {
	if a < b {
		return 0
	}
	return a - b
}

// place keeps what of the camera's record the event schema accepts, part
// by part, so that one bad field costs that field only.
func (c *healthCam) place(e camera.Entry, log *slog.Logger) {
	probe := event.New(event.SourceCamera, e.ID, event.TypeCameraHealth)
	c.name, c.loc, c.tags = "", event.Location{}, nil
	probe.Source.Name = e.Name
	if probe.Validate() == nil {
		c.name = e.Name
	}
	probe.Source.Name = ""
	if e.Region != "" {
		probe.Location = event.Location{Region: e.Region, Grid: e.Grid, Lat: e.Lat, Lon: e.Lon}
		if err := probe.Validate(); err != nil {
			log.Warn("camera location not usable in health reports, left out", "camera", e.ID, "err", err)
		} else {
			c.loc = probe.Location
		}
		probe.Location = event.Location{}
	}
	for _, tag := range e.Tags {
		probe.Tags = []string{tag}
		if len(c.tags) < event.MaxTags && probe.Validate() == nil {
			c.tags = append(c.tags, tag)
		}
	}
}

// report samples every camera at end, publishes the window ending there
// and starts the next one.
func (r *healthReporter) report(ctx context.Context, end time.Time) {
	r.sample(end)
	msgs := make([]bus.Message, 0, len(r.cams))
	var bad int
	var badErr error
	for _, id := range slices.Sorted(maps.Keys(r.cams)) {
		c := r.cams[id]
		if ev := c.event(end); ev != nil {
			data, err := ev.Encode()
			if err != nil {
				bad, badErr = bad+1, err
			} else {
				msgs = append(msgs, bus.Message{Topic: bus.TopicEvents, Key: ev.PartitionKey(), Value: data, Time: r.now()})
			}
		}
		c.from, c.base, c.banked, c.pulled = end, c.last, healthCount{}, false
		clear(c.faults)
	}
	if bad > 0 {
		r.metrics.failed.Add(float64(bad))
		r.log.Warn("camera health reports not encodable, dropped", "cameras", bad, "err", badErr)
	}
	if len(msgs) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.out.Publish(pctx, msgs...); err != nil {
		if ctx.Err() != nil {
			return // stopping
		}
		r.metrics.failed.Add(float64(len(msgs)))
		r.log.Warn("camera health reports not published", "window_end", end, "cameras", len(msgs), "err", err)
		return
	}
	r.metrics.published.Add(float64(len(msgs)))
}

// event is the camera's sample of the window ending at end; nil when
// there is nothing to report (an on-demand camera not pulled, or an empty
// window).
func (c *healthCam) event(end time.Time) *event.Event {
	window := end.Sub(c.from).Seconds()
	if window <= 0 || !c.pulled && c.last == c.base {
		return nil
	}
	n := c.banked
	n.online += sub(c.last.online, c.base.online)
	n.packets += sub(c.last.packets, c.base.packets)
	n.lost += sub(c.last.lost, c.base.lost)
	n.units += sub(c.last.units, c.base.units)
	n.bytes += sub(c.last.bytes, c.base.bytes)

	ev := event.New(event.SourceCamera, c.entry.ID, event.TypeCameraHealth)
	ev.Time = event.NewTime(end)
	ev.Source.Name = c.name
	ev.Location = c.loc
	ev.Tags = c.tags
	ev.SetNumber(event.HealthWindow, round3(window))
	ev.SetNumber(event.HealthOnline, round3(min(window, n.online.Seconds())))
	ev.SetNumber(event.HealthBitrate, round3(float64(n.bytes)*8/1000/window))
	ev.SetNumber(event.HealthFPS, round3(float64(n.units)/window))
	ev.SetNumber(event.HealthPackets, float64(n.packets))
	ev.SetNumber(event.HealthLost, float64(n.lost))
	ev.SetString(event.HealthFaults, strings.Join(slices.Sorted(maps.Keys(c.faults)), ","))
	ev.SetString(event.HealthVendor, c.entry.Vendor)
	ev.SetString(event.HealthState, string(c.state))
	return ev
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

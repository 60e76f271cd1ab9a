package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"sharpeye/ingest/bus"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/device"
	"sharpeye/ingest/event"
)

// CameraLookup finds a camera's place by id, for detections made on it:
// region, grid and coordinates (lat and lon both set or both nil).
type CameraLookup func(id string) (region, grid string, lat, lon *float64, ok bool)

// Cameras is the CameraLookup of a camera registry.
func Cameras(r *camera.Registry) CameraLookup {
	return func(id string) (string, string, *float64, *float64, bool) {
		e, ok := r.Get(id)
		if !ok {
			return "", "", nil, nil, false
		}
		return e.Region, e.Grid, e.Lat, e.Lon, true
	}
}

// Clock skew bounds: a device timestamp further back or ahead than this is
// replaced by the arrival time (and the event says so).
const (
	maxPast   = 30 * 24 * time.Hour
	maxFuture = 10 * time.Minute
)

// queueJobs bounds the jobs waiting for the bus.
const queueJobs = 8192

// Intake takes device and analyser messages (MQTT and HTTP), checks them,
// turns them into events and publishes them durably to the bus before their
// sources are acknowledged; what it refuses goes to the dead-letter topic.
// It also tracks each device's liveness.
type Intake struct {
	cfg     Config
	devices *device.Registry
	cameras CameraLookup
	log     *slog.Logger
	m       *metrics
	pipe    *pipeline
	live    *liveness
	rejects *problemLog

	broker *broker // the embedded broker, without cfg.URL
	client *client // the client of the external broker, with cfg.URL
}

// Interface guard.
var _ device.StatusSource = (*Intake)(nil)

// New builds the intake. cfg must be valid (Config.Validate). devices is
// the device registry (its owner loads and runs it); producer is where
// events and dead letters go; cameras (may be nil) places detections; the
// metrics are registered on reg. Without cfg.URL it embeds the broker that
// devices connect to; Start binds it.
func New(cfg Config, devices *device.Registry, producer bus.Producer, cameras CameraLookup, reg prometheus.Registerer, log *slog.Logger) (*Intake, error) {
	if devices == nil || producer == nil {
		return nil, errors.New("mqtt intake: a device registry and a bus producer are required")
	}
	if cameras == nil {
		cameras = func(string) (string, string, *float64, *float64, bool) { return "", "", nil, nil, false }
	}
	log = log.With("component", "mqtt-intake")
	in := &Intake{
		cfg:     cfg,
		devices: devices,
		cameras: cameras,
		log:     log,
		m:       newMetrics(),
		live:    newLiveness(time.Now()),
		rejects: newProblemLog(log, time.Second),
	}
	in.pipe = newPipeline(producer, cfg.BatchMax, cfg.BatchWait.D(), queueJobs, in.m, log)
	if cfg.URL == "" {
		in.broker = newBroker(in)
	} else {
		c, err := newClient(in)
		if err != nil {
			return nil, err
		}
		in.client = c
	}
	for _, c := range in.m.collectors() {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register mqtt metrics: %w", err)
		}
	}
	if err := reg.Register(collector{in: in}); err != nil {
		return nil, fmt.Errorf("register mqtt metrics: %w", err)
	}
	return in, nil
}

// Start binds the embedded broker's listener (nothing to do with an
// external broker), so that a busy port is reported before the role runs.
func (in *Intake) Start() error {
	if in.broker != nil {
		return in.broker.listen()
	}
	return nil
}

// Addr is the embedded broker's bound address ("" before Start, or with an
// external broker).
func (in *Intake) Addr() string {
	if in.broker == nil {
		return ""
	}
	return in.broker.addr()
}

// Run takes messages until ctx ends, then stops the broker or disconnects
// from it. Messages not yet durable then are not acknowledged: their
// sources send them again.
func (in *Intake) Run(ctx context.Context) error {
	if in.broker != nil && in.broker.addr() == "" {
		if err := in.Start(); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		in.pipe.run(gctx)
		return nil
	})
	g.Go(func() error { return in.watchSilence(gctx) })
	if in.broker != nil {
		g.Go(func() error { return in.broker.run(gctx) })
	} else {
		g.Go(func() error { return in.client.run(gctx) })
	}
	return g.Wait()
}

// watchSilence marks silent devices offline at every tick.
func (in *Intake) watchSilence(ctx context.Context) error {
	t := time.NewTicker(in.cfg.OfflineCheck.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			in.checkSilence(ctx, now)
		}
	}
}

// checkSilence publishes device.offline for each device silent past its
// interval (once: it is then offline until it speaks).
func (in *Intake) checkSilence(ctx context.Context, now time.Time) {
	offline, lastSeen := in.live.silent(now, in.devices.All())
	if len(offline) == 0 {
		return
	}
	j := &job{received: now}
	for i, e := range offline {
		ev := e.Template(e.SourceKind(), event.TypeDeviceOffline)
		ev.Time = event.NewTime(now)
		ev.Severity = event.SeverityWarning
		ev.SetString("via", "silence")
		ev.SetNumber("interval_seconds", e.Interval.D().Seconds())
		if !lastSeen[i].IsZero() {
			ev.SetString("last_seen", lastSeen[i].UTC().Format(time.RFC3339Nano))
		}
		msg, err := encode(ev, now)
		if err != nil {
			in.log.Error("device.offline event does not encode", "device", e.ID, "err", err)
			continue
		}
		j.msgs = append(j.msgs, msg)
	}
	if err := in.pipe.submit(ctx, j); err != nil && ctx.Err() == nil {
		in.log.Warn("publish device.offline events", "devices", len(offline), "err", err)
	}
}

// DeviceStatus reports a device's liveness; it implements
// device.StatusSource.
func (in *Intake) DeviceStatus(id string) (device.Status, bool) {
	e, ok := in.devices.Get(id)
	if !ok {
		return device.Status{}, false
	}
	st := in.live.status(id)
	if e.Disabled {
		st.State = device.StateDisabled
	}
	return st, true
}

// inbound is one message to take in.
type inbound struct {
	topic    string
	payload  []byte
	received time.Time
	// dev is the device the embedded broker authenticated; nil for an
	// external broker, where the topic names the device.
	dev *device.Entry
	// client is the MQTT client id, for the dead letter's source.
	client string
	// will is set for a last-will message the broker sent for the device.
	will bool
}

func (m *inbound) source() string {
	var b strings.Builder
	b.WriteString("mqtt topic=")
	b.WriteString(m.topic)
	if m.client != "" {
		b.WriteString(" client=")
		b.WriteString(m.client)
	}
	if m.will {
		b.WriteString(" last-will")
	}
	return b.String()
}

// handle turns an inbound message into a job: its events, or its dead
// letter when it is refused.
func (in *Intake) handle(m inbound) *job {
	j := &job{received: m.received}
	kind := "other"
	if i := strings.LastIndexByte(m.topic, '/'); i >= 0 {
		switch k := m.topic[i+1:]; k {
		case MsgTelemetry, MsgEvent, MsgStatus, MsgDetections:
			kind = k
		}
	}
	in.m.received.WithLabelValues("mqtt", kind).Inc()

	dev, events, rej := in.decode(m)
	if rej != nil {
		key := m.topic
		if dev != nil {
			key = dev.ID
			in.live.rejected(dev.ID, rej.Error())
		}
		j.rejected = true
		j.msgs = []bus.Message{in.deadLetter(key, m.payload, rej, m.source(), m.received)}
		return j
	}
	for _, ev := range events {
		msg, err := encode(ev, m.received)
		if err != nil {
			// Decoding checks what the schema needs; should it miss
			// something, the payload is dead-lettered rather than lost.
			in.log.Error("event does not encode", "device", ev.Source.ID, "type", ev.Type, "err", err)
			j.rejected = true
			j.msgs = []bus.Message{in.deadLetter(ev.Source.ID, m.payload, reject(ClassSchema, "", "%v", err), m.source(), m.received)}
			return j
		}
		j.msgs = append(j.msgs, msg)
	}
	return j
}

// decode checks m and builds its events. dev is the device it comes from
// when known (for the rejection count).
func (in *Intake) decode(m inbound) (*device.Entry, []*event.Event, *Rejection) {
	t, rej := ParseTopic(m.topic)
	if rej != nil {
		return m.dev, nil, rej
	}
	var dev device.Entry
	if m.dev != nil {
		dev = *m.dev
		if dev.ID != t.ID || (dev.Kind == device.KindAnalyser) != t.Analyser {
			// The broker's access control keeps this from happening, but
			// for a last will, which it does not check.
			return m.dev, nil, reject(ClassForbidden, "topic", "device %s may publish only under %s", dev.ID, dev.TopicPrefix())
		}
	} else {
		e, ok := in.devices.Get(t.ID)
		if !ok {
			return nil, nil, reject(ClassUnknownDevice, "topic", "no device %q is registered (add it under devices: or through the API)", t.ID)
		}
		dev = e
		if (dev.Kind == device.KindAnalyser) != t.Analyser {
			return &dev, nil, reject(ClassTopic, "topic", "device %s is of kind %s; it publishes under %s", dev.ID, dev.Kind, dev.TopicPrefix())
		}
	}
	if dev.Disabled {
		return &dev, nil, reject(ClassDisabled, "topic", "device %s is disabled", dev.ID)
	}
	if len(m.payload) > in.cfg.MaxPayload {
		return &dev, nil, reject(ClassTooLarge, "", "payload is %d bytes; the limit is %d (mqtt.max_payload)", len(m.payload), in.cfg.MaxPayload)
	}
	var (
		events []*event.Event
		status device.State
	)
	switch t.Type {
	case MsgTelemetry:
		tel, rej := DecodeTelemetry(m.payload)
		if rej != nil {
			return &dev, nil, rej
		}
		events = []*event.Event{in.telemetryEvent(dev, tel, m.received)}
	case MsgEvent:
		de, rej := DecodeEvent(m.payload)
		if rej != nil {
			return &dev, nil, rej
		}
		events = []*event.Event{in.deviceEvent(dev, de, m.received)}
	case MsgDetections:
		dets, rej := DecodeDetections(m.payload)
		if rej != nil {
			return &dev, nil, rej
		}
		for _, d := range dets {
			events = append(events, in.detectionEvent(dev, d, m.received))
		}
	case MsgStatus:
		st, rej := DecodeStatus(m.payload)
		if rej != nil {
			return &dev, nil, rej
		}
		status = device.StateOffline
		if st.Online {
			status = device.StateOnline
		}
		via := "status"
		if m.will {
			via = "will"
		}
		if to, changed := in.live.seen(dev.ID, m.received, status); changed {
			ev := in.stateEvent(dev, to, via, m.received)
			if st.Reason != "" {
				ev.SetString("reason", st.Reason)
			}
			in.stamp(ev, st.TS, m.received)
			return &dev, []*event.Event{ev}, nil
		}
		return &dev, nil, nil
	}
	if to, changed := in.live.seen(dev.ID, m.received, ""); changed {
		events = append([]*event.Event{in.stateEvent(dev, to, "message", m.received)}, events...)
	}
	return &dev, events, nil
}

// stateEvent is device.online or device.offline.
func (in *Intake) stateEvent(dev device.Entry, to device.State, via string, now time.Time) *event.Event {
	typ := event.TypeDeviceOnline
	if to == device.StateOffline {
		typ = event.TypeDeviceOffline
	}
	ev := dev.Template(dev.SourceKind(), typ)
	if to == device.StateOffline {
		ev.Severity = event.SeverityWarning
	}
	ev.SetString("via", via)
	ev.Time = event.NewTime(now)
	return ev
}

func (in *Intake) telemetryEvent(dev device.Entry, t *Telemetry, now time.Time) *event.Event {
	ev := dev.Template(dev.SourceKind(), "telemetry")
	for k, v := range t.Readings {
		ev.Attributes[k] = v
	}
	in.stamp(ev, t.TS, now)
	return ev
}

// Default severities of device events by type; others are warnings.
var eventSeverity = map[string]event.Severity{
	"alarm_button.pressed": event.SeverityCritical,
	"smoke.alarm":          event.SeverityCritical,
	"fire.alarm":           event.SeverityCritical,
	"gas.alarm":            event.SeverityCritical,
	"gas.leak":             event.SeverityCritical,
	"water_level.high":     event.SeverityMajor,
	"water_level.alarm":    event.SeverityMajor,
	"door.forced":          event.SeverityMajor,
	"gate.forced":          event.SeverityMajor,
	"tamper":               event.SeverityMajor,
	"battery.low":          event.SeverityMinor,
	"fault":                event.SeverityMinor,
}

func (in *Intake) deviceEvent(dev device.Entry, d *DeviceEvent, now time.Time) *event.Event {
	ev := dev.Template(dev.SourceKind(), "sensor."+d.Type)
	ev.Severity = event.SeverityWarning
	if s, ok := eventSeverity[d.Type]; ok {
		ev.Severity = s
	}
	if d.Severity != "" {
		ev.Severity = d.Severity
	}
	for k, v := range d.Attributes {
		ev.Attributes[k] = v
	}
	in.stamp(ev, d.TS, now)
	return ev
}

func (in *Intake) detectionEvent(dev device.Entry, d Detection, now time.Time) *event.Event {
	ev := dev.Template(dev.SourceKind(), "detection."+d.Class)
	if region, grid, lat, lon, ok := in.cameras(d.Camera); ok && region != "" {
		own := ev.Location
		ev.Location = event.Location{Region: region, Grid: grid, Lat: lat, Lon: lon}
		var ee *event.Error
		if err := ev.Validate(); errors.As(err, &ee) && strings.HasPrefix(ee.Field, "location") {
			// A camera place the event schema refuses (a region in
			// capitals): the analyser's own place is the next best.
			ev.Location = own
		}
	}
	ev.SetString("camera", d.Camera)
	ev.SetString("class", d.Class)
	ev.SetNumber("confidence", d.Confidence)
	if d.BBox != nil {
		ev.SetNumber("bbox_x", d.BBox[0])
		ev.SetNumber("bbox_y", d.BBox[1])
		ev.SetNumber("bbox_w", d.BBox[2])
		ev.SetNumber("bbox_h", d.BBox[3])
	}
	if d.Snapshot != "" {
		ev.Evidence = []event.Evidence{{Kind: event.EvidenceSnapshot, Ref: d.Snapshot}}
	}
	in.stamp(ev, d.TS, now)
	return ev
}

// stamp sets the event's time from the device's timestamp, or the arrival
// time when there is none or it is implausible (a device clock reset to
// 2000 must not hide a fire alarm among old events).
func (in *Intake) stamp(ev *event.Event, ts *time.Time, now time.Time) {
	switch {
	case ts == nil:
		ev.Time = event.NewTime(now)
	case ts.Before(now.Add(-maxPast)) || ts.After(now.Add(maxFuture)):
		in.m.clockSkew.Inc()
		ev.Time = event.NewTime(now)
		ev.SetBool("clock_skew", true)
		ev.SetString("device_time", ts.UTC().Format(time.RFC3339Nano))
	default:
		ev.Time = event.NewTime(*ts)
	}
}

// encode makes ev a bus message.
func encode(ev *event.Event, received time.Time) (bus.Message, error) {
	b, err := ev.Encode()
	if err != nil {
		return bus.Message{}, err
	}
	return bus.Message{Topic: bus.TopicEvents, Key: ev.PartitionKey(), Value: b, Time: received}, nil
}

// deadLetter is the dead-letter record of a refused payload: its raw bytes
// (at most twice max_payload) with the reason and the source.
func (in *Intake) deadLetter(key string, payload []byte, rej *Rejection, source string, received time.Time) bus.Message {
	in.m.rejected.WithLabelValues(rej.Class).Inc()
	in.rejects.report("message refused and dead-lettered", "source", source, "reason", rej.Error())
	limit := 2 * in.cfg.MaxPayload
	reason := rej.Error()
	if len(payload) > limit {
		reason += fmt.Sprintf(" (dead letter keeps the first %d bytes)", limit)
		payload = payload[:limit]
	}
	return bus.Message{
		Topic: bus.TopicDeadLetter,
		Key:   key,
		Value: append([]byte(nil), payload...),
		Headers: map[string]string{
			bus.HeaderReason: reason,
			bus.HeaderSource: source,
		},
		Time: received,
	}
}

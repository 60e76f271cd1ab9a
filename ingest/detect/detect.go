package detect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/configs/conf"
	"sharpeye/ingest/blob"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/event"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/stream"
)

// Meta is what events say about the camera besides its id: its name and
// its place.
type Meta struct {
	// Name is the camera's human-readable name, such as "新庄村口东".
	Name string
	// Region is the administrative path, such as
	// "huangpi/wangjiahe/xinzhuang"; Grid the grid within it. Without a
	// region, events carry no location (the event schema requires one).
	Region, Grid string
	// Lat and Lon are WGS 84 degrees; both or neither.
	Lat, Lon *float64
	// Tags are copied to every event.
	Tags []string
}

// Manager holds what a node's detectors share: the configuration, the
// keyframe decoders, the snapshot encoders' limit, the event producer, the
// blob store and the metrics. Run it once, and run one Detector per camera
// made by NewDetector.
type Manager struct {
	cfg     Config
	loc     *time.Location
	out     bus.Producer
	blobs   *blob.Store
	log     *slog.Logger
	ffmpeg  string // resolved path; "" when not found
	dec     *decoders
	snapSem chan struct{}

	stateDir string // "": detector state is not kept across restarts

	mu   sync.Mutex
	cams map[*Detector]struct{}

	metrics *metrics
}

// NewManager checks cfg and looks for ffmpeg; it starts nothing. blobs
// may be nil (events then carry no snapshot); reg may be nil.
func NewManager(cfg Config, out bus.Producer, blobs *blob.Store, reg prometheus.Registerer, log *slog.Logger) (*Manager, error) {
	if err := conf.Load(&cfg, nil, "", nil); err != nil {
		return nil, fmt.Errorf("detectors configuration: %w", err)
	}
	if out == nil {
		return nil, errors.New("detectors: no event producer")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	loc, err := loadLocation(cfg.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("detectors: time_zone: %w", err)
	}
	m := &Manager{
		cfg:     cfg,
		loc:     loc,
		out:     out,
		blobs:   blobs,
		log:     log.With("component", "detect"),
		snapSem: make(chan struct{}, cfg.Snapshot.MaxConcurrent),
		cams:    map[*Detector]struct{}{},
	}
	if path, err := exec.LookPath(cfg.FFmpeg); err != nil {
		m.log.Warn("ffmpeg not found: video quality checks and snapshots are off; health and motion detection keep working",
			"ffmpeg", cfg.FFmpeg, "err", err)
	} else {
		m.ffmpeg = path
		n := cfg.Decoders
		if n == 0 {
			n = min(4, max(1, runtime.NumCPU()/2))
		}
		m.dec = newDecoders(path, n, m.log)
	}
	if m.metrics, err = newMetrics(m, reg); err != nil {
		return nil, err
	}
	return m, nil
}

// KeepState keeps each camera's detector state (raised conditions,
// baselines) in dir, so that a restart neither raises an ongoing
// condition again nor relearns the baselines. Call it before NewDetector.
func (m *Manager) KeepState(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("detector state: %w", err)
	}
	m.stateDir = dir
	return nil
}

// FFmpegAvailable reports whether ffmpeg was found: without it there are
// no quality checks and no snapshots.
func (m *Manager) FFmpegAvailable() bool { return m.ffmpeg != "" }

// Run runs the keyframe decoders until ctx ends and every ffmpeg process
// is reaped. Detectors work without it, but decode nothing.
func (m *Manager) Run(ctx context.Context) error {
	if m.dec == nil {
		<-ctx.Done()
		return nil
	}
	m.dec.run(ctx)
	return nil
}

// NewDetector returns the detector of one camera, reading its hub and, if
// status is not nil, its puller's status (without it, health is judged
// from the hub alone, without packet loss). It starts nothing.
func (m *Manager) NewDetector(cameraID string, meta Meta, hub *stream.Hub, status func() rtsp.Status) (*Detector, error) {
	if cameraID == "" || hub == nil {
		return nil, errors.New("detector: camera id and hub are required")
	}
	set := m.cfg.For(cameraID)
	sched, err := newSchedules(set.Motion.Schedules, m.loc)
	if err != nil {
		return nil, fmt.Errorf("detector %s: motion schedules: %w", cameraID, err)
	}
	d := &Detector{
		m:       m,
		id:      cameraID,
		meta:    meta,
		hub:     hub,
		status:  status,
		set:     set,
		sched:   sched,
		log:     m.log.With("camera", cameraID),
		tick:    time.Second,
		queue:   256,
		results: make(chan analysed, 4),
		pending: make(chan finding, 64),
		snaps:   newSnapshots(),
		keyCh:   make(chan struct{}),
		active:  map[string]time.Time{},
		open:    map[string]event.ID{},
		state:   newStateFile(m.stateDir, cameraID),
	}
	d.location()
	return d, nil
}

// location validates the camera's place against the event schema once, so
// that one bad field (a region in capitals, a bad tag) costs the events
// that field only, with one warning.
func (d *Detector) location() {
	probe := event.New(event.SourceCamera, d.id, TypeOffline)
	probe.Source.Name = d.meta.Name
	if probe.Validate() != nil {
		d.log.Warn("camera name not usable in events, left out", "name", d.meta.Name)
		d.meta.Name = ""
	}
	probe.Source.Name = ""
	if d.meta.Region != "" {
		probe.Location = event.Location{Region: d.meta.Region, Grid: d.meta.Grid, Lat: d.meta.Lat, Lon: d.meta.Lon}
		if err := probe.Validate(); err != nil {
			d.log.Warn("camera location not usable in events, left out", "err", err)
			probe.Location = event.Location{}
		}
	}
	d.loc = probe.Location
	for _, tag := range d.meta.Tags {
		probe.Tags = []string{tag}
		if len(d.tags) < event.MaxTags && probe.Validate() == nil {
			d.tags = append(d.tags, tag)
		}
	}
}

// Detector watches one camera: health from the puller's status, motion
// from the sizes of compressed frames, picture quality from decoded
// keyframes; it publishes events, each with a snapshot.
type Detector struct {
	m      *Manager
	id     string
	meta   Meta
	loc    event.Location
	tags   []string
	hub    *stream.Hub
	status func() rtsp.Status
	set    Settings
	sched  schedules
	log    *slog.Logger
	tick   time.Duration // health tick
	queue  int           // hub subscription queue

	// Owned by Run's loop.
	health       *health
	motion       *motion
	quality      *quality
	epoch        uint32
	codec        stream.Codec
	lastReceived time.Time // of the last unit handled
	lastWall     time.Time // when it was handled
	replay       bool      // resubscribed: skip units already seen
	lastSubmit   time.Time
	rates        hubRates

	inflight atomic.Int32 // keyframes at the decoders
	results  chan analysed
	pending  chan finding // to the publisher

	keyMu sync.Mutex
	key   keyframe
	keyCh chan struct{} // closed and replaced at each new keyframe
	snaps *snapshots

	stateMu sync.Mutex
	active  map[string]time.Time // raised conditions (event types) and since when

	open map[string]event.ID // publisher's: the raised events not yet ended

	state     *stateFile // kept across restarts
	lastSaved time.Time  // loop's: when the baselines were last written

	started                           atomic.Bool
	units, analysedN, dropped, resubs atomic.Uint64
	// checked is when the conditions were last checked (Unix nanoseconds).
	checked      atomic.Int64
	queued, done atomic.Uint64 // findings given to the publisher, and those it is through with
	lastErrLog   time.Time     // publisher's
}

// analysed is a decoded keyframe back from the decoders (frame nil: it
// failed).
type analysed struct {
	unit  *stream.Unit
	frame []byte
}

// ID is the camera's id.
func (d *Detector) ID() string { return d.id }

// Checked is when the detector last checked the camera's conditions (zero
// before the first check): a test waits for it to pass a time instead of
// sleeping and hoping the checks ran.
func (d *Detector) Checked() time.Time {
	if n := d.checked.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Units is how many access units of the stream the detector has handled.
func (d *Detector) Units() uint64 { return d.units.Load() }

// Settings returns the camera's settings, overrides applied.
func (d *Detector) Settings() Settings { return d.set }

// Active returns the conditions currently raised, as the event types that
// raised them (camera.offline, video.frozen, motion...), sorted.
func (d *Detector) Active() []string {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	return slices.Sorted(maps.Keys(d.active))
}

// Run watches the camera until ctx ends or, when it follows the stream
// (motion or quality on), its hub is closed (the camera was removed). It
// owns and waits for the goroutine it starts (the event publisher); events
// not yet published when it returns are dropped. Run may be called once.
func (d *Detector) Run(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("detector: Run called twice")
	}
	now := time.Now()
	d.health = newHealth(d.set.Health, now)
	d.motion = newMotion(d.set.Motion, d.sched)
	d.quality = newQuality(d.set.Quality)
	st, err := d.state.load()
	if err != nil {
		d.m.metrics.stateErrors.Inc()
		d.log.Warn("detector state not read: ongoing conditions will be raised again", "err", err)
	}
	d.restore(st, now)
	d.lastSaved = now

	d.m.mu.Lock()
	d.m.cams[d] = struct{}{}
	d.m.mu.Unlock()
	defer func() {
		d.m.mu.Lock()
		delete(d.m.cams, d)
		d.m.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { d.publish(ctx) })
	err = d.loop(ctx)
	cancel()
	wg.Wait()
	d.saveBaselines()
	return err
}

func (d *Detector) needUnits() bool {
	return d.set.Motion.Enabled || d.set.Quality.Enabled && d.m.dec != nil
}

func (d *Detector) loop(ctx context.Context) error {
	ticker := time.NewTicker(d.tick)
	defer ticker.Stop()
	var sub *stream.Sub
	var units <-chan *stream.Unit
	defer func() {
		if sub != nil {
			sub.Close()
		}
	}()
	for {
		if sub == nil && d.needUnits() {
			// Passively, on every camera: a detector keeps no on-demand
			// camera pulled, and counts as nobody watching (the GOP budget
			// favours the cameras people watch; the console shows them).
			s, err := d.hub.SubscribePassive(d.queue)
			if err != nil {
				return nil // the camera was removed
			}
			sub, units = s, s.Units()
		}
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-units:
			if !ok {
				err := sub.Err()
				sub, units = nil, nil
				if errors.Is(err, stream.ErrHubClosed) {
					return nil
				}
				// Too slow (a stall of the machine): take the stream again
				// from the cached keyframe.
				d.resubs.Add(1)
				d.replay = true
				continue
			}
			d.unit(u)
		case r := <-d.results:
			d.analysed(r)
		case now := <-ticker.C:
			d.onTick(now)
			d.checked.Store(now.UnixNano())
		}
	}
}

// unit handles one access unit.
func (d *Detector) unit(u *stream.Unit) {
	if u.Epoch != d.epoch {
		if d.epoch != 0 {
			d.emit(d.motion.restart(u.Received))
			d.quality.restart()
		}
		d.epoch, d.replay = u.Epoch, false
		d.lastReceived = time.Time{}
		d.lastSubmit = time.Time{}
		if t, ok := d.hub.Track(); ok {
			d.codec = t.Codec
		}
	}
	if d.replay {
		if !u.Received.After(d.lastReceived) {
			return // seen before the resubscription
		}
		d.replay = false
	}
	d.lastReceived, d.lastWall = u.Received, time.Now()
	d.units.Add(1)
	if u.Key {
		d.setKey(keyframe{unit: u, codec: d.codec})
		d.submit(u)
	}
	if d.set.Motion.Enabled {
		d.emit(d.motion.unit(u.Received, u.Size, u.Key))
	}
}

// submit sends a keyframe to the decoders when the quality checks want
// one: at most one per interval (less a tenth, for the jitter of keyframes
// that come exactly at the interval) and two at a time per camera.
func (d *Detector) submit(u *stream.Unit) {
	if !d.set.Quality.Enabled || d.m.dec == nil || d.inflight.Load() >= 2 {
		return
	}
	since := u.Received.Sub(d.lastSubmit)
	if !d.lastSubmit.IsZero() && since >= 0 && since < d.set.Quality.Interval.D()*9/10 {
		return
	}
	nalus, ok := decodable(d.codec, u.NALUs)
	if !ok {
		d.m.metrics.undecodable.Inc()
		return
	}
	d.inflight.Add(1)
	ok = d.m.dec.submit(&decodeJob{codec: d.codec, nalus: nalus, done: func(frame []byte) {
		d.inflight.Add(-1)
		select {
		case d.results <- analysed{u, frame}:
		default:
		}
	}})
	if !ok {
		d.inflight.Add(-1)
		return
	}
	d.lastSubmit = u.Received
}

// analysed handles a decoded keyframe.
func (d *Detector) analysed(r analysed) {
	if r.frame == nil || r.unit.Epoch != d.epoch {
		return
	}
	d.analysedN.Add(1)
	d.emit(d.quality.frame(r.unit.Received, r.unit, r.frame))
}

// streamNow is the time on the units' clock: the last unit's arrival plus
// the wall time since it was handled. In production the two clocks are
// one; in tests units carry times of their own.
func (d *Detector) streamNow() time.Time {
	if d.lastReceived.IsZero() {
		return time.Now()
	}
	return d.lastReceived.Add(time.Since(d.lastWall))
}

func (d *Detector) onTick(now time.Time) {
	d.snaps.expire(max(d.m.cfg.Snapshot.MinInterval.D(), time.Second))
	if now.Sub(d.lastSaved) >= stateEvery {
		d.lastSaved = now
		d.saveBaselines()
	}
	if d.set.Motion.Enabled {
		d.emit(d.motion.tick(d.streamNow()))
	}
	if !d.set.Health.Enabled {
		return
	}
	in := healthInput{now: now, expected: true}
	if d.status != nil {
		st := d.status()
		in.expected = st.State != rtsp.StateIdle && st.State != rtsp.StateDisabled
		in.lastPacket = st.LastPacket
		in.state, in.reason = string(st.State), st.Reason
		in.fps, in.bitrate, in.haveRates = st.FrameRate, st.Bitrate, st.State == rtsp.StateOnline
		in.received, in.lost, in.haveLoss = st.PacketsReceived, st.PacketsLost, true
	} else {
		st := d.hub.Stats()
		in.lastPacket = st.LastUnit
		in.fps, in.bitrate = d.rates.update(now, st)
		_, in.haveRates = d.hub.Track()
	}
	d.emit(d.health.step(in))
}

// hubRates estimates frame rate and bitrate from the hub's counters when
// there is no puller status.
type hubRates struct {
	at           time.Time
	units, bytes uint64
	fps, bitrate float64
}

func (r *hubRates) update(now time.Time, st stream.Stats) (float64, float64) {
	if !r.at.IsZero() && now.After(r.at) && st.Units >= r.units {
		dt := now.Sub(r.at).Seconds()
		a := 1 - math.Exp(-dt/5) // about the puller's 5 s window
		r.fps += a * (float64(st.Units-r.units)/dt - r.fps)
		r.bitrate += a * (8*float64(st.Bytes-r.bytes)/dt - r.bitrate)
	}
	r.at, r.units, r.bytes = now, st.Units, st.Bytes
	return r.fps, r.bitrate
}

// ends maps an event type that ends a condition to the type that raised it.
func ends(typ string) (string, bool) {
	switch typ {
	case TypeOnline:
		return TypeOffline, true
	case TypeMotionEnd:
		return TypeMotion, true
	}
	return strings.CutSuffix(typ, ClearedSuffix)
}

// emit records findings as the camera's state and queues them for the
// publisher; it never blocks.
func (d *Detector) emit(fs []finding) {
	for _, f := range fs {
		d.stateMu.Lock()
		if base, ok := ends(f.typ); ok {
			delete(d.active, base)
		} else {
			d.active[f.typ] = f.at
		}
		d.stateMu.Unlock()
		d.m.metrics.found.WithLabelValues(f.typ).Inc()
		select {
		case d.pending <- f:
			d.queued.Add(1)
		default:
			// The bus has been blocking for a long while (back-pressure):
			// count and drop rather than stall the detectors.
			d.dropped.Add(1)
			d.m.metrics.dropped.Inc()
		}
	}
}

// setKey records the latest keyframe and wakes those waiting for one.
func (d *Detector) setKey(k keyframe) {
	d.keyMu.Lock()
	d.key = k
	close(d.keyCh)
	d.keyCh = make(chan struct{})
	d.keyMu.Unlock()
}

func (d *Detector) latestKey() (keyframe, <-chan struct{}) {
	d.keyMu.Lock()
	defer d.keyMu.Unlock()
	return d.key, d.keyCh
}

// keyFromHub takes the hub's cached keyframe, for a detector that does not
// follow the stream itself (motion and quality off) or has not yet. It
// does not subscribe: a snapshot neither wakes an on-demand camera nor
// counts as watching it.
func (d *Detector) keyFromHub() keyframe {
	t, ok := d.hub.Track()
	if !ok {
		return keyframe{}
	}
	if u, ok := d.hub.Keyframe(); ok {
		return keyframe{unit: u, codec: t.Codec}
	}
	return keyframe{}
}

// Snapshot returns a JPEG of the camera's latest keyframe, at the camera's
// resolution, for GET /api/v1/cameras/{id}/snapshot. A camera encodes at
// most one snapshot per keyframe and per snapshot.min_interval: requests
// within the interval get the last one (at most that old, plus a group of
// pictures). It fails with ErrNoPicture before the first keyframe and
// ErrNoFFmpeg without ffmpeg.
func (d *Detector) Snapshot(ctx context.Context) ([]byte, error) {
	if d.m.ffmpeg == "" {
		return nil, ErrNoFFmpeg
	}
	k, _ := d.latestKey()
	if k.unit == nil {
		if k = d.keyFromHub(); k.unit == nil {
			return nil, ErrNoPicture
		}
	}
	ctx, cancel := context.WithTimeout(ctx, d.m.cfg.Snapshot.Timeout.D())
	defer cancel()
	s, err := d.snaps.get(ctx, k, d.m.cfg.Snapshot.MinInterval.D(), d.encode, nil)
	if err != nil {
		d.m.metrics.snapshotErrors.Inc()
		return nil, err
	}
	return bytes.Clone(s.jpeg), nil
}

func (d *Detector) encode(ctx context.Context, k keyframe) ([]byte, error) {
	d.m.metrics.snapshots.Inc()
	return encodeJPEG(ctx, d.m.ffmpeg, d.m.cfg.Snapshot.Quality, d.m.snapSem, k)
}

func (d *Detector) put(ctx context.Context, jpeg []byte) (string, string, error) {
	return d.m.blobs.PutOwned(ctx, BlobOwner(d.id), "image/jpeg", jpeg)
}

// BlobOwner is the owner the snapshots of camera id are stored under in
// the blob store, for GET /api/v1/cameras/{id}/snapshots/{sha256}.
func BlobOwner(id string) string { return "camera/" + id }

// evidence returns the snapshot for a finding: of the keyframe it was
// made on, or of the latest (for motion, of one received since it
// began, waited for up to motion_wait).
func (d *Detector) evidence(ctx context.Context, f finding) (event.Evidence, error) {
	cfg := d.m.cfg.Snapshot
	k, changed := d.latestKey()
	if f.key != nil {
		k.unit = f.key
	} else if f.fresh && cfg.MotionWait > 0 {
		wait := time.NewTimer(cfg.MotionWait.D())
		defer wait.Stop()
	waiting:
		for k.unit == nil || k.unit.Received.Before(f.at) {
			select {
			case <-changed:
				k, changed = d.latestKey()
			case <-wait.C:
				break waiting
			case <-ctx.Done():
				return event.Evidence{}, ctx.Err()
			}
		}
	}
	if k.unit == nil {
		if k = d.keyFromHub(); k.unit == nil {
			return event.Evidence{}, ErrNoPicture
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout.D())
	defer cancel()
	s, err := d.snaps.get(ctx, k, cfg.MinInterval.D(), d.encode, d.put)
	if err != nil {
		return event.Evidence{}, err
	}
	return s.evidence(), nil
}

// build makes the event of a finding. It runs on the publisher, in order.
func (d *Detector) build(f finding) *event.Event {
	ev := event.New(event.SourceCamera, d.id, f.typ)
	ev.Source.Name = d.meta.Name
	if !f.at.IsZero() {
		ev.Time = event.NewTime(f.at)
	}
	ev.Severity = f.severity
	ev.Location = d.loc
	ev.Tags = d.tags
	for k, v := range f.attrs {
		ev.Attributes = ensure(ev.Attributes)
		ev.Attributes[k] = v
	}
	if base, ok := ends(f.typ); ok {
		if id, ok := d.open[base]; ok {
			ev.Evidence = append(ev.Evidence, event.Evidence{Kind: event.EvidenceEvent, Ref: id.String()})
			delete(d.open, base)
		}
	} else {
		d.open[f.typ] = ev.ID
	}
	return ev
}

func ensure(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// publish turns findings into events, with their snapshots, and publishes
// them in order until ctx ends.
func (d *Detector) publish(ctx context.Context) {
	snapshots := d.m.cfg.Snapshot.Enabled && d.m.ffmpeg != "" && d.m.blobs != nil
	for {
		var f finding
		select {
		case <-ctx.Done():
			return
		case f = <-d.pending:
		}
		d.publishOne(ctx, f, snapshots)
		d.done.Add(1)
		if ctx.Err() != nil {
			return
		}
	}
}

// publishOne publishes the event of one finding.
func (d *Detector) publishOne(ctx context.Context, f finding, snapshots bool) {
	ev := d.build(f)
	if snapshots {
		e, err := d.evidence(ctx, f)
		switch {
		case err == nil:
			ev.Evidence = append(ev.Evidence, e)
		case ctx.Err() != nil:
			return
		default:
			d.m.metrics.snapshotErrors.Inc()
			d.logError("event without snapshot", err)
		}
	}
	data, err := ev.Encode()
	if err != nil {
		d.m.metrics.dropped.Inc()
		d.logError("event not encodable, dropped", err)
		return
	}
	msg := bus.Message{Topic: bus.TopicEvents, Key: ev.PartitionKey(), Value: data, Time: time.Now()}
	if err := d.m.out.Publish(ctx, msg); err != nil {
		if ctx.Err() == nil {
			d.m.metrics.dropped.Inc()
			d.logError("publish event", err)
		}
		return
	}
	d.m.metrics.published.WithLabelValues(f.typ).Inc()
	if base, ok := ends(f.typ); ok {
		err = d.state.cleared(base)
	} else {
		err = d.state.raised(f.typ, f.at, ev.ID)
	}
	if err != nil {
		d.m.metrics.stateErrors.Inc()
		d.logError("detector state not saved", err)
	}
}

// logError logs at most one error a minute per camera.
func (d *Detector) logError(msg string, err error) {
	if time.Since(d.lastErrLog) < time.Minute {
		return
	}
	d.lastErrLog = time.Now()
	d.log.Warn(msg, "err", err)
}

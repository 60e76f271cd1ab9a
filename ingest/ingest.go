// Package ingest is the ingest role: it keeps every camera of the registry
// pulled over RTSP (exactly one session per camera, however many consumers
// it has), holds each camera's stream hub, re-serves the cameras over RTSP
// and answers the camera API. With detectors enabled it publishes their
// events and, every ingest.health_report, one camera.health sample per
// camera (online seconds, bitrate, frame rate, RTP loss, quality faults:
// see event.TypeCameraHealth for the attributes).
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
	"sharpeye/ingest/blob"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/detect"
	"sharpeye/ingest/rtsp"
	"sharpeye/ingest/stream"
)

// Config is the ingest section of the configuration.
type Config struct {
	Pull       rtsp.PullConfig  `yaml:"pull"`
	RTSPServer rtsp.ServeConfig `yaml:"rtsp_server"`
	// GOPMaxUnits and GOPMaxBytes bound each camera's cached group of
	// pictures (instant start for new viewers).
	GOPMaxUnits int `yaml:"gop_max_units"`
	GOPMaxBytes int `yaml:"gop_max_bytes"`
	// GOPTotalBytes bounds the cached GOPs of all cameras together; the
	// cameras watched most recently keep theirs (see stream.GOPBudget).
	// 0: no bound.
	GOPTotalBytes int64 `yaml:"gop_total_bytes"`
	// RegistryPoll is how often cameras changed on other nodes are read.
	RegistryPoll conf.Duration `yaml:"registry_poll"`
	// Detect configures the video detectors run on every camera.
	Detect detect.Config `yaml:"detect"`
	// Blobs is where snapshots are kept.
	Blobs blob.Config `yaml:"blobs"`
	// HealthReport is the window of the camera.health samples (see
	// event.TypeCameraHealth); 0 turns them off.
	HealthReport conf.Duration `yaml:"health_report"`
	// Cluster shares the cameras among several ingest nodes.
	Cluster ClusterConfig `yaml:"cluster"`
}

// Defaults returns the compiled defaults.
func Defaults() Config {
	h := stream.DefaultHubConfig()
	return Config{
		Pull:        rtsp.DefaultPullConfig(),
		RTSPServer:  rtsp.DefaultServeConfig(),
		GOPMaxUnits: h.MaxGOPUnits,
		GOPMaxBytes: h.MaxGOPBytes,
		// 64 MiB: about 130 cameras of 2 Mb/s with a keyframe every 2 s,
		// 500 of 512 kb/s sub-streams.
		GOPTotalBytes: 64 << 20,
		RegistryPoll:  conf.Duration(10 * time.Second),
		Detect:        detect.Defaults(),
		Blobs:         blob.Defaults(),
		HealthReport:  conf.Duration(time.Minute),
		Cluster:       DefaultClusterConfig(),
	}
}

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	if c.GOPMaxUnits < 1 || c.GOPMaxUnits > 10000 {
		v.Errorf("gop_max_units", "must be between 1 and 10000")
	}
	if c.GOPMaxBytes < 1<<16 || c.GOPMaxBytes > 1<<30 {
		v.Errorf("gop_max_bytes", "must be between 65536 and 1073741824")
	}
	if problem := CheckGOPTotal(c.GOPTotalBytes); problem != "" {
		v.Errorf("gop_total_bytes", "%s", problem)
	}
	if c.RegistryPoll.D() < time.Second {
		v.Errorf("registry_poll", "must be at least 1s")
	}
	if d := c.HealthReport.D(); d != 0 && (d < 10*time.Second || d > time.Hour) {
		v.Errorf("health_report", "must be 0s (off) or between 10s and 1h")
	}
}

// CheckGOPTotal says what is wrong with n as ingest.gop_total_bytes, ""
// if nothing.
func CheckGOPTotal(n int64) string {
	if n != 0 && (n < 1<<20 || n > 1<<40) {
		return "must be 0 (no bound) or between 1048576 and 1099511627776"
	}
	return ""
}

// Ingest is the ingest role.
type Ingest struct {
	cfg  Config
	reg  *camera.Registry
	db   *casedb.DB
	rtsp *rtsp.Server
	log  *slog.Logger

	mu   sync.Mutex
	cams map[string]*running
	wg   sync.WaitGroup
	// gops is shared by the cameras' hubs.
	gops *stream.GOPBudget

	// detect, blobs and out are set by EnableDetectors.
	detect *detect.Manager
	blobs  *blob.Store
	out    bus.Producer

	// upstream, set by PullFrom, is where the cameras are pulled from
	// instead of from themselves.
	upstream *rtsp.Upstream
	// cluster, set by JoinCluster or FollowCluster, decides which cameras
	// this node pulls itself and where it pulls the others from.
	cluster *cluster

	health *healthMetrics
}

// GOPCache is what the cameras' cached groups of pictures hold now (bytes,
// cameras) and their bound, ingest.gop_total_bytes (0: none).
func (in *Ingest) GOPCache() (bytes int64, cameras int, limit int64) {
	bytes, cameras = in.gops.Usage()
	return bytes, cameras, in.gops.Limit()
}

// running is one camera being pulled.
type running struct {
	entry   camera.Entry
	source  string // where it is pulled from: see pullFrom
	started time.Time
	hub     *stream.Hub
	puller  *rtsp.Puller
	det     *detect.Detector // nil when detectors are off for the camera
	cancel  context.CancelFunc
	done    chan struct{}
}

// New builds the role from the configured cameras; db keeps the cameras
// added through the API (nil: configuration only). authz checks RTSP
// readers of the re-serve.
func New(cfg Config, cameras []camera.Camera, db *casedb.DB, authz rtsp.Authorizer, reg prometheus.Registerer, log *slog.Logger) *Ingest {
	in := &Ingest{
		cfg:  cfg,
		reg:  camera.NewRegistry(cameras, db),
		db:   db,
		log:  log,
		cams: map[string]*running{},
		gops: stream.NewGOPBudget(cfg.GOPTotalBytes),
	}
	if cfg.RTSPServer.Listen != "" {
		in.rtsp = rtsp.NewServer(cfg.RTSPServer, in, authz, log.With("component", "rtsp-server"))
	}
	reg.MustRegister(&collector{in: in})
	in.health = newHealthMetrics(reg)
	return in
}

// EnableDetectors runs the video detectors on every camera (on an
// on-demand camera they watch passively, while someone else has it
// pulled, and never keep it pulled themselves), publishing
// their events and the camera.health samples to out and keeping snapshots
// and the detectors' state under dataDir. Call it before Start.
func (in *Ingest) EnableDetectors(out bus.Producer, dataDir string, reg prometheus.Registerer) error {
	blobs, err := blob.Open(in.cfg.Blobs, dataDir, reg, in.log.With("component", "blobs"))
	if err != nil {
		return fmt.Errorf("ingest.blobs: %w", err)
	}
	m, err := detect.NewManager(in.cfg.Detect, out, blobs, reg, in.log.With("component", "detect"))
	if err != nil {
		return fmt.Errorf("ingest.detect: %w", err)
	}
	if dataDir != "" {
		if err := m.KeepState(filepath.Join(dataDir, "detect")); err != nil {
			return fmt.Errorf("ingest.detect: %w", err)
		}
	}
	in.detect, in.blobs, in.out = m, blobs, out
	return nil
}

// Registry is the camera registry.
func (in *Ingest) Registry() *camera.Registry { return in.reg }

// Blobs is the blob store of the detectors' snapshots (nil before
// EnableDetectors).
func (in *Ingest) Blobs() *blob.Store { return in.blobs }

// RTSPAddr is the re-serve's bound address ("" when off).
func (in *Ingest) RTSPAddr() string {
	if in.rtsp == nil {
		return ""
	}
	return in.rtsp.Addr()
}

// Start reads the stored cameras and binds the RTSP re-serve.
func (in *Ingest) Start(ctx context.Context) error {
	if err := in.reg.Load(ctx); err != nil {
		return err
	}
	if in.rtsp != nil {
		if err := in.rtsp.Start(); err != nil {
			return err
		}
	}
	return nil
}

// Run pulls every camera and follows the registry until ctx ends.
func (in *Ingest) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return in.reg.Run(gctx, in.cfg.RegistryPoll.D()) })
	if in.detect != nil {
		g.Go(func() error { return in.detect.Run(gctx) })
		g.Go(func() error { return in.blobs.Run(gctx) })
	}
	if in.out != nil && in.cfg.HealthReport > 0 {
		r := newHealthReporter(in.healthSources, in.out, in.cfg.HealthReport.D(), in.health, in.log.With("component", "health-report"))
		g.Go(func() error { return r.Run(gctx) })
	}
	if in.rtsp != nil {
		g.Go(func() error { return in.rtsp.Run(gctx) })
	}
	var moved chan struct{} // nil without a cluster: never ready
	if in.cluster != nil {
		moved = in.cluster.changed
		g.Go(func() error { return in.cluster.run(gctx, in.cfg.RegistryPoll.D()) })
	}
	g.Go(func() error {
		for {
			changed := in.reg.Changed()
			in.reconcile(gctx)
			select {
			case <-gctx.Done():
				in.stopAll()
				return nil
			case <-changed:
			case <-moved:
			}
		}
	})
	return g.Wait()
}

// reconcile starts, restarts and stops pullers to match the registry
// (and, in a cluster, who owns each camera). A changed camera keeps its
// hub, so its viewers stay and see a new session.
func (in *Ingest) reconcile(ctx context.Context) {
	want := map[string]camera.Entry{}
	for _, e := range in.reg.All() {
		want[e.ID] = e
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for id, r := range in.cams {
		e, ok := want[id]
		if ok && reflect.DeepEqual(e.Camera, r.entry.Camera) && in.pullFrom(id) == r.source {
			continue
		}
		r.stop()
		if !ok {
			r.hub.Close()
			delete(in.cams, id)
			in.log.Info("camera removed", "camera", id)
			continue
		}
		in.startLocked(ctx, e, r.hub)
		in.log.Info("camera changed", "camera", id)
	}
	for id, e := range want {
		if _, ok := in.cams[id]; !ok {
			in.startLocked(ctx, e, stream.NewHub(id, stream.HubConfig{MaxGOPUnits: in.cfg.GOPMaxUnits, MaxGOPBytes: in.cfg.GOPMaxBytes, Budget: in.gops}))
		}
	}
}

func (in *Ingest) startLocked(ctx context.Context, e camera.Entry, hub *stream.Hub) {
	source := in.pullFrom(e.ID)
	p := in.newPuller(e.Camera, hub, source)
	rctx, cancel := context.WithCancel(ctx)
	r := &running{entry: e, source: source, started: time.Now(), hub: hub, puller: p, cancel: cancel, done: make(chan struct{})}
	in.cams[e.ID] = r
	if e.Disabled || source == pullNowhere {
		close(r.done)
		return
	}
	if in.detect != nil && source == pullDirect {
		meta := detect.Meta{Name: e.Name, Region: e.Region, Grid: e.Grid, Lat: e.Lat, Lon: e.Lon, Tags: e.Tags}
		d, err := in.detect.NewDetector(e.ID, meta, hub, p.Status)
		if err != nil {
			in.log.Warn("camera runs without detectors", "camera", e.ID, "err", err)
		} else {
			r.det = d
		}
	}
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		defer close(r.done)
		if r.det == nil {
			p.Run(rctx)
			return
		}
		var g errgroup.Group
		g.Go(func() error { return p.Run(rctx) })
		g.Go(func() error { return r.det.Run(rctx) })
		g.Wait()
	}()
}

// Snapshot returns a JPEG of the camera's current picture.
func (in *Ingest) Snapshot(ctx context.Context, id string) ([]byte, error) {
	in.mu.Lock()
	r, ok := in.cams[id]
	in.mu.Unlock()
	if !ok || r.det == nil {
		return nil, errNoDetector
	}
	return r.det.Snapshot(ctx)
}

func (r *running) stop() {
	r.cancel()
	<-r.done
}

func (in *Ingest) stopAll() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for id, r := range in.cams {
		r.stop()
		r.hub.Close()
		delete(in.cams, id)
	}
	in.wg.Wait()
}

var errNoDetector = errors.New("snapshots are off for this camera (on-demand, disabled, or detectors not enabled)")

// Lookup finds a camera's hub: for the relay and the RTSP re-serve.
func (in *Ingest) Lookup(id string) (*stream.Hub, string, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	r, ok := in.cams[id]
	if !ok || r.entry.Disabled {
		return nil, "", false
	}
	return r.hub, r.entry.Region, true
}

// CameraStatus is a camera with its state and statistics.
type CameraStatus struct {
	camera.Entry
	Status rtsp.Status  `json:"status"`
	Stream stream.Stats `json:"stream"`
	// RTSPURL is where the camera is re-served (credentials not included).
	RTSPURL string `json:"rtsp_url,omitempty"`
	// Pulled is where this node takes the camera from: "camera" (itself),
	// "node" (another node's re-serve: a relay-only node, or a cluster
	// node that does not own it) or "none" (a cluster without its owner).
	Pulled string `json:"pulled"`
	// Owner is, in a cluster, the re-serve of the ingest node last named
	// as the camera's owner ("" while none has been; it may be gone: then
	// Pulled is "none").
	Owner string `json:"owner,omitempty"`
}

// The values of CameraStatus.Pulled.
const (
	PulledCamera = "camera"
	PulledNode   = "node"
	PulledNone   = "none"
)

// Status returns one camera's record (redacted) and state. The record is
// the registry's latest; the state is its puller's (a camera just added or
// changed shows "connecting" until its new puller runs).
func (in *Ingest) Status(id string) (CameraStatus, bool) {
	e, ok := in.reg.Get(id)
	if !ok {
		return CameraStatus{}, false
	}
	e.Camera = e.Public()
	st := CameraStatus{Entry: e, Status: rtsp.Status{State: rtsp.StateConnecting}}
	in.mu.Lock()
	r, running := in.cams[id]
	in.mu.Unlock()
	// Where the running puller pulls from; until it runs, where it will
	// (asking the cluster only then).
	var source string
	if running {
		source = r.source
	} else {
		source = in.pullFrom(id)
	}
	switch source {
	case pullDirect:
		st.Pulled = PulledCamera
	case pullNowhere:
		st.Pulled = PulledNone
	default:
		st.Pulled = PulledNode
	}
	if running && r.entry.Version == e.Version && r.entry.Source == e.Source {
		st.Status, st.Stream = r.puller.Status(), r.hub.Stats()
		if r.source == pullNowhere {
			st.Status = rtsp.Status{State: rtsp.StateError, Reason: errNoOwner.Error(), Since: r.started}
		}
	}
	if in.cluster != nil {
		st.Owner = in.cluster.ownerOf(id)
	}
	if e.Disabled {
		st.Status = rtsp.Status{State: rtsp.StateDisabled}
	}
	if in.rtsp != nil {
		st.RTSPURL = fmt.Sprintf("rtsp://%s/%s", in.rtsp.Addr(), e.ID)
	}
	return st, true
}

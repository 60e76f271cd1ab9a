package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/camera"
	"sharpeye/ingest/rtsp"
)

// Several ingest nodes share the cameras through Kafka's own group
// membership: each joins the consumer group ingest.cluster.group on the
// sharpeye.cameras topic, and a camera belongs to the node assigned the
// partition its id hashes to (FNV-1a modulo the topic's partitions). No
// message is needed for that: the group's assignment is the decision, and
// a node that dies has its partitions, so its cameras, given to the others
// when its session times out. The owner pulls the camera itself and runs
// its detectors; it writes itself into the case database's camera_owners
// (with the time it was given the camera, so that an older owner's write
// never wins) and confirms it every ingest.cluster.announce. Every other
// node, ingest or relay-only, pulls the camera from the owner's RTSP
// re-serve when someone watches it there. A revoked camera is pulled on for
// ingest.cluster.handover_grace, so that a rebalance that gives it straight
// back (Kafka revokes every partition at every rebalance) does not cut it.

// ClusterConfig is ingest.cluster.
type ClusterConfig struct {
	// Enabled shares the cameras among the ingest nodes of one Kafka bus
	// and one case database.
	Enabled bool `yaml:"enabled"`
	// Group is the consumer group of the ingest nodes.
	Group string `yaml:"group"`
	// Advertise is this node's RTSP re-serve as the other nodes reach it.
	Advertise string `yaml:"advertise"`
	// Username and Password log in to the other nodes' re-serves.
	Username string      `yaml:"username"`
	Password conf.Secret `yaml:"password"`
	// Transport of the pulls from other nodes: tcp, udp or auto.
	Transport string `yaml:"transport"`
	// HandoverGrace is how long a camera whose partition was revoked is
	// still pulled here.
	HandoverGrace conf.Duration `yaml:"handover_grace"`
	// Announce is how often an owner confirms its cameras; an owner silent
	// for three times this is taken for gone.
	Announce conf.Duration `yaml:"announce"`
}

// DefaultClusterConfig is off.
func DefaultClusterConfig() ClusterConfig {
	return ClusterConfig{Group: "sharpeye-ingest", Transport: camera.TransportTCP,
		HandoverGrace: conf.Duration(5 * time.Second), Announce: conf.Duration(time.Minute)}
}

// Validate implements conf.Validator.
func (c *ClusterConfig) Validate(v *conf.V) {
	if c.Group == "" {
		v.Errorf("group", "must not be empty")
	}
	if !rtsp.ValidTransport(c.Transport) {
		v.Errorf("transport", "must be tcp, udp or auto")
	}
	if d := c.HandoverGrace.D(); d < 0 || d > 5*time.Minute {
		v.Errorf("handover_grace", "must be between 0s and 5m")
	}
	if d := c.Announce.D(); d < time.Second || d > time.Hour {
		v.Errorf("announce", "must be between 1s and 1h")
	}
	// Required on the nodes with the ingest role only (JoinCluster says
	// so): a relay-only node follows the cluster without a re-serve.
	if c.Advertise != "" {
		if problem := rtsp.CheckReserveURL(c.Advertise); problem != "" {
			v.Errorf("advertise", "%s", problem)
		}
	}
}

// errNoAdvertise refuses an ingest node in the cluster that does not say
// where the others reach its re-serve.
var errNoAdvertise = errors.New("ingest.cluster.advertise is required on a node with the ingest role in the cluster: this node's RTSP re-serve as the other nodes reach it, such as rtsp://ingest-1:8554")

// peer is the re-serve of the node at base, with this node's credentials.
func (c ClusterConfig) peer(base string) rtsp.Upstream {
	return rtsp.Upstream{URL: base, Username: c.Username, Password: c.Password, Transport: c.Transport}
}

// cluster is this node's part in sharing the cameras.
type cluster struct {
	cfg    ClusterConfig
	db     *casedb.DB
	reg    *camera.Registry
	member bus.RebalanceConsumer // nil: a node that owns nothing (relay only)
	topics bus.Partitioned
	log    *slog.Logger

	mu      sync.Mutex
	nparts  int                  // partitions of sharpeye.cameras; 0 until known
	owned   map[int]int64        // partition -> when it was given here, Unix ms
	leaving map[int]time.Time    // revoked partitions, pulled on until then
	owners  map[string]ownerInfo // the directory, by camera
	changed chan struct{}        // cap 1: the ingest role reconciles
	// failed (cap 1) hears that a pull from another node failed; the
	// directory is then read every second for hurryFor.
	failed chan struct{}

	// announcing is held while owned cameras are written to the
	// directory: Revoked waits for a write in flight.
	announcing sync.Mutex
}

// ownerInfo is a row of camera_owners, with whether its owner was still
// confirming it when the directory was read.
type ownerInfo struct {
	node string
	seen int64
	live bool
}

func newCluster(cfg ClusterConfig, db *casedb.DB, reg *camera.Registry, b bus.Bus, log *slog.Logger) (*cluster, error) {
	if db == nil {
		return nil, errors.New("ingest.cluster needs the case database, where the nodes write which of them owns each camera")
	}
	c := &cluster{cfg: cfg, db: db, reg: reg, log: log,
		owned: map[int]int64{}, leaving: map[int]time.Time{}, owners: map[string]ownerInfo{},
		changed: make(chan struct{}, 1), failed: make(chan struct{}, 1)}
	if b != nil {
		rc, ok := b.(bus.RebalanceConsumer)
		pt, ok2 := b.(bus.Partitioned)
		if !ok || !ok2 {
			return nil, fmt.Errorf("ingest.cluster: the bus (%T) cannot tell a member its partitions", b)
		}
		c.member, c.topics = rc, pt
	}
	return c, nil
}

// partitionOf is the partition of sharpeye.cameras that decides who owns
// camera id; c.mu held, nparts > 0.
func (c *cluster) partitionOf(id string) int {
	return bus.KeyPartition(id, c.nparts)
}

// source says where camera id is pulled from here (see pullFrom):
// directly when this node owns it or is handing it over, else from the
// re-serve of the node the directory names, else from nowhere yet.
func (c *cluster) source(id string, now time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nparts > 0 {
		p := c.partitionOf(id)
		if _, ok := c.owned[p]; ok {
			return pullDirect
		}
		if until, ok := c.leaving[p]; ok && now.Before(until) {
			return pullDirect
		}
	}
	o, ok := c.owners[id]
	if !ok || o.node == c.cfg.Advertise || !o.live {
		return pullNowhere
	}
	return o.node
}

// staleMs is how long, in milliseconds, an owner may go without
// confirming its cameras before it is taken for gone: three announces.
func (c *cluster) staleMs() int64 { return 3 * c.cfg.Announce.D().Milliseconds() }

// ownerOf is the node the directory names for camera id ("" none).
func (c *cluster) ownerOf(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.owners[id].node
}

// pullFailed tells the cluster that a pull from another node's re-serve
// failed: that node may be gone, and the new owner is to be found sooner
// than the next poll.
func (c *cluster) pullFailed() {
	select {
	case c.failed <- struct{}{}:
	default:
	}
}

// After a failed pull from another node the directory is read every
// hurryPoll for hurryFor, instead of every registry_poll: a hand-over
// takes the group's session timeout, then the new owner's first write.
const (
	hurryPoll = time.Second
	hurryFor  = 30 * time.Second
)

func (c *cluster) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// run takes part in the group (a member), reads the directory every poll
// and confirms the owned cameras every cfg.Announce, until ctx ends.
func (c *cluster) run(ctx context.Context, poll time.Duration) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.member != nil {
		wg.Add(2)
		go func() { defer wg.Done(); c.membership(ctx) }()
		go func() {
			defer wg.Done()
			// Every interval, and at once when a camera is added.
			t := time.NewTicker(c.cfg.Announce.D())
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				case <-c.reg.Changed():
				}
				if err := c.announce(ctx); err != nil && ctx.Err() == nil {
					c.log.Warn("confirm the cameras this node owns", "err", err)
				}
			}
		}()
	}
	var hurryUntil time.Time
	for {
		read := time.Now()
		if err := c.readDirectory(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("read the camera owners", "err", err)
		}
		next := poll
		if read.Before(hurryUntil) {
			next = min(poll, hurryPoll)
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-c.failed:
			t.Stop()
			hurryUntil = time.Now().Add(hurryFor)
			// At most one read a hurryPoll, however many pulls fail.
			if bus.SleepCtx(ctx, hurryPoll-time.Since(read)) != nil {
				return nil
			}
		}
	}
}

// membership joins the owners' group until ctx ends, rejoining after an
// error.
func (c *cluster) membership(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := c.join(ctx)
		if ctx.Err() != nil {
			return
		}
		d := bus.Backoff(attempt, time.Second, 30*time.Second)
		c.log.Warn("ingest cluster membership failed; retrying", "group", c.cfg.Group, "retry_in", d, "err", err)
		if bus.SleepCtx(ctx, d) != nil {
			return
		}
	}
}

func (c *cluster) join(ctx context.Context) error {
	n, err := c.topics.Partitions(ctx, bus.TopicCameras)
	if err != nil {
		return fmt.Errorf("partitions of %s: %w", bus.TopicCameras, err)
	}
	c.mu.Lock()
	c.nparts = n
	c.mu.Unlock()
	// Nothing is published on the topic: its partitions are only what the
	// group hands out.
	ignore := func(context.Context, []bus.Message) error { return nil }
	return c.member.ConsumeRebalance(ctx, c.cfg.Group, []string{bus.TopicCameras}, 16, time.Second, ignore,
		bus.Rebalance{Assigned: c.assigned, Revoked: c.revoked})
}

// assigned takes the partitions and writes their cameras to the directory
// before the group goes on (an error is retried by the bus).
func (c *cluster) assigned(ctx context.Context, parts []bus.TopicPartition) error {
	now := time.Now().UnixMilli()
	c.mu.Lock()
	for _, tp := range parts {
		if _, ok := c.owned[tp.Partition]; !ok && tp.Topic == bus.TopicCameras {
			c.owned[tp.Partition] = now
		}
		delete(c.leaving, tp.Partition)
	}
	c.mu.Unlock()
	c.notify()
	if err := c.announce(ctx); err != nil {
		return err
	}
	c.log.Info("ingest cluster: partitions assigned", "partitions", len(parts))
	return nil
}

// revoked gives the partitions up, after any directory write in flight;
// their cameras are pulled on for the hand-over grace.
func (c *cluster) revoked(ctx context.Context, parts []bus.TopicPartition) {
	c.announcing.Lock()
	defer c.announcing.Unlock()
	until := time.Now().Add(c.cfg.HandoverGrace.D())
	c.mu.Lock()
	for _, tp := range parts {
		if _, ok := c.owned[tp.Partition]; ok {
			delete(c.owned, tp.Partition)
			c.leaving[tp.Partition] = until
		}
	}
	c.mu.Unlock()
	time.AfterFunc(c.cfg.HandoverGrace.D(), func() {
		// The grace is over: forget the partitions whose grace it was (not
		// one revoked again since, with a later end).
		c.mu.Lock()
		for p, t := range c.leaving {
			if t.Equal(until) {
				delete(c.leaving, p)
			}
		}
		c.mu.Unlock()
		c.notify()
	})
	c.log.Info("ingest cluster: partitions revoked", "partitions", len(parts), "pulled_on_for", c.cfg.HandoverGrace.D())
}

// ownerRows is how many camera_owners rows one statement writes or
// deletes (a round trip each on PostgreSQL).
const ownerRows = 200

// announce writes this node as the owner of every camera of the owned
// partitions, confirming those it had written.
func (c *cluster) announce(ctx context.Context) error {
	c.announcing.Lock()
	defer c.announcing.Unlock()
	type row struct {
		id    string
		since int64
	}
	var rows []row
	seen := time.Now().UnixMilli()
	// gone are the directory's rows of cameras no longer in the registry
	// that this node wrote, or that nobody confirms any more.
	var gone []string
	entries := c.reg.All()
	known := make(map[string]bool, len(entries))
	c.mu.Lock()
	for _, e := range entries {
		known[e.ID] = true
		if c.nparts > 0 {
			if since, ok := c.owned[c.partitionOf(e.ID)]; ok {
				rows = append(rows, row{e.ID, since})
			}
		}
	}
	stale := c.staleMs()
	for id, o := range c.owners {
		if !known[id] && (o.node == c.cfg.Advertise || seen-o.seen > stale) {
			gone = append(gone, id)
		}
	}
	c.mu.Unlock()
	if len(rows) == 0 && len(gone) == 0 {
		return nil
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("announce owned cameras: %w", err)
	}
	defer tx.Rollback()
	for chunk := range slices.Chunk(rows, ownerRows) {
		args := make([]any, 0, 4*len(chunk)+1)
		for _, r := range chunk {
			args = append(args, r.id, c.cfg.Advertise, r.since, seen)
		}
		args = append(args, seen-stale)
		q := `INSERT INTO camera_owners (camera_id, node, since, seen) VALUES ` + casedb.Placeholders(len(chunk), 4) + `
			ON CONFLICT (camera_id) DO UPDATE SET node = excluded.node, since = excluded.since, seen = excluded.seen
			WHERE excluded.since >= camera_owners.since OR camera_owners.seen < ?`
		if _, err := tx.ExecContext(ctx, c.db.Rebind(q), args...); err != nil {
			return fmt.Errorf("announce %d cameras: %w", len(chunk), err)
		}
	}
	// A row of a camera this node no longer knows goes if this node wrote
	// it or nobody has confirmed it for three announce intervals, checked
	// again here: another node's registry may know the camera (still, or
	// again) and have confirmed it since the directory was read. (Above,
	// a row is taken over when this node's assignment is newer, or, since
	// each node stamps its own clock, when its owner stopped confirming.)
	for chunk := range slices.Chunk(gone, ownerRows) {
		args := make([]any, 0, len(chunk)+2)
		for _, id := range chunk {
			args = append(args, id)
		}
		args = append(args, c.cfg.Advertise, seen-stale)
		q := `DELETE FROM camera_owners WHERE camera_id IN ` + casedb.Placeholders(1, len(chunk)) + ` AND (node = ? OR seen < ?)`
		if _, err := tx.ExecContext(ctx, c.db.Rebind(q), args...); err != nil {
			return fmt.Errorf("forget %d deleted cameras: %w", len(chunk), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("announce owned cameras: %w", err)
	}
	return nil
}

// readDirectory loads camera_owners and has the role reconcile when an
// owner changed.
func (c *cluster) readDirectory(ctx context.Context) error {
	rows, err := c.db.Query(ctx, `SELECT camera_id, node, seen FROM camera_owners`)
	if err != nil {
		return err
	}
	defer rows.Close()
	stale, now := c.staleMs(), time.Now().UnixMilli()
	owners := map[string]ownerInfo{}
	for rows.Next() {
		var id string
		var o ownerInfo
		if err := rows.Scan(&id, &o.node, &o.seen); err != nil {
			return err
		}
		o.live = now-o.seen <= stale
		owners[id] = o
	}
	if err := rows.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	moved := !maps.EqualFunc(owners, c.owners, func(a, b ownerInfo) bool {
		return a.node == b.node && a.live == b.live
	})
	c.owners = owners
	c.mu.Unlock()
	if moved {
		c.notify()
	}
	return nil
}

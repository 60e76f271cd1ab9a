package stream

import (
	"sync"
	"sync/atomic"
	"time"
)

// HubConfig bounds a hub.
type HubConfig struct {
	// MaxGOPUnits and MaxGOPBytes bound the cached group of pictures; a
	// camera whose keyframes are further apart caches no GOP (consumers
	// then wait for the next keyframe).
	MaxGOPUnits int
	MaxGOPBytes int
	// Budget, if set, is shared by the hubs of a process and bounds their
	// cached GOPs together (see GOPBudget).
	Budget *GOPBudget
}

// DefaultHubConfig holds a GOP of up to 10 s at 30 fps or 16 MiB.
func DefaultHubConfig() HubConfig {
	return HubConfig{MaxGOPUnits: 300, MaxGOPBytes: 16 << 20}
}

// Hub is one camera's stream in the process.
type Hub struct {
	id  string
	cfg HubConfig

	mu       sync.Mutex
	track    Track
	hasTrack bool
	epoch    uint32
	gop      []*Unit
	gopBytes int
	gopValid bool
	subs     map[*Sub]struct{}
	passive  int // of subs, those that do not ask for the stream
	closed   bool
	changed  chan struct{} // closed and replaced when track or subscribers change
	rate     rateMeter     // of the current track

	// sinceKey and unitsSinceKey count what came since the last keyframe,
	// cached or not; seenKey says a keyframe of the current track has come.
	sinceKey      int64
	unitsSinceKey int
	seenKey       bool

	units, bytes, keys, slowDrops atomic.Uint64
	lastUnit                      atomic.Int64 // unix nanos

	// For the budget, which reads them without the hub's lock: consumers
	// that ask for the stream, when one last came or left (unix nanos),
	// the size of the last complete GOP (-1 when it was too large to
	// cache, 0 while unknown) and of the cached one.
	watchers    atomic.Int32
	watchedAt   atomic.Int64
	gopSize     atomic.Int64
	cachedBytes atomic.Int64
	streaming   atomic.Bool // has a track: a camera not pulled takes no share
	// gopAllowed is the budget's decision, written under the budget's lock
	// at any hub's keyframe: a hub starts caching at its own next keyframe,
	// and drops its GOP as soon as it sees it lost its share.
	gopAllowed atomic.Bool
}

// NewHub returns an empty hub for camera id.
func NewHub(id string, cfg HubConfig) *Hub {
	h := &Hub{id: id, cfg: cfg, subs: map[*Sub]struct{}{}, changed: make(chan struct{})}
	cfg.Budget.add(h)
	return h
}

// ID is the camera's id.
func (h *Hub) ID() string { return h.id }

func (h *Hub) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change of track or of the
// number of subscribers.
func (h *Hub) Changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

// SetTrack starts a new session of the camera: new parameters, timestamps
// that need not follow the previous ones. The cached GOP is dropped.
func (h *Hub) SetTrack(t Track) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t.VPS, t.SPS, t.PPS = clone(t.VPS), clone(t.SPS), clone(t.PPS)
	t.parseSize()
	h.track, h.hasTrack = t, true
	h.epoch++
	h.dropGOPLocked()
	h.sinceKey, h.unitsSinceKey, h.seenKey = 0, 0, false
	h.setStreaming(true)
	h.rate = rateMeter{}
	h.notifyLocked()
}

// ClearTrack marks the camera as not streaming (offline).
func (h *Hub) ClearTrack() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hasTrack = false
	h.dropGOPLocked()
	h.setStreaming(false)
	h.notifyLocked()
}

// Track returns the current track, if the camera is streaming.
func (h *Hub) Track() (Track, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.track, h.hasTrack
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// Publish hands one access unit (NAL units of one picture, pts on the
// camera's clock) to every subscriber. It never blocks. The hub takes
// ownership of nalus.
func (h *Hub) Publish(pts time.Duration, received time.Time, nalus [][]byte) {
	h.PublishBuffer(pts, received, nalus, nil)
}

// PublishBuffer is Publish of NAL units that are all in buf, which the
// hub releases once it no longer needs the unit, if no consumer got it.
func (h *Hub) PublishBuffer(pts time.Duration, received time.Time, nalus [][]byte, buf *Buffer) {
	nalus = dropEmpty(nalus)
	h.mu.Lock()
	if h.closed || !h.hasTrack || len(nalus) == 0 {
		h.mu.Unlock()
		buf.Release()
		return
	}
	h.track.updateParams(nalus)
	key := IsKey(h.track.Codec, nalus)
	if key {
		nalus = h.withParams(nalus)
	}
	u := &Unit{PTS: pts, Received: received, NALUs: nalus, Key: key, Epoch: h.epoch, buf: buf}
	for _, n := range nalus {
		u.Size += len(n)
	}
	cached := h.cache(u)
	h.rate.add(received, u.Size, key)
	u.shared = len(h.subs) > 0
	for s := range h.subs {
		select {
		case s.ch <- u:
		default:
			h.dropLocked(s, ErrSlowConsumer)
			h.slowDrops.Add(1)
		}
	}
	if !cached {
		release(u)
	}
	h.mu.Unlock()

	h.units.Add(1)
	h.bytes.Add(uint64(u.Size))
	if key {
		h.keys.Add(1)
	}
	h.lastUnit.Store(received.UnixNano())
}

// withParams puts the track's parameter sets before a keyframe that lacks
// them, so that every consumer can start decoding there (browsers need
// SPS/PPS in band).
func (h *Hub) withParams(nalus [][]byte) [][]byte {
	ps := h.track.params()
	has := 0
	for _, n := range nalus {
		if isParamSet(h.track.Codec, n) {
			has++
		}
	}
	if has >= len(ps) || len(ps) == 0 {
		return nalus
	}
	out := make([][]byte, 0, len(ps)+len(nalus))
	out = append(out, ps...)
	for _, n := range nalus {
		if !isParamSet(h.track.Codec, n) {
			out = append(out, n)
		}
	}
	return out
}

// release gives back the buffer of a unit the hub no longer needs, if no
// consumer has it.
func release(u *Unit) {
	if !u.shared {
		u.buf.Release()
	}
	u.buf = nil
}

// releaseGOPLocked releases the cached GOP's units.
func (h *Hub) releaseGOPLocked() {
	for _, u := range h.gop {
		release(u)
	}
}

// cache keeps u in the cached GOP, if it can, and says whether it did.
func (h *Hub) cache(u *Unit) bool {
	if u.Key {
		if h.seenKey {
			size := h.sinceKey
			if size > int64(h.cfg.MaxGOPBytes) || h.unitsSinceKey > h.cfg.MaxGOPUnits {
				size = -1 // never cached: it takes no share
			}
			if h.gopSize.Swap(size) == 0 {
				h.cfg.Budget.touch() // the first size known: share anew
			}
		}
		h.seenKey, h.sinceKey, h.unitsSinceKey = true, 0, 0
		// Clear, not only truncate: the previous GOP's units past the new
		// length would stay reachable until overwritten, a second GOP in
		// memory per camera.
		h.releaseGOPLocked()
		clear(h.gop)
		h.gop = h.gop[:0]
		h.gopBytes = 0
		h.cachedBytes.Store(0)
		h.gopValid = h.cfg.Budget.allows(h, u.Received)
		if !h.gopValid {
			h.gop = nil
		}
	} else if h.gopValid && h.cfg.Budget.limited() && !h.gopAllowed.Load() {
		// The budget gave this hub's share to another since its keyframe.
		h.dropGOPLocked()
	}
	h.sinceKey += int64(u.Size)
	h.unitsSinceKey++
	if !h.gopValid {
		return false
	}
	if len(h.gop) >= h.cfg.MaxGOPUnits || h.gopBytes+u.Size > h.cfg.MaxGOPBytes {
		// Keyframes too far apart to cache: new consumers wait for the next.
		h.dropGOPLocked()
		return false
	}
	h.gop = append(h.gop, u)
	h.gopBytes += u.Size
	h.cachedBytes.Store(int64(h.gopBytes))
	return true
}

// dropGOPLocked forgets the cached GOP until the next keyframe.
func (h *Hub) dropGOPLocked() {
	h.releaseGOPLocked()
	h.gop, h.gopBytes, h.gopValid = nil, 0, false
	h.cachedBytes.Store(0)
}

// setStreaming notes whether the hub has a track, for the budget.
func (h *Hub) setStreaming(v bool) {
	if h.streaming.Swap(v) != v {
		h.cfg.Budget.touch()
	}
}

// watchChanged notes that a consumer asking for the stream came (+1) or
// left (-1).
func (h *Hub) watchChanged(delta int32) {
	h.watchers.Add(delta)
	h.watchedAt.Store(time.Now().UnixNano())
	h.cfg.Budget.touch()
}

// Sub is one consumer's subscription.
type Sub struct {
	hub     *Hub
	ch      chan *Unit
	err     error
	done    chan struct{}
	passive bool
}

// Subscribe adds a consumer with room for queue units beyond the cached
// GOP, which it receives first, starting with its keyframe.
func (h *Hub) Subscribe(queue int) (*Sub, error) {
	return h.subscribe(queue, false)
}

// Keyframe returns the cached GOP's keyframe (with SPS/PPS), if there is
// one, for a look at the latest picture (a snapshot) that neither asks
// for the stream nor counts as watching it. The unit is the caller's to
// keep, as a subscriber's.
func (h *Hub) Keyframe() (*Unit, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.gop) == 0 || !h.gop[0].Key {
		return nil, false
	}
	u := h.gop[0]
	u.shared = true
	return u, true
}

// SubscribePassive adds a consumer that takes the stream while others
// have it pulled but does not ask for it: an on-demand camera watched
// only by passive consumers (its detectors) stays idle. It is not counted
// by Subscribers or Stats.Watching, nor as watching by the GOP budget; it
// is in Stats.Subscribers.
func (h *Hub) SubscribePassive(queue int) (*Sub, error) {
	return h.subscribe(queue, true)
}

func (h *Hub) subscribe(queue int, passive bool) (*Sub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	s := &Sub{hub: h, ch: make(chan *Unit, queue+len(h.gop)), done: make(chan struct{}), passive: passive}
	for _, u := range h.gop {
		u.shared = true
		s.ch <- u
	}
	h.subs[s] = struct{}{}
	if passive {
		h.passive++
	} else {
		h.watchChanged(1)
	}
	h.notifyLocked()
	return s, nil
}

// Units delivers the subscription's units; it is closed when the
// subscription ends (see Err).
func (s *Sub) Units() <-chan *Unit { return s.ch }

// Done is closed when the subscription ends.
func (s *Sub) Done() <-chan struct{} { return s.done }

// Err says why the subscription ended: ErrSlowConsumer, ErrHubClosed or
// nil after Close.
func (s *Sub) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// Close ends the subscription.
func (s *Sub) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.dropLocked(s, nil)
}

func (h *Hub) dropLocked(s *Sub, err error) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	if s.passive {
		h.passive--
	} else {
		h.watchChanged(-1)
	}
	s.err = err
	close(s.ch)
	close(s.done)
	h.notifyLocked()
}

// Subscribers is the number of consumers that ask for the stream (not
// counting passive ones).
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) - h.passive
}

// Close ends every subscription with ErrHubClosed.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for s := range h.subs {
		h.dropLocked(s, ErrHubClosed)
	}
	h.dropGOPLocked()
	h.cfg.Budget.remove(h)
}

// Stats are the hub's counters.
type Stats struct {
	Units     uint64 `json:"units"`
	Bytes     uint64 `json:"bytes"`
	Keyframes uint64 `json:"keyframes"`
	SlowDrops uint64 `json:"slow_consumer_drops"`
	// Subscribers is every consumer: viewers, re-serve readers, detectors.
	Subscribers int `json:"consumers"`
	// Watching is the consumers that ask for the stream: all but the
	// passive ones (detectors), which take it only while it is pulled.
	Watching int       `json:"watching"`
	LastUnit time.Time `json:"last_unit,omitzero"`
	GOPUnits int       `json:"gop_units"`
	// GOPBytes is the size of the cached GOP: 0 when the camera has none
	// (its keyframes are too far apart, or it is outside the GOP budget).
	GOPBytes int `json:"gop_bytes"`
}

// Stats returns the counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	subs, passive, gop, gopBytes := len(h.subs), h.passive, len(h.gop), h.gopBytes
	h.mu.Unlock()
	st := Stats{Units: h.units.Load(), Bytes: h.bytes.Load(), Keyframes: h.keys.Load(), SlowDrops: h.slowDrops.Load(),
		Subscribers: subs, Watching: subs - passive, GOPUnits: gop, GOPBytes: gopBytes}
	if n := h.lastUnit.Load(); n != 0 {
		st.LastUnit = time.Unix(0, n).UTC()
	}
	return st
}

// Rates are the track's bitrate (bit/s) and frame rate over the last few
// complete seconds, and the interval between its last two keyframes.
func (h *Hub) Rates() (bitrate, fps float64, keyEvery time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	bitrate, fps = h.rate.rates(time.Now())
	return bitrate, fps, h.rate.keyEvery
}

// rateMeter measures bitrate, frame rate and keyframe interval over a
// sliding window of one-second buckets of arrival time.
type rateMeter struct {
	buckets  [5]struct{ sec, bytes, frames int64 }
	lastKey  time.Time
	keyEvery time.Duration
}

func (r *rateMeter) add(now time.Time, size int, key bool) {
	sec := now.Unix()
	b := &r.buckets[sec%int64(len(r.buckets))]
	if b.sec != sec {
		b.sec, b.bytes, b.frames = sec, 0, 0
	}
	b.bytes += int64(size)
	b.frames++
	if key {
		if !r.lastKey.IsZero() {
			r.keyEvery = now.Sub(r.lastKey)
		}
		r.lastKey = now
	}
}

// rates sums the complete seconds of the window (the current one is partial).
func (r *rateMeter) rates(now time.Time) (bitrate, fps float64) {
	sec := now.Unix()
	var bytes, frames, n int64
	for _, b := range r.buckets {
		if b.sec < sec && b.sec >= sec-int64(len(r.buckets)-1) {
			bytes += b.bytes
			frames += b.frames
			n++
		}
	}
	if n > 0 {
		bitrate = float64(bytes*8) / float64(n)
		fps = float64(frames) / float64(n)
	}
	return bitrate, fps
}

// dropEmpty removes empty NAL units (nothing downstream can use them, and
// the bitstream parsers index their first byte).
func dropEmpty(nalus [][]byte) [][]byte {
	for _, n := range nalus {
		if len(n) == 0 {
			out := make([][]byte, 0, len(nalus))
			for _, n := range nalus {
				if len(n) > 0 {
					out = append(out, n)
				}
			}
			return out
		}
	}
	return nalus
}

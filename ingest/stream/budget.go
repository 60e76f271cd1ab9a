package stream

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// GOPBudget bounds the memory that the cached groups of pictures of many
// hubs hold together. A cached GOP is what lets a new viewer start at
// once; at 2 Mb/s and a keyframe every 2 s it is up to 500 KB a camera, so
// a node of a thousand cameras would hold half a gigabyte for it. The
// budget gives the cache to the cameras most likely to be opened next:
// those being watched, then those watched most recently, then the others
// in the order they were added, as long as the sum of their last GOP's
// size fits. A camera outside it still streams to everyone; a new viewer
// of it waits for its next keyframe, and being watched brings it inside
// at its next keyframe (another one, the longest unwatched, leaves).
//
// A nil *GOPBudget, or one with no limit, lets every hub cache.
type GOPBudget struct {
	limit int64

	mu     sync.Mutex
	hubs   []*Hub // in the order added
	ranked time.Time
	// dirty asks for a new ranking at the next keyframe of any hub: a hub
	// has been watched, or one was added or removed.
	dirty atomic.Bool
}

// rankEvery is how often the budget is shared out anew when nothing asks
// for it sooner (a GOP's size changes).
const rankEvery = time.Second

// NewGOPBudget returns a budget of limit bytes; limit 0 means no limit.
func NewGOPBudget(limit int64) *GOPBudget {
	return &GOPBudget{limit: limit}
}

func (b *GOPBudget) limited() bool { return b != nil && b.limit > 0 }

func (b *GOPBudget) add(h *Hub) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hubs = append(b.hubs, h)
	b.dirty.Store(true)
}

// touch asks for a new ranking at the next keyframe of any hub.
func (b *GOPBudget) touch() {
	if b != nil {
		b.dirty.Store(true)
	}
}

func (b *GOPBudget) remove(h *Hub) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.hubs, h); i >= 0 {
		b.hubs = slices.Delete(b.hubs, i, i+1)
	}
	b.dirty.Store(true)
}

// allows says whether h may cache the GOP that starts now, at one of its
// keyframes. It is called with h.mu held (the budget never takes a hub's
// lock).
func (b *GOPBudget) allows(h *Hub, now time.Time) bool {
	if !b.limited() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dirty.Load() || now.Sub(b.ranked) >= rankEvery {
		b.rankLocked(now)
	}
	return h.gopAllowed.Load()
}

// rankLocked shares the budget out among the hubs.
func (b *GOPBudget) rankLocked(now time.Time) {
	b.dirty.Store(false)
	b.ranked = now
	type cand struct {
		h       *Hub
		order   int
		watched int64 // unix nanos; now for a hub being watched
		size    int64
	}
	cands := make([]cand, len(b.hubs))
	var known, sum int64
	for i, h := range b.hubs {
		c := cand{h: h, order: i, watched: h.watchedAt.Load(), size: h.gopSize.Load()}
		if h.watchers.Load() > 0 {
			c.watched = now.UnixNano()
		}
		if c.size > 0 && h.streaming.Load() {
			known++
			sum += c.size
		}
		cands[i] = c
	}
	// A hub whose first GOP has not ended yet is charged the mean of the
	// others, or while no size is known the largest GOP a hub caches, so
	// that a node starting hundreds of cameras at once does not cache them
	// all until their sizes are known.
	guess := int64(-1)
	if known > 0 {
		guess = sum / known
	}
	slices.SortStableFunc(cands, func(x, y cand) int {
		switch {
		case x.watched > y.watched:
			return -1
		case x.watched < y.watched:
			return 1
		}
		return x.order - y.order
	})
	var used int64
	for _, c := range cands {
		if !c.h.streaming.Load() {
			// Not pulled (on demand and unwatched, disabled, or pulled
			// elsewhere in a cluster): nothing to cache, no share taken.
			// It is ranked again when it starts.
			c.h.gopAllowed.Store(true)
			continue
		}
		size := c.size
		switch {
		case size < 0:
			// Its GOPs are larger than a hub caches: no share.
			c.h.gopAllowed.Store(false)
			continue
		case size == 0 && guess < 0:
			size = int64(c.h.cfg.MaxGOPBytes)
		case size == 0:
			size = guess
		}
		allowed := used+size <= b.limit
		c.h.gopAllowed.Store(allowed)
		if allowed {
			used += size
		}
	}
}

// Usage is what the cached GOPs hold now: bytes, and how many hubs have
// one.
func (b *GOPBudget) Usage() (bytes int64, hubs int) {
	if b == nil {
		return 0, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, h := range b.hubs {
		if n := h.cachedBytes.Load(); n > 0 {
			bytes += n
			hubs++
		}
	}
	return bytes, hubs
}

// Limit is the budget in bytes, 0 for none.
func (b *GOPBudget) Limit() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}

package relay

import (
	"sync"

	"sharpeye/ingest/stream"
)

// packCacheUnits is how many recent units a camera's packet cache keeps:
// the hub's largest cached GOP, so that a viewer's burst is packetized
// once for all viewers.
const packCacheUnits = 300

// packCache packetizes each access unit of one camera once for all its
// viewers. The payloads it returns are shared and must never be modified:
// viewers write them with their own headers (sequence number, timestamp,
// SSRC), and their NACK buffers keep references to them instead of copies.
type packCache struct {
	mu   sync.Mutex
	enc  map[stream.Codec]packetizer
	m    map[*stream.Unit][][]byte
	fifo []*stream.Unit // eviction order
	next int
}

func newPackCache(size int) *packCache {
	return &packCache{enc: map[stream.Codec]packetizer{}, m: map[*stream.Unit][][]byte{}, fifo: make([]*stream.Unit, size)}
}

// payloads returns the RTP payloads of u in codec (the marker goes on the
// last).
func (c *packCache) payloads(codec stream.Codec, u *stream.Unit) ([][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.m[u]; ok {
		return p, nil
	}
	enc, ok := c.enc[codec]
	if !ok {
		var err error
		if enc, err = newPacketizer(codec); err != nil {
			return nil, err
		}
		c.enc[codec] = enc
	}
	pkts, err := enc.Encode(u.NALUs) // never empty: the hub drops empty units and NAL units
	if err != nil {
		return nil, err
	}
	p := make([][]byte, len(pkts))
	for i, pkt := range pkts {
		p[i] = pkt.Payload
	}
	if old := c.fifo[c.next]; old != nil {
		delete(c.m, old)
	}
	c.fifo[c.next] = u
	c.next = (c.next + 1) % len(c.fifo)
	c.m[u] = p
	return p, nil
}

// sharedCache is a camera's packet cache and the number of sessions using
// it.
type sharedCache struct {
	c    *packCache
	refs int
}

// acquireCache returns the packet cache of hub's camera.
func (r *Relay) acquireCache(hub *stream.Hub) *packCache {
	r.mu.Lock()
	defer r.mu.Unlock()
	sc, ok := r.caches[hub]
	if !ok {
		sc = &sharedCache{c: newPackCache(packCacheUnits)}
		r.caches[hub] = sc
	}
	sc.refs++
	return sc.c
}

// releaseCache drops a reference taken by acquireCache; the cache goes
// with the camera's last viewer.
func (r *Relay) releaseCache(hub *stream.Hub) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sc, ok := r.caches[hub]; ok {
		if sc.refs--; sc.refs <= 0 {
			delete(r.caches, hub)
		}
	}
}

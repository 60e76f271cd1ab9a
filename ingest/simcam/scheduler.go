package simcam

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/pion/rtp"
)

const (
	// MaxPayloadSize is the largest RTP payload a camera sends, small enough
	// for the packets to be relayed over WebRTC (DTLS/SRTP over a 1280-byte
	// IPv6 minimum MTU) without repacketizing.
	MaxPayloadSize = 1200

	// payloadType is the dynamic RTP payload type of the video format.
	payloadType = 96

	// rtpClockRate is the H.264 and H.265 RTP clock rate (RFC 6184, RFC
	// 7798).
	rtpClockRate = 90000

	// rtpHeaderSize is the size of an RTP header without CSRC or extension.
	rtpHeaderSize = 12

	// maxLag is how late a camera may fall behind its timeline, because the
	// process was starved or suspended, before it drops the overdue units
	// instead of sending them in a burst.
	maxLag = time.Second

	// slack lets the scheduler send units due within this time in the same
	// wake-up: it trades 2 ms of jitter for far fewer timer wake-ups with
	// hundreds of cameras.
	slack = 2 * time.Millisecond
)

// packedClip is a clip cut into RTP payloads once, shared by every camera
// looping the same *Clip.
type packedClip struct {
	clip  *Clip
	fps   uint64
	units []packedUnit
	refs  int // cameras using it, under Server.mu
}

type packedUnit struct {
	payloads [][]byte
	idr      bool
}

// packClip cuts every unit of c into RTP payloads of at most MaxPayloadSize
// bytes: for H.264, RFC 6184 packetization mode 1 (single NAL unit, STAP-A
// and FU-A packets); for H.265, RFC 7798 (single NAL unit, aggregation and
// fragmentation units).
func packClip(c *Clip) (*packedClip, error) {
	switch {
	case len(c.Units) == 0:
		return nil, errors.New("clip has no access units")
	case c.FPS > maxFPS:
		return nil, fmt.Errorf("clip FPS %d above %d", c.FPS, maxFPS)
	}
	var enc interface {
		Encode(nalus [][]byte) ([]*rtp.Packet, error)
	}
	switch c.Codec {
	case H264, "":
		e := &rtph264.Encoder{
			PayloadType:       payloadType,
			PacketizationMode: 1,
			PayloadMaxSize:    MaxPayloadSize,
		}
		if err := e.Init(); err != nil {
			return nil, err
		}
		enc = e
	case H265:
		e := &rtph265.Encoder{
			PayloadType:    payloadType,
			PayloadMaxSize: MaxPayloadSize,
		}
		if err := e.Init(); err != nil {
			return nil, err
		}
		enc = e
	default:
		return nil, fmt.Errorf("unknown codec %q", c.Codec)
	}
	p := &packedClip{
		clip:  c,
		fps:   uint64(c.fps()),
		units: make([]packedUnit, len(c.Units)),
	}
	for i, u := range c.Units {
		if len(u.NALUs) == 0 {
			return nil, fmt.Errorf("access unit %d has no NAL units", i)
		}
		for _, n := range u.NALUs {
			if len(n) == 0 {
				return nil, fmt.Errorf("access unit %d has an empty NAL unit", i)
			}
		}
		pkts, err := enc.Encode(u.NALUs)
		if err != nil {
			return nil, fmt.Errorf("access unit %d: %w", i, err)
		}
		payloads := make([][]byte, len(pkts))
		for j, pkt := range pkts {
			payloads[j] = pkt.Payload
		}
		p.units[i] = packedUnit{payloads: payloads, idr: u.IDR}
	}
	return p, nil
}

// camera is the state of one simulated camera.
type camera struct {
	path   string
	clip   *packedClip
	stream *gortsplib.ServerStream
	media  *description.Media

	// Timeline, owned by the scheduler goroutine; next is read under
	// scheduler.mu while the camera is in the heap.
	start   time.Time // when unit 0 is due
	k       uint64    // sequence number of the next unit since start
	next    time.Time // when unit k is due
	seq     uint16    // next RTP sequence number
	rtpBase uint32    // RTP timestamp of unit 0
	index   int       // position in the heap, -1 when out of it; under scheduler.mu
	dropped bool      // removed from the scheduler; under scheduler.mu

	// sendMu is held by the scheduler while it sends a unit, and by Pause,
	// Resume, SetGarbage and Remove while they change the flags below, so
	// that once they return no unit is sent in the old mode.
	sendMu  sync.Mutex
	paused  bool
	garbage bool
	removed bool

	units        atomic.Uint64
	packets      atomic.Uint64
	bytes        atomic.Uint64
	skipped      atomic.Uint64
	errors       atomic.Uint64
	readerErrors atomic.Uint64
	readers      atomic.Int64
	lastIDR      atomic.Int64 // Unix nanoseconds
	loggedAt     atomic.Int64 // Unix nanoseconds of the last reader-error log
}

// timeOf returns when unit k is due.
func (c *camera) timeOf(k uint64) time.Time {
	fps := c.clip.fps
	return c.start.Add(time.Duration(k/fps)*time.Second +
		time.Duration(k%fps)*time.Second/time.Duration(fps))
}

// unitAt returns the unit due at t.
func (c *camera) unitAt(t time.Time) uint64 {
	d := t.Sub(c.start)
	if d < 0 {
		return 0
	}
	fps := c.clip.fps
	return uint64(d/time.Second)*fps + uint64(d%time.Second)*fps/uint64(time.Second)
}

// rtpTime returns the RTP timestamp of unit k: it keeps growing across loops.
func (c *camera) rtpTime(k uint64) uint32 {
	fps := c.clip.fps
	return c.rtpBase + uint32((k/fps)*rtpClockRate+(k%fps)*rtpClockRate/fps)
}

// scheduler sends the units of all cameras from one goroutine, taking them
// from a min-heap ordered by due time: 500 cameras cost one goroutine and a
// few timer wake-ups per frame interval, instead of 500 goroutines each
// sleeping on its own timer.
type scheduler struct {
	onUnit func(path string, unitIndex int, idr bool, at time.Time)

	mu   sync.Mutex
	heap camHeap

	wake chan struct{} // buffered: a camera was added
	quit chan struct{}
	done chan struct{}

	// Owned by the scheduler goroutine.
	pkt  rtp.Packet
	junk []byte
	rng  *rand.ChaCha8
}

func newScheduler(onUnit func(string, int, bool, time.Time)) *scheduler {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	return &scheduler{
		onUnit: onUnit,
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		junk:   make([]byte, MaxPayloadSize),
		rng:    rand.NewChaCha8(seed),
	}
}

// add schedules c, whose start must be set.
func (s *scheduler) add(c *camera) {
	c.next = c.start
	s.mu.Lock()
	heap.Push(&s.heap, c)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// remove unschedules c; once it returns the scheduler sends nothing more
// for c.
func (s *scheduler) remove(c *camera) {
	c.sendMu.Lock()
	c.removed = true
	c.sendMu.Unlock()
	s.mu.Lock()
	c.dropped = true
	if c.index >= 0 {
		heap.Remove(&s.heap, c.index)
	}
	s.mu.Unlock()
}

// stop ends the goroutine and waits for it.
func (s *scheduler) stop() {
	close(s.quit)
	<-s.done
}

func (s *scheduler) run() {
	defer close(s.done)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var due []*camera

	for {
		now := time.Now()
		wait := time.Duration(-1)

		s.mu.Lock()
		due = due[:0]
		for len(s.heap) > 0 && !s.heap[0].next.After(now.Add(slack)) {
			due = append(due, heap.Pop(&s.heap).(*camera))
		}
		if len(due) == 0 && len(s.heap) > 0 {
			wait = s.heap[0].next.Sub(now)
		}
		s.mu.Unlock()

		if len(due) > 0 {
			for _, c := range due {
				s.step(c, now)
			}
			s.mu.Lock()
			for _, c := range due {
				if !c.dropped {
					heap.Push(&s.heap, c)
				}
			}
			s.mu.Unlock()

			select {
			case <-s.quit:
				return
			default:
			}
			continue
		}

		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-s.quit:
			timer.Stop()
			return
		case <-s.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// step sends the due unit of c, unless c is paused, and schedules the next.
func (s *scheduler) step(c *camera, now time.Time) {
	if now.Sub(c.next) > maxLag {
		if k := c.unitAt(now); k > c.k {
			c.skipped.Add(k - c.k)
			c.k = k
		}
	}

	c.sendMu.Lock()
	removed := c.removed
	var sent bool
	var idx int
	var idr bool
	var at time.Time
	if !removed && !c.paused {
		idx, idr, at = s.send(c)
		sent = true
	}
	c.sendMu.Unlock()

	if sent && s.onUnit != nil {
		s.onUnit(c.path, idx, idr, at)
	}

	c.k++
	c.next = c.timeOf(c.k)
}

// send writes unit k of c to its stream; c.sendMu is held.
func (s *scheduler) send(c *camera) (idx int, idr bool, at time.Time) {
	idx = int(c.k % uint64(len(c.clip.units)))
	u := &c.clip.units[idx]
	ts := c.rtpTime(c.k)
	ntp := c.timeOf(c.k)
	garbage := c.garbage
	idr = u.idr && !garbage
	at = time.Now()

	var packets, bytes uint64
	last := len(u.payloads) - 1
	for i, payload := range u.payloads {
		if garbage {
			payload = s.junk[:len(payload)]
			_, _ = s.rng.Read(payload)
		}
		s.pkt = rtp.Packet{
			Header: rtp.Header{
				Version:        2,
				Marker:         i == last,
				PayloadType:    payloadType,
				SequenceNumber: c.seq,
				Timestamp:      ts,
			},
			Payload: payload,
		}
		c.seq++
		if err := c.stream.WritePacketRTPWithNTP(c.media, &s.pkt, ntp); err != nil {
			if errors.As(err, &liberrors.ErrServerStreamClosed{}) {
				break
			}
			c.errors.Add(1)
			continue
		}
		packets++
		bytes += uint64(rtpHeaderSize + len(payload))
	}

	c.units.Add(1)
	c.packets.Add(packets)
	c.bytes.Add(bytes)
	if idr {
		c.lastIDR.Store(at.UnixNano())
	}
	return idx, idr, at
}

// camHeap is a min-heap of cameras by due time, for container/heap.
type camHeap []*camera

func (h camHeap) Len() int           { return len(h) }
func (h camHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }

func (h camHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *camHeap) Push(x any) {
	c := x.(*camera)
	c.index = len(*h)
	*h = append(*h, c)
}

func (h *camHeap) Pop() any {
	old := *h
	n := len(old)
	c := old[n-1]
	old[n-1] = nil
	c.index = -1
	*h = old[:n-1]
	return c
}

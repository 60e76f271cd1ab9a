package relay

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/pion/rtp"

	"sharpeye/ingest/stream"
)

// Reasons a session's stream ends, besides being stopped.
var (
	errStopped       = errors.New("stopped")
	errCameraRemoved = errors.New("camera removed")
	errCodecChanged  = errors.New("the camera's codec changed")
)

const (
	// clockRate is the RTP clock of video.
	clockRate = 90000
	// minGap is the least RTP time between two units on either side of a
	// rebase (camera restart, resubscription).
	minGap = clockRate / 1000 // 1 ms
	// burstRate paces the GOP burst (bytes per second), so that a large
	// GOP does not overflow the queues on the way: 50 Mbit/s sends the
	// 2 s GOP of a 2 Mbit/s camera in 80 ms, a 100 KB keyframe in 16 ms.
	burstRate = 6_250_000
	// maxPending bounds the units kept while the peer connects.
	maxPending = 600
	// maxJump: a timestamp moving further than this within one camera
	// session is treated as a restart (rebased).
	maxJumpBack, maxJumpForward = 10 * clockRate, 60 * clockRate
)

// packetizer turns an access unit into RTP packets (rtph264.Encoder,
// rtph265.Encoder); only their payloads and order are used.
type packetizer interface {
	Encode(nalus [][]byte) ([]*rtp.Packet, error)
}

func newPacketizer(c stream.Codec) (packetizer, error) {
	if c == stream.H265 {
		e := &rtph265.Encoder{PayloadType: 116, PayloadMaxSize: payloadMaxSize}
		return e, e.Init()
	}
	e := &rtph264.Encoder{PayloadType: 96, PayloadMaxSize: payloadMaxSize, PacketizationMode: 1}
	return e, e.Init()
}

// counters are a session's statistics, updated by its goroutines and read
// by the session list.
type counters struct {
	bytes, packets, units, keyframes atomic.Uint64
	burstUnits                       atomic.Uint64 // units of the first burst (the cached GOP)
	burstTotal                       atomic.Uint64 // units of every burst
	resubs, restarts, skipped        atomic.Uint64
	nacks, plis, firs                atomic.Uint64
	firstKeyNanos                    atomic.Int64 // offer to first keyframe written
	rttMicros, lost, jitter          atomic.Int64 // from the last receiver report
	fractionLost                     atomic.Uint32
	packetErrors                     atomic.Uint64
}

// streamer is one viewer's media path: its hub subscription, sequence
// numbers and RTP clock.
type streamer struct {
	hub   *stream.Hub
	queue int
	codec stream.Codec
	cache *packCache              // the camera's payloads, shared
	write func(*rtp.Packet) error // the viewer's track
	c     *counters
	m     *metrics
	now   func() time.Time

	// firstKey is told once, when the first keyframe has been written.
	firstKey func()
	// flush (may be nil) sends the packets written so far: called after
	// each unit, so that batched writes add no delay.
	flush func()

	sub     *stream.Sub
	clock   rtpClock
	seq     uint16     // next sequence number
	pkt     rtp.Packet // reused: the track copies it
	needKey bool
	bursts  int
}

// newStreamer returns a streamer on hub with random initial sequence
// number and timestamp (RFC 3550 §5.1).
func newStreamer(hub *stream.Hub, queue int, cache *packCache, m *metrics) *streamer {
	return &streamer{hub: hub, queue: queue, cache: cache, m: m, now: time.Now, seq: uint16(rand.Uint32()), clock: rtpClock{base: rand.Uint32()}}
}

// rtpClock maps hub units to one continuous RTP timeline per viewer.
// Extended (64-bit) timestamps never go back across camera restarts and
// resubscriptions; base randomises the wire value.
type rtpClock struct {
	started  bool
	epoch    uint32
	offset   int64 // ext = offset + ticks(PTS) within epoch
	last     int64 // highest extended timestamp written
	lastWall time.Time
	base     uint32
}

// ticks converts a PTS to 90 kHz ticks without overflow.
func ticks(d time.Duration) int64 {
	// One tick is 100000/9 ns.
	n := int64(d)
	return n/100000*9 + n%100000*9/100000
}

// next is the first extended timestamp allowed after a rebase at now: the
// wall time elapsed since the last unit written, at least minGap.
func (c *rtpClock) next(now time.Time) int64 {
	if !c.started {
		return 0
	}
	gap := int64(minGap)
	if el := ticks(now.Sub(c.lastWall)); el > gap {
		gap = el
	}
	return c.last + gap
}

// wire is the RTP timestamp of an extended one.
func (c *rtpClock) wire(ext int64) uint32 { return c.base + uint32(ext) }

// mark records ext as written at now.
func (c *rtpClock) mark(ext int64, now time.Time) {
	if !c.started || ext > c.last {
		c.last = ext
	}
	c.started = true
	c.lastWall = now
}

// subscribe (re)joins the hub.
func (s *streamer) subscribe() error {
	sub, err := s.hub.Subscribe(s.queue)
	if err != nil {
		return errCameraRemoved
	}
	s.sub = sub
	return nil
}

// ended handles the end of the subscription: a viewer that fell behind is
// resubscribed (and restarts at the cached GOP); a removed camera ends the
// stream.
func (s *streamer) ended() error {
	err := s.sub.Err()
	if errors.Is(err, stream.ErrSlowConsumer) {
		s.c.resubs.Add(1)
		s.m.resubs.Inc()
		return s.subscribe()
	}
	if errors.Is(err, stream.ErrHubClosed) {
		return errCameraRemoved
	}
	return fmt.Errorf("subscription ended: %v", err)
}

func (s *streamer) close() {
	if s.sub != nil {
		s.sub.Close()
	}
}

// keepGOP adds u to the units held for a burst: from the latest keyframe
// on, of one camera session, bounded.
func keepGOP(pending []*stream.Unit, u *stream.Unit) []*stream.Unit {
	if u.Key {
		clear(pending)
		return append(pending[:0], u)
	}
	if len(pending) == 0 || u.Epoch != pending[0].Epoch || len(pending) >= maxPending {
		clear(pending)
		return pending[:0]
	}
	return append(pending, u)
}

// drain adds to pending every unit available right now. After a
// (re)subscription these are the hub's cached GOP and anything published
// since.
func (s *streamer) drain(pending []*stream.Unit) ([]*stream.Unit, error) {
	for range maxPending * 2 {
		select {
		case u, ok := <-s.sub.Units():
			if !ok {
				if err := s.ended(); err != nil {
					return nil, err
				}
				clear(pending)
				pending = pending[:0]
				continue
			}
			pending = keepGOP(pending, u)
		default:
			return pending, nil
		}
	}
	return pending, nil
}

// run streams until stop is closed or the stream cannot go on. Before
// connected is closed (the peer's DTLS is up) it keeps the latest GOP; then
// it bursts it and goes live.
func (s *streamer) run(stop, connected <-chan struct{}) error {
	defer s.close()
	if s.sub == nil {
		if err := s.subscribe(); err != nil {
			return err
		}
	}
	var pending []*stream.Unit
	for connected != nil {
		select {
		case <-stop:
			return errStopped
		case <-connected:
			connected = nil
		case u, ok := <-s.sub.Units():
			if !ok {
				if err := s.ended(); err != nil {
					return err
				}
				clear(pending)
				pending = pending[:0]
				continue
			}
			pending = keepGOP(pending, u)
		}
	}
	burst, err := s.drain(pending)
	if err != nil {
		return err
	}
	if err := s.sendBurst(burst, stop); err != nil {
		return err
	}
	for {
		select {
		case <-stop:
			return errStopped
		case u, ok := <-s.sub.Units():
			if !ok {
				if err := s.ended(); err != nil {
					return err
				}
				burst, err := s.drain(nil)
				if err != nil {
					return err
				}
				if err := s.sendBurst(burst, stop); err != nil {
					return err
				}
				continue
			}
			if err := s.sendLive(u); err != nil {
				return err
			}
		}
	}
}

// sendBurst writes the units held for a (re)start at once: the cached GOP
// from its keyframe to the newest unit. Their timestamps are compressed
// into the time it takes to send them (at burstRate, at least a tick
// apart), so that the browser decodes them as they arrive and plays live
// right after, instead of replaying the GOP's real duration late; the
// timestamps follow the sending schedule, so the browser's jitter
// estimate sees no delay. Live units continue from the newest one with
// their real spacing.
func (s *streamer) sendBurst(units []*stream.Unit, stop <-chan struct{}) error {
	if len(units) == 0 {
		// No cached GOP: start at the next keyframe.
		s.needKey = true
		return nil
	}
	if err := s.checkCodec(units[0].Epoch); err != nil {
		return err
	}
	s.bursts++
	if s.bursts == 1 {
		s.c.burstUnits.Store(uint64(len(units)))
	}
	defer s.c.burstTotal.Add(uint64(len(units)))

	// at is unit i's offset in the burst, in ticks: when its first byte
	// leaves at burstRate.
	at := make([]int64, len(units))
	sent := 0
	for i, u := range units {
		at[i] = max(int64(sent)*clockRate/burstRate, int64(i))
		if i > 0 && at[i] <= at[i-1] {
			at[i] = at[i-1] + 1
		}
		sent += u.Size
	}
	start := s.now()
	first := s.clock.next(start)
	newest := units[len(units)-1]
	s.clock.epoch = newest.Epoch
	s.clock.offset = first + at[len(units)-1] - ticks(newest.PTS)
	s.needKey = false

	for i, u := range units {
		// Pace: wait while more than 2 ms ahead of the schedule.
		if ahead := time.Duration(at[i])*time.Second/clockRate - s.now().Sub(start); ahead > 2*time.Millisecond {
			t := time.NewTimer(ahead)
			select {
			case <-stop:
				t.Stop()
				return errStopped
			case <-t.C:
			}
		}
		if err := s.writeUnit(u, first+at[i]); err != nil {
			return err
		}
	}
	return nil
}

// checkCodec ends the stream when a camera restart changed its codec:
// the negotiated payload type cannot carry the new one.
func (s *streamer) checkCodec(epoch uint32) error {
	if s.clock.started && epoch == s.clock.epoch {
		return nil
	}
	if t, ok := s.hub.Track(); ok && t.Codec != s.codec {
		return errCodecChanged
	}
	return nil
}

// sendLive writes one live unit at its real RTP time.
func (s *streamer) sendLive(u *stream.Unit) error {
	if u.Epoch != s.clock.epoch || !s.clock.started {
		// The camera restarted: its timestamps start over. Rebase so
		// that ours go on from the last one written; decoding restarts
		// at the new session's first keyframe.
		if !u.Key {
			s.needKey = true
			s.c.skipped.Add(1)
			return nil
		}
		if err := s.checkCodec(u.Epoch); err != nil {
			return err
		}
		if s.clock.started {
			s.c.restarts.Add(1)
		}
		s.rebase(u)
	}
	if s.needKey {
		if !u.Key {
			s.c.skipped.Add(1)
			return nil
		}
		s.needKey = false
	}
	ext := s.clock.offset + ticks(u.PTS)
	if s.clock.started && (ext < s.clock.last-maxJumpBack || ext > s.clock.last+maxJumpForward) {
		s.c.restarts.Add(1)
		s.rebase(u)
		ext = s.clock.offset + ticks(u.PTS)
	}
	return s.writeUnit(u, ext)
}

// rebase maps u to the first timestamp allowed now.
func (s *streamer) rebase(u *stream.Unit) {
	s.clock.epoch = u.Epoch
	s.clock.offset = s.clock.next(s.now()) - ticks(u.PTS)
}

// writeUnit writes u at extended timestamp ext, with the viewer's
// sequence numbers.
func (s *streamer) writeUnit(u *stream.Unit, ext int64) error {
	payloads, err := s.cache.payloads(s.codec, u)
	if err != nil {
		s.c.packetErrors.Add(1)
		return nil
	}
	if len(payloads) == 0 {
		return nil
	}
	ts := s.clock.wire(ext)
	bytes := 0
	for i, pl := range payloads {
		s.pkt = rtp.Packet{Header: rtp.Header{Version: 2, Marker: i == len(payloads)-1, SequenceNumber: s.seq, Timestamp: ts}, Payload: pl}
		if err := s.write(&s.pkt); err != nil {
			return err
		}
		s.seq++
		bytes += s.pkt.MarshalSize()
	}
	s.pkt = rtp.Packet{}
	if s.flush != nil {
		s.flush()
	}
	now := s.now()
	s.clock.mark(ext, now)
	s.c.units.Add(1)
	s.c.packets.Add(uint64(len(payloads)))
	s.c.bytes.Add(uint64(bytes))
	s.m.packets.Add(float64(len(payloads)))
	s.m.bytes.Add(float64(bytes))
	if u.Key {
		if s.c.keyframes.Add(1) == 1 && s.firstKey != nil {
			s.firstKey()
		}
	}
	return nil
}

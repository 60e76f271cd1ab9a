package detect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"sharpeye/ingest/event"
	"sharpeye/ingest/stream"
)

// Errors of Snapshot.
var (
	// ErrNoPicture: the camera has sent no keyframe yet (or not since
	// Sharpeye started).
	ErrNoPicture = errors.New("no keyframe from the camera yet")
	// ErrNoFFmpeg: ffmpeg is not installed, so no picture can be decoded.
	ErrNoFFmpeg = errors.New("snapshots need ffmpeg, which was not found")
)

// maxJPEG bounds a snapshot's size.
const maxJPEG = 16 << 20

// keyframe is a camera's latest keyframe and the codec it is in.
type keyframe struct {
	unit  *stream.Unit
	codec stream.Codec
}

// snapshot is a camera's last encoded snapshot. It names its keyframe by
// session and arrival rather than holding it, so that an old keyframe is
// not kept in memory.
type snapshot struct {
	epoch    uint32
	keyAt    time.Time // the keyframe's arrival; zero: no snapshot
	jpeg     []byte    // dropped after min_interval
	encoded  time.Time // wall clock
	ref, sum string    // in the blob store, once put
}

func (s *snapshot) of(k *stream.Unit) bool {
	return !s.keyAt.IsZero() && s.epoch == k.Epoch && s.keyAt.Equal(k.Received)
}

// snapshots is a camera's snapshot cache: one encode per keyframe at most,
// one per min_interval at most, shared by events and requests.
type snapshots struct {
	lock chan struct{} // a mutex that a waiter can give up on
	last snapshot
}

func newSnapshots() *snapshots {
	return &snapshots{lock: make(chan struct{}, 1)}
}

// get returns a snapshot of k (or the last one, if taken within
// minInterval), encoding it with enc when needed. With put, the snapshot
// is stored in the blob store (once) and its jpeg may be nil; without, it
// has its jpeg. The returned value must not be modified.
func (s *snapshots) get(ctx context.Context, k keyframe, minInterval time.Duration,
	enc func(context.Context, keyframe) ([]byte, error),
	put func(context.Context, []byte) (string, string, error)) (snapshot, error) {
	select {
	case s.lock <- struct{}{}:
	case <-ctx.Done():
		return snapshot{}, ctx.Err()
	}
	defer func() { <-s.lock }()
	reuse := s.last.of(k.unit) || !s.last.keyAt.IsZero() && time.Since(s.last.encoded) < minInterval
	switch {
	case reuse && put != nil && s.last.ref != "":
		return s.last, nil
	case reuse && s.last.jpeg != nil:
	default:
		jpeg, err := enc(ctx, k)
		if err != nil {
			return snapshot{}, err
		}
		s.last = snapshot{epoch: k.unit.Epoch, keyAt: k.unit.Received, jpeg: jpeg, encoded: time.Now()}
	}
	if put != nil && s.last.ref == "" {
		ref, sum, err := put(ctx, s.last.jpeg)
		if err != nil {
			return s.last, err
		}
		s.last.ref, s.last.sum = ref, sum
	}
	return s.last, nil
}

// expire drops the last snapshot's bytes once they are older than maxAge
// (they are in the blob store, or will be encoded again). It never waits.
func (s *snapshots) expire(maxAge time.Duration) {
	select {
	case s.lock <- struct{}{}:
	default:
		return
	}
	if s.last.jpeg != nil && time.Since(s.last.encoded) >= maxAge {
		s.last.jpeg = nil
	}
	<-s.lock
}

// evidence describes a stored snapshot for an event.
func (s snapshot) evidence() event.Evidence {
	ev := event.Evidence{Kind: event.EvidenceSnapshot, Ref: s.ref, ContentType: "image/jpeg", SHA256: s.sum}
	if !s.keyAt.IsZero() {
		t := event.NewTime(s.keyAt)
		ev.Time = &t
	}
	return ev
}

// encodeJPEG decodes one keyframe to a JPEG at the camera's resolution
// with a one-shot ffmpeg. sem bounds the encoders running at once.
func encodeJPEG(ctx context.Context, ffmpeg string, quality int, sem chan struct{}, k keyframe) ([]byte, error) {
	if ffmpeg == "" {
		return nil, ErrNoFFmpeg
	}
	if k.unit == nil {
		return nil, ErrNoPicture
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-sem }()

	nalus, ok := decodable(k.codec, k.unit.NALUs)
	if !ok {
		return nil, errors.New("snapshot: the keyframe lacks parameter sets or an IDR slice")
	}
	in := ivfFrame(ivfHeader(k.codec), k.codec, nalus, 0)
	cmd := exec.CommandContext(ctx, ffmpeg,
		"-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
		"-threads", "1", "-probesize", "32", "-analyzeduration", "0",
		"-c:v", ffmpegCodec(k.codec), "-f", "ivf", "-i", "pipe:0",
		"-frames:v", "1", "-c:v", "mjpeg", "-q:v", strconv.Itoa(quality), "-f", "image2pipe", "pipe:1")
	cmd.Stdin = bytes.NewReader(in)
	var out, stderr limitedBuffer
	out.limit, stderr.limit = maxJPEG, 4096
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, fmt.Errorf("snapshot: ffmpeg: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	case out.Len() < 4 || !bytes.HasPrefix(out.Bytes(), []byte{0xff, 0xd8}):
		return nil, fmt.Errorf("snapshot: ffmpeg gave no JPEG: %s", bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), nil
}

// limitedBuffer keeps the first limit bytes written to it and discards the
// rest, so that a runaway child cannot exhaust memory.
type limitedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Bytes()
}

func (b *limitedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

package detect

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"sharpeye/ingest/stream"
)

// Keyframes are decoded by a small pool of long-lived ffmpeg processes per
// codec, shared by every camera, rather than one process per camera:
//
//   - memory: an ffmpeg decoding 1080p holds about 22 MB of its own
//     (measured: Private_Dirty in smaps), 22 GB for 1000 cameras, against
//     a few processes for the node;
//   - delay without double work: fed keyframes only, ffmpeg 5.1 gives a
//     decoded frame out only when the next frame goes in. One camera's
//     process must write each keyframe twice (decoding it twice) to get
//     it back at once; in a shared process the next camera's keyframe
//     pushes it out, and a keyframe is written again only when the
//     process has been given nothing for flushAfter (3 s);
//   - switching between cameras of different sizes costs little (the
//     decoder and the scaler are set up again: about 1 ms measured
//     against 8 ms to decode a 1080p keyframe).
//
// Every keyframe carries its SPS and PPS (the hub puts them in), so it
// decodes alone whatever came before. Each is written with a pts of its
// own; the showinfo filter prints the pts of every frame on stderr in the
// order the frames come out on stdout, which pairs each frame with its
// keyframe exactly, even when a broken keyframe yields no frame at all.
// A camera's picture can therefore never be taken for another's.

// decodeJob is one keyframe to decode.
type decodeJob struct {
	codec stream.Codec
	nalus [][]byte
	// done is called exactly once per accepted job, from a decoder's
	// goroutine: with the frame (frameSize bytes of YUV 4:2:0 at
	// frameW x frameH, the receiver's to keep), or nil when decoding
	// failed. It must not block.
	done func(frame []byte)
	pkt  []byte // the IVF frame written, kept to flush with if it decodes
}

// Decoder timing.
const (
	// flushAfter: a process holding a decoded frame back and given
	// nothing new for this long gets a keyframe again to push the frame
	// out. Longer than the usual keyframe interval (2 s), so that even a
	// lone camera's next keyframe does it: quality checks can wait a few
	// seconds, and a flush costs a decode.
	defaultFlushAfter = 3 * time.Second
	// idleStop: a process given nothing for this long is stopped, freeing
	// its memory; the next keyframe starts one again.
	idleStop = 5 * time.Minute
	// writeTimeout: a process that does not take a keyframe within this
	// is stuck and is restarted.
	writeTimeout = 5 * time.Second
	// perProcess: the keyframes a process may have been given and not
	// given back; it gets more once it gives frames back.
	perProcess = 4
	// stuckAfter: a process holding keyframes and giving nothing back for
	// this long is stuck and is restarted.
	defaultStuckAfter = 10 * time.Second
	// queueLen is the keyframes waiting per codec; more are dropped.
	queueLen = 64
)

// decoders is the pool.
type decoders struct {
	ffmpeg     string
	perCodec   int
	flushAfter time.Duration
	stuckAfter time.Duration
	log        *slog.Logger
	queues     map[stream.Codec]chan *decodeJob
	running    atomic.Bool

	frames, dropped, failed, restarts, flushes atomic.Uint64
	procs                                      atomic.Int64
	cpuNanos                                   atomic.Int64 // CPU time of the processes that have exited
}

func newDecoders(ffmpeg string, perCodec int, log *slog.Logger) *decoders {
	return &decoders{
		ffmpeg:     ffmpeg,
		perCodec:   perCodec,
		flushAfter: defaultFlushAfter,
		stuckAfter: defaultStuckAfter,
		log:        log,
		queues: map[stream.Codec]chan *decodeJob{
			stream.H264: make(chan *decodeJob, queueLen),
			stream.H265: make(chan *decodeJob, queueLen),
		},
	}
}

// submit queues a job without blocking; it reports false (and the job's
// done is never called) when the pool is not running, the codec is
// unknown or the queue is full.
func (d *decoders) submit(j *decodeJob) bool {
	q, ok := d.queues[j.codec]
	if !ok || !d.running.Load() {
		return false
	}
	select {
	case q <- j:
		return true
	default:
		d.dropped.Add(1)
		return false
	}
}

// run runs the pool until ctx ends and every process is reaped. Jobs
// still queued then are failed.
func (d *decoders) run(ctx context.Context) {
	var wg sync.WaitGroup
	d.running.Store(true)
	for codec, q := range d.queues {
		for range d.perCodec {
			wg.Go(func() { d.worker(ctx, codec, q) })
		}
	}
	<-ctx.Done()
	d.running.Store(false)
	wg.Wait()
	for _, q := range d.queues {
		for len(q) > 0 {
			(<-q).done(nil)
		}
	}
}

// worker feeds one ffmpeg process, started at the first job, restarted
// when it fails or stops making progress, and stopped when idle. It keeps
// at most perProcess keyframes at the process, so that a slow process
// leaves jobs in the queue for the others.
func (d *decoders) worker(ctx context.Context, codec stream.Codec, q chan *decodeJob) {
	var p *ffproc
	defer func() {
		if p != nil {
			d.stop(p)
		}
	}()
	backoff := time.Duration(0)
	restart := func(msg string, args ...any) {
		d.log.Warn(msg, append([]any{"codec", codec, "stderr", p.tail()}, args...)...)
		// A process that dies young will again: wait before the next.
		if time.Since(p.started) < 10*time.Second {
			backoff = min(max(2*backoff, time.Second), time.Minute)
		}
		d.stop(p)
		p = nil
		d.restarts.Add(1)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var exited, progress <-chan struct{}
		jobs := q
		wait := idleStop
		if p != nil {
			exited, progress = p.done, p.progress
			switch n := p.waiting(); {
			case n >= perProcess:
				jobs, wait = nil, d.stuckAfter
			case n > 0:
				wait = d.flushAfter
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-exited:
			restart("keyframe decoder exited", "err", p.exitErr())
		case <-progress:
		case <-timer.C:
			switch {
			case p == nil:
			case p.waiting() > 0 && time.Since(p.lastProgress()) >= d.stuckAfter:
				restart("keyframe decoder stuck, restarting it", "waiting", p.waiting())
			case p.waiting() > 0:
				// Idle with a frame held back: push it out.
				d.flushes.Add(1)
				if err := p.flush(); err != nil {
					restart("keyframe decoder stuck, restarting it", "err", err)
				}
			default:
				d.stop(p)
				p = nil
			}
		case j := <-jobs:
			if p == nil {
				if backoff > 0 && !sleep(ctx, backoff) {
					// The last process failed; ctx ended during the backoff.
					j.done(nil)
					return
				}
				var err error
				if p, err = d.start(ctx, codec); err != nil {
					d.log.Error("start keyframe decoder", "codec", codec, "err", err)
					backoff = min(max(2*backoff, time.Second), time.Minute)
					d.failed.Add(1)
					j.done(nil)
					continue
				}
				backoff = 0
			}
			if err := p.send(j); err != nil {
				restart("keyframe decoder stuck, restarting it", "err", err)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// decoderArgs are ffmpeg's arguments for a keyframe decoder: IVF in,
// frames scaled to frameW x frameH YUV 4:2:0 out, with as little delay as
// ffmpeg allows (no probing beyond the first frame, timestamps passed
// through, one thread). A keyframe with any error yields no frame
// (-err_detect explode) rather than a concealed one: a damaged keyframe
// would mislead the checks, and concealment draws on the previous
// picture, which in a shared decoder is another camera's.
func decoderArgs(codec stream.Codec) []string {
	return []string{
		"-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
		"-threads", "1", "-probesize", "32", "-analyzeduration", "0", "-err_detect", "explode",
		"-c:v", ffmpegCodec(codec), "-f", "ivf", "-i", "pipe:0",
		"-an", "-sn", "-dn", "-fps_mode", "passthrough", "-filter_threads", "1",
		"-vf", fmt.Sprintf("scale=%d:%d:flags=area,format=yuv420p,showinfo", frameW, frameH),
		"-f", "rawvideo", "pipe:1",
	}
}

// ffproc is one running decoder process.
type ffproc struct {
	d        *decoders
	cmd      *exec.Cmd
	stdin    *os.File
	codec    stream.Codec
	started  time.Time
	pts      chan int64    // the pts of each frame, in output order
	eof      chan struct{} // closed when the frame reader stops
	progress chan struct{} // signalled at each frame out
	done     chan struct{} // closed once the process has exited and its pipes are drained

	mu      sync.Mutex
	pending map[int64]*decodeJob
	progAt  time.Time // the last frame out, or the start
	seq     int64
	good    []byte   // the last IVF frame that decoded, to flush with
	last    []byte   // the last IVF frame written, to flush with until one decodes
	stderr  []string // the last lines that were not frame information
	err     error
}

func (d *decoders) start(ctx context.Context, codec stream.Codec) (*ffproc, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, d.ffmpeg, decoderArgs(codec)...)
	cmd.Stdin = pr
	cmd.WaitDelay = 2 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	pr.Close()
	p := &ffproc{
		d: d, cmd: cmd, stdin: pw, codec: codec, started: time.Now(),
		pts:      make(chan int64, 4*perProcess),
		eof:      make(chan struct{}),
		progress: make(chan struct{}, 1),
		done:     make(chan struct{}),
		pending:  map[int64]*decodeJob{},
		progAt:   time.Now(),
	}
	d.procs.Add(1)
	var readers sync.WaitGroup
	readers.Go(func() { p.readInfo(stderr) })
	readers.Go(func() { p.readFrames(stdout) })
	go func() {
		readers.Wait()
		err := cmd.Wait()
		if ps := cmd.ProcessState; ps != nil {
			d.cpuNanos.Add(int64(ps.UserTime() + ps.SystemTime()))
		}
		p.mu.Lock()
		p.err = err
		for _, j := range p.pending {
			j.done(nil)
		}
		p.pending = nil
		p.mu.Unlock()
		d.procs.Add(-1)
		close(p.done)
	}()
	if err := p.write(ivfHeader(codec)); err != nil {
		d.stop(p)
		return nil, err
	}
	return p, nil
}

// stop ends the process: stdin closed (it then drains and exits), killed
// if it has not exited within a second, and waits until it is reaped.
func (d *decoders) stop(p *ffproc) {
	p.stdin.Close()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	}
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
	<-p.done
}

func (p *ffproc) write(b []byte) error {
	p.stdin.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := p.stdin.Write(b)
	return err
}

// lastProgress is when the process last gave a frame back (or started).
func (p *ffproc) lastProgress() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.progAt
}

// waiting is the number of keyframes written and not yet decoded.
func (p *ffproc) waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// send writes a job's keyframe.
func (p *ffproc) send(j *decodeJob) error {
	p.mu.Lock()
	if p.pending == nil {
		p.mu.Unlock()
		j.done(nil)
		return errors.New("decoder exited")
	}
	p.seq++
	pts := p.seq
	j.pkt = ivfFrame(nil, p.codec, j.nalus, pts)
	p.last = j.pkt
	p.pending[pts] = j
	p.mu.Unlock()
	return p.write(j.pkt)
}

// flush writes the last keyframe that decoded again, with a pts no job
// waits for: it pushes out the frame ffmpeg holds back, and settles the
// keyframes before it that yield no frame. Until a keyframe has decoded,
// the last one written is used; a process that never decodes one is
// restarted as stuck.
func (p *ffproc) flush() error {
	p.mu.Lock()
	p.seq++
	b := p.good
	if b == nil {
		b = p.last
	}
	b = append([]byte(nil), b...)
	if len(b) >= 12 {
		binary.LittleEndian.PutUint64(b[4:], uint64(p.seq))
	}
	p.mu.Unlock()
	if len(b) < 12 {
		return nil
	}
	return p.write(b)
}

// readFrames reads the decoded frames and hands each to its job.
func (p *ffproc) readFrames(r io.Reader) {
	defer close(p.eof)
	br := bufio.NewReaderSize(r, frameSize)
	for {
		frame := make([]byte, frameSize)
		if _, err := io.ReadFull(br, frame); err != nil {
			io.Copy(io.Discard, br)
			return
		}
		pts, ok := <-p.pts
		if !ok {
			io.Copy(io.Discard, br)
			return
		}
		p.mu.Lock()
		p.progAt = time.Now()
		j := p.pending[pts]
		delete(p.pending, pts)
		if j != nil {
			p.good = j.pkt
		}
		// Frames come out in the order keyframes went in: those written
		// before this one and still waiting failed to decode.
		var failed []*decodeJob
		for k, f := range p.pending {
			if k < pts {
				failed = append(failed, f)
				delete(p.pending, k)
			}
		}
		p.mu.Unlock()
		for _, f := range failed {
			p.d.failed.Add(1)
			f.done(nil)
		}
		if j != nil {
			p.d.frames.Add(1)
			j.done(frame)
		}
		select {
		case p.progress <- struct{}{}:
		default:
		}
	}
}

// readInfo reads ffmpeg's log: the pts of each frame from showinfo, and
// the last other lines for error reports. Lines too long for the buffer
// are skipped, never allowed to stop the reading (ffmpeg would block).
func (p *ffproc) readInfo(r io.Reader) {
	defer close(p.pts)
	br := bufio.NewReaderSize(r, 4096)
	skip := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			skip = true
			continue
		}
		if !skip && len(line) > 0 {
			if pts, ok := showinfoPTS(line); ok {
				// The frame lags its line by a frame or two at most: a
				// full channel means the process is wedged, and the write
				// timeout will restart it. Never drop a pts: the pairing
				// of frames and keyframes rests on it.
				select {
				case p.pts <- pts:
				case <-p.eof:
				}
			} else if !bytes.HasPrefix(line, []byte("[Parsed_showinfo")) {
				p.mu.Lock()
				p.stderr = append(p.stderr, string(bytes.TrimSpace(line)))
				if len(p.stderr) > 8 {
					p.stderr = p.stderr[1:]
				}
				p.mu.Unlock()
			}
		}
		skip = false
		if err != nil {
			io.Copy(io.Discard, br)
			return
		}
	}
}

// showinfoPTS reads the pts from a showinfo frame line:
//
//	[Parsed_showinfo_2 @ 0x55d0c1a3e0c0] n:   0 pts:      7 pts_time:0.007 ...
func showinfoPTS(line []byte) (int64, bool) {
	if !bytes.HasPrefix(line, []byte("[Parsed_showinfo")) {
		return 0, false
	}
	i := bytes.Index(line, []byte("] n:"))
	if i < 0 {
		return 0, false
	}
	rest := line[i+4:]
	j := bytes.Index(rest, []byte(" pts:"))
	if j < 0 {
		return 0, false
	}
	rest = bytes.TrimLeft(rest[j+5:], " ")
	end := bytes.IndexByte(rest, ' ')
	if end < 0 {
		return 0, false
	}
	pts, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	return pts, err == nil
}

func (p *ffproc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *ffproc) tail() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.stderr...)
}

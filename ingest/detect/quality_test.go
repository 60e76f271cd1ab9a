package detect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image/jpeg"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/configs/conf"
	"sharpeye/console/api/apitest"
	"sharpeye/deploy/testpeer"
	"sharpeye/ingest/event"
	"sharpeye/ingest/simcam"
	"sharpeye/ingest/stream"
)

// qualityConfig has the quality checks only, with quick timings.
func qualityConfig() Config {
	cfg := testConfig()
	cfg.Health.Enabled = false
	cfg.Motion.Enabled = false
	return cfg
}

func requireFFmpeg(t testing.TB) string {
	t.Helper()
	testpeer.Require(t, testpeer.FFmpeg)
	path, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatalf("ffmpeg is switched on in %s but not installed: %v", testpeer.Env, err)
	}
	return path
}

// Each check fires on its clip and on no other; the normal clip and the
// still one fire nothing.
func TestQualityChecks(t *testing.T) {
	requireFFmpeg(t)
	for _, tc := range []struct {
		clip string
		want []string
	}{
		{"normal", nil},
		{"still", nil}, // static, but sensor noise: not frozen
		{"frozen", []string{TypeFrozen}},
		{"black", []string{TypeDark}},
		{"covered", []string{TypeCovered}},
		{"bright", []string{TypeBright}},
		{"blurred", []string{TypeBlur}},
		{"colourcast", []string{TypeColourCast}},
	} {
		t.Run(tc.clip, func(t *testing.T) {
			h := newHarness(t, qualityConfig(), harnessOpts{run: true})
			c := loadClip(t, tc.clip)
			h.start(c)
			h.playPaced(c)
			h.playPaced(c)
			h.settle(2 * units(c))
			if got := h.out.types(t); !slices.Equal(got, tc.want) {
				t.Fatalf("events %v, want %v", got, tc.want)
			}
			if n := h.d.analysedN.Load(); n < uint64(c.IDRs()) {
				t.Errorf("%d keyframes analysed of %d", n, 2*c.IDRs())
			}
			for _, ev := range h.out.all(t) {
				if ev.Severity == event.SeverityInfo || len(ev.Attributes) < 3 {
					t.Errorf("%s: severity %s, attributes %v", ev.Type, ev.Severity, ev.Attributes)
				}
			}
		})
	}
}

// A condition clears once the picture is right again, and the .cleared
// event points to the one it ends.
func TestQualityClears(t *testing.T) {
	requireFFmpeg(t)
	h := newHarness(t, qualityConfig(), harnessOpts{run: true})
	black, normal := loadClip(t, "black"), loadClip(t, "normal")
	h.start(black)
	h.playPaced(black)
	h.start(normal) // the camera's picture comes back after a restart
	h.playPaced(normal)
	h.settle(units(black) + units(normal))
	if got := h.out.types(t); !slices.Equal(got, []string{TypeDark, TypeDark + ClearedSuffix}) {
		t.Fatalf("events %v", got)
	}
	dark, cleared := h.out.first(t, TypeDark), h.out.first(t, TypeDark+ClearedSuffix)
	if m, _ := dark.Number("luma_mean"); m > 20 {
		t.Errorf("dark luma_mean %v", m)
	}
	if l, _ := dark.Number("dark_luma"); l != 40 {
		t.Errorf("dark threshold %v", l)
	}
	if cleared.Severity != event.SeverityInfo || len(cleared.Evidence) == 0 || cleared.Evidence[0].Ref != dark.ID.String() {
		t.Errorf("cleared event %+v", cleared)
	}
	if d, _ := cleared.Number("duration_seconds"); d < 2 {
		t.Errorf("dark for %vs", d)
	}
}

func TestSnapshotsAndEvidence(t *testing.T) {
	requireFFmpeg(t)
	h := newHarness(t, qualityConfig(), harnessOpts{run: true, blobs: true})
	if _, err := h.d.Snapshot(t.Context()); !errors.Is(err, ErrNoPicture) {
		t.Fatalf("Snapshot before any keyframe: %v, want ErrNoPicture", err)
	}
	covered := loadClip(t, "covered")
	h.start(covered)
	h.playPaced(covered)
	h.settle(units(covered))

	ev := h.out.first(t, TypeCovered)
	if ev.Severity != event.SeverityMajor {
		t.Errorf("covered severity %s", ev.Severity)
	}
	i := slices.IndexFunc(ev.Evidence, func(e event.Evidence) bool { return e.Kind == event.EvidenceSnapshot })
	if i < 0 {
		t.Fatalf("no snapshot in %+v", ev.Evidence)
	}
	snap := ev.Evidence[i]
	r, ct, err := h.blobs.GetOwned(snap.Ref, BlobOwner(h.d.ID())) // stored as the camera's
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(r)
	r.Close()
	sum := sha256.Sum256(data)
	if ct != "image/jpeg" || snap.ContentType != "image/jpeg" || snap.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("snapshot %+v: stored as %s, sha256 %x", snap, ct, sum)
	}
	if snap.Time == nil || snap.Time.After(ev.Time.Time) {
		t.Errorf("snapshot time %v, event time %v: the snapshot is of the keyframe the condition was seen on", snap.Time, ev.Time)
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil || img.Bounds().Dx() != covered.Width || img.Bounds().Dy() != covered.Height {
		t.Fatalf("snapshot is not a %dx%d JPEG: %v", covered.Width, covered.Height, err)
	}

	// On demand: the latest keyframe, at the camera's resolution.
	jp, err := h.d.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if img, err := jpeg.Decode(bytes.NewReader(jp)); err != nil || img.Bounds().Dx() != 320 {
		t.Fatalf("Snapshot: %v", err)
	}
}

// Snapshots are rate-limited per camera: within min_interval, events and
// requests share one.
func TestSnapshotRateLimit(t *testing.T) {
	requireFFmpeg(t)
	cfg := qualityConfig()
	cfg.Snapshot.MinInterval = conf.Duration(time.Hour)
	h := newHarness(t, cfg, harnessOpts{run: true})
	normal := loadClip(t, "normal")
	h.start(normal)
	h.play(normal)
	h.settle(units(normal))
	a, err := h.d.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	h.play(normal) // new keyframes
	h.settle(2 * units(normal))
	b, err := h.d.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("a second snapshot within min_interval was encoded again")
	}
}

// Keyframes of different cameras, sizes and contents, with garbage among
// them, come back each to its own job: no camera's picture is taken for
// another's.
func TestDecodersPairFramesWithKeyframes(t *testing.T) {
	path := requireFFmpeg(t)
	dec := newDecoders(path, 2, testLogger(t))
	dec.stuckAfter = time.Second
	dec.flushAfter = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { dec.run(ctx); close(done) }()
	waitFor(t, "the decoders", dec.running.Load)

	type source struct {
		name string
		key  [][]byte
		mean float64 // expected luma mean
	}
	var sources []source
	for _, c := range []struct {
		name string
		mean float64
	}{{"black", 16}, {"bright", 230}, {"normal", 121}, {"covered", 71}} {
		clip := loadClip(t, c.name)
		sources = append(sources, source{c.name, clip.Units[0].NALUs, c.mean})
	}
	sq, err := simcam.Load("square-1080p")
	if err != nil {
		t.Fatal(err)
	}
	sources = append(sources, source{"square-1080p", sq.Units[0].NALUs, -1})
	garbage := [][]byte{{0x67, 1, 2, 3}, {0x68, 0xff}, {0x65, 0x88, 0x80, 0x40, 0x12, 0x34}}

	var mu sync.Mutex
	var wrong []string
	var decoded, failed int
	var wg sync.WaitGroup
	for i := range 60 {
		var src source
		nalus := garbage
		if i%4 != 3 {
			src = sources[i%len(sources)]
			nalus = src.key
		}
		wg.Add(1)
		j := &decodeJob{codec: stream.H264, nalus: nalus, done: func(frame []byte) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case frame == nil:
				failed++
				if src.name != "" {
					wrong = append(wrong, src.name+" failed")
				}
			case src.name == "":
				// Concealed, a garbage keyframe would come back as the
				// previous picture: another camera's.
				wrong = append(wrong, "garbage came back as a picture")
			default:
				decoded++
				if m := measure(frame).Mean; src.mean >= 0 && math.Abs(m-src.mean) > 3 {
					wrong = append(wrong, src.name+" came back with mean "+strconv.FormatFloat(m, 'f', 1, 64))
				}
			}
		}}
		for !dec.submit(j) {
			time.Sleep(time.Millisecond) // the queue is full: wait for room
		}
	}
	wg.Wait()
	if len(wrong) > 0 {
		t.Fatalf("frames paired wrongly: %v", wrong)
	}
	t.Logf("%d decoded, %d garbage failed, %d restarts", decoded, failed, dec.restarts.Load())
	if failed != 15 {
		t.Errorf("%d failed, want the 15 garbage keyframes", failed)
	}
	cancel()
	<-done
	if n := dec.procs.Load(); n != 0 {
		t.Fatalf("%d decoder processes left running", n)
	}
	if kids := childProcesses(t); len(kids) > 0 {
		t.Fatalf("child processes left (zombies?): %v", kids)
	}
	if dec.submit(&decodeJob{codec: stream.H264, done: func([]byte) {}}) {
		t.Fatal("submit accepted a job after the pool stopped")
	}
}

// childProcesses lists this process's children (Linux), to catch
// unreaped ffmpegs.
func childProcesses(t testing.TB) []string {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	self := strconv.Itoa(os.Getpid())
	var out []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		end := strings.LastIndexByte(s, ')')
		if end < 0 {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) > 1 && fields[1] == self {
			out = append(out, s[:end+1]+" "+fields[0])
		}
	}
	return out
}

// Garbage keyframes reach ffmpeg too: the detector and the decoders keep
// going, and a good stream after it is judged normally.
func TestQualityGarbage(t *testing.T) {
	requireFFmpeg(t)
	h := newHarness(t, qualityConfig(), harnessOpts{run: true, blobs: true})
	normal := loadClip(t, "normal")
	h.start(normal)
	publishGarbage(h.hub, 200, h.clock)
	h.sent += 200
	h.settle(200)
	waitFor(t, "garbage keyframes through the decoders", func() bool { return h.d.inflight.Load() == 0 })
	h.clock = h.clock.Add(time.Hour)
	h.start(normal)
	h.playPaced(normal)
	h.settle(200 + units(normal))
	if n := h.d.analysedN.Load(); n < 3 {
		t.Fatalf("only %d keyframes analysed after the garbage (decoded %d, failed %d, restarts %d, flushes %d)", n, h.m.dec.frames.Load(), h.m.dec.failed.Load(), h.m.dec.restarts.Load(), h.m.dec.flushes.Load())
	}
}

// Without ffmpeg the quality checks and snapshots are off, said once in
// the log and in a metric, and the rest works.
func TestWithoutFFmpeg(t *testing.T) {
	cfg := testConfig()
	cfg.FFmpeg = filepath.Join(t.TempDir(), "no-ffmpeg-here")
	cfg.Health.Enabled = false
	var logs bytes.Buffer
	reg := prometheus.NewPedanticRegistry()
	out := &producer{}
	m, err := NewManager(cfg, out, nil, reg, slogTo(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if m.FFmpegAvailable() || strings.Count(logs.String(), "ffmpeg not found") != 1 {
		t.Fatalf("log: %s", logs.String())
	}
	if v := apitest.Metric(t, reg, "sharpeye_detect_ffmpeg_available"); v != 0 {
		t.Fatalf("sharpeye_detect_ffmpeg_available = %v", v)
	}
	h := &harness{t: t, m: m, out: out, clock: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), hub: stream.NewHub("cam-1", stream.DefaultHubConfig())}
	h.d, _ = m.NewDetector("cam-1", Meta{}, h.hub, nil)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(ctx) })
	wg.Go(func() { h.d.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, "subscription", func() bool { return h.hub.Stats().Subscribers == 1 })

	motion := loadClip(t, "motion")
	h.start(motion)
	h.play(motion)
	h.settle(units(motion))
	if ev := h.out.first(t, TypeMotion); len(ev.Evidence) != 0 {
		t.Errorf("evidence %v without ffmpeg", ev.Evidence)
	}
	if _, err := h.d.Snapshot(t.Context()); !errors.Is(err, ErrNoFFmpeg) {
		t.Fatalf("Snapshot: %v, want ErrNoFFmpeg", err)
	}
	if v := apitest.Metric(t, reg, "sharpeye_detect_condition"); v != 1 { // motion, still on
		t.Errorf("conditions raised: %v", v)
	}
}

// A detector that does not follow the stream (motion and quality off, as
// for an on-demand camera) takes its snapshot from the hub's cached
// keyframe.
func TestSnapshotFromHubCache(t *testing.T) {
	requireFFmpeg(t)
	cfg := testConfig()
	cfg.Motion.Enabled, cfg.Quality.Enabled = false, false
	h := newHarness(t, cfg, harnessOpts{run: true})
	normal := loadClip(t, "normal")
	h.start(normal)
	h.play(normal)
	jp, err := h.d.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jpeg.Decode(bytes.NewReader(jp)); err != nil {
		t.Fatal(err)
	}
	if n := h.hub.Stats().Subscribers; n != 0 {
		t.Fatalf("%d subscribers left", n)
	}
}

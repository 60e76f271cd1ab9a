package detect

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"sharpeye/ingest/simcam"
	"sharpeye/ingest/stream"
)

// cpuSelf returns the CPU time this process has used, and that of its
// children that have been waited for.
func cpuSelf(b testing.TB) (self, children time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatal(err)
	}
	return self, time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDetectorsCPU1080p measures what the detectors (health, motion
// and the quality checks, as configured by default) cost per 1080p camera:
// cameras looping the square-1080p fixture (an IDR every 2 s) are fed at
// their real rate through hubs and detectors to the shared keyframe
// decoders, and the CPU used by the ffmpeg processes and by this process
// (the detectors, and the feeding, which the puller does in production)
// is divided by the wall time and the cameras. Each iteration is one group
// of pictures (2 s); run with -benchtime=10x or more:
//
//	SHARPEYE_TEST_PEERS=ffmpeg go test -run '^$' -bench DetectorsCPU -benchtime 10x ./ingest/detect/
func BenchmarkDetectorsCPU1080p(b *testing.B) {
	requireFFmpeg(b)
	clip, err := simcam.Load("square-1080p")
	if err != nil {
		b.Fatal(err)
	}
	for _, cameras := range []int{1, 8} {
		b.Run(fmt.Sprintf("cameras=%d", cameras), func(b *testing.B) {
			cfg := Defaults()
			cfg.Decoders = 1
			m, err := NewManager(cfg, &producer{}, nil, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { m.Run(ctx) })
			var hubs []*stream.Hub
			var dets []*Detector
			for i := range cameras {
				hub := stream.NewHub(fmt.Sprint("cam-", i), stream.DefaultHubConfig())
				hub.SetTrack(stream.Track{Codec: stream.H264, SPS: clip.SPS, PPS: clip.PPS})
				d, err := m.NewDetector(hub.ID(), Meta{}, hub, nil)
				if err != nil {
					b.Fatal(err)
				}
				wg.Go(func() { d.Run(ctx) })
				hubs, dets = append(hubs, hub), append(dets, d)
			}
			for _, hub := range hubs {
				for hub.Stats().Subscribers == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			gop := clip.FPS * 2
			step := time.Second / time.Duration(clip.FPS)
			self0, _ := cpuSelf(b)
			start := time.Now()
			n := 0 // units sent per camera
			b.ResetTimer()
			for b.Loop() {
				// One GOP for every camera, the cameras' keyframes spread
				// evenly over it as they would be in a real fleet.
				next := time.Now()
				for f := range gop {
					for c, hub := range hubs {
						i := (n + f + c*gop/cameras) % len(clip.Units)
						hub.Publish(time.Duration(n+f)*step, time.Now(), slices.Clone(clip.Units[i].NALUs))
					}
					next = next.Add(step)
					time.Sleep(time.Until(next))
				}
				n += gop
			}
			b.StopTimer()
			wall := time.Since(start)
			self1, _ := cpuSelf(b)
			analysed := uint64(0)
			for _, d := range dets {
				analysed += d.analysedN.Load()
			}
			cancel()
			wg.Wait() // every ffmpeg reaped: their CPU time is counted
			ff := time.Duration(m.dec.cpuNanos.Load())
			goSide := self1 - self0
			per := func(d time.Duration) float64 { return 100 * d.Seconds() / wall.Seconds() / float64(cameras) }
			b.ReportMetric(per(ff+goSide), "%core/camera")
			b.ReportMetric(per(ff), "ffmpeg-%core/camera")
			b.ReportMetric(per(goSide), "go-%core/camera")
			b.ReportMetric(float64(analysed)/wall.Seconds()/float64(cameras), "keyframes/s/camera")
			b.ReportMetric(float64(m.dec.flushes.Load())/wall.Seconds(), "flushes/s")
		})
	}
}

// BenchmarkSnapshot1080p is the cost of one snapshot (a one-shot ffmpeg
// decoding a 1080p keyframe to JPEG), in CPU time of the child.
func BenchmarkSnapshot1080p(b *testing.B) {
	path := requireFFmpeg(b)
	clip, err := simcam.Load("square-1080p")
	if err != nil {
		b.Fatal(err)
	}
	k := keyframe{unit: &stream.Unit{NALUs: clip.Units[0].NALUs}, codec: stream.H264}
	sem := make(chan struct{}, 1)
	_, c0 := cpuSelf(b)
	for b.Loop() {
		if _, err := encodeJPEG(b.Context(), path, 5, sem, k); err != nil {
			b.Fatal(err)
		}
	}
	_, c1 := cpuSelf(b)
	b.ReportMetric(float64((c1-c0).Milliseconds())/float64(b.N), "ffmpeg-cpu-ms/op")
}

// unitSizes returns the motion fixture's units as (size, key) pairs.
func unitSizes(b testing.TB) ([]int, []bool) {
	clip := loadClip(b, "motion")
	var sizes []int
	var keys []bool
	for _, u := range clip.Units {
		s := 0
		for _, n := range u.NALUs {
			s += len(n)
		}
		sizes, keys = append(sizes, s), append(keys, u.IDR)
	}
	return sizes, keys
}

// BenchmarkMotionUnit is the motion detector's cost per access unit.
func BenchmarkMotionUnit(b *testing.B) {
	sizes, keys := unitSizes(b)
	m := newMotion(Defaults().Motion, schedules{})
	at := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.unit(at, sizes[i%len(sizes)], keys[i%len(keys)])
		at = at.Add(40 * time.Millisecond)
		i++
	}
}

// BenchmarkDetectorUnit is the detector's whole cost per access unit
// handed over by the hub (motion on, the keyframe bookkeeping, the quality
// checks off), without the channel receive.
func BenchmarkDetectorUnit(b *testing.B) {
	cfg := Defaults()
	cfg.Quality.Enabled = false
	m, err := NewManager(cfg, &producer{}, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	clip := loadClip(b, "motion")
	hub := stream.NewHub("cam", stream.DefaultHubConfig())
	hub.SetTrack(stream.Track{Codec: stream.H264, SPS: clip.SPS, PPS: clip.PPS})
	d, _ := m.NewDetector("cam", Meta{}, hub, nil)
	d.health = newHealth(d.set.Health, time.Now())
	d.motion = newMotion(d.set.Motion, d.sched)
	d.quality = newQuality(d.set.Quality)
	var us []*stream.Unit
	for i, u := range clip.Units {
		size := 0
		for _, n := range u.NALUs {
			size += len(n)
		}
		us = append(us, &stream.Unit{NALUs: u.NALUs, Key: u.IDR, Size: size, Epoch: 1, PTS: time.Duration(i) * 40 * time.Millisecond})
	}
	at := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		u := *us[i%len(us)]
		u.Received = at
		d.unit(&u)
		for len(d.pending) > 0 {
			<-d.pending
		}
		at = at.Add(40 * time.Millisecond)
		i++
	}
}

// BenchmarkHealthStep is the health check's cost per tick (one a second
// per camera).
func BenchmarkHealthStep(b *testing.B) {
	h := newHealth(Defaults().Health, time.Unix(1_800_000_000, 0))
	in := healthInput{expected: true, fps: 25, bitrate: 2e6, haveRates: true, haveLoss: true}
	now := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		in.now, in.lastPacket = now, now
		in.received += 200
		h.step(in)
	}
}

// BenchmarkMeasure is the cost of the statistics of one decoded keyframe.
func BenchmarkMeasure(b *testing.B) {
	frame := make([]byte, frameSize)
	for i := range frame {
		frame[i] = byte(i * 7)
	}
	prev := make([]byte, lumaSize)
	b.SetBytes(frameSize)
	b.ReportAllocs()
	for b.Loop() {
		measure(frame)
		meanAbsDiff(prev, frame[:lumaSize])
	}
}

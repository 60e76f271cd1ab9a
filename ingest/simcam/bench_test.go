//go:build linux || darwin || freebsd

package simcam

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
)

// BenchmarkServe500 runs 500 cameras of the 2 Mb/s 1080p clip in real time
// (12,500 units/s, 1 Gb/s of RTP) and reports the process CPU time per unit
// sent: cpu-ns/unit, and the cores that makes. One iteration is one frame
// interval (40 ms). With udp-readers=1, one camera has a UDP reader, whose
// receiving (in this process) is included. Use -benchtime=10s for a steadier
// figure.
func BenchmarkServe500(b *testing.B) {
	for _, readers := range []int{0, 1} {
		b.Run(fmt.Sprintf("udp-readers=%d", readers), func(b *testing.B) {
			benchServe(b, 500, readers)
		})
	}
}

func benchServe(b *testing.B, cameras, readers int) {
	var sent atomic.Uint64
	s := startServer(b, Config{
		UDPRTPAddress: "127.0.0.1:0",
		OnUnitSent:    func(string, int, bool, time.Time) { sent.Add(1) },
	})
	clip := loadClip(b, "square-1080p")
	gop := 2 * time.Second
	for i := range cameras {
		cam := NewCamera(fmt.Sprintf("cam%03d", i), clip)
		cam.Delay = time.Duration(i) * gop / time.Duration(cameras) // spread the keyframes
		addCamera(b, s, cam)
	}
	var received atomic.Uint64
	for i := range readers {
		countPackets(b, s.URL(fmt.Sprintf("cam%03d", i)), &received)
	}
	// Warm up until every camera has started.
	time.Sleep(gop)

	skipped := func() (n uint64) {
		for _, p := range s.Paths() {
			st, _ := s.Camera(p)
			n += st.Skipped
		}
		return n
	}
	skipped0 := skipped()
	units0 := sent.Load()
	cpu0 := cpuTime(b)
	start := time.Now()
	n := uint64(0)
	for b.Loop() {
		n++
		for sent.Load()-units0 < n*uint64(cameras) {
			time.Sleep(time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	cpu := cpuTime(b) - cpu0
	units := sent.Load() - units0

	b.ReportMetric(float64(cpu.Nanoseconds())/float64(units), "cpu-ns/unit")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores")
	b.ReportMetric(float64(units)/elapsed.Seconds(), "units/s")
	b.ReportMetric(float64(skipped()-skipped0), "skipped")
	if readers > 0 && received.Load() == 0 {
		b.Error("the reader received nothing")
	}
}

// countPackets reads rawURL over UDP, only counting packets.
func countPackets(b *testing.B, rawURL string, n *atomic.Uint64) {
	b.Helper()
	u, err := base.ParseURL(rawURL)
	if err != nil {
		b.Fatal(err)
	}
	transport := gortsplib.TransportUDP
	c := &gortsplib.Client{
		Scheme:        u.Scheme,
		Host:          u.Host,
		Transport:     &transport,
		OnPacketsLost: func(uint64) {}, // instead of a log line per loss
	}
	if err := c.Start2(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	desc, _, err := c.Describe(u)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		b.Fatal(err)
	}
	c.OnPacketRTPAny(func(*description.Media, format.Format, *rtp.Packet) { n.Add(1) })
	if _, err := c.Play(nil); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSendUnit measures writing one access unit of the 1080p clip (about
// 8 packets on average) to a camera's stream, without pacing: the sending
// cost per unit, and with a reader the cost of fanning out to it (its write
// queue overflows at this pace, so packets are dropped at the queue).
func BenchmarkSendUnit(b *testing.B) {
	for _, readers := range []int{0, 1} {
		b.Run(fmt.Sprintf("udp-readers=%d", readers), func(b *testing.B) {
			s := startServer(b, Config{UDPRTPAddress: "127.0.0.1:0"})
			clip := loadClip(b, "square-1080p")
			cam := NewCamera("cam", clip)
			cam.Delay = time.Hour // keep the scheduler off it
			addCamera(b, s, cam)
			var received atomic.Uint64
			if readers > 0 {
				countPackets(b, s.URL("cam"), &received)
			}
			c := s.lookup("cam")
			sched := newScheduler(nil)
			b.SetBytes(int64(clipBytes(clip) / len(clip.Units)))
			b.ReportAllocs()
			for b.Loop() {
				c.sendMu.Lock()
				sched.send(c)
				c.sendMu.Unlock()
				c.k++
			}
			b.ReportMetric(float64(c.packets.Load())/float64(c.units.Load()), "packets/unit")
		})
	}
}

func clipBytes(c *Clip) int {
	n := 0
	for _, u := range c.Units {
		for _, nalu := range u.NALUs {
			n += len(nalu)
		}
	}
	return n
}

// cpuTime returns the user and system CPU time of the process.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package simcam

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/conn"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v4/pkg/headers"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"
)

// guard bounds every wait in these tests. It is a failure guard, not a
// timing assertion: on a healthy machine each wait takes well under a second.
const guard = 20 * time.Second

// waitFor polls cond until it holds, failing the test after guard.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkGoroutines fails the test if goroutines started during it outlive it.
// Call it first, so that its cleanup runs after every other.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(guard)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("goroutines leaked: %d before, %d after:\n%s",
					before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := NewServer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func addCamera(t testing.TB, s *Server, cam Camera) {
	t.Helper()
	if err := s.Add(cam); err != nil {
		t.Fatal(err)
	}
}

// decodedAU is an access unit as a reader received it.
type decodedAU struct {
	nalus     [][]byte
	timestamp uint32
}

// player is an RTSP reader pulling one camera with gortsplib's client.
type player struct {
	client *gortsplib.Client
	desc   *description.Session
	// forma is the camera's H.264 format; forma265 its H.265 one. One of
	// them is set.
	forma    *format.H264
	forma265 *format.H265
	packets  atomic.Int64
	errors   atomic.Int64 // RTP/H.264 or RTP/H.265 decode errors
	aus      chan decodedAU
	done     chan error // Wait's result
}

// play pulls rawURL over transport until the test ends.
func play(t testing.TB, rawURL string, transport gortsplib.Transport) *player {
	t.Helper()
	p, err := tryPlay(t, rawURL, transport)
	if err != nil {
		t.Fatalf("play %s over %v: %v", rawURL, transport, err)
	}
	return p
}

func tryPlay(t testing.TB, rawURL string, transport gortsplib.Transport) (*player, error) {
	u, err := base.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	p := &player{
		client: &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &transport},
		aus:    make(chan decodedAU, 1024),
		done:   make(chan error, 1),
	}
	if err := p.client.Start2(); err != nil {
		return nil, err
	}
	t.Cleanup(p.client.Close)

	p.desc, _, err = p.client.Describe(u)
	if err != nil {
		return nil, err
	}
	var (
		medi   *description.Media
		forma  format.Format
		decode func(*rtp.Packet) ([][]byte, error)
	)
	if medi = p.desc.FindFormat(&p.forma); medi != nil {
		dec, err := p.forma.CreateDecoder()
		if err != nil {
			return nil, err
		}
		forma, decode = p.forma, dec.Decode
	} else if medi = p.desc.FindFormat(&p.forma265); medi != nil {
		dec, err := p.forma265.CreateDecoder()
		if err != nil {
			return nil, err
		}
		forma, decode = p.forma265, dec.Decode
	} else {
		return nil, errors.New("no H.264 or H.265 format in SDP")
	}
	if err := p.client.SetupAll(p.desc.BaseURL, p.desc.Medias); err != nil {
		return nil, err
	}
	p.client.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) {
		p.packets.Add(1)
		au, err := decode(pkt)
		if err != nil {
			if !errors.Is(err, rtph264.ErrMorePacketsNeeded) && !errors.Is(err, rtph264.ErrNonStartingPacketAndNoPrevious) &&
				!errors.Is(err, rtph265.ErrMorePacketsNeeded) && !errors.Is(err, rtph265.ErrNonStartingPacketAndNoPrevious) {
				p.errors.Add(1)
			}
			return
		}
		cp := make([][]byte, len(au))
		for i, n := range au {
			cp[i] = bytes.Clone(n)
		}
		select {
		case p.aus <- decodedAU{nalus: cp, timestamp: pkt.Timestamp}:
		default: // the test stopped reading
		}
	})
	if _, err := p.client.Play(nil); err != nil {
		return nil, err
	}
	go func() { p.done <- p.client.Wait() }()
	return p, nil
}

// next returns the next access unit received.
func (p *player) next(t testing.TB) decodedAU {
	t.Helper()
	select {
	case au := <-p.aus:
		return au
	case err := <-p.done:
		t.Fatalf("session ended: %v", err)
	case <-time.After(guard):
		t.Fatal("timed out waiting for an access unit")
	}
	return decodedAU{}
}

// nextIDR skips to the next IDR access unit.
func (p *player) nextIDR(t testing.TB) decodedAU {
	t.Helper()
	for {
		if au := p.next(t); slices.Contains(naluTypes(au.nalus), h264.NALUTypeIDR) {
			return au
		}
	}
}

// drain discards the access units received so far.
func (p *player) drain() {
	for {
		select {
		case <-p.aus:
		default:
			return
		}
	}
}

// alive reports whether the session is still up.
func (p *player) alive() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

// unitIndex maps the content of each unit of a clip to its index.
func unitIndex(c *Clip) map[uint64]int {
	m := make(map[uint64]int, len(c.Units))
	for i, u := range c.Units {
		m[hashAU(u.NALUs)] = i
	}
	return m
}

func hashAU(nalus [][]byte) uint64 {
	h := fnv.New64a()
	for _, n := range nalus {
		fmt.Fprintf(h, "%d:", len(n))
		h.Write(n)
	}
	return h.Sum64()
}

func statusCode(err error) base.StatusCode {
	var bad liberrors.ErrClientBadStatusCode
	if errors.As(err, &bad) {
		return bad.Code
	}
	return 0
}

func TestPlay(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, Config{UDPRTPAddress: "127.0.0.1:0"})
	rtpPort, rtcpPort := s.UDPPorts()
	if rtpPort == 0 || rtpPort%2 != 0 || rtcpPort != rtpPort+1 {
		t.Fatalf("UDP ports %d, %d: want even and consecutive", rtpPort, rtcpPort)
	}

	for _, name := range []string{"street-360p", "square-1080p"} {
		clip := loadClip(t, name)
		index := unitIndex(clip)
		for _, inSDP := range []bool{true, false} {
			for _, transport := range []gortsplib.Transport{gortsplib.TransportTCP, gortsplib.TransportUDP} {
				path := fmt.Sprintf("%s-sdp-%v-%v", name, inSDP, transport)
				t.Run(path, func(t *testing.T) {
					// The delay lets the reader join before the first
					// unit, an IDR, rather than wait for the next GOP.
					addCamera(t, s, Camera{Path: path, Clip: clip, ParamsInSDP: inSDP, Delay: 300 * time.Millisecond})
					p := play(t, s.URL(path), transport)
					if p.forma.PacketizationMode != 1 {
						t.Errorf("packetization mode %d", p.forma.PacketizationMode)
					}
					if inSDP != (bytes.Equal(p.forma.SPS, clip.SPS) && bytes.Equal(p.forma.PPS, clip.PPS)) {
						t.Errorf("SDP parameter sets: SPS %x PPS %x, want them: %v", p.forma.SPS, p.forma.PPS, inSDP)
					}
					var sps h264.SPS
					if err := sps.Unmarshal(clip.SPS); err != nil || sps.Width() != clip.Width {
						t.Errorf("clip SPS: %v", err)
					}

					idr := p.nextIDR(t)
					types := naluTypes(idr.nalus)
					if !slices.Contains(types, h264.NALUTypeSPS) || !slices.Contains(types, h264.NALUTypePPS) {
						t.Errorf("first IDR carries no SPS/PPS in band: %v", types)
					}
					// Every unit arrives intact: it is one of the clip's.
					i, ok := index[hashAU(idr.nalus)]
					if !ok || !clip.Units[i].IDR {
						t.Fatalf("IDR matches no unit of the clip")
					}
					for range 30 {
						au := p.next(t)
						j, ok := index[hashAU(au.nalus)]
						if !ok {
							t.Fatalf("access unit %v matches no unit of the clip", naluTypes(au.nalus))
						}
						if transport == gortsplib.TransportTCP && j != (i+1)%len(clip.Units) {
							t.Fatalf("unit %d after unit %d over TCP", j, i)
						}
						i = j
					}
					if n := p.errors.Load(); n != 0 && transport == gortsplib.TransportTCP {
						t.Errorf("%d decode errors over TCP", n)
					}
				})
			}
		}
	}
}

func TestReaders(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, Config{UDPRTPAddress: "127.0.0.1:0"})
	addCamera(t, s, NewCamera("cam", loadClip(t, "street-360p")))

	p1 := play(t, s.URL("cam"), gortsplib.TransportTCP)
	p2 := play(t, s.URL("cam"), gortsplib.TransportUDP)
	if _, _, readers := s.Stats("cam"); readers != 2 {
		t.Errorf("%d readers, want 2", readers)
	}
	p1.nextIDR(t)
	p2.nextIDR(t)

	p1.client.Close()
	waitFor(t, "one reader left", func() bool { _, _, r := s.Stats("cam"); return r == 1 })

	st, ok := s.Camera("cam")
	if !ok || st.Units == 0 || st.Packets < st.Units || st.Bytes <= st.Packets*rtpHeaderSize || st.LastIDR.IsZero() {
		t.Errorf("stats %+v", st)
	}
}

func TestStripParamsCamera(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, Config{})
	clip := loadClip(t, "gate-720p")
	cam := NewCamera("sdp-only", clip.StripParams())
	cam.Delay = 300 * time.Millisecond
	addCamera(t, s, cam)

	p := play(t, s.URL("sdp-only"), gortsplib.TransportTCP)
	if !bytes.Equal(p.forma.SPS, clip.SPS) || !bytes.Equal(p.forma.PPS, clip.PPS) {
		t.Errorf("SDP parameter sets: SPS %x PPS %x, want the clip's", p.forma.SPS, p.forma.PPS)
	}
	p.nextIDR(t)
	for range 60 { // more than a GOP, so another IDR
		au := p.next(t)
		if types := naluTypes(au.nalus); slices.Contains(types, h264.NALUTypeSPS) || slices.Contains(types, h264.NALUTypePPS) {
			t.Fatalf("parameter sets in band: %v", types)
		}
	}
}

func TestAuth(t *testing.T) {
	checkGoroutines(t)
	const user, pass = "admin", "p@ss/w rd#中"
	s := startServer(t, Config{Username: user, Password: pass, UDPRTPAddress: "127.0.0.1:0"})
	addCamera(t, s, NewCamera("cam", loadClip(t, "street-360p")))
	if !strings.Contains(s.URL("cam"), "admin:") {
		t.Fatalf("URL %s has no credentials", s.URL("cam"))
	}

	t.Run("digest", func(t *testing.T) {
		// gortsplib's client picks Digest when both are offered.
		p := play(t, s.URL("cam"), gortsplib.TransportUDP)
		p.nextIDR(t)
	})

	bare := "rtsp://" + s.Addr() + "/cam"
	wrong := "rtsp://admin:wrong@" + s.Addr() + "/cam"
	for name, u := range map[string]string{"no credentials": bare, "wrong password": wrong} {
		t.Run(name, func(t *testing.T) {
			_, err := tryPlay(t, u, gortsplib.TransportTCP)
			if statusCode(err) != base.StatusUnauthorized {
				t.Fatalf("got %v, want 401", err)
			}
		})
	}

	t.Run("basic", func(t *testing.T) {
		for password, want := range map[string]base.StatusCode{pass: base.StatusOK, "wrong": base.StatusUnauthorized} {
			res := rawDescribe(t, s.Addr(), "/cam", headers.Authorization{
				Method: headers.AuthMethodBasic, Username: user, BasicPass: password,
			}.Marshal())
			if res.StatusCode != want {
				t.Errorf("password %q: status %d, want %d", password, res.StatusCode, want)
			}
		}
	})
}

// rawDescribe sends one DESCRIBE with the given Authorization header.
func rawDescribe(t *testing.T, addr, path string, authz base.HeaderValue) *base.Response {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, guard)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(guard))
	u, err := base.ParseURL("rtsp://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	c := conn.NewConn(nc)
	err = c.WriteRequest(&base.Request{
		Method: base.Describe,
		URL:    u,
		Header: base.Header{"CSeq": base.HeaderValue{"1"}, "Authorization": authz},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.ReadResponse()
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRemove(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, Config{UDPRTPAddress: "127.0.0.1:0"})
	clip := loadClip(t, "street-360p")
	addCamera(t, s, NewCamera("cam", clip))

	for _, transport := range []gortsplib.Transport{gortsplib.TransportTCP, gortsplib.TransportUDP} {
		t.Run(transport.String(), func(t *testing.T) {
			p := play(t, s.URL("cam"), transport)
			p.next(t)

			if !s.Remove("cam") {
				t.Fatal("Remove found no camera")
			}
			select {
			case err := <-p.done:
				if err == nil {
					t.Error("session ended without error")
				}
			case <-time.After(guard):
				t.Fatal("session still up after Remove")
			}

			if _, err := tryPlay(t, s.URL("cam"), transport); statusCode(err) != base.StatusNotFound {
				t.Errorf("after Remove: %v, want 404", err)
			}
			if _, ok := s.Camera("cam"); ok || s.Remove("cam") || s.Pause("cam") {
				t.Error("removed camera still known")
			}
			if paths := s.Paths(); len(paths) != 0 {
				t.Errorf("Paths() = %q", paths)
			}

			// The path can be used again.
			addCamera(t, s, NewCamera("cam", clip))
		})
	}
}

func TestPauseResume(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, Config{})
	clip := loadClip(t, "street-360p")
	addCamera(t, s, NewCamera("hung", clip))
	addCamera(t, s, NewCamera("clock", clip))

	p := play(t, s.URL("hung"), gortsplib.TransportTCP)
	p.next(t)

	// The other camera, sent by the same goroutine, is the clock: once it
	// has sent 10 more units, the paused one was due 10 times.
	units := func(path string) uint64 { st, _ := s.Camera(path); return st.Units }
	waitUnits := func(n uint64) {
		t.Helper()
		target := units("clock") + n
		waitFor(t, "the clock camera", func() bool { return units("clock") >= target })
	}

	if !s.Pause("hung") {
		t.Fatal("Pause found no camera")
	}
	packets, _, _ := s.Stats("hung")
	waitUnits(10)
	if after, _, _ := s.Stats("hung"); after != packets {
		t.Fatalf("paused camera sent %d packets", after-packets)
	}
	if !p.alive() {
		t.Fatal("session ended while paused")
	}
	if _, _, readers := s.Stats("hung"); readers != 1 {
		t.Errorf("%d readers while paused, want 1", readers)
	}

	received := p.packets.Load()
	if !s.Resume("hung") {
		t.Fatal("Resume found no camera")
	}
	waitFor(t, "packets after Resume", func() bool { return p.packets.Load() > received })
	p.drain()
	p.nextIDR(t)
}

func TestGarbage(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	idrs := map[bool]int{} // garbage mode -> IDRs reported
	var garbage atomic.Bool
	s := startServer(t, Config{OnUnitSent: func(path string, i int, idr bool, at time.Time) {
		if path == "cam" && idr {
			mu.Lock()
			idrs[garbage.Load()]++
			mu.Unlock()
		}
	}})
	clip := loadClip(t, "street-360p")
	index := unitIndex(clip)
	addCamera(t, s, NewCamera("cam", clip))

	p := play(t, s.URL("cam"), gortsplib.TransportTCP)
	p.nextIDR(t)

	garbage.Store(true)
	s.SetGarbage("cam", true)
	before, _ := s.Camera("cam")
	// Garbage still comes in valid RTP packets; it no longer decodes into
	// units of the clip.
	received := p.packets.Load()
	waitFor(t, "garbage packets", func() bool { return p.packets.Load() > received+300 })
	p.drain()
	bad := 0
	for bad == 0 {
		select {
		case au := <-p.aus:
			if _, ok := index[hashAU(au.nalus)]; !ok {
				bad++
			}
		case <-time.After(10 * time.Millisecond):
			if p.errors.Load() > 0 {
				bad++
			}
		}
	}
	after, _ := s.Camera("cam")
	if after.Units-before.Units < 60 {
		t.Fatalf("only %d units sent", after.Units-before.Units)
	}
	if !after.LastIDR.Equal(before.LastIDR) {
		t.Error("an IDR was reported while sending garbage")
	}

	s.SetGarbage("cam", false)
	garbage.Store(false)
	p.drain()
	idr := p.nextIDR(t)
	if _, ok := index[hashAU(idr.nalus)]; !ok {
		t.Error("IDR after garbage does not match the clip")
	}
	if !p.alive() {
		t.Error("session ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if idrs[true] != 0 || idrs[false] == 0 {
		t.Errorf("OnUnitSent IDRs: %d with garbage, %d without", idrs[true], idrs[false])
	}
}

func TestLoopTimestamps(t *testing.T) {
	checkGoroutines(t)
	street := loadClip(t, "street-360p")
	short := *street
	short.Name = "short"
	short.Units = street.Units[:10] // loops every 0.4 s
	index := unitIndex(&short)

	var wraps atomic.Int64
	third := make(chan struct{}) // closed when the callback sees the third wrap
	last := -1
	s := startServer(t, Config{OnUnitSent: func(_ string, i int, _ bool, _ time.Time) {
		if i < last && wraps.Add(1) == 3 {
			close(third)
		}
		last = i
	}})
	addCamera(t, s, NewCamera("short", &short))

	p := play(t, s.URL("short"), gortsplib.TransportTCP)
	prev := p.next(t)
	prevIndex := -1
	seenWraps := 0
	for seenWraps < 3 {
		au := p.next(t)
		i, ok := index[hashAU(au.nalus)]
		if !ok {
			t.Fatal("unit matches no unit of the clip")
		}
		if i < prevIndex {
			seenWraps++
		}
		prevIndex = i
		// Strictly increasing (modulo 2^32), by whole frame intervals: 3600
		// ticks unless the sender fell behind and skipped units.
		if d := int32(au.timestamp - prev.timestamp); d <= 0 || d%3600 != 0 {
			t.Fatalf("RTP timestamp %d after %d (unit %d)", au.timestamp, prev.timestamp, i)
		}
		prev = au
	}
	// OnUnitSent runs after a unit is written, so the reader may have the
	// unit that completes the third loop before the callback has seen it.
	select {
	case <-third:
	case <-time.After(5 * time.Second):
		t.Errorf("OnUnitSent saw %d wraps", wraps.Load())
	}
}

func TestGoroutinesPerCamera(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, Config{UDPRTPAddress: "127.0.0.1:0"})
	clip := loadClip(t, "square-1080p")

	before := runtime.NumGoroutine()
	const n = 100
	for i := range n {
		addCamera(t, s, NewCamera(fmt.Sprintf("cam%03d", i), clip))
	}
	// All cameras share one packed copy of the clip.
	s.mu.RLock()
	packs := len(s.packs)
	s.mu.RUnlock()
	if packs != 1 {
		t.Errorf("%d packed clips for one *Clip", packs)
	}

	waitFor(t, "every camera sending", func() bool {
		for i := range n {
			if st, _ := s.Camera(fmt.Sprintf("cam%03d", i)); st.Units == 0 {
				return false
			}
		}
		return true
	})
	if got := goroutinesRunning("simcam.(*scheduler).run"); got != 1 {
		t.Errorf("%d sending goroutines for %d cameras, want 1", got, n)
	}
	// gortsplib's ServerStream adds its RTCP sender-report goroutine per
	// camera; nothing else may.
	added := runtime.NumGoroutine() - before
	t.Logf("%d cameras: 1 sending goroutine (started with the server), %d goroutines added (gortsplib RTCP sender reports)", n, added)
	if added > n+1 {
		t.Errorf("%d cameras added %d goroutines, want at most %d", n, added, n+1)
	}
	p := play(t, s.URL("cam042"), gortsplib.TransportUDP)
	p.nextIDR(t)
}

// goroutinesRunning counts the goroutines with fn in their stack.
func goroutinesRunning(fn string) int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

func TestLifecycle(t *testing.T) {
	checkGoroutines(t)
	clip := loadClip(t, "street-360p")

	s, err := NewServer(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != "" {
		t.Error("NewServer bound an address")
	}
	if err := s.Add(NewCamera("cam", clip)); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Add before Start: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	addCamera(t, s, NewCamera("/site1/cam01/", clip))
	if got := s.Paths(); !slices.Equal(got, []string{"site1/cam01"}) {
		t.Errorf("Paths() = %q", got)
	}
	if want := "rtsp://" + s.Addr() + "/site1/cam01"; s.URL("site1/cam01") != want {
		t.Errorf("URL = %s, want %s", s.URL("site1/cam01"), want)
	}
	p := play(t, s.URL("site1/cam01"), gortsplib.TransportTCP)
	p.next(t)

	for name, cam := range map[string]Camera{
		"duplicate":   NewCamera("site1/cam01", clip),
		"empty path":  NewCamera("/", clip),
		"bad path":    NewCamera("cam 1", clip),
		"dot segment": NewCamera("a/../b", clip),
		"query":       NewCamera("cam?x=1", clip),
		"no clip":     NewCamera("cam", nil),
		"no units":    NewCamera("cam", &Clip{Name: "empty", FPS: 25}),
		"empty NALU":  NewCamera("cam", &Clip{Name: "bad", Units: []AccessUnit{{NALUs: [][]byte{{}}}}}),
		"fast":        NewCamera("cam", &Clip{Name: "fast", FPS: 1000, Units: clip.Units}),
	} {
		if err := s.Add(cam); err == nil {
			t.Errorf("%s: Add succeeded", name)
		}
	}
	if err := s.Add(NewCamera("site1/cam01", clip)); !errors.Is(err, ErrPathInUse) {
		t.Errorf("duplicate: %v, want ErrPathInUse", err)
	}

	s.Close()
	s.Close()
	select {
	case <-p.done:
	case <-time.After(guard):
		t.Fatal("session still up after Close")
	}
	if err := s.Add(NewCamera("cam2", clip)); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
	if err := s.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}

	// Close without Start.
	s2, err := NewServer(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
}

func TestConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"bad address":       {Address: "nowhere"},
		"password only":     {Password: "x"},
		"colon in password": {Username: "u", Password: "a:b"},
		"colon in username": {Username: "u:v", Password: "ab"},
		"RTCP only":         {UDPRTCPAddress: "127.0.0.1:8001"},
		"bad RTP address":   {UDPRTPAddress: "127.0.0.1"},
		"bad RTP port":      {UDPRTPAddress: "127.0.0.1:99999"},
		"bad RTCP address":  {UDPRTPAddress: "127.0.0.1:0", UDPRTCPAddress: "x"},
		"bad RTCP port":     {UDPRTPAddress: "127.0.0.1:0", UDPRTCPAddress: "127.0.0.1:x"},
		"bad address port2": {Address: "127.0.0.1:http"},
	} {
		if _, err := NewServer(cfg, nil); err == nil {
			t.Errorf("%s: NewServer succeeded", name)
		}
	}

	// Errors found on Start.
	for name, cfg := range map[string]Config{
		"odd RTP port":       {UDPRTPAddress: "127.0.0.1:8001", UDPRTCPAddress: "127.0.0.1:8002"},
		"RTCP not next":      {UDPRTPAddress: "127.0.0.1:8000", UDPRTCPAddress: "127.0.0.1:8003"},
		"RTCP port with 0":   {UDPRTPAddress: "127.0.0.1:0", UDPRTCPAddress: "127.0.0.1:8001"},
		"address not local":  {Address: "192.0.2.1:0"},
		"RTCP explicit only": {UDPRTPAddress: "127.0.0.1:8000"},
	} {
		t.Run(name, func(t *testing.T) {
			checkGoroutines(t)
			s, err := NewServer(cfg, nil)
			if err != nil {
				return // refused early: fine too
			}
			if err := s.Start(); err == nil {
				s.Close()
				t.Fatal("Start succeeded")
			}
			s.Close()
		})
	}
}

func TestExplicitUDPPorts(t *testing.T) {
	checkGoroutines(t)
	// Find a free pair, release it, and ask for it explicitly.
	rtpConn, rtcpConn, err := listenUDPPair("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	rtpAddr, rtcpAddr := rtpConn.LocalAddr().String(), rtcpConn.LocalAddr().String()
	rtpConn.Close()
	rtcpConn.Close()

	s, err := NewServer(Config{UDPRTPAddress: rtpAddr, UDPRTCPAddress: rtcpAddr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Skipf("the pair was taken meanwhile: %v", err)
	}
	t.Cleanup(s.Close)
	addCamera(t, s, NewCamera("cam", loadClip(t, "street-360p")))
	p := play(t, s.URL("cam"), gortsplib.TransportUDP)
	p.nextIDR(t)
}

func TestWildcardAddresses(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, Config{Address: ":0", UDPRTPAddress: ":0"})
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %s, want a dialable 127.0.0.1 address", s.Addr())
	}
	addCamera(t, s, NewCamera("cam", loadClip(t, "street-360p")))
	p := play(t, s.URL("cam"), gortsplib.TransportUDP)
	p.next(t)
}

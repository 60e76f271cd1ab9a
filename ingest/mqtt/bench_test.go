package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sync/errgroup"

	"sharpeye/configs/conf"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/device"
)

// latencyBus is a non-blocking bus that records, for each event, the time
// since the device published it (the reading "t", microseconds since the
// benchmark's epoch).
type latencyBus struct {
	epoch time.Time
	// next, when set, is the real bus the messages go to first: the
	// latency is then to the event being durable there.
	next bus.Producer

	mu  sync.Mutex
	lat []time.Duration
	// latSent is from when a paced device wrote the message (its "sent"
	// stamp), where lat is from when it was due: the difference is how
	// late the load generator, sharing the machine, sent it.
	latSent []time.Duration
	msgs    int
	// calls and busy are the publishes to next and the time they took.
	calls int
	busy  time.Duration
}

func (l *latencyBus) Publish(ctx context.Context, msgs ...bus.Message) error {
	var took time.Duration
	if l.next != nil {
		t := time.Now()
		if err := l.next.Publish(ctx, msgs...); err != nil {
			return err
		}
		took = time.Since(t)
	}
	now := time.Since(l.epoch)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	l.busy += took
	for _, m := range msgs {
		l.msgs++
		if at, ok := stamp(m.Value, `"t":`); ok {
			l.lat = append(l.lat, now-at)
		}
		if at, ok := stamp(m.Value, `"sent":`); ok {
			l.latSent = append(l.latSent, now-at)
		}
	}
	return nil
}

// stamp reads the number after key in an event, microseconds since the
// benchmark's epoch.
func stamp(v []byte, key string) (time.Duration, bool) {
	i := bytes.Index(v, []byte(key))
	if i < 0 {
		return 0, false
	}
	v = v[i+len(key):]
	j := bytes.IndexAny(v, ",}")
	if j <= 0 {
		return 0, false
	}
	us, err := strconv.ParseFloat(string(v[:j]), 64)
	return time.Duration(us) * time.Microsecond, err == nil
}

// BenchmarkIntake measures the embedded broker's intake end to end: MQTT
// QoS 1 messages from 50 devices to events on a bus that never blocks. The
// devices are lean MQTT 3.1.1 publishers written for the benchmark (see
// rawDevice), so that little of the machine goes to them; each keeps up to
// window messages unacknowledged, and a PUBACK means the event is on the
// bus. It reports the rate and the time from publish to the bus (50th and
// 99th percentiles). BenchmarkIntakePaho is the same with paho clients.
func BenchmarkIntake(b *testing.B) {
	lb, h, devs := benchSetup(b, benchDevices)
	runRawDevices(b, lb, h, devs)
}

const benchWindow = 4

// benchDevices is 50, or SHARPEYE_BENCH_DEVICES.
var benchDevices = func() int {
	if n, err := strconv.Atoi(os.Getenv("SHARPEYE_BENCH_DEVICES")); err == nil && n > 0 {
		return n
	}
	return 50
}()

// runRawDevices has every device publish its share of b.N messages, with
// benchWindow unacknowledged at most, and reports the figures.
func runRawDevices(b *testing.B, lb *latencyBus, h *harness, devs []device.Device) {
	clients := make([]*rawDevice, len(devs))
	for i, d := range devs {
		clients[i] = dialRaw(b, h.in.Addr(), d.ID, "bench-pass-1", d.ID)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, c := range clients {
		topic := "sharpeye/devices/" + devs[i].ID + "/telemetry"
		n := share(b.N, len(devs), i)
		wg.Go(func() {
			if err := c.publishAll(topic, n, benchWindow, lb.epoch); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	benchReport(b, lb, h)
}

// BenchmarkIntakeEmbeddedBus is BenchmarkIntake onto the real embedded bus
// (the demo's default: a durable SQLite log): an event counts when it is
// durable there.
func BenchmarkIntakeEmbeddedBus(b *testing.B) {
	lb, h, devs := benchSetupOn(b, benchDevices, &latencyBus{epoch: time.Now(), next: embeddedBus(b)})
	runRawDevices(b, lb, h, devs)
}

// embeddedBus is a running embedded bus in a temporary directory, synced
// in full unless SHARPEYE_BENCH_BUS_SYNC=normal.
func embeddedBus(b *testing.B) *bus.Embedded {
	bcfg := bus.Defaults()
	if os.Getenv("SHARPEYE_BENCH_BUS_SYNC") == "normal" {
		bcfg.Synchronous = bus.SyncNormal
	}
	eb, err := bus.NewEmbedded(bcfg, b.TempDir(), prometheus.NewRegistry(), quiet())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eb.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return eb
}

// BenchmarkIntakeEmbeddedBusRate offers the intake a fixed load, as
// devices in the field do, instead of BenchmarkIntakeEmbeddedBus's closed
// loop (where each device waits for its PUBACKs, so that the rate measures
// the round trip rather than what the intake can take): every device
// publishes its share of benchRate messages per second (default 50,000,
// or SHARPEYE_BENCH_RATE), on a schedule, whatever its PUBACKs. Each
// message is stamped with the time it was due, so that a late publisher
// shows in the latency. It reports the rate achieved and the time from
// due to durable on the embedded bus.
func BenchmarkIntakeEmbeddedBusRate(b *testing.B) {
	rate := 50000
	if n, err := strconv.Atoi(os.Getenv("SHARPEYE_BENCH_RATE")); err == nil && n > 0 {
		rate = n
	}
	lb, h, devs := benchSetupOn(b, benchDevices, &latencyBus{epoch: time.Now(), next: embeddedBus(b)})
	clients := make([]*rawDevice, len(devs))
	for i, d := range devs {
		clients[i] = dialRaw(b, h.in.Addr(), d.ID, "bench-pass-1", d.ID)
	}
	topics := make([]string, len(devs))
	for i, d := range devs {
		topics[i] = "sharpeye/devices/" + d.ID + "/telemetry"
	}
	b.ReportAllocs()
	b.ResetTimer()
	if err := publishPaced(clients, topics, b.N, rate, lb.epoch); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(rate), "offered/s")
	benchReport(b, lb, h)
}

// pacers is how many goroutines publishPaced drives the devices with, so
// that the load keeps its schedule on a machine busy with the intake.
const pacers = 4

// publishPaced has the devices publish n messages between them, rate a
// second: device i's k-th message is due at (k*devices + i)/rate after the
// start. A few goroutines drive them all, each waking every millisecond to
// write its devices the messages that have fallen due (as devices on other
// machines would, without a timer per device on this one). It then waits
// for every PUBACK.
func publishPaced(devs []*rawDevice, topics []string, n, rate int, epoch time.Time) error {
	start := time.Now()
	interval := time.Duration(float64(time.Second) * float64(len(devs)) / float64(rate))
	var g errgroup.Group
	for p := range pacers {
		g.Go(func() error {
			type state struct {
				i, k, n int
				id      uint16
				first   time.Time
			}
			var st []state
			left := 0
			for i := p; i < len(devs); i += pacers {
				s := state{i: i, n: share(n, len(devs), i), first: start.Add(time.Duration(float64(time.Second) * float64(i) / float64(rate)))}
				st = append(st, s)
				left += s.n
			}
			var payload, pkt []byte
			for left > 0 {
				now := time.Now()
				for j := range st {
					s := &st[j]
					pkt = pkt[:0]
					for ; s.k < s.n; s.k++ {
						due := s.first.Add(time.Duration(s.k) * interval)
						if due.After(now) {
							break
						}
						if s.id++; s.id == 0 {
							s.id = 1
						}
						payload = benchPayloadAt(payload[:0], s.k, due.Sub(epoch), time.Since(epoch))
						pkt = appendPublish(pkt, topics[s.i], s.id, payload)
						left--
					}
					if len(pkt) > 0 {
						if _, err := devs[s.i].conn.Write(pkt); err != nil {
							return err
						}
					}
				}
				time.Sleep(time.Millisecond)
			}
			for _, s := range st {
				for range s.n {
					if _, ok := <-devs[s.i].acks; !ok {
						return fmt.Errorf("connection closed: %v", <-devs[s.i].done)
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// BenchmarkIntakePaho is BenchmarkIntake with paho clients as the devices
// (they take about a third of the machine themselves).
func BenchmarkIntakePaho(b *testing.B) {
	devices, window := benchDevices, benchWindow
	lb, h, devs := benchSetup(b, devices)
	clients := make([]paho.Client, devices)
	for i, d := range devs {
		clients[i] = connect(b, deviceOpts(h.in.Addr(), d.ID, "bench-pass-1", d.ID))
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, c := range clients {
		topic := "sharpeye/devices/" + devs[i].ID + "/telemetry"
		n := share(b.N, devices, i)
		wg.Go(func() {
			ring := make([]paho.Token, window)
			for k := range n {
				if tok := ring[k%window]; tok != nil && (!tok.WaitTimeout(patience) || tok.Error() != nil) {
					b.Errorf("publish: %v", tok.Error())
					return
				}
				ring[k%window] = c.Publish(topic, 1, false, benchPayload(nil, k, lb.epoch))
			}
			for _, tok := range ring {
				if tok != nil && (!tok.WaitTimeout(patience) || tok.Error() != nil) {
					b.Errorf("publish: %v", tok.Error())
				}
			}
		})
	}
	wg.Wait()
	benchReport(b, lb, h)
}

func benchSetup(b *testing.B, n int) (*latencyBus, *harness, []device.Device) {
	return benchSetupOn(b, n, &latencyBus{epoch: time.Now()})
}

func benchSetupOn(b *testing.B, n int, lb *latencyBus) (*latencyBus, *harness, []device.Device) {
	devs := make([]device.Device, n)
	for i := range devs {
		devs[i] = device.Device{ID: fmt.Sprintf("sensor-%03d", i), Kind: device.KindWaterLevel, Region: "huangpi/wangjiahe", Grid: "g-0001",
			Lat: ptr(30.8), Lon: ptr(114.3), Password: conf.Secret("bench-pass-1"), Tags: []string{"river"}}
	}
	return lb, start(b, setup{devices: devs, prod: lb}), devs
}

// share is device i's part of n messages.
func share(n, devices, i int) int {
	s := n / devices
	if i < n%devices {
		s++
	}
	return s
}

// benchPayload is a telemetry message stamped with the time since epoch.
func benchPayload(dst []byte, k int, epoch time.Time) []byte {
	return benchPayloadAt(dst, k, time.Since(epoch), -1)
}

// benchPayloadAt is a telemetry message stamped with at and, unless it is
// negative, sent.
func benchPayloadAt(dst []byte, k int, at, sent time.Duration) []byte {
	dst = append(dst, `{"readings":{"level":`...)
	dst = strconv.AppendInt(dst, int64(k%7), 10)
	dst = append(dst, `.25,"t":`...)
	dst = strconv.AppendInt(dst, at.Microseconds(), 10)
	if sent >= 0 {
		dst = append(dst, `,"sent":`...)
		dst = strconv.AppendInt(dst, sent.Microseconds(), 10)
	}
	return append(dst, "}}"...)
}

func benchReport(b *testing.B, lb *latencyBus, h *harness) {
	elapsed := b.Elapsed()
	b.StopTimer()
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.msgs != b.N {
		b.Fatalf("%d events on the bus for %d messages", lb.msgs, b.N)
	}
	slices.Sort(lb.lat)
	if n := len(lb.lat); n > 0 {
		b.ReportMetric(float64(lb.lat[n*99/100].Microseconds())/1000, "p99_ms")
		b.ReportMetric(float64(lb.lat[n/2].Microseconds())/1000, "p50_ms")
	}
	slices.Sort(lb.latSent)
	if n := len(lb.latSent); n > 0 {
		b.ReportMetric(float64(lb.latSent[n*99/100].Microseconds())/1000, "p99_sent_ms")
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(meanBatch(h.in), "msgs/batch")
	var m dto.Metric
	if err := h.in.m.ackLatency.Write(&m); err == nil && m.GetHistogram().GetSampleCount() > 0 {
		// From the broker handing the message to the intake to durable.
		b.ReportMetric(m.GetHistogram().GetSampleSum()/float64(m.GetHistogram().GetSampleCount())*1000, "intake_mean_ms")
	}
	if lb.next != nil && lb.calls > 0 {
		// How long the bus took per batch, and the share of the time it
		// was busy: near 1, the bus is what limits the rate.
		b.ReportMetric(float64(lb.busy.Microseconds())/float64(lb.calls)/1000, "publish_ms")
		b.ReportMetric(lb.busy.Seconds()/elapsed.Seconds(), "bus_busy")
	}
}

// rawDevice is a minimal MQTT 3.1.1 publisher for load: CONNECT, QoS 1
// PUBLISH packets written in bursts, PUBACKs (their packet ids) passed on
// by a reader in the order they arrive.
type rawDevice struct {
	conn net.Conn
	acks chan uint16
	done chan error
}

func dialRaw(b testing.TB, addr, user, pass, clientID string) *rawDevice {
	b.Helper()
	conn, err := net.DialTimeout("tcp", addr, patience)
	if err != nil {
		b.Fatal(err)
	}
	str := func(dst []byte, s string) []byte {
		return append(binary.BigEndian.AppendUint16(dst, uint16(len(s))), s...)
	}
	body := str(nil, "MQTT")
	body = append(body, 4, 0x80|0x40|0x02, 0, 60) // 3.1.1; username, password, clean session; keep-alive 60s
	body = str(str(str(body, clientID), user), pass)
	pkt := binary.AppendUvarint([]byte{0x10}, uint64(len(body)))
	if _, err := conn.Write(append(pkt, body...)); err != nil {
		b.Fatal(err)
	}
	var connack [4]byte
	if _, err := io.ReadFull(conn, connack[:]); err != nil || connack[0] != 0x20 || connack[3] != 0 {
		b.Fatalf("CONNACK %x: %v", connack, err)
	}
	d := &rawDevice{conn: conn, acks: make(chan uint16, 65536), done: make(chan error, 1)}
	go func() {
		r := bufio.NewReader(conn)
		var ack [4]byte
		for {
			if _, err := io.ReadFull(r, ack[:]); err != nil {
				d.done <- err
				close(d.acks)
				return
			}
			if ack[0] != 0x40 || ack[1] != 2 {
				d.done <- fmt.Errorf("expected a PUBACK, got %x", ack)
				close(d.acks)
				return
			}
			d.acks <- binary.BigEndian.Uint16(ack[2:])
		}
	}()
	b.Cleanup(func() {
		conn.Write([]byte{0xe0, 0}) // DISCONNECT
		conn.Close()
		<-d.done
	})
	return d
}

// publishAll publishes n messages on topic, at most window unacknowledged,
// and waits for every PUBACK.
func (d *rawDevice) publishAll(topic string, n, window int, epoch time.Time) error {
	w := bufio.NewWriterSize(d.conn, 64<<10)
	var payload, pkt []byte
	outstanding := 0
	id := uint16(0)
	wait := func() error {
		if _, ok := <-d.acks; !ok {
			return fmt.Errorf("connection closed: %v", <-d.done)
		}
		outstanding--
		return nil
	}
	for k := range n {
		if outstanding == window {
			if err := w.Flush(); err != nil {
				return err
			}
			if err := wait(); err != nil {
				return err
			}
		}
		if id++; id == 0 {
			id = 1
		}
		payload = benchPayload(payload[:0], k, epoch)
		pkt = appendPublish(pkt[:0], topic, id, payload)
		if _, err := w.Write(pkt); err != nil {
			return err
		}
		outstanding++
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for outstanding > 0 {
		if err := wait(); err != nil {
			return err
		}
	}
	return nil
}

// appendPublish appends a QoS 1 PUBLISH packet.
func appendPublish(pkt []byte, topic string, id uint16, payload []byte) []byte {
	pkt = binary.AppendUvarint(append(pkt, 0x32), uint64(2+len(topic)+2+len(payload)))
	pkt = binary.BigEndian.AppendUint16(pkt, uint16(len(topic)))
	pkt = append(pkt, topic...)
	pkt = binary.BigEndian.AppendUint16(pkt, id)
	return append(pkt, payload...)
}

// meanBatch is the mean number of messages per publish to the bus.
func meanBatch(in *Intake) float64 {
	var m dto.Metric
	if err := in.m.batchSize.Write(&m); err != nil || m.GetHistogram().GetSampleCount() == 0 {
		return 0
	}
	return m.GetHistogram().GetSampleSum() / float64(m.GetHistogram().GetSampleCount())
}

// BenchmarkHandle measures the intake's own work per message, without
// MQTT or a bus: checking a telemetry payload and making its event.
func BenchmarkHandle(b *testing.B) {
	d := smoke
	in, err := New(Defaults(), device.NewRegistry([]device.Device{d}, nil), newFakeBus(), nil, prometheus.NewRegistry(), quiet())
	if err != nil {
		b.Fatal(err)
	}
	e, _ := in.devices.Get(d.ID)
	payload := []byte(`{"ts": 1763707200123, "readings": {"smoke": 0.12, "battery": 87, "temperature": 21.5}}`)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	size := 0
	for b.Loop() {
		j := in.handle(inbound{topic: "sharpeye/devices/smoke-1/telemetry", payload: payload, received: time.Now(), dev: &e, client: "smoke-1"})
		if j.rejected || len(j.msgs) != 1 {
			b.Fatalf("job %+v", j)
		}
		size = len(j.msgs[0].Value)
	}
	b.ReportMetric(float64(size), "event_bytes")
}

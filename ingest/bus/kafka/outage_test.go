package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"sharpeye/configs/conf"
	"sharpeye/console/api/apitest"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/bus/bustest"
	"sharpeye/ingest/bus/internal/leak"
	"sharpeye/ingest/bus/kafka"
	"sharpeye/ingest/bus/kafka/kafkatest"
)

// hang bounds every wait in these tests: it only turns a hang into a
// failure.
const hang = 90 * time.Second

// sink records what a consumer group handled, deduplicating by key and
// id as an idempotent sink would, and lets the test wait on it.
type sink struct {
	mu         sync.Mutex
	first      []bus.Message // first delivery of each message, in order
	seen       map[string]bool
	deliveries int
	changed    chan struct{}
}

func newSink() *sink { return &sink{seen: map[string]bool{}, changed: make(chan struct{})} }

func (s *sink) handle(_ context.Context, ms []bus.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range ms {
		s.deliveries++
		k := m.Key + "\x00" + m.Headers["id"]
		if !s.seen[k] {
			s.seen[k] = true
			s.first = append(s.first, m)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// waitFor waits until the sink holds n distinct messages.
func (s *sink) waitFor(t testing.TB, n int) {
	t.Helper()
	deadline := time.NewTimer(hang)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, ch := len(s.first), s.changed
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("the sink got %d of %d messages before the hang timeout", got, n)
		}
	}
}

// check asserts that the sink got exactly the n messages of keyed(),
// each key in order.
func (s *sink) check(t testing.TB, n int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.first) != n {
		t.Errorf("the sink got %d distinct messages, want %d", len(s.first), n)
	}
	if err := bustest.CheckKeyOrder(s.first); err != nil {
		t.Error(err)
	}
	t.Logf("%d deliveries for %d messages (%d redelivered)", s.deliveries, len(s.first), s.deliveries-len(s.first))
}

// consume runs a consumer of topic into s until the test ends.
func consume(t testing.TB, b bus.Bus, group, topic string, s *sink) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Consume(ctx, group, []string{topic}, 500, 5*time.Millisecond, s.handle) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Consume: %v", err)
			}
		case <-time.After(hang):
			t.Error("Consume did not return")
		}
	})
}

// keyed returns message i of a stream over keys keys: key i%keys, with
// seq i/keys and id i.
func keyed(topic string, i, keys, size int) bus.Message {
	id := strconv.Itoa(i)
	v := make([]byte, size)
	copy(v, id)
	return bus.Message{Topic: topic, Key: "camera-" + strconv.Itoa(i%keys), Value: v,
		Headers: map[string]string{"id": id, "seq": strconv.Itoa(i / keys)}}
}

// publisher publishes n messages in batches, one Publish after the other,
// reporting how many are published.
func publisher(t testing.TB, b bus.Bus, topic string, n, batch, keys int) <-chan int {
	t.Helper()
	progress := make(chan int, n/batch+1)
	errs := make(chan error, 1)
	go func() {
		defer close(progress)
		for i := 0; i < n; i += batch {
			var ms []bus.Message
			for j := i; j < min(i+batch, n); j++ {
				ms = append(ms, keyed(topic, j, keys, 100))
			}
			ctx, cancel := context.WithTimeout(context.Background(), hang)
			err := b.Publish(ctx, ms...)
			cancel()
			if err != nil {
				errs <- fmt.Errorf("publish %d..%d: %w", i, i+len(ms), err)
				return
			}
			progress <- i + len(ms)
		}
	}()
	t.Cleanup(func() {
		select {
		case err := <-errs:
			t.Error(err)
		default:
		}
	})
	return progress
}

// waitProgress waits until at least n messages are published (or the
// publisher stopped).
func waitProgress(t testing.TB, progress <-chan int, n int) int {
	t.Helper()
	timeout := time.After(hang)
	for {
		select {
		case p, ok := <-progress:
			if !ok {
				t.Fatalf("the publisher stopped before %d messages", n)
			}
			if p >= n {
				return p
			}
		case <-timeout:
			t.Fatalf("fewer than %d messages published before the hang timeout", n)
		}
	}
}

func drainProgress(t testing.TB, progress <-chan int) {
	t.Helper()
	timeout := time.After(hang)
	for {
		select {
		case _, ok := <-progress:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("the publisher did not finish before the hang timeout")
		}
	}
}

func portOf(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBrokerRestart stops the broker (kfake.Cluster.Close) while 20,000
// messages are being published and starts a new one on the same port and
// data directory (kfake.Ports, kfake.DataDir): nothing is lost, nothing is
// duplicated once deduplicated by key and id, each key keeps its order.
func TestBrokerRestart(t *testing.T) {
	leak.Check(t)
	const n, topic = 20000, "sharpeye.events"
	kdir := t.TempDir()
	c1, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(kdir))
	if err != nil {
		t.Fatal(err)
	}
	addr := c1.ListenAddrs()[0]
	port := portOf(t, addr)

	cfg := kafkatest.Config([]string{addr})
	cfg.SpoolAfter = conf.Duration(500 * time.Millisecond)
	b := start(t, cfg, t.TempDir())
	s := newSink()
	consume(t, b, "sink", topic, s)
	progress := publisher(t, b, topic, n, 100, 50)

	waitProgress(t, progress, 5000)
	c1.Close() // the broker goes away mid-stream
	// What is published now can only go to the spool.
	waitProgress(t, progress, 10000)
	if v := apitest.Metric(t, b.reg, "sharpeye_kafka_spooled_messages_total"); v == 0 {
		t.Fatal("nothing was spooled while the broker was down")
	}
	c2, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(kdir), kfake.Ports(port))
	if err != nil {
		t.Fatalf("restart the broker on port %d: %v", port, err)
	}
	t.Cleanup(c2.Close)

	drainProgress(t, progress)
	s.waitFor(t, n)
	s.check(t, n)
	t.Logf("spooled %v messages in %v writes; %v delivery errors",
		apitest.Metric(t, b.reg, "sharpeye_kafka_spooled_messages_total"),
		apitest.Metric(t, b.reg, "sharpeye_kafka_spool_writes_total"),
		apitest.Metric(t, b.reg, "sharpeye_kafka_delivery_errors_total"))
}

// TestBrokerRefuses makes the broker answer every produce request with
// REQUEST_TIMED_OUT after storing it (a kfake fault), the worst case for
// duplicates, then heals it: nothing lost, each key in order.
func TestBrokerRefuses(t *testing.T) {
	leak.Check(t)
	const n, topic = 10000, "sharpeye.events"
	c := newCluster(t)
	cfg := kafkatest.Config(c.ListenAddrs())
	cfg.SpoolAfter = conf.Duration(500 * time.Millisecond)
	b := start(t, cfg, t.TempDir())
	s := newSink()
	consume(t, b, "sink", topic, s)
	progress := publisher(t, b, topic, n, 100, 50)

	at := waitProgress(t, progress, 2000)
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: -1})
	ctx, cancel := context.WithTimeout(t.Context(), hang)
	defer cancel()
	if err := fault.Wait(ctx, 10); err != nil {
		t.Fatalf("the fault answered %d produce requests: %v", fault.Hits(), err)
	}
	waitProgress(t, progress, at+3000)
	fault.Remove()
	if v := apitest.Metric(t, b.reg, "sharpeye_kafka_spooled_messages_total"); v == 0 {
		t.Error("nothing was spooled while the broker refused")
	}

	drainProgress(t, progress)
	s.waitFor(t, n)
	s.check(t, n)
}

// deadBroker returns the address of a broker that is not there, and a
// function starting one there.
func deadBroker(t testing.TB) (string, func(...kfake.Opt) *kfake.Cluster) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	addr := c.ListenAddrs()[0]
	c.Close()
	return addr, func(opts ...kfake.Opt) *kfake.Cluster {
		t.Helper()
		return newCluster(t, append(opts, kfake.Ports(portOf(t, addr)))...)
	}
}

// TestSpoolSurvivesRestart publishes while Kafka is down, stops the
// producer, damages the spool's tail as a crash in a write would, and
// starts a new producer on the same spool once Kafka is up: it delivers
// every message in order and counts the damage.
func TestSpoolSurvivesRestart(t *testing.T) {
	leak.Check(t)
	const n, topic = 2000, "sharpeye.events"
	addr, startBroker := deadBroker(t)
	cfg := kafkatest.Config([]string{addr})
	cfg.SpoolDir = t.TempDir()
	b := start(t, cfg, "")
	drainProgress(t, publisher(t, b, topic, n, 100, 20))
	if v := apitest.Metric(t, b.reg, "sharpeye_kafka_spool_messages"); v != n {
		t.Fatalf("spool holds %v messages, want %d", v, n)
	}
	b.stop(t)

	segs, err := filepath.Glob(filepath.Join(cfg.SpoolDir, "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no spool segments: %v", err)
	}
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 0xca, 0xfe, 'h', 'a', 'l', 'f'}) // a torn record
	f.Close()

	startBroker()
	b = start(t, cfg, "")
	s := newSink()
	consume(t, b, "sink", topic, s)
	s.waitFor(t, n)
	s.check(t, n)
	if v := apitest.Metric(t, b.reg, "sharpeye_kafka_spool_corrupt_total"); v != 1 {
		t.Errorf("corrupt spool counter %v, want 1", v)
	}
	// Publishing goes on after the spool.
	drainProgress(t, publisher(t, b, topic, 10, 10, 20))
}

// TestSpoolFullBlocks: with Kafka down and the spool full, Publish blocks
// (back-pressure) instead of dropping; when Kafka is back, the spool
// drains and the blocked Publish goes through.
func TestSpoolFullBlocks(t *testing.T) {
	leak.Check(t)
	const topic = "sharpeye.events"
	addr, startBroker := deadBroker(t)
	cfg := kafkatest.Config([]string{addr})
	cfg.SpoolMaxBytes = 64 << 10
	b := start(t, cfg, t.TempDir())

	published := 0
	for ; ; published++ {
		if published > 256 {
			t.Fatalf("the spool took %d KiB, bound 64 KiB", published)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := b.Publish(ctx, keyed(topic, published, 3, 1024))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		done <- b.Publish(ctx, keyed(topic, published, 3, 1024))
	}()
	startBroker()
	if err := <-done; err != nil {
		t.Fatalf("blocked Publish: %v", err)
	}
	s := newSink()
	consume(t, b, "sink", topic, s)
	s.waitFor(t, published+1)
	s.check(t, published+1)
	if v := apitest.Metric(t, b.reg, "sharpeye_kafka_publish_blocked_total"); v == 0 {
		t.Error("no Publish counted as blocked")
	}
}

// TestPerKeyOrder10k publishes 10,000 messages over 100 keys from four
// publishers into 12 partitions replicated on three brokers: each key stays
// in one partition, in order, and every partition is used.
func TestPerKeyOrder10k(t *testing.T) {
	leak.Check(t)
	const topic = "sharpeye.events"
	c := newCluster(t, kfake.NumBrokers(3))
	cfg := kafkatest.Config(c.ListenAddrs())
	cfg.Partitions = 12
	cfg.Replication = 3
	b := start(t, cfg, t.TempDir())
	s := newSink()
	consume(t, b, "sink", topic, s)
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2500; i += 250 {
				var ms []bus.Message
				for j := i; j < i+250; j++ {
					// Publisher p owns keys p, p+4, ... (25 keys).
					m := keyed(topic, j*4+p, 100, 64)
					ms = append(ms, m)
				}
				if err := b.Publish(t.Context(), ms...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	s.waitFor(t, 10000)
	s.check(t, 10000)
	parts := map[string]int{}
	used := map[int]bool{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.first {
		if p, ok := parts[m.Key]; ok && p != m.Partition {
			t.Fatalf("key %s in partitions %d and %d", m.Key, p, m.Partition)
		}
		parts[m.Key] = m.Partition
		used[m.Partition] = true
	}
	if len(used) != 12 {
		t.Errorf("%d partitions used, want 12", len(used))
	}
}

// TestSASL authenticates with each mechanism against a kfake cluster
// requiring it, and fails to with a wrong password (the messages wait in
// the spool).
func TestSASL(t *testing.T) {
	leak.Check(t)
	for _, mech := range []string{kafka.SASLPlain, kafka.SASLSCRAMSHA256, kafka.SASLSCRAMSHA512} {
		t.Run(mech, func(t *testing.T) {
			kmech := map[string]string{kafka.SASLPlain: "PLAIN", kafka.SASLSCRAMSHA256: "SCRAM-SHA-256", kafka.SASLSCRAMSHA512: "SCRAM-SHA-512"}[mech]
			c := newCluster(t, kfake.EnableSASL(), kfake.Superuser(kmech, "sharpeye", "s3cret"))
			cfg := kafkatest.Config(c.ListenAddrs())
			cfg.SASL = kafka.SASL{Mechanism: mech, Username: "sharpeye", Password: "s3cret"}
			b := start(t, cfg, t.TempDir())
			s := newSink()
			consume(t, b, "sink", "t", s)
			drainProgress(t, publisher(t, b, "t", 100, 50, 5))
			s.waitFor(t, 100)
			s.check(t, 100)
			if v := apitest.Metric(t, b.reg, "sharpeye_kafka_spooled_messages_total"); v != 0 {
				t.Errorf("%v messages spooled with good credentials", v)
			}

			cfg.SASL.Password = "wrong"
			bad := start(t, cfg, t.TempDir())
			drainProgress(t, publisher(t, bad, "t", 10, 10, 5))
			if v := apitest.Metric(t, bad.reg, "sharpeye_kafka_spooled_messages_total"); v != 10 {
				t.Errorf("%v messages spooled with a wrong password, want 10", v)
			}
		})
	}
}

func TestPublishInvalid(t *testing.T) {
	leak.Check(t)
	c := newCluster(t)
	b := start(t, kafkatest.Config(c.ListenAddrs()), t.TempDir())
	big := bus.Message{Topic: "t", Value: make([]byte, kafka.MaxMessageBytes+1)}
	if err := b.Publish(t.Context(), big); !errors.Is(err, bus.ErrInvalid) {
		t.Errorf("Publish of a message over MaxMessageBytes: %v, want ErrInvalid", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*kafka.Config)
		want string
	}{
		"defaults":    {func(*kafka.Config) {}, ""},
		"no brokers":  {func(c *kafka.Config) { c.Brokers = nil }, "brokers: at least one broker (host:port) is required"},
		"bad broker":  {func(c *kafka.Config) { c.Brokers = []string{"kafka"} }, `brokers[0]: "kafka" is not host:port`},
		"bad port":    {func(c *kafka.Config) { c.Brokers = []string{"kafka:0"} }, `brokers[0]: "kafka:0": port must be between 1 and 65535`},
		"mechanism":   {func(c *kafka.Config) { c.SASL.Mechanism = "gssapi" }, `sasl.mechanism: must be plain, scram-sha-256 or scram-sha-512, not "gssapi"`},
		"sasl user":   {func(c *kafka.Config) { c.SASL = kafka.SASL{Mechanism: "plain", Password: "x"} }, "sasl.username: required with a SASL mechanism"},
		"ca no tls":   {func(c *kafka.Config) { c.TLSCAFile = "/etc/ca.pem" }, "tls_ca_file: is set but tls is false"},
		"partitions":  {func(c *kafka.Config) { c.Partitions = 0 }, "partitions: must be between 1 and 10000"},
		"replication": {func(c *kafka.Config) { c.Replication = 0 }, "replication: must be between 1 and 32"},
		"batch":       {func(c *kafka.Config) { c.BatchSize = 0 }, "batch_size: must be between 1 and 1000000"},
		"spool":       {func(c *kafka.Config) { c.SpoolMaxBytes = 1 }, "spool_max_bytes: must be at least 65536"},
		"heartbeat":   {func(c *kafka.Config) { c.HeartbeatInterval = c.SessionTimeout }, "heartbeat_interval: must be positive and below session_timeout"},
		"backoff":     {func(c *kafka.Config) { c.RetryBackoffMax = conf.Duration(time.Millisecond) }, "retry_backoff_max: must be at least retry_backoff_min"},
	} {
		t.Run(name, func(t *testing.T) {
			c := kafka.Defaults()
			tc.edit(&c)
			err := conf.Load(&c, nil, "", nil)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("error %v, want %s", err, tc.want)
			}
			if tc.want != "" {
				if _, err := kafka.New(c, t.TempDir(), nil, nil); err == nil {
					t.Error("New accepted the configuration")
				}
			}
		})
	}
	if _, err := kafka.New(kafka.Defaults(), "", nil, nil); err == nil {
		t.Error("New without spool_dir or data directory returned no error")
	}
}

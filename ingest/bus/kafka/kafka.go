package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafka "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"golang.org/x/sync/semaphore"

	"sharpeye/configs/conf"
	"sharpeye/ingest/bus"
)

// MaxMessageBytes bounds a message's key, value and headers together, to
// stay within the brokers' default message.max.bytes (1 MB).
const MaxMessageBytes = 1_000_000

const (
	// drainBatch and drainBytes bound what the drainer reads at once.
	drainBatch = 5000
	drainBytes = 4 << 20
	// batchBytes bounds a produce request's records (the brokers' default
	// message.max.bytes is 1 MB).
	batchBytes = 1 << 20
	// recordOverhead is added to a message's bytes to size requests.
	recordOverhead = 64
	// requestTimeout bounds one request to a broker.
	requestTimeout = 10 * time.Second
	// logEvery limits repeated logs of the same outage.
	logEvery = time.Minute
)

// Bus is the production bus on Kafka (kafka-go). Publish sends messages
// to Kafka and waits for every in-sync replica to acknowledge them; when
// Kafka is unreachable or slower than spool_after, it writes them to an
// on-disk spool instead, which Run delivers once Kafka is back. Consume
// reads as a member of a Kafka consumer group. See the package
// documentation for the guarantees.
//
// New checks the configuration; Run opens the spool and must be running
// for Publish to work (Publish waits for it to start). Consume does not
// need Run.
type Bus struct {
	cfg       Config
	spoolDir  string
	log       *slog.Logger
	metrics   *metrics
	dialer    *kafka.Dialer
	transport *kafka.Transport
	lanes     *lanes
	rr        atomic.Uint32 // partition of the next message without a key
	mem       *semaphore.Weighted

	started atomic.Bool
	ready   chan struct{} // closed once the spool is open, or Run failed
	done    chan struct{} // closed when Run has returned
	openErr error         // why Run failed to start; read after ready
	sp      atomic.Pointer[spool]
	wake    chan struct{} // tells the drainer the spool has news

	// mu orders appends to the spool with the spooling flag: while the
	// spool holds messages, new messages are appended behind them.
	mu       sync.Mutex
	spooling bool
	closing  bool
	ops      sync.WaitGroup // Publish calls in progress
	cancels  map[uint64]context.CancelFunc
	nextOp   uint64

	topicsMu sync.Mutex
	topics   map[string]bool // known to exist
}

var _ bus.Bus = (*Bus)(nil)

// New returns a Kafka bus. dataDir is the node's data directory, under
// which the spool goes unless cfg.SpoolDir says otherwise. It checks cfg
// and reads the TLS CA file; it connects to nothing. reg may be nil.
func New(cfg Config, dataDir string, reg prometheus.Registerer, log *slog.Logger) (*Bus, error) {
	if err := conf.Load(&cfg, nil, "", nil); err != nil {
		return nil, fmt.Errorf("kafka configuration: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "kafka")
	spoolDir := cfg.SpoolDir
	if spoolDir == "" {
		if dataDir == "" {
			return nil, errors.New("kafka: no spool_dir and no data directory for the spool")
		}
		spoolDir = filepath.Join(dataDir, "spool")
	}
	tlsConfig, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	var mech sasl.Mechanism
	switch cfg.SASL.Mechanism {
	case SASLPlain:
		mech = plain.Mechanism{Username: cfg.SASL.Username, Password: cfg.SASL.Password.Reveal()}
		if tlsConfig == nil {
			log.Warn("SASL plain without TLS sends the password in clear")
		}
	case SASLSCRAMSHA256, SASLSCRAMSHA512:
		if mech, err = newSCRAM(cfg.SASL.Mechanism, cfg.SASL.Username, cfg.SASL.Password.Reveal()); err != nil {
			return nil, err
		}
	}

	b := &Bus{
		cfg:      cfg,
		spoolDir: spoolDir,
		log:      log,
		mem:      semaphore.NewWeighted(int64(cfg.MemoryBuffer)),
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		cancels:  make(map[uint64]context.CancelFunc),
		topics:   make(map[string]bool),
	}
	b.dialer = &kafka.Dialer{
		ClientID:      cfg.ClientID,
		Timeout:       requestTimeout,
		DualStack:     true,
		TLS:           tlsConfig,
		SASLMechanism: mech,
	}
	b.transport = &kafka.Transport{
		DialTimeout: requestTimeout,
		IdleTimeout: time.Minute,
		MetadataTTL: 5 * time.Second,
		ClientID:    cfg.ClientID,
		TLS:         tlsConfig,
		SASL:        mech,
	}
	b.lanes = newLanes()
	m, err := newMetrics(reg, b)
	if err != nil {
		return nil, err
	}
	b.metrics = m
	return b, nil
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka tls_ca_file %s: no PEM certificate", c.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// debugLogger sends kafka-go's messages to log at debug level: its
// errors are retried, and the bus logs what matters itself.
func debugLogger(log *slog.Logger) kafka.Logger {
	return kafka.LoggerFunc(func(msg string, args ...any) {
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug(fmt.Sprintf(msg, args...))
		}
	})
}

// Run opens the spool, runs the produce lanes (one goroutine per
// partition written to), delivers what the spool holds whenever Kafka
// takes it, and returns when ctx ends, once the Publish calls in progress
// have returned (what they had not delivered is spooled; those waiting for
// room are cancelled) and the lanes, the connections and the spool are
// closed. It returns an error only when the spool cannot be
// opened. Run may be called once.
func (b *Bus) Run(ctx context.Context) error {
	if !b.started.CompareAndSwap(false, true) {
		return errors.New("kafka bus: Run called twice")
	}
	defer close(b.done)
	sp, err := openSpool(b.spoolDir, b.cfg.SpoolMaxBytes, b.corrupt)
	if err != nil {
		b.mu.Lock()
		b.closing = true
		b.mu.Unlock()
		b.openErr = err
		close(b.ready)
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	b.sp.Store(sp)
	lanesDone := make(chan struct{})
	go func() {
		defer close(lanesDone)
		b.lanes.run(ctx, b)
	}()
	if bytes, msgs := sp.stats(); msgs > 0 {
		b.spooling = true
		b.log.Info("the spool holds messages from before; delivering them first", "messages", msgs, "bytes", bytes, "dir", b.spoolDir)
	}
	close(b.ready)

	b.drain(ctx)

	b.mu.Lock()
	b.closing = true
	for _, cancel := range b.cancels {
		cancel()
	}
	b.mu.Unlock()
	b.ops.Wait()
	<-lanesDone
	b.transport.CloseIdleConnections()
	if err := sp.close(); err != nil {
		b.log.Warn("close spool", "err", err)
	}
	return nil
}

// Done is closed when Run has returned.
func (b *Bus) Done() <-chan struct{} { return b.done }

func (b *Bus) spoolStats() (int64, int64) {
	if sp := b.sp.Load(); sp != nil {
		return sp.stats()
	}
	return 0, 0
}

// corrupt counts and logs a corrupt spool record.
func (b *Bus) corrupt(path string, off int64, err error) {
	b.metrics.spoolCorrupt.Inc()
	b.log.Error("corrupt spool data skipped", "file", path, "offset", off, "err", err)
}

// enter waits for Run to have opened the spool and registers a Publish;
// the context returned, for waits only, is cancelled when Run returns.
func (b *Bus) enter(ctx context.Context) (context.Context, func(), error) {
	select {
	case <-b.ready:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if b.openErr != nil {
		return nil, nil, fmt.Errorf("%w: %v", bus.ErrClosed, b.openErr)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return nil, nil, bus.ErrClosed
	}
	wctx, cancel := context.WithCancel(ctx)
	id := b.nextOp
	b.nextOp++
	b.cancels[id] = cancel
	b.ops.Add(1)
	return wctx, func() {
		b.mu.Lock()
		delete(b.cancels, id)
		b.mu.Unlock()
		cancel()
		b.ops.Done()
	}, nil
}

// waitErr is the error of a wait that ended: ErrClosed when Run is
// returning, the caller's context error otherwise.
func (b *Bus) waitErr(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return bus.ErrClosed
}

// Publish sends msgs to Kafka, each to the partition of its key (murmur2,
// as Java clients), and returns once every in-sync replica has them. When
// Kafka fails or has not answered within spool_after, it writes them to
// the spool and returns once they are synced to disk; while the spool
// holds messages, new ones are appended behind them, so that each key
// keeps its order. Publish blocks while the memory buffer or the spool is
// full. It fails when ctx ends, the bus is closed, a message is invalid
// (bus.ErrInvalid) or refused by Kafka for good (too large for the
// broker), or the spool cannot be written.
func (b *Bus) Publish(ctx context.Context, msgs ...bus.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	for i, m := range msgs {
		if err := bus.CheckTopic(m.Topic); err != nil {
			return fmt.Errorf("publish message %d: %w", i, err)
		}
		if n := messageBytes(m); n > MaxMessageBytes {
			return fmt.Errorf("publish message %d: %w: %d bytes, more than %d", i, bus.ErrInvalid, n, MaxMessageBytes)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	wctx, leave, err := b.enter(ctx)
	if err != nil {
		return err
	}
	defer leave()

	n := int64(min(len(msgs), b.cfg.MemoryBuffer))
	if !b.mem.TryAcquire(n) {
		b.metrics.blocked.WithLabelValues("memory").Inc()
		if err := b.mem.Acquire(wctx, n); err != nil {
			return b.waitErr(ctx)
		}
	}
	defer b.mem.Release(n)

	msgs = slices.Clone(msgs)
	for i := range msgs {
		if msgs[i].Time.IsZero() {
			msgs[i].Time = start
		}
	}

	// While the spool holds messages, new ones go behind them.
	if spooled, err := b.toSpool(ctx, wctx, msgs, nil); spooled {
		if err == nil {
			b.metrics.publishSeconds.WithLabelValues("spool").Observe(time.Since(start).Seconds())
		}
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, b.cfg.SpoolAfter.D())
	failed, err := b.send(dctx, msgs)
	cancel()
	if err == nil {
		b.metrics.produced.WithLabelValues("direct").Add(float64(len(msgs)))
		b.metrics.publishSeconds.WithLabelValues("direct").Observe(time.Since(start).Seconds())
		return nil
	}
	if ctx.Err() != nil {
		// The caller gave up: the messages may or may not reach Kafka.
		return ctx.Err()
	}
	var rest []bus.Message
	for _, f := range failed {
		if permanent(f.err) {
			return fmt.Errorf("kafka refused messages: %w", f.err)
		}
		rest = append(rest, f.msgs...)
	}
	b.metrics.produced.WithLabelValues("direct").Add(float64(len(msgs) - len(rest)))
	if len(rest) == 0 {
		return nil
	}
	// The partitions that failed go to the spool; each key lives in one
	// partition, so each keeps its order.
	if _, err := b.toSpool(ctx, wctx, rest, err); err != nil {
		return err
	}
	b.metrics.publishSeconds.WithLabelValues("spool").Observe(time.Since(start).Seconds())
	return nil
}

// client is a kafka-go client on the bus's transport.
func (b *Bus) client() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(b.cfg.Brokers...), Transport: b.transport, Timeout: requestTimeout}
}

// chunkLen is the length of the first chunk of msgs: at most maxMsgs
// messages and batchBytes, at least one message.
func chunkLen(msgs []bus.Message, maxMsgs int) int {
	size := 0
	for i, m := range msgs {
		size += messageBytes(m) + recordOverhead
		if i > 0 && (i >= maxMsgs || size > batchBytes) {
			return i
		}
	}
	return len(msgs)
}

// messageBytes is what a message weighs against MaxMessageBytes.
func messageBytes(m bus.Message) int {
	n := len(m.Key) + len(m.Value)
	for k, v := range m.Headers {
		n += len(k) + len(v)
	}
	return n
}

// toSpool appends msgs to the spool when it holds messages already, or
// when Kafka failed them (cause is not nil); it reports whether it took
// them. It waits (with wctx) while the spool is full.
func (b *Bus) toSpool(ctx, wctx context.Context, msgs []bus.Message, cause error) (bool, error) {
	force := cause != nil
	var data []byte
	blocked := false
	for {
		b.mu.Lock()
		if !b.spooling && !force {
			b.mu.Unlock()
			return false, nil
		}
		if data == nil {
			b.mu.Unlock()
			data = encodeRecords(msgs)
			continue
		}
		sp := b.sp.Load()
		ok, room := sp.hasRoom(int64(len(data)))
		if !ok {
			b.mu.Unlock()
			if !blocked {
				blocked = true
				b.metrics.blocked.WithLabelValues("spool").Inc()
			}
			select {
			case <-room:
				continue
			case <-wctx.Done():
				return true, b.waitErr(ctx)
			}
		}
		if !b.spooling {
			b.log.Warn("kafka is unreachable or slow; spooling messages to disk until it is back", "dir", b.spoolDir, "err", cause)
		}
		b.spooling = true
		err := sp.append(data, len(msgs))
		b.mu.Unlock()
		if err != nil {
			b.log.Error("write spool", "err", err)
			return true, fmt.Errorf("kafka unavailable and the spool failed: %w", err)
		}
		b.metrics.spoolWrites.Inc()
		b.metrics.spooled.Add(float64(len(msgs)))
		select {
		case b.wake <- struct{}{}:
		default:
		}
		return true, nil
	}
}

func encodeRecords(msgs []bus.Message) []byte {
	n := 0
	for _, m := range msgs {
		n += recordLen(m)
	}
	data := make([]byte, 0, n)
	for _, m := range msgs {
		data = appendRecord(data, m)
	}
	return data
}

func fromKafka(km kafka.Message) bus.Message {
	m := bus.Message{
		Topic:     km.Topic,
		Key:       string(km.Key),
		Value:     km.Value,
		Time:      km.Time,
		Partition: km.Partition,
		Offset:    km.Offset,
	}
	if len(km.Headers) > 0 {
		m.Headers = make(map[string]string, len(km.Headers))
		for _, h := range km.Headers {
			m.Headers[h.Key] = string(h.Value)
		}
	}
	return m
}

// permanent reports whether Kafka refused messages for a reason that
// retrying cannot mend.
func permanent(err error) bool {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		n := 0
		for _, e := range we {
			if e != nil {
				if !permanent(e) {
					return false
				}
				n++
			}
		}
		return n > 0
	}
	var tooLarge kafka.MessageTooLargeError
	if errors.As(err, &tooLarge) {
		return true
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		switch ke {
		case kafka.MessageSizeTooLarge, kafka.InvalidTopic, kafka.RecordListTooLarge, kafka.InvalidRecord:
			return true
		}
	}
	return false
}

// ensureTopics creates the topics not known to exist, with the configured
// partitions and replication; a topic that exists is left as it is.
func (b *Bus) ensureTopics(ctx context.Context, topics []string) error {
	var missing []kafka.TopicConfig
	b.topicsMu.Lock()
	for _, t := range topics {
		if !b.topics[t] {
			missing = append(missing, kafka.TopicConfig{Topic: t, NumPartitions: b.cfg.Partitions, ReplicationFactor: b.cfg.Replication})
		}
	}
	b.topicsMu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	resp, err := b.client().CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: missing})
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for _, tc := range missing {
		err := resp.Errors[tc.Topic]
		var ke kafka.Error
		switch {
		case err == nil:
			b.log.Info("topic created", "topic", tc.Topic, "partitions", tc.NumPartitions, "replication", tc.ReplicationFactor)
		case errors.Is(err, kafka.TopicAlreadyExists):
		case errors.As(err, &ke) && ke.Temporary():
			return fmt.Errorf("create topic %s: %w", tc.Topic, err)
		default:
			// Not allowed to create it, or a bad setting: produce will
			// tell whether the topic exists.
			b.log.Warn("cannot create topic; assuming it exists", "topic", tc.Topic, "err", err)
		}
	}
	b.topicsMu.Lock()
	for _, tc := range missing {
		b.topics[tc.Topic] = true
	}
	b.topicsMu.Unlock()
	return nil
}

// drain delivers the spool to Kafka, in order, until ctx ends. When it
// has delivered everything, Publish sends directly again.
func (b *Bus) drain(ctx context.Context) {
	sp := b.sp.Load()
	for {
		b.mu.Lock()
		spooling := b.spooling
		b.mu.Unlock()
		if !spooling {
			select {
			case <-b.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		msgs, pos, err := sp.read(drainBatch, drainBytes)
		if err != nil {
			b.log.Error("read spool", "err", err)
			if bus.SleepCtx(ctx, b.cfg.RetryBackoffMax.D()) != nil {
				return
			}
			continue
		}
		if len(msgs) == 0 {
			sp.commit(pos, 0) // past a corrupt tail, if any
			b.mu.Lock()
			if sp.drained() {
				b.spooling = false
				b.mu.Unlock()
				b.log.Info("spool delivered; publishing directly again")
				continue
			}
			b.mu.Unlock()
			continue // appended meanwhile
		}
		if err := b.deliver(ctx, msgs); err != nil {
			return // ctx ended
		}
		sp.commit(pos, len(msgs))
		b.metrics.produced.WithLabelValues("spool").Add(float64(len(msgs)))
	}
}

// deliver sends spooled messages until Kafka has them all or ctx ends;
// the partitions that fail are sent again (each key keeps its order, as a
// key lives in one partition). Messages Kafka refuses for good are set
// aside in the rejected file.
func (b *Bus) deliver(ctx context.Context, msgs []bus.Message) error {
	pending := msgs[:0:0]
	for _, m := range msgs {
		if err := bus.CheckTopic(m.Topic); err != nil {
			b.reject(m, err)
			continue
		}
		if n := messageBytes(m); n > MaxMessageBytes {
			b.reject(m, fmt.Errorf("%d bytes, more than %d", n, MaxMessageBytes))
			continue
		}
		pending = append(pending, m)
	}
	var lastLog time.Time
	for attempt := 0; len(pending) > 0; attempt++ {
		failed, err := b.send(ctx, pending)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pending = pending[:0:0]
		for _, f := range failed {
			if permanent(f.err) {
				for _, m := range f.msgs {
					b.reject(m, f.err)
				}
				continue
			}
			pending = append(pending, f.msgs...)
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Since(lastLog) >= logEvery {
			lastLog = time.Now()
			b.log.Warn("deliver spooled messages; retrying", "messages", len(pending), "attempt", attempt+1, "err", err)
		}
		if err := bus.SleepCtx(ctx, bus.Backoff(attempt, b.cfg.RetryBackoffMin.D(), b.cfg.RetryBackoffMax.D())); err != nil {
			return err
		}
		// A transport that never reached the cluster keeps answering
		// with that first error until its next metadata refresh (up to
		// MetadataTTL): start afresh, so that delivery resumes as soon
		// as Kafka is back.
		b.transport.CloseIdleConnections()
	}
	return nil
}

// reject sets a spooled message Kafka will never take aside, in
// spool_dir/rejected.spool (the spool's record format), and logs it.
func (b *Bus) reject(m bus.Message, reason error) {
	b.metrics.rejected.Inc()
	b.log.Error("kafka refused a spooled message for good; set aside in rejected.spool",
		"topic", m.Topic, "key", m.Key, "bytes", len(m.Value), "err", reason)
	path := filepath.Join(b.spoolDir, "rejected.spool")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		b.log.Error("set aside rejected message", "err", err)
		return
	}
	defer f.Close()
	var data []byte
	if st, err := f.Stat(); err == nil && st.Size() == 0 {
		data = append(data, segMagic...)
	}
	data = appendRecord(data, m)
	if _, err := f.Write(data); err != nil {
		b.log.Error("set aside rejected message", "err", err)
		return
	}
	if err := f.Sync(); err != nil {
		b.log.Error("set aside rejected message", "err", err)
	}
}

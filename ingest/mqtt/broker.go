package mqtt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"sharpeye/ingest/device"
)

// broker is the embedded MQTT broker (mochi-mqtt). Devices log in with the
// credential of their record (username, by default the device id, and
// password); each may publish and subscribe only under its own topics
// (sharpeye/devices/{id}/..., or sharpeye/analysers/{id}/... for an
// analyser). Messages are taken in by a hook, in the device's own
// connection: the broker acknowledges a QoS 1 message (PUBACK) only after
// its events, or its dead letter, are durable on the bus, so a blocked bus
// holds the devices' acknowledgements back and nothing acknowledged can be
// lost with this process.
type broker struct {
	in  *Intake
	srv *mochi.Server
	ln  *listeners.TCP

	bound      atomic.Pointer[string]
	principals sync.Map // *mochi.Client -> *principal
	clients    atomic.Int64
	stopping   atomic.Bool
	authLog    *problemLog
	aclLog     *problemLog
	// inline passes pipelined messages on to subscribers once durable.
	inline *mochi.Client
	// acks carries durable pipelined messages to the goroutine that
	// acknowledges them (ackLoop), so that the pipeline goes on to the
	// next batch meanwhile; it ends with done.
	acks chan ackItem
	done chan struct{}
}

// ackItem is a pipelined message to acknowledge.
type ackItem struct {
	cl  *mochi.Client
	id  uint16 // the packet id to acknowledge
	qos byte
	// fwd is the message, when it is to be passed to the broker's
	// subscribers (retained, or someone subscribed when it came): a
	// packet is large, and most messages go to nobody but the intake.
	fwd      *packets.Packet
	rejected bool
}

// principal is who a connection logged in as.
type principal struct {
	service bool   // Sharpeye's own read-only account (mqtt.username)
	id      string // the device's id
	user    string
	cred    string // the device's CredentialID at login
	// established is set once the session is (the CONNACK was sent).
	established atomic.Bool
}

func newBroker(in *Intake) *broker {
	caps := mochi.NewDefaultServerCapabilities()
	// mochi keeps at most MaximumInflight unacknowledged messages per
	// client, its offline queue included, and drops the rest: 8,192 by
	// default.
	caps.MaximumInflight = uint16(in.cfg.MaxInflight)
	// Larger packets close the connection (MQTT 3.1.1 has no other way to
	// refuse them); payloads between max_payload and this are dead-lettered.
	caps.MaximumPacketSize = uint32(2*in.cfg.MaxPayload + 1024)
	// Persistent sessions of devices that never come back go after a week.
	caps.MaximumSessionExpiryInterval = uint32((7 * 24 * time.Hour).Seconds())
	log := slog.New(minLevel{in.log.With("part", "mochi").Handler(), slog.LevelError})
	b := &broker{
		in:      in,
		srv:     mochi.New(&mochi.Options{Capabilities: caps, Logger: log, SysTopicResendInterval: 10}),
		authLog: newProblemLog(in.log, time.Second),
		aclLog:  newProblemLog(in.log, time.Second),
	}
	b.inline = b.srv.NewClient(nil, "local", "sharpeye-intake", true)
	b.acks, b.done = make(chan ackItem, ackQueue), make(chan struct{})
	return b
}

// listen binds the listener.
func (b *broker) listen() error {
	if b.bound.Load() != nil {
		return nil
	}
	ln := listeners.NewTCP(listeners.Config{ID: "sharpeye", Address: b.in.cfg.Listen})
	if err := b.srv.AddListener(ln); err != nil {
		return fmt.Errorf("mqtt broker: listen on %s: %w", b.in.cfg.Listen, err)
	}
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return fmt.Errorf("mqtt broker: %w", err)
	}
	b.ln = ln
	addr := ln.Address()
	b.bound.Store(&addr)
	return nil
}

func (b *broker) addr() string {
	if p := b.bound.Load(); p != nil {
		return *p
	}
	return ""
}

func (b *broker) connected() int64 { return b.clients.Load() }

// run serves until ctx ends, closing the sessions of devices whose record
// changes (deleted, disabled, new credential), then closes every
// connection and waits for them.
func (b *broker) run(ctx context.Context) error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("mqtt broker: %w", err)
	}
	go b.ackLoop(ctx)
	b.in.log.Info("embedded MQTT broker listening", "addr", b.addr())
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		changed := b.in.devices.Changed()
		b.recheck()
		select {
		case <-ctx.Done():
			b.stopping.Store(true)
			return b.srv.Close()
		case <-changed:
		case <-t.C:
		}
	}
}

// recheck closes the sessions whose device is gone, disabled or has a new
// credential, and forgets logins whose session never started.
func (b *broker) recheck() {
	b.principals.Range(func(k, v any) bool {
		cl, p := k.(*mochi.Client), v.(*principal)
		if cl.Closed() && !p.established.Load() {
			// Logged in, but the session never started (so no
			// OnDisconnect will come).
			b.principals.Delete(cl)
			return true
		}
		if p.service {
			return true
		}
		e, ok := b.in.devices.Get(p.id)
		why := ""
		switch {
		case !ok:
			why = "device removed"
		case e.Disabled:
			why = "device disabled"
		case e.MQTTUsername() != p.user || e.CredentialID() != p.cred:
			why = "credential changed"
		default:
			return true
		}
		b.in.log.Info("closing device session", "device", p.id, "reason", why)
		_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
		return true
	})
}

func (b *broker) principal(cl *mochi.Client) *principal {
	if v, ok := b.principals.Load(cl); ok {
		return v.(*principal)
	}
	return nil
}

// authenticate checks a CONNECT: Sharpeye's own account, or an enabled
// device with its password, a client id that cannot take over another
// device's session, and a last will under its own topics.
func (b *broker) authenticate(cl *mochi.Client, pk packets.Packet) bool {
	user, pass := string(cl.Properties.Username), string(pk.Connect.Password)
	remote := cl.Net.Remote
	cfg := b.in.cfg
	if cfg.Username != "" && user == cfg.Username {
		if cfg.Password == "" || !equalSecret(pass, cfg.Password.Reveal()) {
			return b.refuse("bad_password", user, remote)
		}
		b.principals.Store(cl, &principal{service: true, user: user})
		return true
	}
	e, ok := b.in.devices.ByUsername(user)
	switch {
	case !ok:
		return b.refuse("unknown_user", user, remote)
	case e.Disabled:
		return b.refuse("disabled", user, remote)
	case !e.HasCredential():
		return b.refuse("no_password", user, remote)
	case !e.CheckPassword(pass):
		return b.refuse("bad_password", user, remote)
	}
	// The session of a client id is taken over by whoever logs in with it:
	// a device may use only its own id, or its id followed by ":".
	if id := pk.Connect.ClientIdentifier; id != "" && id != e.ID && !strings.HasPrefix(id, e.ID+":") {
		return b.refuse("client_id", user, remote)
	}
	if pk.Connect.WillFlag && !ownTopic(e.Device, pk.Connect.WillTopic) {
		return b.refuse("will", user, remote)
	}
	b.principals.Store(cl, &principal{id: e.ID, user: user, cred: e.CredentialID()})
	return true
}

func (b *broker) refuse(reason, user, remote string) bool {
	b.in.m.authFailed.WithLabelValues(reason).Inc()
	b.authLog.report("MQTT login refused", "reason", reason, "username", short(user), "remote", remote)
	return false
}

// ownTopic reports whether topic (or filter) lies under the device's own
// subtree.
func ownTopic(d device.Device, topic string) bool {
	prefix := d.TopicPrefix()
	return len(topic) > len(prefix) && strings.HasPrefix(topic, prefix)
}

// allowed is the access control: a device publishes and subscribes under
// its own subtree only; Sharpeye's own account reads sharpeye/#.
func (b *broker) allowed(cl *mochi.Client, topic string, write bool) bool {
	p := b.principal(cl)
	if p == nil {
		return false
	}
	if p.service {
		return !write && (topic == "sharpeye/#" || strings.HasPrefix(topic, "sharpeye/"))
	}
	e, ok := b.in.devices.Get(p.id)
	if ok && !e.Disabled && ownTopic(e.Device, topic) {
		return true
	}
	action := "subscribe"
	if write {
		action = "publish"
	}
	b.in.m.aclDenied.WithLabelValues(action).Inc()
	b.in.live.rejected(p.id, fmt.Sprintf("not authorized to %s %s", action, short(topic)))
	b.aclLog.report("MQTT access refused", "device", p.id, "action", action, "topic", short(topic))
	return false
}

// publish takes a device's message in. QoS 0 and 1 messages are
// pipelined: publish queues the message and returns at once (mochi then
// neither acknowledges nor delivers it), and acknowledge answers once it
// is durable or dead-lettered, in the order the device sent them, so that
// a device's next messages are read while the earlier ones are being
// written. A message that cannot be made durable is never acknowledged.
// QoS 2 (rare for sensors) waits here until durable and mochi runs its
// handshake.
func (b *broker) publish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	p := b.principal(cl)
	if p == nil || p.service {
		return pk, nil // the access control refused it already
	}
	e, ok := b.in.devices.Get(p.id)
	if !ok {
		return pk, packets.ErrRejectPacket
	}
	j := b.in.handle(inbound{topic: pk.TopicName, payload: pk.Payload, received: time.Now(), dev: &e, client: cl.ID})
	if pk.FixedHeader.Qos < 2 {
		a := ackItem{cl: cl, id: pk.PacketID, qos: pk.FixedHeader.Qos}
		if pk.FixedHeader.Retain || atomic.LoadInt64(&b.srv.Info.Subscriptions) > 0 {
			fwd := pk
			a.fwd = &fwd
		}
		j.done = func(err error) {
			if err != nil {
				return
			}
			a.rejected = j.rejected
			select {
			case b.acks <- a:
			case <-b.done: // stopping: the device sends it again
			}
		}
		// Fails only once stopped: not acknowledged.
		_ = b.in.pipe.submit(context.Background(), j)
		return pk, packets.ErrRejectPacket
	}
	if err := b.in.pipe.publish(context.Background(), j); err != nil {
		return pk, packets.ErrRejectPacket
	}
	if j.rejected {
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// ackQueue bounds the messages durable but not yet acknowledged.
const ackQueue = 8192

// ackLoop acknowledges durable messages, in the order they became
// durable, until ctx ends.
func (b *broker) ackLoop(ctx context.Context) {
	defer close(b.done)
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-b.acks:
			b.acknowledge(a)
		}
	}
}

// acknowledge answers a pipelined message that is durable (or
// dead-lettered), and passes an accepted one on to the broker's
// subscribers, if any, as mochi would have.
func (b *broker) acknowledge(a ackItem) {
	if a.qos == 1 {
		ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: a.id}
		if err := a.cl.WritePacket(ack); err != nil && !errors.Is(err, mochi.ErrConnectionClosed) {
			b.in.log.Debug("MQTT acknowledgement not sent", "client", a.cl.ID, "err", err)
		}
	}
	if a.rejected || a.fwd == nil {
		return
	}
	pk := *a.fwd
	pk.FixedHeader.Dup = false
	if err := b.srv.InjectPacket(b.inline, pk); err != nil {
		b.in.log.Debug("MQTT message not passed to subscribers", "client", a.cl.ID, "err", err)
	}
}

// will takes in the last will the broker sent for a device that vanished.
func (b *broker) will(cl *mochi.Client, pk packets.Packet) {
	p := b.principal(cl)
	if b.stopping.Load() || p == nil || p.service {
		return // every device loses its connection when the broker stops
	}
	e, ok := b.in.devices.Get(p.id)
	if !ok || e.Disabled {
		return
	}
	j := b.in.handle(inbound{topic: pk.TopicName, payload: pk.Payload, received: time.Now(), dev: &e, client: cl.ID, will: true})
	if err := b.in.pipe.submit(context.Background(), j); err != nil {
		b.in.log.Warn("last will not taken in", "device", p.id, "err", err)
	}
}

// hook plugs the broker into mochi.
type hook struct {
	mochi.HookBase
	b *broker
}

var _ mochi.Hook = (*hook)(nil)

func (h *hook) ID() string { return "sharpeye" }

func (h *hook) Provides(b byte) bool {
	return bytes.IndexByte([]byte{
		mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnPublish, mochi.OnWillSent,
		mochi.OnSessionEstablished, mochi.OnDisconnect,
	}, b) >= 0
}

func (h *hook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	return h.b.authenticate(cl, pk)
}

func (h *hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	return h.b.allowed(cl, topic, write)
}

func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	return h.b.publish(cl, pk)
}

func (h *hook) OnWillSent(cl *mochi.Client, pk packets.Packet) { h.b.will(cl, pk) }

func (h *hook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	p := h.b.principal(cl)
	if p == nil {
		return
	}
	p.established.Store(true)
	h.b.clients.Add(1)
	if !p.service {
		h.b.in.live.session(p.id, +1)
	}
}

func (h *hook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	v, ok := h.b.principals.LoadAndDelete(cl)
	if !ok {
		return
	}
	if p := v.(*principal); p.established.Load() {
		h.b.clients.Add(-1)
		if !p.service {
			h.b.in.live.session(p.id, -1)
		}
	}
}

// equalSecret compares two secrets in time independent of where they
// differ.
func equalSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// minLevel drops log records below a level (mochi logs every connection).
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

package mqtt

import (
	"context"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// client takes messages from an external broker (EMQX, Mosquitto) with
// paho: MQTT 3.1.1, a persistent session under a fixed client id (the
// broker keeps what arrives while Sharpeye is away), subscriptions made
// again on every connect, automatic reconnection. Acknowledgement is
// manual: a message is acknowledged only once its events (or its dead
// letter) are durable on the bus, so the broker redelivers what a crash or
// a lost connection left unacknowledged.
type client struct {
	in   *Intake
	opts *paho.ClientOptions
	log  *problemLog

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // on-connect handlers, which paho starts itself

	// ready is closed once the first subscription is made.
	ready     chan struct{}
	readyOnce sync.Once
}

func newClient(in *Intake) (*client, error) {
	cfg := in.cfg
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := &client{in: in, log: newProblemLog(in.log, 10*time.Second), ready: make(chan struct{})}
	o := paho.NewClientOptions().
		AddBroker(cfg.URL).
		SetClientID(cfg.ClientID).
		SetProtocolVersion(4). // 3.1.1
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(30 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetKeepAlive(cfg.KeepAlive.D()).
		SetPingTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		// The handler only queues; acknowledgements follow the bus.
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		// Messages of the persistent session may arrive before the
		// subscriptions are made again: the default handler takes them.
		SetDefaultPublishHandler(c.onMessage).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(c.onLost).
		SetConnectionNotificationHandler(c.onNotification)
	if cfg.Username != "" {
		o.SetUsername(cfg.Username)
		o.SetPassword(cfg.Password.Reveal())
	}
	if tlsCfg != nil {
		o.SetTLSConfig(tlsCfg)
	}
	c.opts = o
	return c, nil
}

// run connects (retrying until it can) and takes messages until ctx ends.
func (c *client) run(ctx context.Context) error {
	c.mu.Lock()
	c.closed = false
	c.mu.Unlock()
	cl := paho.NewClient(c.opts)
	tok := cl.Connect() // with ConnectRetry, completes once connected
	<-ctx.Done()
	// Messages queued but not yet durable are not acknowledged: the broker
	// sends them again to the next session.
	cl.Disconnect(1000)
	tok.WaitTimeout(15 * time.Second)
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// onConnect subscribes (again) to the scheme's topics.
func (c *client) onConnect(cl paho.Client) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()

	c.in.log.Info("connected to the MQTT broker", "url", c.in.cfg.URL, "client_id", c.in.cfg.ClientID)
	filters := make(map[string]byte, len(subscriptions))
	for _, f := range subscriptions {
		filters[f] = byte(c.in.cfg.QoS)
	}
	tok := cl.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(30 * time.Second) {
		c.in.log.Error("subscribing timed out; reconnecting", "url", c.in.cfg.URL)
		return
	}
	if err := tok.Error(); err != nil {
		c.in.log.Error("subscribe failed", "url", c.in.cfg.URL, "err", err)
		return
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		for topic, code := range st.Result() {
			if code == 0x80 {
				c.in.log.Error("the broker refused a subscription (check its access control for this account)", "filter", topic, "username", c.in.cfg.Username)
			}
		}
	}
	c.readyOnce.Do(func() { close(c.ready) })
}

func (c *client) onLost(_ paho.Client, err error) {
	c.in.log.Warn("lost the MQTT broker; reconnecting (unacknowledged messages will be sent again)", "url", c.in.cfg.URL, "err", err)
}

func (c *client) onNotification(_ paho.Client, n paho.ConnectionNotification) {
	switch n := n.(type) {
	case paho.ConnectionNotificationFailed:
		c.log.report("cannot connect to the MQTT broker; retrying", "url", c.in.cfg.URL, "err", n.Reason)
	case paho.ConnectionNotificationBrokerFailed:
		c.log.report("cannot connect to the MQTT broker; retrying", "url", c.in.cfg.URL, "err", n.Reason)
	}
}

// onMessage queues a message for the bus; it is acknowledged once durable.
// It blocks while the queue is full, which stops reading from the broker:
// the broker holds the rest.
func (c *client) onMessage(_ paho.Client, m paho.Message) {
	j := c.in.handle(inbound{topic: m.Topic(), payload: m.Payload(), received: time.Now()})
	j.done = func(err error) {
		if err == nil {
			m.Ack()
		}
	}
	_ = c.in.pipe.submit(context.Background(), j) // fails only once stopped: not acknowledged
}

package outbox

import (
	"net/url"
	"path"
	"regexp"
	"strconv"
	"time"

	"sharpeye/configs/conf"
)

// Config is the outbox section of the configuration.
type Config struct {
	// Poll is how often each sink looks for new records when nobody called
	// Notify (records written by another node, or a missed wake-up).
	Poll conf.Duration `yaml:"poll"`
	// Batch is the most records the bus sink publishes at once (and a
	// webhook sink reads at once; it posts them one by one).
	Batch int `yaml:"batch"`
	// Retention is how long a record delivered to every sink is kept.
	Retention conf.Duration `yaml:"retention"`
	// Lease is how long a dispatcher's claim to deliver lasts without
	// renewal (it renews every third of it); another node takes over when
	// it expires.
	Lease conf.Duration `yaml:"lease"`
	// Webhooks are the outbound subscribers.
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is one outbound subscriber: every record whose type matches
// Types is POSTed to URL, signed with Secret.
type Webhook struct {
	// Name identifies the subscriber in its cursor, metrics and logs:
	// 1-64 characters of a-z, 0-9 and -. Renaming a subscriber starts it
	// again from the oldest record kept.
	Name string `yaml:"name"`
	// URL receives the POSTs: http or https.
	URL string `yaml:"url"`
	// Secret is the HMAC-SHA256 key of X-Sharpeye-Signature, at least 16
	// bytes.
	Secret conf.Secret `yaml:"secret"`
	// Types are globs (path.Match syntax, such as "case.*") of the record
	// types sent; the others are skipped.
	Types []string `yaml:"types"`
	// Timeout bounds one request.
	Timeout conf.Duration `yaml:"timeout"`
	// MaxBackoff caps the wait between attempts at a failing subscriber
	// (doubling from 1s, with jitter).
	MaxBackoff conf.Duration `yaml:"max_backoff"`
}

// Defaults returns the compiled defaults: no webhooks.
func Defaults() Config {
	return Config{
		Poll:      conf.Duration(time.Second),
		Batch:     500,
		Retention: conf.Duration(7 * 24 * time.Hour),
		Lease:     conf.Duration(15 * time.Second),
	}
}

// Webhook defaults, filled in by Validate where a key is left out.
const (
	DefaultWebhookTimeout    = 10 * time.Second
	DefaultWebhookMaxBackoff = 5 * time.Minute
	DefaultWebhookTypes      = "case.*"
	minSecretLen             = 16
	maxBatch                 = 500
)

var namePattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	if c.Poll.D() < 10*time.Millisecond {
		v.Errorf("poll", "must be at least 10ms")
	}
	if c.Batch < 1 || c.Batch > maxBatch {
		v.Errorf("batch", "must be between 1 and %d", maxBatch)
	}
	if c.Retention.D() < time.Minute {
		v.Errorf("retention", "must be at least 1m")
	}
	if c.Lease.D() < time.Second {
		v.Errorf("lease", "must be at least 1s")
	}
	seen := make(map[string]int, len(c.Webhooks))
	for i, w := range c.Webhooks {
		if j, dup := seen[w.Name]; dup && w.Name != "" {
			v.Errorf(indexKey(i, "name"), "duplicate name %q (also webhooks[%d])", w.Name, j)
			continue
		}
		seen[w.Name] = i
	}
}

func indexKey(i int, key string) string {
	return "webhooks[" + strconv.Itoa(i) + "]." + key
}

// Validate implements conf.Validator; it fills in the defaults of the keys
// left out (a list item gets no compiled defaults).
func (w *Webhook) Validate(v *conf.V) {
	if len(w.Types) == 0 {
		w.Types = []string{DefaultWebhookTypes}
	}
	if w.Timeout == 0 {
		w.Timeout = conf.Duration(DefaultWebhookTimeout)
	}
	if w.MaxBackoff == 0 {
		w.MaxBackoff = conf.Duration(DefaultWebhookMaxBackoff)
	}
	if !namePattern.MatchString(w.Name) {
		if w.Name == "" {
			v.Errorf("name", "required: 1-64 characters of a-z, 0-9 and -")
		} else {
			v.Errorf("name", "%q: must be 1-64 characters of a-z, 0-9 and -", w.Name)
		}
	}
	if w.URL == "" {
		v.Errorf("url", "required: an http:// or https:// URL")
	} else if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.Errorf("url", "must be an http:// or https:// URL with a host")
	} else if u.User != nil {
		v.Errorf("url", "must not hold credentials: the request is authenticated by its signature")
	}
	switch n := len(w.Secret.Reveal()); {
	case n == 0:
		v.Errorf("secret", "required: at least %d bytes, shared with the subscriber", minSecretLen)
	case n < minSecretLen:
		v.Errorf("secret", "must be at least %d bytes, not %d", minSecretLen, n)
	}
	for i, t := range w.Types {
		if _, err := path.Match(t, ""); err != nil || t == "" {
			v.Errorf("types["+strconv.Itoa(i)+"]", "%q is not a valid glob (such as case.*)", t)
		}
	}
	if w.Timeout.D() <= 0 || w.Timeout.D() > 5*time.Minute {
		v.Errorf("timeout", "must be between 1ms and 5m")
	}
	if w.MaxBackoff.D() < time.Second {
		v.Errorf("max_backoff", "must be at least 1s")
	}
}

// wants reports whether the subscriber takes records of type typ.
func (w *Webhook) wants(typ string) bool {
	for _, t := range w.Types {
		if ok, _ := path.Match(t, typ); ok {
			return true
		}
	}
	return false
}

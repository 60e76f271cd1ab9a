package node

import (
	"context"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"

	"golang.org/x/term"

	"sharpeye/configs/conf"
)

// LogConfig is the log section of the configuration.
type LogConfig struct {
	// Format is auto (text on a terminal, JSON otherwise), text or json.
	Format string `yaml:"format"`
	// Level is the default level: debug, info, warn or error.
	Level string `yaml:"level"`
	// Levels overrides the level per role or component (ingest, relay,
	// alerts, console, http, casedb, auth).
	Levels map[string]string `yaml:"levels"`
}

// DefaultLogConfig returns the compiled defaults.
func DefaultLogConfig() LogConfig {
	return LogConfig{Format: "auto", Level: "info", Levels: map[string]string{}}
}

// Validate implements conf.Validator.
func (c *LogConfig) Validate(v *conf.V) {
	switch c.Format {
	case "auto", "text", "json":
	default:
		v.Errorf("format", "must be auto, text or json")
	}
	if _, err := parseLevel(c.Level); err != nil {
		v.Errorf("level", "%v", err)
	}
	for name, l := range c.Levels {
		if _, err := parseLevel(l); err != nil {
			v.Errorf("levels."+name, "%v", err)
		}
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	if err != nil || !(s == "debug" || s == "info" || s == "warn" || s == "error" || strings.ToUpper(s) == s) {
		return 0, errLevel(s)
	}
	return l, nil
}

type errLevel string

func (e errLevel) Error() string { return "level " + string(e) + " must be debug, info, warn or error" }

// Logs hands out a logger per role or component, each at its own level,
// all writing to one handler that never prints a secret.
type Logs struct {
	cfg  LogConfig
	base slog.Handler
}

// NewLogs builds the loggers writing to w (a terminal gets text when the
// format is auto).
func NewLogs(cfg LogConfig, w io.Writer) *Logs {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: redactAttr}
	format := cfg.Format
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return &Logs{cfg: cfg, base: h}
}

// For returns the logger of a role or component, tagged with its name.
func (l *Logs) For(name string) *slog.Logger {
	level, err := parseLevel(l.cfg.Level)
	if err != nil {
		level = slog.LevelInfo
	}
	if s, ok := l.cfg.Levels[name]; ok {
		if lv, err := parseLevel(s); err == nil {
			level = lv
		}
	}
	return slog.New(&levelHandler{level: level, root: l.base, h: l.base}).With("component", name)
}

// levelHandler filters a shared handler at its own level, and keeps one
// component attribute however many times a logger is tagged: a role's
// logger handed to a package that tags its own (alerts, then outbox)
// logs "component":"alerts/outbox", not the key twice.
type levelHandler struct {
	level slog.Level
	root  slog.Handler // the shared handler
	// component and attrs are what h adds to root, until a group is
	// opened; after one, attributes go to h as they are.
	component string
	attrs     []slog.Attr
	grouped   bool
	h         slog.Handler
}

func (h *levelHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *levelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.h.Handle(ctx, r)
}

func (h *levelHandler) WithAttrs(a []slog.Attr) slog.Handler {
	n := *h
	if h.grouped {
		n.h = h.h.WithAttrs(a)
		return &n
	}
	rest := make([]slog.Attr, 0, len(a))
	tagged := false
	for _, at := range a {
		if at.Key == componentKey && at.Value.Kind() == slog.KindString {
			if c := at.Value.String(); c != "" {
				n.component, tagged = joinComponent(n.component, c), true
			}
			continue
		}
		rest = append(rest, at)
	}
	n.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], rest...)
	if !tagged {
		n.h = h.h.WithAttrs(rest)
		return &n
	}
	all := append([]slog.Attr{slog.String(componentKey, n.component)}, n.attrs...)
	n.h = h.root.WithAttrs(all)
	return &n
}

func (h *levelHandler) WithGroup(g string) slog.Handler {
	if g == "" {
		return h
	}
	n := *h
	n.h, n.grouped = h.h.WithGroup(g), true
	return &n
}

const componentKey = "component"

// joinComponent appends name to the component path c, unless c already
// ends with it.
func joinComponent(c, name string) string {
	switch {
	case c == "":
		return name
	case c == name || strings.HasSuffix(c, "/"+name):
		return c
	}
	return c + "/" + name
}

var secretKey = regexp.MustCompile(`(?i)(password|passwd|secret|token|authorization|cookie|dsn|credential)`)

// redactAttr is the last line of defence against a secret in the log: an
// attribute named like a secret is blanked, and a URL's password removed.
func redactAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindString {
		return a
	}
	s := a.Value.String()
	if s != "" && secretKey.MatchString(a.Key) {
		return slog.String(a.Key, "<redacted>")
	}
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		return slog.String(a.Key, conf.RedactURLs(s))
	}
	return a
}

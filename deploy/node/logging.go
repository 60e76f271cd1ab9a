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
	return slog.New(&levelHandler{level: level, h: l.base}).With("component", name)
}

// levelHandler filters a shared handler at its own level.
type levelHandler struct {
	level slog.Level
	h     slog.Handler
}

func (h *levelHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *levelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.h.Handle(ctx, r)
}
func (h *levelHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return &levelHandler{level: h.level, h: h.h.WithAttrs(a)}
}
func (h *levelHandler) WithGroup(g string) slog.Handler {
	return &levelHandler{level: h.level, h: h.h.WithGroup(g)}
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

package node

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"testing/slogtest"

	"sharpeye/configs/conf"
)

func TestLogsNeverPrintSecrets(t *testing.T) {
	var buf bytes.Buffer
	logs := NewLogs(LogConfig{Format: "json", Level: "debug"}, &buf)
	log := logs.For("ingest")
	log.Info("camera connecting", "url", "rtsp://admin:hik12345@10.1.2.3:554/Streaming/Channels/101", "password", "hunter22", "dsn", conf.Secret("postgres://u:pw9876@db/x"))
	log.Error("dial failed", "err", "dial rtsp://op:s3cr3t@cam/x: timeout")
	out := buf.String()
	for _, secret := range []string{"hik12345", "hunter22", "pw9876", "s3cr3t"} {
		if strings.Contains(out, secret) {
			t.Errorf("log shows %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "10.1.2.3:554/Streaming/Channels/101") || !strings.Contains(out, `"component":"ingest"`) {
		t.Errorf("redaction removed too much:\n%s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("not JSON: %s", line)
		}
	}
}

func TestLogLevelPerRole(t *testing.T) {
	var buf bytes.Buffer
	logs := NewLogs(LogConfig{Format: "text", Level: "warn", Levels: map[string]string{"relay": "debug"}}, &buf)
	logs.For("ingest").Info("hidden")
	logs.For("relay").Debug("shown")
	logs.For("ingest").Warn("also shown")
	out := buf.String()
	if strings.Contains(out, "hidden") || !strings.Contains(out, "msg=shown") || !strings.Contains(out, `msg="also shown"`) {
		t.Fatalf("levels wrong:\n%s", out)
	}
}

// TestLogComponentOnce: a logger tagged again by the package it is handed
// to carries one component, the path of its tags.
func TestLogComponentOnce(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		logs := NewLogs(LogConfig{Format: format, Level: "debug"}, &buf)
		alerts := logs.For("alerts").With("node", "n1")
		alerts.With("component", "outbox").With("component", "outbox").Info("delivering", "sinks", 1)
		alerts.Info("started")
		logs.For("bus").With("component", "bus").WithGroup("g").With("component", "x").Info("grouped")
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		want := [][]string{
			{"alerts/outbox", "node", "sinks"},
			{"alerts", "node"},
			{"bus"},
		}
		if len(lines) != len(want) {
			t.Fatalf("%s: %d lines:\n%s", format, len(lines), buf.String())
		}
		for i, line := range lines {
			// The grouped line has the group's own component too.
			if n := strings.Count(line, "component"); n != 1+i/2 {
				t.Errorf("%s: component %d times: %s", format, n, line)
			}
			for _, w := range want[i][1:] {
				if !strings.Contains(line, w) {
					t.Errorf("%s: %q missing: %s", format, w, line)
				}
			}
			c := `"component":"` + want[i][0] + `"`
			if format == "text" {
				c = "component=" + want[i][0] + " "
			}
			if !strings.Contains(line, c) {
				t.Errorf("%s: want %s in %s", format, c, line)
			}
		}
		if !strings.Contains(lines[2], "g.component=x") && !strings.Contains(lines[2], `"g":{"component":"x"}`) {
			t.Errorf("%s: the grouped attribute is not kept as it is: %s", format, lines[2])
		}
	}
}

// TestLogHandlerContract runs the standard library's checks of a
// slog.Handler against the component-merging handler.
func TestLogHandlerContract(t *testing.T) {
	var buf bytes.Buffer
	h := &levelHandler{level: slog.LevelDebug, root: slog.NewJSONHandler(&buf, nil)}
	h.h = h.root
	err := slogtest.TestHandler(h, func() []map[string]any {
		var out []map[string]any
		for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		return out
	})
	if err != nil {
		t.Fatal(err)
	}
}

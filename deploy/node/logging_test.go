package node

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

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

package mqtt

import (
	"strings"
	"testing"

	"sharpeye/configs/conf"
)

type root struct {
	MQTT Config `yaml:"mqtt"`
}

func load(t *testing.T, yml string) (Config, error) {
	t.Helper()
	cfg := root{MQTT: Defaults()}
	err := conf.Load(&cfg, []byte(yml), "test.yml", nil)
	return cfg.MQTT, err
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := load(t, "mqtt: {}\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.URL != "" || cfg.Listen != "127.0.0.1:1883" || cfg.QoS != 1 || cfg.MaxPayload != 64<<10 || cfg.OfflineCheck.String() != "10s" ||
		cfg.ClientID != "sharpeye-intake" || cfg.BatchMax != 500 || cfg.MaxInflight != 65535 {
		t.Fatalf("defaults %+v", cfg)
	}
	cfg, err = load(t, `
mqtt:
  url: mqtts://emqx.example:8883
  username: sharpeye
  password: s3cret
  client_id: sharpeye-node-1
  tls: {insecure_skip_verify: true}
`)
	if err != nil {
		t.Fatal(err)
	}
	if tc, err := cfg.tlsConfig(); err != nil || tc == nil || !tc.InsecureSkipVerify {
		t.Fatalf("tls %+v %v", tc, err)
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := load(t, `
mqtt:
  url: http://broker
  client_id: "bad id"
  qos: 3
  max_payload: 10
  offline_check: 1ms
  batch_max: 0
  max_inflight: 10
  password: p
  tls: {ca_file: /nonexistent/ca.pem, cert_file: /nonexistent/c.pem}
`)
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, key := range []string{"mqtt.url", "mqtt.client_id", "mqtt.qos", "mqtt.max_payload", "mqtt.offline_check", "mqtt.batch_max", "mqtt.max_inflight", "mqtt.username", "mqtt.tls.ca_file", "mqtt.tls.cert_file"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("no error for %s in:\n%v", key, err)
		}
	}
	if _, err := load(t, "mqtt: {listen: nowhere}\n"); err == nil || !strings.Contains(err.Error(), "mqtt.listen") {
		t.Fatalf("bad listen: %v", err)
	}
	if _, err := load(t, "mqtt: {url: \"tcp://u:p@broker:1883\"}\n"); err == nil || strings.Contains(err.Error(), "u:p") {
		t.Fatalf("credential in the URL: %v", err)
	}
}

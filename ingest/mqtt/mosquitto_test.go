package mqtt

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/configs/conf"
	"sharpeye/deploy/testpeer"
	"sharpeye/ingest/bus"
	"sharpeye/ingest/device"
	"sharpeye/ingest/event"
)

// The intake's account on mosquitto, and its access control: Sharpeye
// reads everything under sharpeye/, each device writes (and reads) only
// under its own id, which is its username.
const (
	intakeUser   = "sharpeye"
	intakePass   = "intake-pass-1"
	mosquittoACL = `user sharpeye
topic read sharpeye/#

pattern readwrite sharpeye/devices/%u/#
pattern readwrite sharpeye/analysers/%u/#
`
)

// startMosquitto runs mosquitto on a free loopback port with a password
// file (users: username -> password) and the ACL above, until the test
// ends. Debian's mosquitto 2.0.11 silently drops QoS 1 messages with its
// default per-client queue limits: both are lifted.
func startMosquitto(t *testing.T, users map[string]string) string {
	t.Helper()
	testpeer.Require(t, testpeer.Mosquitto)
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/mosquitto"); err != nil {
			t.Fatalf("mosquitto switched on but not installed: %v", err)
		}
	}
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	first := true
	for user, pass := range users {
		args := []string{"-b", passwd, user, pass}
		if first {
			args = append([]string{"-c"}, args...)
			first = false
		}
		if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
		}
	}
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte(mosquittoACL), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	config := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`listener %s 127.0.0.1
allow_anonymous false
password_file %s
acl_file %s
persistence false
max_queued_messages 0
max_inflight_messages 0
user root
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
`, port, passwd, acl)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", config)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	// Read its log until it runs, then keep draining it (a full pipe would
	// stop it) until it exits.
	running := make(chan bool, 1)
	drained := make(chan struct{})
	var log strings.Builder
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stderr)
		told := false
		for sc.Scan() {
			line := sc.Text()
			if !told {
				log.WriteString(line + "\n")
				if strings.Contains(line, " running") {
					running <- true
					told = true
				}
			}
		}
		if !told {
			running <- false
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-drained
		cmd.Wait()
	})
	select {
	case ok := <-running:
		if !ok {
			t.Fatalf("mosquitto did not start:\n%s", log.String())
		}
	case <-time.After(patience):
		t.Fatal("mosquitto did not start in time")
	}
	return addr
}

func mosquittoIntake(t *testing.T, addr string, reg *device.Registry, prod bus.Producer) *Intake {
	t.Helper()
	cfg := Defaults()
	cfg.URL = "tcp://" + addr
	cfg.ClientID = "sharpeye-test"
	cfg.Username, cfg.Password = intakeUser, conf.Secret(intakePass)
	in, err := New(cfg, reg, prod, cameraLookup, prometheus.NewRegistry(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	return in
}

var mosquittoUsers = map[string]string{intakeUser: intakePass, "smoke-1": "smoke-pass-1", "gas-1": "gas-pass-1"}

func TestMosquittoTelemetryAndWill(t *testing.T) {
	addr := startMosquitto(t, mosquittoUsers)
	b := newFakeBus()
	in := mosquittoIntake(t, addr, device.NewRegistry([]device.Device{smoke, gas}, nil), b)
	runIntake(t, in)
	waitReady(t, in)

	var conn killableConn
	c := connect(t, deviceOpts(addr, "smoke-1", "smoke-pass-1", "smoke-1").
		SetWill("sharpeye/devices/smoke-1/status", "offline", 1, false).
		SetCustomOpenConnectionFn(conn.dial))
	publish(t, c, "sharpeye/devices/smoke-1/telemetry", `{"readings": {"smoke": 0.12}}`)
	ev := b.waitEvent(t, "telemetry", ofType("telemetry"))
	if ev.Location.Region != smoke.Region || ev.Location.Grid != smoke.Grid || ev.Source.ID != "smoke-1" {
		t.Fatalf("event %+v", ev)
	}
	conn.kill()
	off := b.waitEvent(t, "device.offline", ofType("device.offline"))
	if off.Source.ID != "smoke-1" || off.Location.Grid != smoke.Grid {
		t.Fatalf("offline event %+v", off)
	}
}

func TestMosquittoRefusals(t *testing.T) {
	addr := startMosquitto(t, mosquittoUsers)
	b := newFakeBus()
	in := mosquittoIntake(t, addr, device.NewRegistry([]device.Device{smoke, gas}, nil), b)
	runIntake(t, in)
	waitReady(t, in)

	tok := paho.NewClient(deviceOpts(addr, "smoke-1", "wrong-pass", "smoke-1")).Connect()
	if !tok.WaitTimeout(patience) || !refused(tok.Error()) {
		t.Fatalf("wrong password: %v", tok.Error())
	}
	// Publishing as another device: mosquitto's ACL drops the message (and
	// mosquitto 2.0 closes the connection). The device then sends a message
	// of its own, which the intake would see after the forged one, had that
	// passed.
	lost := make(chan struct{})
	c := connect(t, deviceOpts(addr, "smoke-1", "smoke-pass-1", "smoke-1").
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) }))
	c.Publish("sharpeye/devices/gas-1/telemetry", 1, false, `{"readings": {"gas": 99}}`)
	select {
	case <-lost:
	case <-time.After(patience):
		t.Fatal("mosquitto kept the connection of a device publishing as another")
	}
	c = connect(t, deviceOpts(addr, "smoke-1", "smoke-pass-1", "smoke-1"))
	publish(t, c, "sharpeye/devices/smoke-1/telemetry", `{"readings": {"smoke": 0.1}}`)
	b.waitEvent(t, "smoke-1 telemetry", func(ev *event.Event) bool { return ev.Source.ID == "smoke-1" })
	for _, ev := range events(t, b.all()) {
		if ev.Source.ID == "gas-1" {
			t.Fatalf("forged message reached the bus: %+v", ev)
		}
	}
}

// TestMosquittoRestart: mosquitto keeps the intake's session while it is
// away, in order; what the intake took but did not make durable comes
// again.
func TestMosquittoRestart(t *testing.T) {
	addr := startMosquitto(t, mosquittoUsers)
	reg := device.NewRegistry([]device.Device{smoke}, nil)
	c := connect(t, deviceOpts(addr, "smoke-1", "smoke-pass-1", "smoke-1"))

	crashAfterTaking(t, c, func(b bus.Producer) *Intake { return mosquittoIntake(t, addr, reg, b) })
	const n = 50
	for i := 1; i <= n; i++ {
		publish(t, c, "sharpeye/devices/smoke-1/telemetry", fmt.Sprintf(`{"readings": {"seq": %d}}`, i))
	}
	b := newFakeBus()
	in2 := mosquittoIntake(t, addr, reg, b)
	runIntake(t, in2)
	msgs := b.wait(t, "every message", func(m []bus.Message) bool { return len(m) >= n+1 })
	for i, ev := range events(t, msgs) {
		if v, _ := ev.Number("seq"); int(v) != i {
			t.Fatalf("event %d has seq %v: out of order or missing", i, v)
		}
	}
}

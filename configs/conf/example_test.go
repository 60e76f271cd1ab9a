package conf_test

import (
	"fmt"
	"os"
	"time"

	"sharpeye/configs/conf"
)

func ExampleLoad() {
	type HTTP struct {
		Listen  string        `yaml:"listen"`
		Timeout conf.Duration `yaml:"timeout"`
	}
	type Config struct {
		HTTP HTTP        `yaml:"http"`
		DSN  conf.Secret `yaml:"dsn"`
	}
	cfg := Config{HTTP: HTTP{Listen: ":8080", Timeout: conf.Duration(10 * time.Second)}}

	file := []byte("http:\n  timeout: 30s\n")
	environ := []string{"SHARPEYE_HTTP_LISTEN=:9000", "SHARPEYE_DSN=postgres://u:pw@db/sharpeye"}
	if err := conf.Load(&cfg, file, "sharpeye.yml", environ); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%+v\n", cfg)
	// Output: {HTTP:{Listen::9000 Timeout:30s} DSN:<redacted>}
}

func ExampleLoad_errors() {
	cfg := defaults()
	file := []byte(`http:
  listn: ":9090"
  read_timeout: 30
cameras:
  - name: door
    url: http://door.local/stream
    fps: lots
`)
	err := conf.Load(&cfg, file, "sharpeye.yml", []string{"SHARPEYE_CASEDB_MAX_OPEN=many"})
	fmt.Println(err)
	// Output:
	// http.listn (line 2): unknown key (did you mean "listen"?)
	// http.read_timeout (line 3): missing unit in duration "30": use e.g. 30s for seconds or 30ms for milliseconds
	// cameras[0].fps (line 7): expected an integer, got "lots"
	// $SHARPEYE_CASEDB_MAX_OPEN (casedb.max_open): expected an integer, got "many"
}

func ExampleMarshal() {
	type DB struct {
		DSN     conf.Secret   `yaml:"dsn"`
		Timeout conf.Duration `yaml:"timeout"`
	}
	out, _ := conf.Marshal(DB{DSN: "postgres://u:pw@db/sharpeye", Timeout: conf.Duration(90 * time.Second)})
	fmt.Print(string(out))
	// Output:
	// dsn: <redacted>
	// timeout: 1m30s
}

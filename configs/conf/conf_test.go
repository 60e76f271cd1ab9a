package conf_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"sharpeye/configs/conf"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.bad.yml.errors files")

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestLoadValidFileMergesOverDefaults(t *testing.T) {
	cfg := defaults()
	if err := conf.Load(&cfg, readFile(t, "testdata/valid.yml"), "valid.yml", nil); err != nil {
		t.Fatalf("Load: %v", err)
	}

	want := defaults()
	want.LogLevel = slog.LevelDebug
	want.HTTP.Listen = ":9090"
	want.HTTP.MaxBody = 10 << 20
	want.HTTP.ReadTimeout = conf.Duration(90 * time.Second)
	want.TLS = &TLS{Cert: "/etc/sharpeye/cert.pem", Key: tlsKey}
	door := Camera{Name: "door", URL: "rtsp://door.local/stream", Password: doorPass, FPS: 15, Retry: conf.Duration(250 * time.Millisecond)}
	yard := door
	yard.Name, yard.URL = "yard", "rtsps://yard.local/stream"
	want.Cameras = []Camera{door, yard} // the sequence replaces the default one
	want.Sites["lab"] = Site{Zone: "us", Priority: 3}
	want.CaseDB.Threshold = 0.75
	want.Tags = []string{"edge", "lab"}

	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("loaded\n%+v\nwant\n%+v", cfg, want)
	}
	if cfg.TLS.Key.Reveal() != tlsKey || cfg.Cameras[1].Password.Reveal() != doorPass {
		t.Errorf("secrets not loaded: %q, %q", cfg.TLS.Key.Reveal(), cfg.Cameras[1].Password.Reveal())
	}
}

func TestLoadNothingKeepsDefaults(t *testing.T) {
	for _, data := range []string{"", "\n", "# only a comment\n", "~\n", "---\n"} {
		cfg := defaults()
		if err := conf.Load(&cfg, []byte(data), "sharpeye.yml", nil); err != nil {
			t.Errorf("Load(%q): %v", data, err)
			continue
		}
		if !reflect.DeepEqual(cfg, defaults()) {
			t.Errorf("Load(%q) changed the defaults: %+v", data, cfg)
		}
	}
}

func TestLoadEmptyValuesKeepDefaults(t *testing.T) {
	data := "http:\n  listen:\n  origins: ~\n  read_timeout:\ntls: ~\ncameras:\nsites: null\n"
	cfg := defaults()
	if err := conf.Load(&cfg, []byte(data), "sharpeye.yml", nil); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(cfg, defaults()) {
		t.Errorf("empty values changed the defaults: %+v", cfg)
	}
}

func TestLoadEmptySequenceClears(t *testing.T) {
	cfg := defaults()
	if err := conf.Load(&cfg, []byte("cameras: []\ntags: []\n"), "sharpeye.yml", nil); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(cfg.Cameras) != 0 || len(cfg.Tags) != 0 {
		t.Errorf("cameras %v, tags %v; want both empty", cfg.Cameras, cfg.Tags)
	}
}

// TestLoadBadFiles loads each testdata/*.bad.yml and compares the error,
// one line per problem, with the sibling .errors file. Run with -update to
// rewrite those files, then review the difference.
func TestLoadBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.bad.yml: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg := defaults()
			err := conf.Load(&cfg, readFile(t, file), filepath.Base(file), nil)
			if err == nil {
				t.Fatal("Load succeeded, want errors")
			}
			if _, ok := conf.AsErrors(err); !ok {
				t.Fatalf("Load returned %T, want conf.Errors: %v", err, err)
			}
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(file+".errors", []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := string(readFile(t, file+".errors")); got != want {
				t.Errorf("errors:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestLoadReportsEveryProblem checks that problems are not cut short at the
// first one, and that each names its own key.
func TestLoadReportsEveryProblem(t *testing.T) {
	cfg := defaults()
	err := conf.Load(&cfg, readFile(t, "testdata/three_mistakes.bad.yml"), "three_mistakes.bad.yml", nil)
	errs, ok := conf.AsErrors(err)
	if !ok {
		t.Fatalf("Load: %v, want conf.Errors", err)
	}
	var paths []string
	for _, e := range errs {
		paths = append(paths, e.Path)
	}
	want := []string{"http.read_timeout", "casedb.max_open", "cameras[0].frames"}
	if !slices.Equal(paths, want) {
		t.Errorf("error paths %q, want %q", paths, want)
	}
	// The good keys are applied (so that validation sees them); the bad
	// ones keep their defaults; the list holding a bad item is left out.
	want2 := defaults()
	want2.HTTP.Listen = ":9090"
	if !reflect.DeepEqual(cfg, want2) {
		t.Errorf("after a file with errors: %+v\nwant %+v", cfg, want2)
	}
}

func TestLoadEnvironment(t *testing.T) {
	file := []byte("http:\n  listen: \":9090\"\nratio: 0.5\n")
	tests := []struct {
		name    string
		environ []string
		check   func(t *testing.T, cfg Config)
		errs    string
	}{{
		name:    "overrides the file",
		environ: []string{"SHARPEYE_HTTP_LISTEN=:9000"},
		check: func(t *testing.T, cfg Config) {
			if cfg.HTTP.Listen != ":9000" {
				t.Errorf("listen %q, want :9000", cfg.HTTP.Listen)
			}
		},
	}, {
		name: "scalars of every type",
		environ: []string{
			"SHARPEYE_LOG_LEVEL=debug",    // inline, a TextUnmarshaler
			"SHARPEYE_HTTP_MAX_BODY=64KB", // a yaml.Unmarshaler
			"SHARPEYE_DEBUG=true",
			"SHARPEYE_HTTP_ENABLED=false",
			"SHARPEYE_HTTP_READ_TIMEOUT=1m30s",
			"SHARPEYE_CASEDB_MAX_OPEN=25",
			"SHARPEYE_CASEDB_THRESHOLD=0.9",
			"SHARPEYE_CASEDB_DSN=" + envSecret,
			"SHARPEYE_RATIO=1",
		},
		check: func(t *testing.T, cfg Config) {
			want := defaults()
			want.LogLevel, want.Debug = slog.LevelDebug, true
			want.HTTP.MaxBody = 64 << 10
			want.HTTP.Listen, want.HTTP.Enabled, want.HTTP.ReadTimeout = ":9090", false, conf.Duration(90*time.Second)
			want.CaseDB = CaseDB{DSN: envSecret, MaxOpen: 25, Threshold: 0.9}
			want.Ratio = 1
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("got\n%+v\nwant\n%+v", cfg, want)
			}
		},
	}, {
		name:    "creates an absent section",
		environ: []string{"SHARPEYE_TLS_KEY=" + envSecret},
		check: func(t *testing.T, cfg Config) {
			if cfg.TLS == nil || cfg.TLS.Key.Reveal() != envSecret || cfg.TLS.Cert != "" {
				t.Errorf("tls %+v, want a section holding only the key", cfg.TLS)
			}
		},
	}, {
		name:    "comma-separated list",
		environ: []string{"SHARPEYE_TAGS=edge, lab,,dock", "SHARPEYE_HTTP_ORIGINS=https://a.example"},
		check: func(t *testing.T, cfg Config) {
			if want := []string{"edge", "lab", "dock"}; !slices.Equal(cfg.Tags, want) {
				t.Errorf("tags %q, want %q", cfg.Tags, want)
			}
			if want := []string{"https://a.example"}; !slices.Equal(cfg.HTTP.Origins, want) {
				t.Errorf("origins %q, want %q", cfg.HTTP.Origins, want)
			}
		},
	}, {
		name: "ignores empty, unknown and unrelated variables",
		environ: []string{
			"SHARPEYE_HTTP_LISTEN=",
			"SHARPEYE_NOT_A_KEY=1",
			"SHARPEYE_CAMERAS_0_NAME=x", // not reachable through a sequence
			"HTTP_LISTEN=:1",
			"SHARPEYE",
		},
		check: func(t *testing.T, cfg Config) {
			want := defaults()
			want.HTTP.Listen, want.Ratio = ":9090", 0.5
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("got\n%+v\nwant\n%+v", cfg, want)
			}
		},
	}, {
		name: "parse errors name the variable and the key",
		environ: []string{
			"SHARPEYE_CASEDB_MAX_OPEN=lots",
			"SHARPEYE_HTTP_READ_TIMEOUT=10",
			"SHARPEYE_DEBUG=maybe",
			"SHARPEYE_HTTP_ORIGINS=a,b",
			"SHARPEYE_SITES_HQ_ZONE=x",
			"SHARPEYE_HTTP_MAX_BODY=huge",
		},
		errs: `$SHARPEYE_DEBUG (debug): expected true or false, got "maybe"
$SHARPEYE_HTTP_READ_TIMEOUT (http.read_timeout): missing unit in duration "10": use e.g. 10s for seconds or 10ms for milliseconds
$SHARPEYE_HTTP_MAX_BODY (http.max_body): invalid size "huge": use a number of bytes, or of KB, MB or GB
$SHARPEYE_CASEDB_MAX_OPEN (casedb.max_open): expected an integer, got "lots"`,
	}, {
		name:    "values from the environment are validated, without a file line",
		environ: []string{"SHARPEYE_RATIO=5"},
		errs:    `ratio: must be between 0 and 1`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaults()
			err := conf.Load(&cfg, file, "sharpeye.yml", tt.environ)
			if tt.errs != "" {
				if err == nil || err.Error() != tt.errs {
					t.Fatalf("errors:\n%v\nwant:\n%s", err, tt.errs)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestEnvNames(t *testing.T) {
	want := []string{
		"SHARPEYE_LOG_LEVEL",
		"SHARPEYE_DEBUG",
		"SHARPEYE_HTTP_LISTEN",
		"SHARPEYE_HTTP_READ_TIMEOUT",
		"SHARPEYE_HTTP_ENABLED",
		"SHARPEYE_HTTP_ORIGINS",
		"SHARPEYE_HTTP_MAX_BODY",
		"SHARPEYE_TLS_CERT",
		"SHARPEYE_TLS_KEY",
		"SHARPEYE_CASEDB_DSN",
		"SHARPEYE_CASEDB_MAX_OPEN",
		"SHARPEYE_CASEDB_THRESHOLD",
		"SHARPEYE_TAGS",
		"SHARPEYE_RATIO",
	}
	if got := conf.EnvNames(&Config{}); !slices.Equal(got, want) {
		t.Errorf("EnvNames:\n%q\nwant\n%q", got, want)
	}
	if got := conf.EnvNames(Config{}); !slices.Equal(got, want) {
		t.Errorf("EnvNames of a value differs: %q", got)
	}
}

func TestLoadValidationErrors(t *testing.T) {
	cfg := defaults()
	err := conf.Load(&cfg, readFile(t, "testdata/validation.bad.yml"), "validation.bad.yml", nil)
	errs, ok := conf.AsErrors(err)
	if !ok {
		t.Fatalf("Load: %v, want conf.Errors", err)
	}
	want := conf.FieldError{Path: "cameras[1].url", Line: 5, Msg: "scheme must be rtsp or rtsps"}
	if !slices.Contains(errs, want) {
		t.Errorf("errors %v\ndo not contain %v", errs, want)
	}
}

// TestLoadAliasBomb loads a small file whose merges expand to 10^8 keys.
func TestLoadAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("sites:\n  s0: &s0 {zone: a}\n")
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "  s%d: &s%d {<<: [*s%d", i, i, i-1)
		for range 9 {
			fmt.Fprintf(&b, ", *s%d", i-1)
		}
		b.WriteString("]}\n")
	}
	cfg := defaults()
	err := conf.Load(&cfg, []byte(b.String()), "bomb.yml", nil)
	if want := "bomb.yml: the document is too large or expands too many aliases"; err == nil || err.Error() != want {
		t.Errorf("Load: %v, want %q", err, want)
	}
}

func TestLoadRefusesBadDestination(t *testing.T) {
	var nilCfg *Config
	n := 3
	for _, dst := range []any{nil, defaults(), nilCfg, &n} {
		err := conf.Load(dst, []byte("http: {}\n"), "sharpeye.yml", nil)
		if err == nil {
			t.Errorf("Load(%T) succeeded", dst)
		}
		if _, ok := conf.AsErrors(err); ok {
			t.Errorf("Load(%T) returned conf.Errors, want a plain error: %v", dst, err)
		}
	}
}

func TestFieldErrorString(t *testing.T) {
	tests := []struct {
		err  conf.FieldError
		want string
	}{
		{conf.FieldError{Path: "cameras[2].url", Line: 14, Msg: "scheme must be rtsp or rtsps"}, "cameras[2].url (line 14): scheme must be rtsp or rtsps"},
		{conf.FieldError{Path: "cameras[2].url", Msg: "scheme must be rtsp or rtsps"}, "cameras[2].url: scheme must be rtsp or rtsps"},
		{conf.FieldError{Line: 1, Msg: "expected a mapping"}, "line 1: expected a mapping"},
		{conf.FieldError{Msg: "no roles enabled"}, "no roles enabled"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	errs := conf.Errors{tests[0].err, tests[1].err}
	if got, want := errs.Error(), tests[0].want+"\n"+tests[1].want; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}

func TestAsErrors(t *testing.T) {
	fe := conf.FieldError{Path: "http.listen", Msg: "bad"}
	tests := []struct {
		err  error
		want conf.Errors
		ok   bool
	}{
		{conf.Errors{fe}, conf.Errors{fe}, true},
		{fmt.Errorf("load sharpeye.yml: %w", conf.Errors{fe, fe}), conf.Errors{fe, fe}, true},
		{fe, conf.Errors{fe}, true},
		{fmt.Errorf("wrapped: %w", &fe), conf.Errors{fe}, true},
		{errors.New("other"), nil, false},
		{nil, nil, false},
	}
	for _, tt := range tests {
		got, ok := conf.AsErrors(tt.err)
		if ok != tt.ok || !slices.Equal(got, tt.want) {
			t.Errorf("AsErrors(%v) = %v, %v; want %v, %v", tt.err, got, ok, tt.want, tt.ok)
		}
	}
}

func TestDurationParse(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "10s", want: 10 * time.Second},
		{in: "1m30s", want: 90 * time.Second},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "1h", want: time.Hour},
		{in: "0", want: 0},
		{in: "10", err: `missing unit in duration "10": use e.g. 10s for seconds or 10ms for milliseconds`},
		{in: "1.5", err: `missing unit in duration "1.5": use e.g. 1.5s for seconds or 1.5ms for milliseconds`},
		{in: "soon", err: `invalid duration "soon": use a number with a unit, such as 10s, 1m30s or 250ms`},
		{in: "", err: `empty duration: use a number with a unit, such as 10s, 1m30s or 250ms`},
	}
	for _, tt := range tests {
		var d conf.Duration
		err := d.UnmarshalText([]byte(tt.in))
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("UnmarshalText(%q) error %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("UnmarshalText(%q): %v", tt.in, err)
		case tt.err == "" && d.D() != tt.want:
			t.Errorf("UnmarshalText(%q) = %v, want %v", tt.in, d.D(), tt.want)
		}
	}
}

func TestDurationMarshalsAsWritten(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Second, "10s"},
		{90 * time.Second, "1m30s"},
		{250 * time.Millisecond, "250ms"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{10 * time.Minute, "10m"},
		{time.Hour + 5*time.Second, "1h0m5s"},
		{0, "0s"},
	}
	for _, tt := range tests {
		d := conf.Duration(tt.d)
		text, _ := d.MarshalText()
		js, _ := json.Marshal(d)
		y, _ := yaml.Marshal(struct{ D conf.Duration }{d})
		if string(text) != tt.want || d.String() != tt.want ||
			string(js) != `"`+tt.want+`"` || string(y) != "d: "+tt.want+"\n" {
			t.Errorf("%v marshals as text %s, JSON %s, YAML %q; want %s", tt.d, text, js, y, tt.want)
		}
		var back conf.Duration
		if err := json.Unmarshal(js, &back); err != nil || back != d {
			t.Errorf("JSON round trip of %v gave %v, %v", tt.d, back.D(), err)
		}
	}
}

// secretConfig returns a configuration holding a secret in every place one
// can be: a nested struct, a pointer to a struct and a slice element.
func secretConfig() Config {
	cfg := defaults()
	cfg.TLS = &TLS{Cert: "/etc/cert.pem", Key: tlsKey}
	cfg.Cameras[0].Password = doorPass
	return cfg
}

func assertRedacted(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range []string{dsn, "hunter2", tlsKey, doorPass} {
		if strings.Contains(out, s) {
			t.Errorf("%s shows the secret %q:\n%s", what, s, out)
		}
	}
	if !strings.Contains(out, conf.Redacted) {
		t.Errorf("%s does not show %s:\n%s", what, conf.Redacted, out)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	cfg := secretConfig()

	out, err := conf.Marshal(&cfg)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	assertRedacted(t, "Marshal", string(out))

	// Other verbs applied to a whole struct print its pointer fields without
	// calling their methods: fmt's limit, documented on Secret.
	for _, format := range []string{"%v", "%+v", "%#v"} {
		assertRedacted(t, format, fmt.Sprintf(format, cfg))
		assertRedacted(t, format+" of a pointer", fmt.Sprintf(format, &cfg))
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%10s", "%-12v"} {
		assertRedacted(t, format+" of the secret", fmt.Sprintf(format, cfg.CaseDB.DSN))
		assertRedacted(t, format+" of a section", fmt.Sprintf(format, cfg.CaseDB))
	}
	if got, want := fmt.Sprintf("%x", cfg.CaseDB.DSN), fmt.Sprintf("%x", conf.Redacted); got != want {
		t.Errorf("%%x of the secret = %s, want %s", got, want)
	}
	assertRedacted(t, "String", cfg.CaseDB.DSN.String())
	assertRedacted(t, "Println", fmt.Sprintln(cfg.CaseDB, cfg.CaseDB.DSN))

	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	assertRedacted(t, "JSON", strings.NewReplacer(`\u003c`, "<", `\u003e`, ">").Replace(string(js)))
	text, _ := cfg.CaseDB.DSN.MarshalText()
	assertRedacted(t, "MarshalText", string(text))

	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		log := slog.New(h)
		log.Info("loaded", "config", cfg, "dsn", cfg.CaseDB.DSN, slog.Any("tls", cfg.TLS))
		log.Info("camera", slog.Group("camera", "password", cfg.Cameras[0].Password))
	}
	assertRedacted(t, "slog", buf.String())

	if cfg.CaseDB.DSN.Reveal() != dsn {
		t.Errorf("Reveal() = %q, want the value", cfg.CaseDB.DSN.Reveal())
	}
}

func TestSecretEmptyPrintsEmpty(t *testing.T) {
	var s conf.Secret
	y, _ := yaml.Marshal(map[string]conf.Secret{"k": s})
	js, _ := json.Marshal(s)
	if got := fmt.Sprintf("%v|%s|%q", s, s, s); got != `||""` || string(js) != `""` || string(y) != "k: \"\"\n" {
		t.Errorf("empty secret prints %q, JSON %s, YAML %q", got, js, y)
	}
}

// TestMarshalLoadsBack checks that Marshal writes the keys Load reads.
func TestMarshalLoadsBack(t *testing.T) {
	cfg := secretConfig()
	out, err := conf.Marshal(&cfg)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var back Config
	if err := conf.Load(&back, out, "printed.yml", nil); err != nil {
		t.Fatalf("Load of Marshal's output: %v\n%s", err, out)
	}
	back.TLS.Key, back.Cameras[0].Password, back.CaseDB.DSN = cfg.TLS.Key, cfg.Cameras[0].Password, cfg.CaseDB.DSN
	if !reflect.DeepEqual(back, cfg) {
		t.Errorf("loaded back\n%+v\nwant\n%+v\nfrom\n%s", back, cfg, out)
	}
}

func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	for _, file := range files {
		f.Add(readFile(f, file))
	}
	f.Add([]byte("a: &a [*a]\ncameras: &c [*c]\n"))
	f.Add([]byte("http: &h {<<: *h}\n"))
	f.Add([]byte("sites: {<<: [{hq: {zone: a}}, {lab: {}}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := defaults()
		err := conf.Load(&cfg, data, "fuzz.yml", []string{"SHARPEYE_HTTP_LISTEN=:1", "SHARPEYE_TAGS=a,b"})
		if err == nil {
			if _, err := conf.Marshal(&cfg); err != nil {
				t.Errorf("Marshal after a clean Load: %v", err)
			}
			return
		}
		errs, ok := conf.AsErrors(err)
		if !ok || len(errs) == 0 {
			t.Fatalf("Load returned %T %v, want a non-empty conf.Errors", err, err)
		}
		for _, e := range errs {
			if e.Msg == "" {
				t.Errorf("error without a message: %+v", e)
			}
		}
	})
}

// validated records the paths validated, in order, for TestValidateOrder.
var validated []string

type node struct {
	Name string `yaml:"name"`
}

func (n *node) Validate(v *conf.V) {
	validated = append(validated, v.Path(""))
	if n.Name == "bad" {
		v.Errorf("name", "is bad (at %s)", v.Path("name"))
	}
}

type Embedded struct {
	Extra string `yaml:"extra"`
}

func (e *Embedded) Validate(v *conf.V) { validated = append(validated, "embedded@"+v.Path("")) }

type tree struct {
	Embedded `yaml:",inline"` // Validate promoted to tree: called once, as tree's
	A        node             `yaml:"a"`
	List     []node           `yaml:"list"`
	Map      map[string]*node `yaml:"map"`
	Ptr      *node            `yaml:"ptr"`
	Nil      *node            `yaml:"nil"`
}

type root struct {
	Tree tree `yaml:"tree"`
}

func (r *root) Validate(v *conf.V) {
	validated = append(validated, "root")
	v.Errorf("tree.list[1].name", "checked by the parent")
}

func TestValidateOrder(t *testing.T) {
	validated = nil
	data := []byte(`tree:
  a: {name: a}
  list:
    - name: l0
    - name: bad
  map:
    "y z": {name: y}
    x: {name: x}
  ptr: {name: bad}
`)
	var r root
	err := conf.Load(&r, data, "tree.yml", nil)
	want := []string{"tree.a", "tree.list[0]", "tree.list[1]", "tree.map.x", `tree.map["y z"]`, "tree.ptr", "embedded@tree", "root"}
	if !slices.Equal(validated, want) {
		t.Errorf("validated\n%q\nwant children before parents, in order:\n%q", validated, want)
	}
	wantErr := `tree.list[1].name (line 5): is bad (at tree.list[1].name)
tree.list[1].name (line 5): checked by the parent
tree.ptr.name (line 9): is bad (at tree.ptr.name)`
	if err == nil || err.Error() != wantErr {
		t.Errorf("errors:\n%v\nwant:\n%s", err, wantErr)
	}
}

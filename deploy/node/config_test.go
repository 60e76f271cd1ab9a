package node

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"sharpeye/configs/conf"
)

const defaultFile = "../../configs/sharpeye.yml"

// TestDefaultConfFile keeps configs/sharpeye.yml equal to the compiled
// defaults, key for key.
func TestDefaultConfFile(t *testing.T) {
	cfg, err := LoadFile(defaultFile, nil)
	if err != nil {
		t.Fatalf("configs/sharpeye.yml does not load: %v", err)
	}
	if want := Defaults(); !reflect.DeepEqual(cfg, want) {
		got, _ := conf.Marshal(&cfg)
		exp, _ := conf.Marshal(&want)
		t.Fatalf("configs/sharpeye.yml differs from the compiled defaults:\nfile:\n%s\ndefaults:\n%s", got, exp)
	}
}

// TestDefaultConfFileDocumentsEveryKey checks that every key the code knows
// is written in configs/sharpeye.yml, and no other.
func TestDefaultConfFileDocumentsEveryKey(t *testing.T) {
	d := Defaults()
	out, err := conf.Marshal(&d)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(defaultFile)
	if err != nil {
		t.Fatal(err)
	}
	want, got := keyPaths(t, out), keyPaths(t, file)
	for _, k := range want {
		if !slices.Contains(got, k) {
			t.Errorf("configs/sharpeye.yml does not document %s", k)
		}
	}
	for _, k := range got {
		if !slices.Contains(want, k) {
			t.Errorf("configs/sharpeye.yml documents %s, which the code does not know", k)
		}
	}
}

func keyPaths(t *testing.T, data []byte) []string {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind == yaml.DocumentNode {
			walk(n.Content[0], prefix)
			return
		}
		if n.Kind != yaml.MappingNode || (len(n.Content) == 0 && prefix != "") {
			out = append(out, prefix)
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if prefix != "" {
				k = prefix + "." + k
			}
			walk(n.Content[i+1], k)
		}
	}
	walk(&root, "")
	slices.Sort(out)
	return out
}

// TestBadConfigs checks each testdata/*.bad.yml against the exact errors
// in its .errors file.
func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yml")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := LoadFile(f, nil)
			if err == nil {
				t.Fatal("loaded without error")
			}
			got := err.Error() + "\n"
			if os.Getenv("UPDATE_TESTDATA") != "" {
				os.WriteFile(f+".errors", []byte(got), 0o644)
				return
			}
			want, err := os.ReadFile(f + ".errors")
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("errors:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	cfg, err := LoadFile(defaultFile, []string{"SHARPEYE_HTTP_LISTEN=0.0.0.0:9000", "SHARPEYE_CASEDB_DSN=/tmp/x.db", "SHARPEYE_AUTH_TRUSTED_ORIGINS=https://a.example,https://b.example"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Listen != "0.0.0.0:9000" || cfg.CaseDB.DSN.Reveal() != "/tmp/x.db" || len(cfg.Auth.TrustedOrigins) != 2 {
		t.Fatalf("environment not applied: %+v", cfg)
	}
	_, err = LoadFile(defaultFile, []string{"SHARPEYE_HTTP_MAX_BODY_BYTES=big"})
	if err == nil || !strings.Contains(err.Error(), "SHARPEYE_HTTP_MAX_BODY_BYTES") {
		t.Fatalf("bad environment value: %v", err)
	}
}

// TestCheckCommand is `sharpeye check` as a user runs it: a file with three
// mistakes gives three errors, each naming its key.
func TestCheckCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Main([]string{"check", "-c", "testdata/three-mistakes.bad.yml"}, &stdout, &stderr, nil)
	if code != 1 {
		t.Fatalf("exit code %d", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[3], "3 configuration error(s)") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
	for i, key := range []string{"http.listn", "auth.session_ttl", "casedb.driver"} {
		if !strings.HasPrefix(lines[i], key+" ") {
			t.Errorf("line %d = %q, want it to name %s", i, lines[i], key)
		}
	}

	stdout.Reset()
	stderr.Reset()
	if code := Main([]string{"check", "-c", defaultFile}, &stdout, &stderr, nil); code != 0 || !strings.Contains(stdout.String(), "ok") {
		t.Fatalf("default file: %d %s %s", code, stdout.String(), stderr.String())
	}
	// --print never shows a secret.
	stdout.Reset()
	Main([]string{"check", "-c", defaultFile, "--print"}, &stdout, &stderr, []string{"SHARPEYE_CASEDB_DRIVER=postgres", "SHARPEYE_CASEDB_DSN=postgres://u:hunter22@db/x"})
	if strings.Contains(stdout.String(), "hunter22") || !strings.Contains(stdout.String(), "redacted") {
		t.Fatalf("--print:\n%s", stdout.String())
	}
}

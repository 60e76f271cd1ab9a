package blob

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/configs/conf"
	"sharpeye/console/api/apitest"
)

func open(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg, t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func read(t testing.TB, s *Store, ref string) ([]byte, string) {
	t.Helper()
	r, ct, err := s.Get(ref)
	if err != nil {
		t.Fatalf("Get(%s): %v", ref, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return data, ct
}

func TestPutGetRoundTrip(t *testing.T) {
	s := open(t, Defaults())
	data := []byte("\xff\xd8 a jpeg, honestly\n\nwith newlines\n")
	ref, sum, err := s.Put(t.Context(), "image/jpeg", data)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	if sum != hex.EncodeToString(want[:]) || ref != "blob:sha256:"+sum {
		t.Fatalf("ref %s sum %s, want the SHA-256 of the content", ref, sum)
	}
	got, ct := read(t, s, ref)
	if !bytes.Equal(got, data) || ct != "image/jpeg" {
		t.Fatalf("Get = %q (%s), want %q (image/jpeg)", got, ct, data)
	}
	if st := s.Stats(); st.Files != 1 || st.Bytes != int64(len("image/jpeg\n")+len(data)) || st.PutsNew != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Nothing left in tmp.
	if left, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestPutIsIdempotent(t *testing.T) {
	s := open(t, Defaults())
	old := time.Now().Add(-48 * time.Hour)
	ref1, _, err := s.Put(t.Context(), "image/jpeg", []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := ParseRef(ref1)
	os.Chtimes(s.path(sum), old, old)

	ref2, _, err := s.Put(t.Context(), "image/png", []byte("same"))
	if err != nil || ref2 != ref1 {
		t.Fatalf("second Put = %s, %v; want %s", ref2, err, ref1)
	}
	if st := s.Stats(); st.Files != 1 || st.PutsDup != 1 {
		t.Fatalf("stats %+v, want one file and one duplicate put", st)
	}
	if _, ct := read(t, s, ref1); ct != "image/jpeg" {
		t.Fatalf("content type %s, want the first one kept", ct)
	}
	info, _ := os.Stat(s.path(sum))
	if info.ModTime().Before(time.Now().Add(-time.Hour)) {
		t.Fatal("a second Put did not restart the blob's retention")
	}
}

func TestConcurrentPuts(t *testing.T) {
	s := open(t, Defaults())
	var wg sync.WaitGroup
	refs := make([]string, 16)
	for i := range refs {
		wg.Go(func() {
			ref, _, err := s.Put(t.Context(), "text/plain", []byte(fmt.Sprint("blob ", i%4)))
			if err != nil {
				t.Error(err)
			}
			refs[i] = ref
		})
	}
	wg.Wait()
	for i, ref := range refs {
		if got, _ := read(t, s, ref); string(got) != fmt.Sprint("blob ", i%4) {
			t.Fatalf("blob %d = %q", i, got)
		}
	}
	if st := s.Stats(); st.Files != 4 {
		t.Fatalf("%d files, want 4", st.Files)
	}
}

func TestPutRefuses(t *testing.T) {
	s := open(t, Defaults())
	for _, ct := range []string{"", "jpeg", "image/jpeg\nx", strings.Repeat("a", 130) + "/b"} {
		if _, _, err := s.Put(t.Context(), ct, []byte("x")); err == nil {
			t.Errorf("Put with content type %q succeeded", ct)
		}
	}
	if _, _, err := s.Put(t.Context(), "image/jpeg", make([]byte, MaxSize+1)); err == nil {
		t.Error("Put of an oversized blob succeeded")
	}
}

func TestGetErrors(t *testing.T) {
	s := open(t, Defaults())
	for _, ref := range []string{"", "blob:sha256:", "blob:sha256:../../etc/passwd", "blob:md5:" + strings.Repeat("a", 64),
		"blob:sha256:" + strings.Repeat("A", 64), "blob:sha256:" + strings.Repeat("a", 63)} {
		if _, _, err := s.Get(ref); !errors.Is(err, ErrBadRef) {
			t.Errorf("Get(%q) = %v, want ErrBadRef", ref, err)
		}
	}
	_, _, err := s.Get("blob:sha256:" + strings.Repeat("a", 64))
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func TestSweepRetention(t *testing.T) {
	s := open(t, Defaults())
	now := time.Now()
	oldRef, _, _ := s.Put(t.Context(), "image/jpeg", []byte("old"))
	newRef, _, _ := s.Put(t.Context(), "image/jpeg", []byte("new"))
	sum, _ := ParseRef(oldRef)
	past := now.Add(-800 * time.Hour)
	os.Chtimes(s.path(sum), past, past)

	swept, err := s.Sweep(now.Add(-720 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if swept.Expired != 1 || swept.Evicted != 0 {
		t.Fatalf("swept %+v, want 1 expired", swept)
	}
	if _, _, err := s.Get(oldRef); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired blob still there: %v", err)
	}
	read(t, s, newRef)
	if st := s.Stats(); st.Files != 1 || st.DeletedExpired != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSweepSizeBoundEvictsOldestFirst(t *testing.T) {
	cfg := Defaults()
	cfg.MaxBytes = 1 << 20
	s := open(t, cfg)
	chunk := 300 << 10
	base := time.Now().Add(-time.Hour)
	var refs []string
	for i := range 5 {
		data := bytes.Repeat([]byte{byte(i)}, chunk)
		ref, sum, err := s.Put(t.Context(), "application/octet-stream", data)
		if err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i) * time.Minute)
		os.Chtimes(s.path(sum), at, at)
		refs = append(refs, ref)
	}
	// Past the bound, Put asks Run for a sweep.
	select {
	case <-s.sweep:
	default:
		t.Fatal("no sweep requested past max_bytes")
	}
	swept, err := s.Sweep(time.Now().Add(-720 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// 5 x 300 KiB = 1.5 MiB; down to under 0.9 MiB leaves the newest 3.
	if swept.Evicted != 2 || swept.Expired != 0 {
		t.Fatalf("swept %+v, want 2 evicted", swept)
	}
	for i, ref := range refs {
		_, _, err := s.Get(ref)
		if gone := errors.Is(err, ErrNotFound); gone != (i < 2) {
			t.Errorf("blob %d gone = %v", i, gone)
		}
	}
	if st := s.Stats(); st.Bytes > cfg.MaxBytes/10*9 || st.Files != 3 {
		t.Fatalf("stats after sweep %+v", st)
	}
}

func TestOpenCountsAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	cfg := Defaults()
	s, err := Open(cfg, dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Put(t.Context(), "image/jpeg", []byte("one"))
	s.Put(t.Context(), "image/jpeg", []byte("two"))
	stale := filepath.Join(s.Dir(), "tmp", "put-123")
	os.WriteFile(stale, []byte("half a blob"), 0o600)
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(stale, past, past)

	s2, err := Open(cfg, dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.Files != 2 {
		t.Fatalf("reopened store counts %d files, want 2", st.Files)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("stale temporary file not removed")
	}
	if s2.Dir() != filepath.Join(dir, "blobs") {
		t.Fatalf("dir %s, want <data_dir>/blobs", s2.Dir())
	}
}

func TestRunSweepsWhenFull(t *testing.T) {
	cfg := Defaults()
	cfg.MaxBytes = 1 << 20
	s := open(t, cfg)
	done := make(chan error, 1)
	go func() { done <- s.Run(t.Context()) }()
	for i := range 8 {
		if _, _, err := s.Put(t.Context(), "application/octet-stream", bytes.Repeat([]byte{byte(i)}, 200<<10)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().DeletedEvicted == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not sweep a store over max_bytes")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		yaml, want string
	}{
		{"retention: 30s", "retention (line 1): must be at least 1m"},
		{"max_bytes: 1000", "max_bytes (line 1): must be 0"},
		{"max_bytes: -5", "max_bytes (line 1): must be 0"},
		{"sweep_every: 10ms", "sweep_every (line 1): must be at least 1s"},
	} {
		cfg := Defaults()
		err := conf.Load(&cfg, []byte(tc.yaml), "blobs.yml", nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	cfg := Defaults()
	if err := conf.Load(&cfg, []byte("max_bytes: 0\nretention: 24h"), "blobs.yml", nil); err != nil {
		t.Fatal(err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s, err := Open(Defaults(), t.TempDir(), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Put(t.Context(), "image/jpeg", []byte("x"))
	files, size, puts := apitest.Metric(t, reg, "sharpeye_blob_files"), apitest.Metric(t, reg, "sharpeye_blob_bytes"), apitest.Metric(t, reg, "sharpeye_blob_puts_total")
	if files != 1 || size != 12 || puts != 1 {
		t.Fatalf("metrics: %v files, %v bytes, %v puts; want 1, 12, 1", files, size, puts)
	}
}

func FuzzParseRef(f *testing.F) {
	f.Add("blob:sha256:" + strings.Repeat("ab", 32))
	f.Add("blob:sha256:")
	f.Add("blob:sha256:../x")
	f.Fuzz(func(t *testing.T, ref string) {
		sum, err := ParseRef(ref)
		if err != nil {
			return
		}
		if Ref(sum) != ref || strings.ContainsAny(sum, `/\.`) {
			t.Fatalf("ParseRef(%q) = %q", ref, sum)
		}
	})
}

func TestOwnedBlobs(t *testing.T) {
	s := open(t, Defaults())
	data := []byte("\xff\xd8 gate camera picture")
	ref, sum, err := s.PutOwned(t.Context(), "camera/gate-1", "image/jpeg", data)
	if err != nil {
		t.Fatal(err)
	}
	// The same picture from a second camera: one blob, two owners.
	if ref2, _, err := s.PutOwned(t.Context(), "camera/gate 2/ü", "image/jpeg", data); err != nil || ref2 != ref {
		t.Fatalf("second owner: %s, %v", ref2, err)
	}
	for _, owner := range []string{"camera/gate-1", "camera/gate 2/ü"} {
		r, ct, err := s.GetOwned(ref, owner)
		if err != nil {
			t.Fatalf("GetOwned(%s): %v", owner, err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(got, data) || ct != "image/jpeg" {
			t.Fatalf("GetOwned(%s) = %q (%s)", owner, got, ct)
		}
	}
	// Another owner, an owner's prefix, a stored blob without owners and
	// a path escape are all "not found".
	plain, _, err := s.Put(t.Context(), "image/jpeg", []byte("no owner"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ref, owner string }{
		{ref, "camera/gate-3"}, {ref, "camera"}, {ref, "camera/gate-1/.."}, {ref, "../owners"}, {ref, ""},
		{plain, "camera/gate-1"},
	} {
		if _, _, err := s.GetOwned(c.ref, c.owner); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetOwned(%s, %q) = %v, want ErrNotFound", c.ref, c.owner, err)
		}
	}
	if _, _, err := s.GetOwned("blob:sha256:zz", "camera/gate-1"); !errors.Is(err, ErrBadRef) {
		t.Errorf("bad ref: %v", err)
	}
	if _, _, err := s.PutOwned(t.Context(), "", "image/jpeg", data); err == nil || !strings.Contains(err.Error(), "empty owner") {
		t.Errorf("empty owner: %v", err)
	}
	if _, _, err := s.PutOwned(t.Context(), strings.Repeat("x", 201), "image/jpeg", data); err == nil || !strings.Contains(err.Error(), "limit is 200") {
		t.Errorf("long owner: %v", err)
	}

	// Sweeping the blob sweeps its owners: stored again without them, it
	// is nobody's.
	past := time.Now().Add(-800 * time.Hour)
	os.Chtimes(s.path(sum), past, past)
	if swept, err := s.Sweep(time.Now().Add(-720 * time.Hour)); err != nil || swept.Expired != 1 {
		t.Fatalf("sweep: %+v, %v", swept, err)
	}
	if _, err := os.Stat(s.ownersPath(sum)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("owners left after the sweep: %v", err)
	}
	if _, _, err := s.Put(t.Context(), "image/jpeg", data); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.GetOwned(ref, "camera/gate-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("owner survived the sweep: %v", err)
	}
}

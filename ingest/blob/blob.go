// Package blob is a content-addressed store of small immutable files on a
// local directory: the snapshots attached to events as evidence. A blob is
// named by the SHA-256 of its content, so storing the same bytes twice
// keeps one copy, and a reference can be checked against what it points
// to. Evidence is never edited after capture; the store offers no way to.
//
// References look like
//
//	blob:sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//
// and the files like <dir>/sha256/9f/9f86d0...: the first line holds the
// content type, the rest the content. A Put writes a temporary file,
// syncs it, renames it into place and syncs the directory, so a crash
// leaves either the whole blob or none. Blobs are deleted by age
// (retention, counted from the last Put of the content) and, past the size
// bound, least recently stored first.
//
// A blob may name its owners (PutOwned: "camera/gate-1"), kept as empty
// files under <dir>/owners/9f/9f86d0.../ and swept with the blob; GetOwned
// serves a blob only under an owner it was stored for, so that the HTTP
// API can scope snapshots by camera and region.
package blob

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/configs/conf"
)

// RefPrefix starts every reference.
const RefPrefix = "blob:sha256:"

// MaxSize bounds one blob's content.
const MaxSize = 32 << 20

// maxTypeLen bounds a content type (as the event schema does).
const maxTypeLen = 128

// staleTemp is the age past which a leftover temporary file (from a crash
// during Put) is removed.
const staleTemp = time.Hour

// Errors callers test for.
var (
	// ErrNotFound: no blob has this reference (never stored, or swept).
	// It wraps fs.ErrNotExist.
	ErrNotFound = fmt.Errorf("blob not found: %w", fs.ErrNotExist)
	// ErrBadRef: the reference is not blob:sha256:<64 lowercase hex>.
	ErrBadRef = errors.New("bad blob reference: want blob:sha256:<64 lowercase hex digits>")
)

// Store is a blob store on one directory. It is safe for concurrent use,
// and several processes may share the directory (puts are atomic renames);
// the byte and file counts are then those seen by this process's sweeps.
type Store struct {
	cfg   Config
	dir   string
	log   *slog.Logger
	now   func() time.Time
	sweep chan struct{} // asks Run for a sweep at once (size bound reached)

	mu sync.Mutex // orders a Put's existence check and rename against a sweep's delete

	bytes, files           atomic.Int64
	putsNew, putsDup       atomic.Uint64
	deletedAge, deletedMax atomic.Uint64
	errors                 atomic.Uint64
}

// Open returns the store configured by cfg, in cfg.Dir or else
// <dataDir>/blobs, creating the directory. It counts what is stored and
// removes temporary files left by a crash. reg may be nil.
func Open(cfg Config, dataDir string, reg prometheus.Registerer, log *slog.Logger) (*Store, error) {
	if err := conf.Load(&cfg, nil, "", nil); err != nil {
		return nil, fmt.Errorf("blob store configuration: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := cfg.Dir
	if dir == "" {
		if dataDir == "" {
			return nil, errors.New("blob store: no directory (set blobs.dir or data_dir)")
		}
		dir = filepath.Join(dataDir, "blobs")
	}
	s := &Store{cfg: cfg, dir: dir, log: log.With("component", "blob"), now: time.Now, sweep: make(chan struct{}, 1)}
	for _, d := range []string{s.dir, s.tmpDir(), filepath.Join(s.dir, "sha256"), filepath.Join(s.dir, "owners")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("blob store: %w", err)
		}
	}
	if _, err := s.scan(time.Time{}, false); err != nil {
		return nil, fmt.Errorf("blob store: read %s: %w", s.dir, err)
	}
	if reg != nil {
		if err := reg.Register(&collector{s}); err != nil {
			return nil, fmt.Errorf("register blob store metrics: %w", err)
		}
	}
	return s, nil
}

// Dir is the directory the store keeps its blobs in.
func (s *Store) Dir() string { return s.dir }

func (s *Store) tmpDir() string { return filepath.Join(s.dir, "tmp") }

// path returns the file of the blob with hex digest sum.
func (s *Store) path(sum string) string {
	return filepath.Join(s.dir, "sha256", sum[:2], sum)
}

// Ref returns the reference of the blob with the hex SHA-256 sum.
func Ref(sum string) string { return RefPrefix + sum }

// ParseRef returns the hex SHA-256 in ref, or ErrBadRef.
func ParseRef(ref string) (string, error) {
	sum, ok := strings.CutPrefix(ref, RefPrefix)
	if !ok || len(sum) != sha256.Size*2 {
		return "", ErrBadRef
	}
	for i := 0; i < len(sum); i++ {
		if c := sum[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", ErrBadRef
		}
	}
	return sum, nil
}

// checkType explains what is wrong with a content type, or returns "".
func checkType(ct string) string {
	if ct == "" || len(ct) > maxTypeLen {
		return "content type must be 1 to 128 bytes"
	}
	for i := 0; i < len(ct); i++ {
		if c := ct[i]; c < 0x20 || c >= 0x7f {
			return "content type must be printable ASCII"
		}
	}
	if t, _, err := mime.ParseMediaType(ct); err != nil || !strings.Contains(t, "/") {
		return fmt.Sprintf("%q is not a media type such as image/jpeg", ct)
	}
	return ""
}

// Put stores data of the given content type (such as "image/jpeg") and
// returns its reference and the hex SHA-256 of data. Storing content that
// is already there writes nothing and restarts its retention; the content
// type of the first Put is kept. Put returns only once the blob is durable
// on disk.
func (s *Store) Put(ctx context.Context, contentType string, data []byte) (ref, sum string, err error) {
	if reason := checkType(contentType); reason != "" {
		return "", "", errors.New("blob put: " + reason)
	}
	if len(data) > MaxSize {
		return "", "", fmt.Errorf("blob put: %d bytes; the limit is %d", len(data), MaxSize)
	}
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	h := sha256.Sum256(data)
	sum = hex.EncodeToString(h[:])
	ref = Ref(sum)
	dst := s.path(sum)

	if s.touch(dst) {
		s.putsDup.Add(1)
		return ref, sum, nil
	}
	tmp, size, err := s.writeTemp(contentType, data)
	if err != nil {
		s.errors.Add(1)
		return "", "", fmt.Errorf("blob put: %w", err)
	}
	defer os.Remove(tmp) // after a successful rename, there is nothing left to remove

	s.mu.Lock()
	if _, err := os.Stat(dst); err == nil {
		// Stored meanwhile by another Put.
		now := s.now()
		_ = os.Chtimes(dst, now, now)
		s.mu.Unlock()
		s.putsDup.Add(1)
		return ref, sum, nil
	}
	err = s.install(tmp, dst)
	if err == nil {
		s.bytes.Add(size)
		s.files.Add(1)
	}
	s.mu.Unlock()
	if err != nil {
		s.errors.Add(1)
		return "", "", fmt.Errorf("blob put: %w", err)
	}
	s.putsNew.Add(1)
	if s.cfg.MaxBytes > 0 && s.bytes.Load() > s.cfg.MaxBytes {
		select {
		case s.sweep <- struct{}{}:
		default:
		}
	}
	return ref, sum, nil
}

// PutOwned is Put, recording owner (such as "camera/gate-1") as one of
// the blob's owners, so that GetOwned hands it only to those who may see
// that owner. The record is durable when PutOwned returns and goes with
// the blob when the blob is swept.
func (s *Store) PutOwned(ctx context.Context, owner, contentType string, data []byte) (ref, sum string, err error) {
	if reason := checkOwner(owner); reason != "" {
		return "", "", errors.New("blob put: " + reason)
	}
	ref, sum, err = s.Put(ctx, contentType, data)
	if err != nil {
		return "", "", err
	}
	if err := s.own(sum, owner); err != nil {
		s.errors.Add(1)
		return "", "", fmt.Errorf("blob put: record owner: %w", err)
	}
	return ref, sum, nil
}

// GetOwned is Get for a blob stored with PutOwned by owner: any other
// blob is ErrNotFound, so that a reference alone reveals nothing.
func (s *Store) GetOwned(ref, owner string) (io.ReadCloser, string, error) {
	sum, err := ParseRef(ref)
	if err != nil {
		return nil, "", err
	}
	if checkOwner(owner) != "" {
		return nil, "", ErrNotFound
	}
	if _, err := os.Stat(filepath.Join(s.ownersPath(sum), url.PathEscape(owner))); err != nil {
		return nil, "", ErrNotFound
	}
	return s.Get(ref)
}

// checkOwner says what is wrong with an owner name, or "".
func checkOwner(owner string) string {
	switch {
	case owner == "":
		return "empty owner"
	case len(owner) > maxOwner:
		return fmt.Sprintf("owner of %d bytes; the limit is %d", len(owner), maxOwner)
	case strings.ContainsRune(owner, 0):
		return "owner contains NUL"
	}
	return ""
}

// maxOwner bounds an owner's name.
const maxOwner = 200

// ownersPath is the directory holding one empty file per owner of the
// blob with hex digest sum.
func (s *Store) ownersPath(sum string) string {
	return filepath.Join(s.dir, "owners", sum[:2], sum)
}

// own records owner for the blob sum, durably.
func (s *Store) own(sum, owner string) error {
	dir := s.ownersPath(sum)
	name := filepath.Join(dir, url.PathEscape(owner))
	if _, err := os.Stat(name); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// touch restarts the retention of the blob at path and reports whether it
// exists.
func (s *Store) touch(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(path); err != nil {
		return false
	}
	now := s.now()
	return os.Chtimes(path, now, now) == nil
}

// writeTemp writes the blob file to a synced temporary file and returns
// its path and size.
func (s *Store) writeTemp(contentType string, data []byte) (string, int64, error) {
	f, err := os.CreateTemp(s.tmpDir(), "put-*")
	if err != nil {
		return "", 0, err
	}
	name := f.Name()
	w := bufio.NewWriter(f)
	w.WriteString(contentType)
	w.WriteByte('\n')
	w.Write(data)
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", 0, err
	}
	return name, int64(len(contentType) + 1 + len(data)), nil
}

// install renames tmp to dst, creating dst's directory, and syncs the
// directories changed so that the rename survives a power cut.
func (s *Store) install(tmp, dst string) error {
	shard := filepath.Dir(dst)
	if _, err := os.Stat(shard); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(shard, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := syncDir(filepath.Dir(shard)); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return syncDir(shard)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Get opens the blob ref and returns its content and content type. The
// caller closes the reader. It returns ErrBadRef for a malformed reference
// and ErrNotFound for a missing blob.
func (s *Store) Get(ref string) (io.ReadCloser, string, error) {
	sum, err := ParseRef(ref)
	if err != nil {
		return nil, "", err
	}
	f, err := os.Open(s.path(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", ErrNotFound
	}
	if err != nil {
		return nil, "", fmt.Errorf("blob get: %w", err)
	}
	r := bufio.NewReaderSize(f, 4096)
	line, err := r.ReadSlice('\n')
	ct := strings.TrimSuffix(string(line), "\n")
	if err != nil || checkType(ct) != "" {
		f.Close()
		s.errors.Add(1)
		return nil, "", fmt.Errorf("blob get %s: corrupt header", ref)
	}
	return &reader{Reader: r, f: f}, ct, nil
}

type reader struct {
	*bufio.Reader
	f *os.File
}

func (r *reader) Close() error { return r.f.Close() }

// Swept says what a sweep deleted.
type Swept struct {
	// Expired blobs were older than the retention.
	Expired int
	// Evicted blobs were deleted to bring the store under max_bytes.
	Evicted int
	// Bytes deleted in all.
	Bytes int64
}

// Sweep deletes the blobs last stored before olderThan, then, when the
// store is over max_bytes, the least recently stored until it is under
// 90 % of it. It also recounts the store and removes stale temporary
// files. Run calls it with now minus the retention.
func (s *Store) Sweep(olderThan time.Time) (Swept, error) {
	return s.scan(olderThan, true)
}

type entry struct {
	path string
	mod  time.Time
	size int64
}

// scan walks the store, counting it; when sweep, it deletes as Sweep says.
func (s *Store) scan(olderThan time.Time, sweep bool) (Swept, error) {
	var out Swept
	var kept []entry
	var total, files int64
	s.removeStaleTemps()
	root := filepath.Join(s.dir, "sha256")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted meanwhile
			}
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // deleted meanwhile
		}
		if sweep && info.ModTime().Before(olderThan) {
			if n, ok := s.remove(path, olderThan); ok {
				out.Expired++
				out.Bytes += n
				s.deletedAge.Add(1)
				return nil
			}
		}
		total += info.Size()
		files++
		if sweep && s.cfg.MaxBytes > 0 {
			kept = append(kept, entry{path, info.ModTime(), info.Size()})
		}
		return nil
	})
	if err != nil {
		s.errors.Add(1)
		return out, err
	}
	if sweep && s.cfg.MaxBytes > 0 && total > s.cfg.MaxBytes {
		slices.SortFunc(kept, func(a, b entry) int { return a.mod.Compare(b.mod) })
		target := s.cfg.MaxBytes / 10 * 9
		for _, e := range kept {
			if total <= target {
				break
			}
			// Remove only if not stored again since the walk saw it.
			if n, ok := s.remove(e.path, e.mod.Add(time.Nanosecond)); ok {
				out.Evicted++
				out.Bytes += n
				total -= n
				files--
				s.deletedMax.Add(1)
			}
		}
	}
	s.bytes.Store(total)
	s.files.Store(files)
	return out, nil
}

// remove deletes the blob at path if it was last stored before
// olderThan, and returns its size.
func (s *Store) remove(path string, olderThan time.Time) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, err := os.Stat(path)
	if err != nil || !info.ModTime().Before(olderThan) {
		return 0, false
	}
	if err := os.Remove(path); err != nil {
		s.errors.Add(1)
		return 0, false
	}
	if err := os.RemoveAll(s.ownersPath(filepath.Base(path))); err != nil {
		s.errors.Add(1)
	}
	return info.Size(), true
}

func (s *Store) removeStaleTemps() {
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && s.now().Sub(info.ModTime()) > staleTemp {
			os.Remove(filepath.Join(s.tmpDir(), e.Name()))
		}
	}
}

// Stats are the store's figures.
type Stats struct {
	// Bytes and Files stored, as of the last sweep plus the puts since.
	Bytes int64 `json:"bytes"`
	Files int64 `json:"files"`
	// Puts that stored new content, and those of content already stored.
	PutsNew uint64 `json:"puts_new"`
	PutsDup uint64 `json:"puts_duplicate"`
	// Blobs deleted for age and for the size bound.
	DeletedExpired uint64 `json:"deleted_expired"`
	DeletedEvicted uint64 `json:"deleted_evicted"`
	// Errors reading or writing the directory.
	Errors uint64 `json:"errors"`
}

// Stats returns the store's figures.
func (s *Store) Stats() Stats {
	return Stats{
		Bytes: s.bytes.Load(), Files: s.files.Load(),
		PutsNew: s.putsNew.Load(), PutsDup: s.putsDup.Load(),
		DeletedExpired: s.deletedAge.Load(), DeletedEvicted: s.deletedMax.Load(),
		Errors: s.errors.Load(),
	}
}

// Run sweeps every sweep_every, and at once when a Put takes the store
// over max_bytes, until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SweepEvery.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.sweep:
		}
		start := s.now()
		swept, err := s.Sweep(start.Add(-s.cfg.Retention.D()))
		switch {
		case err != nil:
			s.log.Error("blob sweep failed", "err", err)
		case swept.Expired > 0 || swept.Evicted > 0:
			s.log.Info("blobs swept", "expired", swept.Expired, "evicted", swept.Evicted,
				"bytes", swept.Bytes, "took", s.now().Sub(start).Round(time.Millisecond))
		}
	}
}

// collector exports Stats at scrape time.
type collector struct{ s *Store }

var (
	descBytes   = prometheus.NewDesc("sharpeye_blob_bytes", "Bytes held in the blob store.", nil, nil)
	descFiles   = prometheus.NewDesc("sharpeye_blob_files", "Blobs held in the blob store.", nil, nil)
	descPuts    = prometheus.NewDesc("sharpeye_blob_puts_total", "Blobs stored, by whether the content was new or already stored.", []string{"result"}, nil)
	descDeleted = prometheus.NewDesc("sharpeye_blob_deleted_total", "Blobs deleted, for age (retention) or for the size bound.", []string{"reason"}, nil)
	descErrors  = prometheus.NewDesc("sharpeye_blob_errors_total", "Failures reading or writing the blob directory.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBytes, descFiles, descPuts, descDeleted, descErrors} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(descFiles, prometheus.GaugeValue, float64(st.Files))
	ch <- prometheus.MustNewConstMetric(descPuts, prometheus.CounterValue, float64(st.PutsNew), "new")
	ch <- prometheus.MustNewConstMetric(descPuts, prometheus.CounterValue, float64(st.PutsDup), "duplicate")
	ch <- prometheus.MustNewConstMetric(descDeleted, prometheus.CounterValue, float64(st.DeletedExpired), "retention")
	ch <- prometheus.MustNewConstMetric(descDeleted, prometheus.CounterValue, float64(st.DeletedEvicted), "size")
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(st.Errors))
}

var _ prometheus.Collector = (*collector)(nil)

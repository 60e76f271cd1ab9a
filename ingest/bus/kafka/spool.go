package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"sharpeye/ingest/bus"
)

// Spool format (see also the package documentation).
//
// A segment file, named by its sequence number in hexadecimal
// (0000000000000001.seg), starts with the 8-byte magic segMagic and
// holds records back to back:
//
//	length  uint32, big endian: the payload's length
//	crc     uint32, big endian: CRC-32C (Castagnoli) of the payload
//	payload length bytes:
//	  version   byte, recordVersion
//	  time      varint, Unix nanoseconds
//	  topic     uvarint length, bytes
//	  key       uvarint length, bytes
//	  value     uvarint length, bytes
//	  headers   uvarint count, then per header a key and a value, each
//	            uvarint length and bytes, in key order
const (
	segMagic      = "SHEYSPL1"
	segExt        = ".seg"
	recordVersion = 1
	recHeaderLen  = 8
	// maxRecord bounds a payload; a longer length field is corruption.
	maxRecord = 16 << 20
	// checkpointFile records how far the first segment was delivered, so
	// that a restart re-sends less (it is only an optimisation: without
	// it, delivery restarts at the first segment's beginning).
	checkpointFile = "checkpoint"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a record or segment that cannot be read.
var errCorrupt = errors.New("corrupt spool record")

// appendRecord appends the encoded record of m to dst.
func appendRecord(dst []byte, m bus.Message) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0) // length and CRC, set below
	dst = append(dst, recordVersion)
	dst = binary.AppendVarint(dst, m.Time.UnixNano())
	dst = appendBytes(dst, m.Topic)
	dst = appendBytes(dst, m.Key)
	dst = binary.AppendUvarint(dst, uint64(len(m.Value)))
	dst = append(dst, m.Value...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Headers)))
	if len(m.Headers) > 0 {
		for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
			dst = appendBytes(dst, k)
			dst = appendBytes(dst, m.Headers[k])
		}
	}
	payload := dst[start+recHeaderLen:]
	binary.BigEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, crcTable))
	return dst
}

func appendBytes(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// recordLen returns the encoded size of m's record.
func recordLen(m bus.Message) int {
	n := recHeaderLen + 1 + binary.MaxVarintLen64 + 4*binary.MaxVarintLen64 + len(m.Topic) + len(m.Key) + len(m.Value)
	for k, v := range m.Headers {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return n
}

// decodePayload decodes a record's payload (after its length and CRC).
func decodePayload(p []byte) (bus.Message, error) {
	var m bus.Message
	if len(p) < 1 || p[0] != recordVersion {
		return m, fmt.Errorf("%w: unknown version", errCorrupt)
	}
	d := decoder{b: p[1:]}
	ts := d.varint()
	m.Topic = d.str()
	m.Key = d.str()
	if v := d.field(); d.err == nil {
		m.Value = slices.Clone(v)
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: %d headers in %d bytes", errCorrupt, n, len(d.b))
	}
	if d.err == nil && n > 0 {
		m.Headers = make(map[string]string, n)
		for range n {
			k := d.str()
			m.Headers[k] = d.str()
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	if d.err != nil {
		return bus.Message{}, d.err
	}
	m.Time = time.Unix(0, ts)
	return m, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad length", errCorrupt)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad time", errCorrupt)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// field returns the next length-prefixed field, in d's buffer.
func (d *decoder) field() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: field of %d bytes in %d", errCorrupt, n, len(d.b))
		return nil
	}
	f := d.b[:n]
	d.b = d.b[n:]
	return f
}

func (d *decoder) str() string { return string(d.field()) }

// readRecord reads the record at the start of b: its message and encoded
// length. io.ErrUnexpectedEOF means b ends inside the record.
func readRecord(b []byte) (bus.Message, int, error) {
	if len(b) < recHeaderLen {
		return bus.Message{}, 0, io.ErrUnexpectedEOF
	}
	n := binary.BigEndian.Uint32(b)
	if n > maxRecord {
		return bus.Message{}, 0, fmt.Errorf("%w: length %d", errCorrupt, n)
	}
	if len(b) < recHeaderLen+int(n) {
		return bus.Message{}, 0, io.ErrUnexpectedEOF
	}
	payload := b[recHeaderLen : recHeaderLen+int(n)]
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(b[4:]) {
		return bus.Message{}, 0, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	m, err := decodePayload(payload)
	if err != nil {
		return bus.Message{}, 0, err
	}
	return m, recHeaderLen + int(n), nil
}

// segment is one spool file.
type segment struct {
	id   uint64
	path string
	size int64 // bytes of whole, valid records (and the magic): where the next append goes
	msgs int64 // records not delivered yet
}

// spool is a durable FIFO of messages in segment files, appended to by
// Publish and read by the drainer. Its methods are safe for concurrent use;
// appends are serialised by the caller (the producer's lock) to keep their
// order.
type spool struct {
	dir       string
	maxBytes  int64
	segSize   int64
	onCorrupt func(path string, off int64, err error)
	unlock    func() error

	mu      sync.Mutex
	segs    []*segment // undelivered, oldest first; the last one is appended to
	active  *os.File   // open on the last segment, nil until the next append
	readOff int64      // delivered up to here in segs[0]
	nextID  uint64
	bytes   int64 // size of the segment files
	msgs    int64 // records not delivered
	room    chan struct{}
	reader  *os.File // open on segs[0] for reading
	readID  uint64
	broken  bool // the active segment failed a write: roll before the next
}

// openSpool opens the spool in dir, creating it, and scans its segments:
// corrupt tails are skipped (reported to onCorrupt), never fatal.
func openSpool(dir string, maxBytes int64, onCorrupt func(path string, off int64, err error)) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create spool directory: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &spool{
		dir:       dir,
		maxBytes:  maxBytes,
		segSize:   min(64<<20, max(maxBytes/8, 64<<10)),
		onCorrupt: onCorrupt,
		unlock:    unlock,
		room:      make(chan struct{}),
		nextID:    1,
	}
	if err := s.load(); err != nil {
		unlock()
		return nil, err
	}
	return s, nil
}

func (s *spool) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("read spool directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segExt) || e.IsDir() {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segExt), 16, 64)
		if err != nil {
			continue // not ours
		}
		s.segs = append(s.segs, &segment{id: id, path: filepath.Join(s.dir, name)})
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmpUint(a.id, b.id) })

	ckID, ckOff := s.readCheckpoint()
	var kept []*segment
	for _, seg := range s.segs {
		s.nextID = max(s.nextID, seg.id+1)
		if seg.id < ckID {
			// Delivered before the restart; its deletion was interrupted.
			os.Remove(seg.path)
			continue
		}
		from := int64(0)
		if seg.id == ckID && len(kept) == 0 {
			from = ckOff
		}
		if err := s.scan(seg, &from); err != nil {
			return err
		}
		if len(kept) == 0 {
			s.readOff = from
		}
		if seg.msgs == 0 && len(kept) == 0 {
			os.Remove(seg.path)
			continue
		}
		kept = append(kept, seg)
		s.bytes += seg.size
		s.msgs += seg.msgs
	}
	s.segs = kept
	return nil
}

// scan reads a segment to find its valid size and count its records from
// *from on. *from must be a record boundary; when it is not (a damaged
// checkpoint), it is moved to the first record, to deliver everything.
// A corrupt tail is reported and left out of the valid size.
func (s *spool) scan(seg *segment, from *int64) error {
	data, err := os.ReadFile(seg.path)
	if err != nil {
		return fmt.Errorf("read spool segment: %w", err)
	}
	first := int64(len(segMagic))
	if len(data) < len(segMagic) || string(data[:len(segMagic)]) != segMagic {
		s.onCorrupt(seg.path, 0, fmt.Errorf("%w: not a spool segment", errCorrupt))
		seg.size, seg.msgs, *from = first, 0, first
		return nil
	}
	off := first
	var total, before int64
	found := *from <= first
	for {
		if off == *from {
			found, before = true, total
		}
		if off >= int64(len(data)) {
			break
		}
		_, n, err := readRecord(data[off:])
		if err != nil {
			s.onCorrupt(seg.path, off, err)
			break
		}
		total++
		off += int64(n)
	}
	if !found {
		*from, before = first, 0
	}
	*from = max(*from, first)
	seg.size = off
	seg.msgs = total - before
	return nil
}

func (s *spool) readCheckpoint() (uint64, int64) {
	b, err := os.ReadFile(filepath.Join(s.dir, checkpointFile))
	if err != nil {
		return 0, 0
	}
	idStr, offStr, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok {
		return 0, 0
	}
	id, err1 := strconv.ParseUint(idStr, 16, 64)
	off, err2 := strconv.ParseInt(offStr, 10, 64)
	if err1 != nil || err2 != nil || off < 0 {
		return 0, 0
	}
	return id, off
}

// writeCheckpoint records the delivery position; failures only cost
// duplicates after a restart.
func (s *spool) writeCheckpoint(id uint64, off int64) {
	tmp := filepath.Join(s.dir, checkpointFile+".tmp")
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%016x %d\n", id, off), 0o640); err != nil {
		return
	}
	os.Rename(tmp, filepath.Join(s.dir, checkpointFile))
}

// stats returns the spool's size in bytes and its undelivered messages.
func (s *spool) stats() (bytes, msgs int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes, s.msgs
}

// pending reports whether messages wait for delivery.
func (s *spool) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs > 0
}

// hasRoom reports whether n more bytes fit; when not, the channel returned
// is closed once the drainer frees space. An empty spool takes anything.
func (s *spool) hasRoom(n int64) (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytes == 0 || s.bytes+n <= s.maxBytes {
		return true, nil
	}
	return false, s.room
}

// append writes the encoded records (n of them) and syncs them to disk.
func (s *spool) append(data []byte, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil || s.broken || s.segs[len(s.segs)-1].size >= s.segSize {
		if err := s.rollLocked(); err != nil {
			return err
		}
	}
	seg := s.segs[len(s.segs)-1]
	if _, err := s.active.WriteAt(data, seg.size); err != nil {
		s.failLocked(seg)
		return fmt.Errorf("write spool: %w", err)
	}
	if err := s.active.Sync(); err != nil {
		// After a failed fsync the page cache cannot be trusted: these
		// records may or may not be on disk. Start a new segment.
		s.failLocked(seg)
		return fmt.Errorf("sync spool: %w", err)
	}
	seg.size += int64(len(data))
	seg.msgs += int64(n)
	s.bytes += int64(len(data))
	s.msgs += int64(n)
	return nil
}

// failLocked cuts a failed write off the active segment and makes the next
// append start a new one.
func (s *spool) failLocked(seg *segment) {
	s.active.Truncate(seg.size)
	s.broken = true
}

// rollLocked starts a new segment file.
func (s *spool) rollLocked() error {
	if s.active != nil {
		s.active.Close()
		s.active = nil
	}
	id := s.nextID
	path := filepath.Join(s.dir, fmt.Sprintf("%016x%s", id, segExt))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("create spool segment: %w", err)
	}
	if _, err := f.Write([]byte(segMagic)); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write spool segment: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("sync spool segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	s.nextID++
	s.active = f
	s.broken = false
	seg := &segment{id: id, path: path, size: int64(len(segMagic))}
	if len(s.segs) == 0 {
		s.readOff = seg.size
	}
	s.segs = append(s.segs, seg)
	s.bytes += seg.size
	return nil
}

// position is a place in the spool: a segment and an offset in it.
type position struct {
	id  uint64
	off int64
}

// read returns up to maxMsgs messages (about maxBytes) from the delivery
// position on, and the position after them. A corrupt record (the file
// changed since it was written) is reported and the rest of its segment
// skipped.
func (s *spool) read(maxMsgs int, maxBytes int64) ([]bus.Message, position, error) {
	s.mu.Lock()
	if len(s.segs) == 0 {
		s.mu.Unlock()
		return nil, position{}, nil
	}
	seg := s.segs[0]
	from, to := s.readOff, seg.size
	if s.reader == nil || s.readID != seg.id {
		if s.reader != nil {
			s.reader.Close()
			s.reader = nil
		}
		f, err := os.Open(seg.path)
		if err != nil {
			s.mu.Unlock()
			return nil, position{}, fmt.Errorf("open spool segment: %w", err)
		}
		s.reader, s.readID = f, seg.id
	}
	r := s.reader
	s.mu.Unlock()

	pos := position{seg.id, from}
	if from >= to {
		return nil, pos, nil
	}
	buf, err := readAt(r, from, min(to-from, max(maxBytes, 1<<20)))
	if err != nil {
		return nil, pos, err
	}
	var msgs []bus.Message
	var used int64
	for len(msgs) < maxMsgs && used < maxBytes && used < int64(len(buf)) {
		m, k, err := readRecord(buf[used:])
		if errors.Is(err, io.ErrUnexpectedEOF) {
			if used > 0 {
				break // the rest next time
			}
			if n := min(to-from, recHeaderLen+maxRecord); int64(len(buf)) < n {
				// The first record is larger than the buffer.
				if buf, err = readAt(r, from, n); err != nil {
					return nil, pos, err
				}
				continue
			}
		}
		if err != nil {
			s.onCorrupt(seg.path, from+used, err)
			used = to - from
			break
		}
		msgs = append(msgs, m)
		used += int64(k)
	}
	pos.off = from + used
	return msgs, pos, nil
}

// readAt reads n bytes at off; fewer when the file is shorter.
func readAt(r io.ReaderAt, off, n int64) ([]byte, error) {
	buf := make([]byte, n)
	k, err := r.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read spool segment: %w", err)
	}
	return buf[:k], nil
}

// commit marks the records up to pos delivered: n of them (the messages
// read returned). Fully delivered
// segments other than the active one are deleted.
func (s *spool) commit(pos position, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 || s.segs[0].id != pos.id {
		return
	}
	seg := s.segs[0]
	s.readOff = pos.off
	dn := min(int64(n), seg.msgs)
	if s.readOff >= seg.size {
		dn = seg.msgs // delivered, or skipped as corrupt
	}
	seg.msgs -= dn
	s.msgs -= dn
	freed := false
	for len(s.segs) > 1 && s.readOff >= s.segs[0].size {
		s.dropFirstLocked()
		freed = true
	}
	if len(s.segs) > 0 {
		s.writeCheckpoint(s.segs[0].id, s.readOff)
	}
	if freed {
		close(s.room)
		s.room = make(chan struct{})
	}
}

// dropFirstLocked deletes the first segment, fully delivered.
func (s *spool) dropFirstLocked() {
	seg := s.segs[0]
	if s.reader != nil && s.readID == seg.id {
		s.reader.Close()
		s.reader = nil
	}
	os.Remove(seg.path)
	s.bytes -= seg.size
	s.msgs -= seg.msgs
	s.segs = s.segs[1:]
	s.readOff = int64(len(segMagic))
}

// drained reports whether everything appended was delivered, and if so
// deletes the segments so that the spool is empty. The caller holds the
// producer's lock, so that no append runs meanwhile.
func (s *spool) drained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 {
		return true
	}
	if len(s.segs) > 1 || s.readOff < s.segs[0].size {
		return false
	}
	if s.active != nil {
		s.active.Close()
		s.active = nil
	}
	s.dropFirstLocked()
	s.msgs = 0
	os.Remove(filepath.Join(s.dir, checkpointFile))
	close(s.room)
	s.room = make(chan struct{})
	return true
}

// close closes the files and releases the directory's lock.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active != nil {
		s.active.Close()
		s.active = nil
	}
	if s.reader != nil {
		s.reader.Close()
		s.reader = nil
	}
	return s.unlock()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync spool directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync spool directory: %w", err)
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

package event

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"sync"
	"time"
)

// ID identifies one event. It is a UUID version 7 (RFC 9562, section 5.7): a 48-bit
// Unix timestamp in milliseconds followed by random bits, so IDs sort by creation time
// both as bytes and in their string form.
//
// The zero ID is not a valid event ID; see [ID.IsZero].
type ID [16]byte

// maxUnixMilli is the largest timestamp a UUIDv7 can carry (48 bits).
const maxUnixMilli = 1<<48 - 1

// seqBits is the width of the counter NewID uses to order IDs created within one
// millisecond (RFC 9562, section 6.2, method 1): the 12 bits of rand_a and the top 30
// bits of rand_b. The remaining 32 bits of rand_b are random in every ID.
const seqBits = 42

// gen is the process-wide state behind NewID.
var gen = generator{ms: -1}

type generator struct {
	mu  sync.Mutex
	ms  int64  // timestamp of the last ID from next
	seq uint64 // counter of the last ID from next
	rnd [512]byte
	n   int // unused bytes at the end of rnd
}

// NewID returns a new ID stamped with the current time.
//
// IDs returned by NewID within one process are strictly increasing, even when many are
// created in the same millisecond or the wall clock steps back: a counter seeded at
// random each millisecond orders them, and the timestamp never goes backwards. It is
// safe for concurrent use.
func NewID() ID {
	return gen.next(clampMilli(time.Now().UnixMilli()))
}

// NewIDAt returns a new ID stamped with t, truncated to the millisecond and clamped to
// the range a UUIDv7 can carry (1970 to year 10889). Its other 74 bits are random, so
// unlike NewID it is not ordered against other IDs with the same millisecond.
func NewIDAt(t time.Time) ID {
	ms := clampMilli(t.UnixMilli())
	var id ID
	gen.mu.Lock()
	gen.read(id[6:])
	gen.mu.Unlock()
	putMilli(&id, ms)
	id[6] = 0x70 | id[6]&0x0f
	id[8] = 0x80 | id[8]&0x3f
	return id
}

func clampMilli(ms int64) int64 {
	return min(max(ms, 0), maxUnixMilli)
}

func putMilli(id *ID, ms int64) {
	id[0] = byte(ms >> 40)
	id[1] = byte(ms >> 32)
	id[2] = byte(ms >> 24)
	id[3] = byte(ms >> 16)
	id[4] = byte(ms >> 8)
	id[5] = byte(ms)
}

// next returns the next ID in the process-wide sequence for the time now (Unix ms).
func (g *generator) next(now int64) ID {
	var b [8]byte
	var id ID

	g.mu.Lock()
	if now > g.ms {
		g.ms = now
		g.seq = g.seed()
	} else {
		// Same millisecond, or the clock stepped back: keep the last timestamp and
		// count up. Should the counter run out, borrow the next millisecond.
		g.seq++
		if g.seq >= 1<<seqBits && g.ms < maxUnixMilli {
			g.ms++
			g.seq = g.seed()
		}
	}
	ms, seq := g.ms, g.seq
	g.read(id[12:])
	g.mu.Unlock()

	putMilli(&id, ms)
	binary.BigEndian.PutUint64(b[:], seq)
	// seq occupies bits 41..0 of b: 41..38 go to byte 6, 37..30 to byte 7, 29..24 to
	// byte 8 after the variant, and 23..0 to bytes 9-11.
	id[6] = 0x70 | byte(seq>>38)&0x0f
	id[7] = byte(seq >> 30)
	id[8] = 0x80 | byte(seq>>24)&0x3f
	copy(id[9:12], b[5:8])
	return id
}

// seed returns a random counter start with its top bit clear, which leaves at least
// 2^41 IDs before the counter would overflow within one millisecond.
func (g *generator) seed() uint64 {
	var b [8]byte
	g.read(b[2:])
	return binary.BigEndian.Uint64(b[:]) & (1<<(seqBits-1) - 1)
}

// read fills p with random bytes from a buffer refilled from crypto/rand. g.mu must be
// held.
func (g *generator) read(p []byte) {
	for len(p) > 0 {
		if g.n == 0 {
			rand.Read(g.rnd[:]) // never returns an error: it crashes the program instead
			g.n = len(g.rnd)
		}
		n := copy(p, g.rnd[len(g.rnd)-g.n:])
		g.n -= n
		p = p[n:]
	}
}

// ParseID parses an ID in the canonical form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
// (hexadecimal digits in either case). It refuses other UUID spellings (braces, URN,
// no hyphens), UUIDs of a version other than 7 and UUIDs without the RFC 9562 variant.
func ParseID(s string) (ID, error) {
	id, err := parseID(s)
	if err != nil {
		return ID{}, err
	}
	return id, nil
}

func parseID(s string) (ID, *Error) {
	var id ID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return ID{}, &Error{Reason: quoteShort(s) + " is not a UUID in the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"}
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := fromHex(s[i])
		lo, ok2 := fromHex(s[i+1])
		if !ok1 || !ok2 {
			return ID{}, &Error{Reason: quoteShort(s) + " is not a UUID: it contains a character that is not a hexadecimal digit"}
		}
		id[j] = hi<<4 | lo
		j++
		i += 2
	}
	if err := id.check(); err != nil {
		return ID{}, &Error{Reason: quoteShort(s) + " " + err.Reason}
	}
	return id, nil
}

// check reports why id is not a UUIDv7 with the RFC 9562 variant, or nil.
func (id ID) check() *Error {
	if v := id[6] >> 4; v != 7 {
		return &Error{Reason: "is a version " + strconv.Itoa(int(v)) + " UUID; event IDs must be version 7 (RFC 9562)"}
	}
	if id[8]&0xc0 != 0x80 {
		return &Error{Reason: "does not have the RFC 9562 variant (the first digit of the fourth group must be 8, 9, a or b)"}
	}
	return nil
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// String returns id in the canonical lowercase form, for example
// 01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b.
func (id ID) String() string {
	return string(id.appendText(make([]byte, 0, 36)))
}

func (id ID) appendText(dst []byte) []byte {
	const digits = "0123456789abcdef"
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, digits[c>>4], digits[c&0x0f])
	}
	return dst
}

// MarshalText implements [encoding.TextMarshaler]; it returns the form String returns.
func (id ID) MarshalText() ([]byte, error) {
	return id.appendText(make([]byte, 0, 36)), nil
}

// AppendText implements [encoding.TextAppender].
func (id ID) AppendText(dst []byte) ([]byte, error) {
	return id.appendText(dst), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler]; it accepts what ParseID accepts.
func (id *ID) UnmarshalText(text []byte) error {
	v, err := ParseID(string(text))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Time returns the timestamp in id, in UTC with millisecond precision.
func (id ID) Time() time.Time {
	ms := int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 |
		int64(id[3])<<16 | int64(id[4])<<8 | int64(id[5])
	return time.UnixMilli(ms).UTC()
}

// IsZero reports whether id is the zero ID (the nil UUID).
func (id ID) IsZero() bool {
	return id == ID{}
}

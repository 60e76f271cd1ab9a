package event

import (
	"hash/maphash"
	"sync/atomic"
)

// seenValid remembers strings a check found valid, so that the values
// every event repeats (the region paths of a county, a handful of media
// types) are checked once rather than per event. It is a direct-mapped
// table of fixed size, safe for concurrent use without locks: a string
// that collides with another replaces it and is checked again next time,
// and input that never repeats costs one hash and holds at most the
// table's few hundred strings.
type seenValid struct {
	slots [256]atomic.Pointer[string]
}

var seenSeed = maphash.MakeSeed()

func (c *seenValid) slot(s string) *atomic.Pointer[string] {
	return &c.slots[maphash.String(seenSeed, s)%uint64(len(c.slots))]
}

// has reports whether s was found valid before.
func (c *seenValid) has(s string) bool {
	p := c.slot(s).Load()
	return p != nil && *p == s
}

// add records s as valid.
func (c *seenValid) add(s string) { c.slot(s).Store(&s) }

var (
	validRegions    seenValid
	validMediaTypes seenValid
)

package stream

import (
	"math/bits"
	"sync"
	"testing"
)

// A Buffer holds the NAL units of one access unit for a hub that may use
// it again (see Hub.PublishBuffer). Pulling 500 cameras allocated a new
// buffer for each of their 12,500 pictures a second, 125 MB/s that the
// garbage collector then had to find and free: a fifth of the CPU, and a
// heap twice the size of what it kept. Most cameras have no consumer at
// a given moment (a wall shows a few dozen of a county's cameras), so
// their pictures reach no one but the hub's cached GOP, and the hub
// returns their buffers here when it drops them.
//
// Buffers come in size classes, eight to each doubling (at most an
// eighth more than asked for), kept in a sync.Pool each, which the
// garbage collector empties when buffers sit unused.
type Buffer struct {
	b     []byte
	class int8 // index in bufferPools, -1 for none
}

const (
	// minBufferBits: the smallest class is 1 KiB.
	minBufferBits = 10
	// maxBufferBits: larger buffers are not pooled.
	maxBufferBits = 24
	// bufferSteps classes to each doubling.
	bufferSteps = 8
)

var bufferPools [(maxBufferBits-minBufferBits)*bufferSteps + 1]sync.Pool

// bufferClass is the class of a buffer of n bytes and its capacity; -1
// and n when n is too large to pool.
func bufferClass(n int) (int, int) {
	if n <= 1<<minBufferBits {
		return 0, 1 << minBufferBits
	}
	if n > 1<<maxBufferBits {
		return -1, n
	}
	e := bits.Len(uint(n-1)) - 1 // 1<<e < n <= 1<<(e+1)
	step := 1 << (e - 3)
	k := (n-1-1<<e)/step + 1 // 1..bufferSteps
	return (e-minBufferBits)*bufferSteps + k, 1<<e + k*step
}

// NewBuffer returns a buffer of n bytes, their content undefined.
func NewBuffer(n int) *Buffer {
	class, size := bufferClass(n)
	if class >= 0 {
		if b, ok := bufferPools[class].Get().(*Buffer); ok {
			b.b = b.b[:n]
			return b
		}
	}
	return &Buffer{b: make([]byte, n, size), class: int8(class)}
}

// Bytes is the buffer's content.
func (b *Buffer) Bytes() []byte { return b.b }

// poisonReleased overwrites released buffers, in tests: a consumer that
// read a unit after the hub released it would see the poison, not the
// picture (the players and decoders of the end-to-end tests would fail).
var poisonReleased = testing.Testing()

// poison is what released buffers hold in tests.
const poison = 0xde

// Release gives the buffer back for another access unit. Nothing may
// use its bytes afterwards. A buffer not released is collected as
// garbage.
func (b *Buffer) Release() {
	if b == nil || b.class < 0 {
		return
	}
	if poisonReleased {
		b.b = b.b[:cap(b.b)]
		for i := range b.b {
			b.b[i] = poison
		}
	}
	bufferPools[b.class].Put(b)
}

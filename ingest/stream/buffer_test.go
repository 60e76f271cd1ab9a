package stream

import (
	"bytes"
	"testing"
	"time"
)

func TestBufferClasses(t *testing.T) {
	prevClass, prevSize := 0, 1<<minBufferBits
	for n := 1; n <= 1<<maxBufferBits+1; n += 1 + n/97 {
		class, size := bufferClass(n)
		if n > 1<<maxBufferBits {
			if class != -1 || size != n {
				t.Fatalf("%d bytes: class %d of %d, want none", n, class, size)
			}
			continue
		}
		if size < n || (n > 1<<minBufferBits && size-n > n/8) {
			t.Fatalf("%d bytes: a buffer of %d", n, size)
		}
		if class < prevClass || class > prevClass+1 || (class == prevClass) != (size == prevSize) {
			t.Fatalf("%d bytes: class %d of %d after class %d of %d", n, class, size, prevClass, prevSize)
		}
		if class >= len(bufferPools) {
			t.Fatalf("%d bytes: class %d of %d pools", n, class, len(bufferPools))
		}
		prevClass, prevSize = class, size
	}
	if prevClass != len(bufferPools)-1 {
		t.Fatalf("the last class is %d of %d pools", prevClass, len(bufferPools))
	}
	b := NewBuffer(1 << 20)
	if len(b.Bytes()) != 1<<20 {
		t.Fatalf("a buffer of %d bytes for 1 MiB", len(b.Bytes()))
	}
	b.Release()
	big := NewBuffer(1<<maxBufferBits + 1)
	big.Release() // not pooled: nothing happens
	(*Buffer)(nil).Release()
}

// unitIn returns an access unit in a buffer: parameter sets (if key) and
// a slice of n bytes of fill after its header byte.
func unitIn(key bool, fill byte, n int) ([][]byte, *Buffer) {
	head := slice[0]
	var parts [][]byte
	if key {
		head = idr[0]
		parts = [][]byte{sps, pps}
	}
	parts = append(parts, append([]byte{head}, bytes.Repeat([]byte{fill}, n)...))
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	buf := NewBuffer(size)
	data := buf.Bytes()
	nalus := make([][]byte, len(parts))
	for i, p := range parts {
		nalus[i] = data[:copy(data, p):len(p)]
		data = data[len(p):]
	}
	return nalus, buf
}

// TestHubReleasesOnlyUnitsNoOneHas: the hub gives back the buffers of the
// units it dropped that no consumer got (their bytes are poisoned in
// tests), and never those a consumer got, live or from the cached GOP,
// however many GOPs later and whatever reuses the buffers meanwhile.
func TestHubReleasesOnlyUnitsNoOneHas(t *testing.T) {
	h := newTestHub(t)
	fill := byte(0)
	publish := func(key bool) [][]byte {
		fill++
		nalus, buf := unitIn(key, fill, 2000+int(fill)*7)
		h.PublishBuffer(time.Duration(fill)*40*time.Millisecond, time.Now(), nalus, buf)
		return nalus
	}
	intact := func(nalus [][]byte, fill byte) bool {
		last := nalus[len(nalus)-1]
		return len(bytes.Trim(last[1:], string([]byte{fill}))) == 0
	}

	// A GOP nobody watched, then the next keyframe: the first is dropped
	// and given back.
	var unwatched [][][]byte
	for i := range 5 {
		unwatched = append(unwatched, publish(i == 0))
	}
	publish(true)
	for i, nalus := range unwatched {
		if last := nalus[len(nalus)-1]; last[len(last)-1] != poison {
			t.Fatalf("unit %d of a GOP nobody got was not released", i)
		}
	}

	// A consumer that joins now gets the cached GOP (a keyframe and two
	// units) and the live units after it; it keeps them all.
	publish(false)
	publish(false)
	sub, err := h.Subscribe(64)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		publish(false)
	}
	var got []*Unit
	for len(sub.Units()) > 0 {
		got = append(got, <-sub.Units())
	}
	sub.Close()
	if len(got) != 8 || !got[0].Key {
		t.Fatalf("the consumer got %d units, want the cached 3 and 5 live", len(got))
	}
	fills := make([]byte, len(got))
	for i, u := range got {
		last := u.NALUs[len(u.NALUs)-1]
		fills[i] = last[1]
	}
	// Three more GOPs, with nobody watching: their buffers come and go.
	for i := range 30 {
		publish(i%10 == 0)
	}
	for i, u := range got {
		if !intact(u.NALUs, fills[i]) {
			t.Fatalf("unit %d the consumer got changed after the hub dropped it", i)
		}
	}
}

package stream

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// budgetHarness is a few hubs sharing one GOP budget, fed GOPs of a known
// size: a 1,000-byte IDR (1,014 with the SPS and PPS the hub puts before
// it) and nine 100-byte slices, 1,914 bytes in all.
type budgetHarness struct {
	t      *testing.T
	budget *GOPBudget
	hubs   []*Hub
	pts    time.Duration
}

const testGOPSize = 1014 + 9*100

func newBudgetHarness(t *testing.T, limit int64, ids ...string) *budgetHarness {
	bh := &budgetHarness{t: t, budget: NewGOPBudget(limit)}
	for _, id := range ids {
		bh.add(id, DefaultHubConfig())
	}
	return bh
}

// add adds a hub of camera id with cfg to the budget.
func (bh *budgetHarness) add(id string, cfg HubConfig) *Hub {
	cfg.Budget = bh.budget
	h := newTestHubConfig(bh.t, id, cfg)
	bh.hubs = append(bh.hubs, h)
	return h
}

// round sends one GOP through every hub still open, one after the other.
func (bh *budgetHarness) round() {
	bigIDR := append([]byte{0x65}, bytes.Repeat([]byte{1}, 999)...)
	p := append([]byte{0x41}, bytes.Repeat([]byte{2}, 99)...)
	for _, h := range bh.hubs {
		bh.pts += 40 * time.Millisecond
		h.Publish(bh.pts, time.Now(), [][]byte{bigIDR})
		for range 9 {
			bh.pts += 40 * time.Millisecond
			h.Publish(bh.pts, time.Now(), [][]byte{p})
		}
	}
}

// cached lists the hubs holding a whole GOP, and checks the others hold
// none.
func (bh *budgetHarness) cached() string {
	bh.t.Helper()
	var out []string
	var sum int64
	for _, h := range bh.hubs {
		switch st := h.Stats(); st.GOPBytes {
		case testGOPSize:
			out = append(out, h.ID())
			sum += testGOPSize
		case 0:
		default:
			bh.t.Fatalf("%s caches %d bytes, not a whole GOP (%d) nor none", h.ID(), st.GOPBytes, testGOPSize)
		}
	}
	if bytes, n := bh.budget.Usage(); bytes != sum || n != len(out) {
		bh.t.Fatalf("usage %d bytes in %d hubs, the hubs hold %d in %d", bytes, n, sum, len(out))
	}
	if limit := bh.budget.Limit(); limit > 0 && sum > limit {
		bh.t.Fatalf("the hubs hold %d bytes, over the budget's %d", sum, limit)
	}
	return fmt.Sprint(out)
}

func TestGOPBudgetGoesToTheCamerasWatchedLast(t *testing.T) {
	// Room for two GOPs of the four cameras.
	bh := newBudgetHarness(t, 2*testGOPSize+100, "a", "b", "c", "d")
	a, c, d := bh.hubs[0], bh.hubs[2], bh.hubs[3]

	// Until a size is known each camera is charged the largest GOP a hub
	// caches: none caches its first GOP. From the second, nobody having
	// watched anything, the first two added have theirs.
	bh.round()
	if got := bh.cached(); got != "[]" {
		t.Fatalf("cached %s before any GOP size is known, want none", got)
	}
	bh.round()
	if got := bh.cached(); got != "[a b]" {
		t.Fatalf("cached %s, want [a b]", got)
	}

	// A viewer of d: it has no GOP, so the viewer starts at d's next
	// keyframe, and from there d caches (b, the last in order, leaves).
	s, err := d.Subscribe(64)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case u := <-s.Units():
		t.Fatalf("a viewer of a camera outside the budget got a unit before any was published (key %v)", u.Key)
	default:
	}
	bh.round()
	if u := recv(t, s); !u.Key {
		t.Fatal("the viewer's first unit is not a keyframe")
	}
	if got := bh.cached(); got != "[a d]" {
		t.Fatalf("cached %s with d watched, want [a d]", got)
	}
	// A second viewer of d starts at once, from the cached keyframe.
	s2, err := d.Subscribe(64)
	if err != nil {
		t.Fatal(err)
	}
	if u := recv(t, s2); !u.Key {
		t.Fatal("a second viewer of d did not start at the cached keyframe")
	}

	// The viewers leave; d stays ahead of the cameras never watched.
	s.Close()
	s2.Close()
	bh.round()
	if got := bh.cached(); got != "[a d]" {
		t.Fatalf("cached %s after d was watched, want [a d]", got)
	}

	// c is watched a moment: c and d are now the two watched last (in
	// either order: both keep theirs).
	sc, err := c.Subscribe(64)
	if err != nil {
		t.Fatal(err)
	}
	sc.Close()
	bh.round()
	if got := bh.cached(); got != "[c d]" {
		t.Fatalf("cached %s after c was watched, want [c d]", got)
	}

	// Passive consumers (the detectors) do not count as watching.
	pa, err := a.SubscribePassive(1 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	bh.round()
	if got := bh.cached(); got != "[c d]" {
		t.Fatalf("cached %s with a passive consumer of a, want [c d]", got)
	}

	// A camera removed gives its share back.
	c.Close()
	bh.round()
	if got := bh.cached(); got != "[a d]" {
		t.Fatalf("cached %s after c was removed, want [a d]", got)
	}
}

func TestGOPBudgetUnlimited(t *testing.T) {
	bh := newBudgetHarness(t, 0, "a", "b", "c") // 0: no bound
	bh.round()
	bh.round()
	if got := bh.cached(); got != "[a b c]" {
		t.Fatalf("cached %s with no bound, want [a b c]", got)
	}
	// A hub with no budget at all.
	d := newTestHubConfig(t, "d", DefaultHubConfig())
	alone := &budgetHarness{t: t, hubs: []*Hub{d}}
	alone.round()
	if got := d.Stats().GOPBytes; got != testGOPSize {
		t.Fatalf("a hub without a budget caches %d bytes, want %d", got, testGOPSize)
	}
}

// A camera that is not pulled (on demand and unwatched, disabled, owned by
// another node of a cluster) has no track: it takes no share of the
// budget, and gets one when it starts.
func TestGOPBudgetSkipsCamerasNotPulled(t *testing.T) {
	bh := newBudgetHarness(t, 2*testGOPSize+100, "idle", "a", "b")
	idle := bh.hubs[0]
	idle.ClearTrack()
	bh.round()
	bh.round()
	if got := bh.cached(); got != "[a b]" {
		t.Fatalf("cached %s with idle not pulled, want [a b]", got)
	}
	// idle starts and is watched: it takes b's share (b, never watched,
	// is last in order).
	idle.SetTrack(Track{Codec: H264, SPS: sps, PPS: pps})
	s, err := idle.Subscribe(64)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bh.round()
	bh.round()
	if got := bh.cached(); got != "[idle a]" {
		t.Fatalf("cached %s once idle is pulled and watched, want [idle a]", got)
	}
}

// A camera that lost its share drops its GOP at its next unit, not at its
// next keyframe, so that the new one's GOP and the old one's are not held
// together for a GOP's length.
func TestGOPBudgetLostShareDroppedAtOnce(t *testing.T) {
	bh := newBudgetHarness(t, testGOPSize+100, "a", "b")
	a, b := bh.hubs[0], bh.hubs[1]
	bh.round()
	bh.round()
	if got := bh.cached(); got != "[a]" {
		t.Fatalf("cached %s, want [a]", got)
	}
	s, err := b.Subscribe(64)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bh.pts += 40 * time.Millisecond
	b.Publish(bh.pts, time.Now(), [][]byte{append([]byte{0x65}, bytes.Repeat([]byte{1}, 999)...)})
	if got := a.Stats().GOPBytes; got != testGOPSize {
		t.Fatalf("a holds %d bytes before its next unit, want its GOP (%d)", got, testGOPSize)
	}
	a.Publish(bh.pts, time.Now(), [][]byte{append([]byte{0x41}, 2)})
	if got := a.Stats().GOPBytes; got != 0 {
		t.Fatalf("a still holds %d bytes after losing its share to b", got)
	}
	if got := b.Stats().GOPBytes; got != 1014 {
		t.Fatalf("b caches %d bytes from its keyframe, want 1014", got)
	}
}

// A camera whose GOPs are larger than a hub caches takes no share: the
// budget goes to the cameras that can use it.
func TestGOPBudgetSkipsGOPsTooLargeToCache(t *testing.T) {
	bh := newBudgetHarness(t, testGOPSize+100)
	cfg := DefaultHubConfig()
	cfg.MaxGOPBytes = testGOPSize - 100
	bh.add("big", cfg)
	bh.add("a", DefaultHubConfig())
	bh.round()
	bh.round()
	bh.round()
	if got := bh.cached(); got != "[a]" {
		t.Fatalf("cached %s, want [a] (big's GOPs never fit a hub)", got)
	}
}

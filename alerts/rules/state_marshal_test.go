package rules

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"

	"sharpeye/ingest/event"
)

// The hand-written state encoding reads back as encoding/json's does.
func TestGroupMarshalMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	texts := []string{"", "cam-1", `quo"te`, `back\slash`, "tab\there", "<&>", "新庄村", "\u2028", "bad\xffutf8"}
	text := func() string { return texts[rng.IntN(len(texts))] }
	entries := func() []*entry {
		var out []*entry
		for range rng.IntN(4) {
			e := event.New(event.SourceCamera, "cam-"+strconv.Itoa(rng.IntN(9)), "camera.motion")
			e.Source.Name = "新庄村口 <东>"
			en := &entry{ID: e.ID.String(), T: rng.Int64N(1e13), ev: e}
			if rng.IntN(3) == 0 {
				en.ev = nil // an entry stored without its event
			}
			out = append(out, en)
		}
		return out
	}
	for i := range 500 {
		g := &group{Fingerprint: text(), Last: rng.Int64N(1e13) - 5e12, Window: entries(), Holding: rng.IntN(2) == 0,
			Since: rng.Int64N(3), Fired: rng.IntN(2) == 0, A: entries(), B: entries(), HasFired: rng.IntN(2) == 0, LastFire: rng.Int64N(3)}
		if rng.IntN(2) == 0 && len(g.Window) > 0 {
			g.Held = g.Window[0]
		}
		if rng.IntN(2) == 0 {
			g.Labels = map[string]string{text(): text(), "grid": text(), "region": text()}
		}
		for range rng.IntN(5) {
			g.markSeen(event.NewID().String())
		}
		got, err := g.marshal()
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		var a, b group
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("case %d: %v\n%s", i, err, got)
		}
		if err := json.Unmarshal(want, &b); err != nil {
			t.Fatal(err)
		}
		// Stored events are raw JSON: compare them as encoding/json
		// writes them (it escapes <, > and & where Encode does not).
		ra, _ := json.Marshal(&a)
		rb, _ := json.Marshal(&b)
		if !reflect.DeepEqual(a.Labels, b.Labels) || !reflect.DeepEqual(a.Seen, b.Seen) || string(ra) != string(rb) {
			t.Fatalf("case %d: read back differently\n got %s\nwant %s", i, got, want)
		}
	}
}

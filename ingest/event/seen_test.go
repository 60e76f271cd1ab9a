package event

import (
	"strconv"
	"sync"
	"testing"
)

// TestSeenValid: the table of checked strings answers only for strings
// found valid, survives collisions (more strings than slots, from several
// goroutines), and never lets an invalid region or media type through.
func TestSeenValid(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				region := "county/town-" + strconv.Itoa(g) + "/village-" + strconv.Itoa(i)
				for range 2 { // the second check may come from the table
					if reason := checkRegion(region); reason != "" {
						t.Errorf("region %q refused: %s", region, reason)
						return
					}
				}
				for _, bad := range []string{"County/x", region + "/", "a//b", region + "/Upper"} {
					if checkRegion(bad) == "" {
						t.Errorf("region %q accepted", bad)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	// Nothing else runs now: what a check found valid is in the table, and
	// what it refused is not.
	if checkRegion("county/seen") != "" || !validRegions.has("county/seen") {
		t.Fatal("a valid region was not kept")
	}
	if checkRegion("county/Seen") == "" || validRegions.has("county/Seen") {
		t.Fatal("a refused region was kept")
	}
	var c seenValid
	if c.has("") || c.has("image/jpeg") {
		t.Fatal("an empty table has strings")
	}
	c.add("image/jpeg")
	if !c.has("image/jpeg") || c.has("image/png") {
		t.Fatal("the table does not answer for exactly what was added")
	}
	for _, ct := range []string{"image/jpeg", "image/jpeg", "jpeg", "image/jpeg; x", "video/mp4"} {
		ev := Evidence{Kind: EvidenceSnapshot, Ref: "snap/1.jpg", ContentType: ct}
		err := ev.validate()
		if valid := ct == "image/jpeg" || ct == "video/mp4"; valid != (err == nil) {
			t.Errorf("content type %q: validate gave %v", ct, err)
		}
		if validMediaTypes.has(ct) != (err == nil) {
			t.Errorf("content type %q: kept %v, validate gave %v", ct, validMediaTypes.has(ct), err)
		}
	}
}

package analytics

import "testing"

// TestFlatChanges: the rows a sync of cases_flat writes leave the case
// with exactly one live row equal to its history, whatever the table held
// (nothing, the same, an older state, cancelled pairs, or two live rows
// after a sync raced another), and nothing is written for a case already
// in line.
func TestFlatChanges(t *testing.T) {
	want := flatCase{id: "c1", flatOpened: flatOpened{opened: 100, category: "public_safety"}, state: "closed", colour: "red", resolved: 160, onTime: 1}
	old := want
	old.state, old.resolved, old.onTime = "accepted", 0, 0
	older := want
	older.state, older.colour = "registered", ""
	row := func(c flatCase, id string, version uint32, sign int8) flatRow {
		return flatRow{flatCase: c, rowID: id, version: version, sign: sign}
	}
	tests := []struct {
		name string
		have []flatRow
		// cancels are the row_ids cancelled; version the new row's.
		cancels []string
		version uint32
		none    bool
	}{
		{name: "new case", version: 1},
		{name: "in line", have: []flatRow{row(want, "a", 1, 1)}, none: true},
		{name: "in line after changes", have: []flatRow{row(older, "a", 1, 1), row(older, "a", 1, -1), row(want, "b", 2, 1)}, none: true},
		{name: "changed", have: []flatRow{row(old, "a", 1, 1)}, cancels: []string{"a"}, version: 2},
		{name: "changed again", have: []flatRow{row(older, "a", 1, 1), row(older, "a", 1, -1), row(old, "b", 2, 1)}, cancels: []string{"b"}, version: 3},
		{name: "collapsed pairs", have: []flatRow{row(old, "c", 4, 1)}, cancels: []string{"c"}, version: 5},
		{name: "two live rows", have: []flatRow{row(old, "a", 2, 1), row(want, "b", 2, 1)}, cancels: []string{"a", "b"}, version: 3},
		{name: "only cancelled", have: []flatRow{row(old, "a", 1, 1), row(old, "a", 1, -1)}, version: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := flatChanges(want, tc.have)
			if tc.none {
				if len(out) != 0 {
					t.Fatalf("wrote %d rows for a case in line", len(out))
				}
				return
			}
			if len(out) != len(tc.cancels)+1 {
				t.Fatalf("wrote %d rows, want %d cancels and the new row", len(out), len(tc.cancels))
			}
			for i, id := range tc.cancels {
				c := out[i]
				if c.sign != -1 || c.rowID != id {
					t.Fatalf("row %d is %+v, want the cancel of %s", i, c, id)
				}
				found := false
				for _, h := range tc.have {
					found = found || h.rowID == id && h.sign == 1 && h.version == c.version && h.flatCase == c.flatCase
				}
				if !found {
					t.Fatalf("cancel %+v does not repeat the row it cancels", c)
				}
			}
			n := out[len(out)-1]
			if n.sign != 1 || n.flatCase != want || n.version != tc.version || n.rowID == "" {
				t.Fatalf("new row %+v, want the case's state at version %d with a row_id", n, tc.version)
			}
			for _, h := range tc.have {
				if h.rowID == n.rowID {
					t.Fatalf("new row reuses row_id %s", h.rowID)
				}
			}
		})
	}
}

// TestPartitionDay: retention reads the day of a partition by day, and
// the later of cases_flat's two days; other partitions are left alone.
func TestPartitionDay(t *testing.T) {
	for p, want := range map[string]string{
		"20261121":             "2026-11-21",
		"(20261120,20261121)":  "2026-11-21",
		"(20261121, 20261120)": "2026-11-21",
		"tuple()":              "",
		"202611":               "",
		"(20261121,x)":         "",
	} {
		day, ok := partitionDay(p)
		if got := day.Format("2006-01-02"); ok != (want != "") || ok && got != want {
			t.Errorf("partitionDay(%q) = %s, %v; want %q", p, got, ok, want)
		}
	}
}

package rules

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"sharpeye/ingest/event"
)

// Locality is what the partitioned alerts mode divides events by, so that
// each locality's events, and so the rule state about them, have one owner
// (see the package documentation). The zero Locality is "not partitioned".
type Locality struct {
	// Levels is 0 to partition by grid, N > 0 to partition by the first
	// N levels of the region path.
	Levels int
	set    bool
}

// ParseLocality parses the alerts.partition_by setting: "" (not
// partitioned), "grid", or "region:N" with N from 1 to 16.
func ParseLocality(s string) (Locality, error) {
	switch {
	case s == "":
		return Locality{}, nil
	case s == "grid":
		return Locality{set: true}, nil
	}
	if n, ok := strings.CutPrefix(s, "region:"); ok {
		l, err := strconv.Atoi(n)
		if err != nil || l < 1 || l > 16 || n != strconv.Itoa(l) {
			return Locality{}, fmt.Errorf("%q: the region levels must be a number from 1 to 16, as in region:2", s)
		}
		return Locality{Levels: l, set: true}, nil
	}
	return Locality{}, errors.New(`"` + s + `" is not a locality: use grid or region:N (the first N levels of the region path)`)
}

// Partitioned reports whether l divides events (it is not the zero value).
func (l Locality) Partitioned() bool { return l.set }

func (l Locality) String() string {
	switch {
	case !l.set:
		return ""
	case l.Levels == 0:
		return "grid"
	}
	return "region:" + strconv.Itoa(l.Levels)
}

// Key returns the locality of e: its grid, or the first Levels levels of
// its region. An event without one is keyed by what it has: its region
// (partitioning by grid), then its source.
func (l Locality) Key(e *event.Event) string {
	if l.Levels == 0 && e.Location.Grid != "" {
		return "grid=" + e.Location.Grid
	}
	if r := e.Location.Region; r != "" {
		return "region=" + regionPrefix(r, l.Levels)
	}
	return "source=" + string(e.Source.Kind) + ":" + e.Source.ID
}

// regionPrefix returns the first n levels of region (all of it for n 0).
func regionPrefix(region string, n int) string {
	if n <= 0 {
		return region
	}
	i := 0
	for k := 0; k < n; k++ {
		j := strings.IndexByte(region[i:], '/')
		if j < 0 {
			return region
		}
		i += j + 1
	}
	return region[:i-1]
}

// within reports whether events agreeing on label (equal values; for
// region in an inhibition, the target within the source's subtree) lie
// in one locality of l. A source (camera, device) sits in one place, a
// grid lies within one region; attributes and types lie anywhere.
func (l Locality) within(label string) bool {
	switch label {
	case "source", "camera", "device", "grid":
		return true
	case "region":
		return l.Levels > 0
	}
	return false
}

// Check lists the rules whose groups or suppressions could span two
// localities of l, which a partitioned alerts mode cannot evaluate: their
// events would reach several nodes. Index is the rule's position in rules.
func (l Locality) Check(rules []Rule) []Problem {
	if !l.set {
		return nil
	}
	var list []Problem
	for i, r := range rules {
		p := problems{index: i, id: r.ID, list: &list}
		groupBy := r.GroupBy
		if len(groupBy) == 0 {
			groupBy = []string{"source"}
		}
		if !slices.ContainsFunc(groupBy, l.within) {
			p.add("group_by", "grouping by %s can gather events of several %s localities, which alerts.partition_by sends to different nodes; group by source, camera, device or grid as well%s",
				strings.Join(groupBy, ", "), l, l.regionHint())
		}
		in := r.Inhibits
		if in == nil {
			continue
		}
		switch {
		case len(in.Equal) == 0:
			p.add("inhibits.equal", "a suppression without equal reaches every locality, and alerts.partition_by (%s) sends them to different nodes: list grid, source%s in equal", l, l.regionHint())
		case slices.ContainsFunc(in.Equal, func(s string) bool { return s != "region" && l.within(s) }):
		case slices.Contains(in.Equal, "region") && l.within("region"):
			// The target lies within the source's region subtree: one
			// locality when that region is at least Levels deep, which
			// the rule's match.regions must ensure.
			if !deepRegions(r.Match.Regions, l.Levels) || (r.Correlate != nil && !deepRegions(r.Correlate.Match.Regions, l.Levels)) {
				p.add("inhibits.equal", "suppressing by region with alerts.partition_by %s needs every event of the rule to lie at least %d region levels deep: list match.regions (and correlate.match.regions) of that depth (or add grid or source to equal)", l, l.Levels)
			}
		default:
			p.add("inhibits.equal", "suppressing by %s can reach events of other %s localities, which alerts.partition_by sends to different nodes; add grid or source%s to equal",
				strings.Join(in.Equal, ", "), l, l.regionHint())
		}
	}
	return list
}

func (l Locality) regionHint() string {
	if l.Levels > 0 {
		return " (or region)"
	}
	return ""
}

// deepRegions reports whether regions is not empty and each lies at least
// n levels deep.
func deepRegions(regions []string, n int) bool {
	if len(regions) == 0 {
		return false
	}
	for _, r := range regions {
		if strings.Count(r, "/")+1 < n {
			return false
		}
	}
	return true
}

// CompileIn is Compile, also refusing (in the same *ValidationError) the
// rules l cannot partition (Locality.Check).
func CompileIn(rules []Rule, l Locality) (*Set, error) {
	set, err := Compile(rules)
	if err != nil {
		return nil, err
	}
	if list := l.Check(rules); len(list) > 0 {
		return nil, &ValidationError{Problems: list}
	}
	return set, nil
}

package rules

import (
	"sync"
	"sync/atomic"
)

// typeIndex lists, for an event type, the rules an event of that type can
// match (by match.types or correlate.match.types), in the set's order, so
// that an event is tested against those only: with a hundred rules each
// event type concerns a few. The lists are built on first use of a type
// (types are globs, so the set cannot list them beforehand) and kept for at
// most maxIndexedTypes types; further types are computed on every event.
type typeIndex struct {
	rules []*compiled
	byTyp sync.Map // string → []*compiled
	n     atomic.Int32
}

// maxIndexedTypes bounds the types remembered: event types are a small
// vocabulary, but they come from outside.
const maxIndexedTypes = 4096

func newTypeIndex(rules []*compiled) *typeIndex { return &typeIndex{rules: rules} }

// forType returns the rules an event of type typ may match, in order.
func (x *typeIndex) forType(typ string) []*compiled {
	if v, ok := x.byTyp.Load(typ); ok {
		return v.([]*compiled)
	}
	var out []*compiled
	for _, c := range x.rules {
		if c.mayMatchType(typ) {
			out = append(out, c)
		}
	}
	if x.n.Load() < maxIndexedTypes {
		if _, loaded := x.byTyp.LoadOrStore(typ, out); !loaded {
			x.n.Add(1)
		}
	}
	return out
}

// mayMatchType reports whether an event of type typ can match the rule's
// primary or (correlate) second matcher, as far as types go.
func (c *compiled) mayMatchType(typ string) bool {
	if len(c.primary.types) == 0 || anyGlob(c.primary.types, typ) {
		return true
	}
	return c.mode == modeCorrelate && (len(c.second.types) == 0 || anyGlob(c.second.types, typ))
}

// forType returns the rules of the set an event of type typ may match, in
// the set's order: the ones the engine evaluates for it.
func (s *Set) forType(typ string) []*compiled {
	if s.index == nil {
		return s.rules
	}
	return s.index.forType(typ)
}

package conf

import (
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

const (
	nullTag  = "!!null"
	intTag   = "!!int"
	floatTag = "!!float"
	mergeTag = "!!merge"
)

// maxSteps bounds the nodes checked in one document, so that a small file
// expanding aliases exponentially cannot exhaust memory or time.
const maxSteps = 1 << 20

// checker walks a YAML node tree against a Go type and records every problem
// and the line of every key path it meets.
type checker struct {
	errs    Errors
	bad     map[*yaml.Node][]int // mapping -> indexes of pairs with problems, not applied
	lines   map[string]int
	active  map[*yaml.Node]bool // aliases being followed, to stop cycles
	structs []*yaml.Node        // mappings read into structs, for pruneNulls
	steps   int
}

func newChecker() *checker {
	return &checker{lines: make(map[string]int), active: make(map[*yaml.Node]bool), bad: make(map[*yaml.Node][]int)}
}

func (c *checker) add(path string, line int, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// fail records a problem with the value n at path, on the line of its key
// when the path has one.
func (c *checker) fail(n *yaml.Node, path string, format string, args ...any) {
	line, ok := c.lines[path]
	if !ok {
		line = n.Line
	}
	c.add(path, line, format, args...)
}

func (c *checker) setLine(path string, line int) {
	if path == "" || line <= 0 {
		return
	}
	if _, ok := c.lines[path]; !ok {
		c.lines[path] = line
	}
}

// check records the problems of reading n into a value of type t at path.
func (c *checker) check(n *yaml.Node, t reflect.Type, path string) {
	c.steps++
	if c.steps > maxSteps {
		if c.steps == maxSteps+1 {
			c.add("", 0, "the document is too large or expands too many aliases")
		}
		return
	}
	c.setLine(path, n.Line)
	if n.Kind == yaml.AliasNode {
		switch {
		case n.Alias == nil:
			c.fail(n, path, "alias *%s refers to nothing", n.Value)
		case c.active[n]:
			c.fail(n, path, "alias *%s refers to a value that contains it", n.Value)
		default:
			c.active[n] = true
			c.check(n.Alias, t, path)
			delete(c.active, n)
		}
		return
	}
	if isNull(n) {
		return // keep the default
	}
	t = indirect(t)
	pt := reflect.PointerTo(t)
	switch {
	case t == nodeType:
		return
	case pt.Implements(unmarshalerType):
		c.decodeLeaf(n, t, path)
		return
	case t == stdDurationType:
		if c.wantScalar(n, t, path) && n.Decode(reflect.New(t).Interface()) != nil {
			if _, err := parseDuration(n.Value); err != nil {
				c.fail(n, path, "%s", err)
			} else {
				c.mismatch(n, t, path)
			}
		}
		return
	case pt.Implements(textUnmarshalerType):
		if c.wantScalar(n, t, path) {
			c.decodeLeaf(n, t, path)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		c.checkStruct(n, t, path)
	case reflect.Map:
		c.checkMap(n, t, path)
	case reflect.Slice, reflect.Array:
		c.checkSequence(n, t, path)
	case reflect.Interface:
		// Anything goes.
	case reflect.String:
		if c.wantScalar(n, t, path) {
			c.decodeLeaf(n, t, path)
		}
	case reflect.Bool:
		if c.wantScalar(n, t, path) && n.Decode(reflect.New(t).Interface()) != nil {
			c.mismatchQuoted(n, t, path, func(s string) bool { return s == "true" || s == "false" })
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		c.checkInt(n, t, path)
	case reflect.Float32, reflect.Float64:
		c.checkFloat(n, t, path)
	default:
		c.fail(n, path, "values of Go type %s cannot be configured", t)
	}
}

// decodeLeaf reports the error of decoding n alone into a new t.
func (c *checker) decodeLeaf(n *yaml.Node, t reflect.Type, path string) {
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		c.fail(n, path, "%s", leafMessage(err))
	}
}

func (c *checker) wantScalar(n *yaml.Node, t reflect.Type, path string) bool {
	if n.Kind != yaml.ScalarNode {
		c.mismatch(n, t, path)
		return false
	}
	return true
}

func (c *checker) mismatch(n *yaml.Node, t reflect.Type, path string) {
	c.fail(n, path, "expected %s, got %s", want(t), describe(n))
}

// mismatchQuoted is mismatch with a hint when n is quoted and would be
// accepted without its quotes (valid says so).
func (c *checker) mismatchQuoted(n *yaml.Node, t reflect.Type, path string, valid func(string) bool) {
	if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 && valid(n.Value) {
		c.fail(n, path, "expected %s, got the string %s (remove the quotes)", want(t), describe(n))
		return
	}
	c.mismatch(n, t, path)
}

func (c *checker) checkInt(n *yaml.Node, t reflect.Type, path string) {
	if !c.wantScalar(n, t, path) {
		return
	}
	tag := n.ShortTag()
	if (tag != intTag && tag != floatTag) || !isIntLiteral(n.Value) {
		c.mismatchQuoted(n, t, path, isIntLiteral)
		return
	}
	if tag == intTag && n.Decode(reflect.New(t).Interface()) == nil {
		return
	}
	c.fail(n, path, "%s is out of range (%s)", n.Value, intRange(t))
}

func (c *checker) checkFloat(n *yaml.Node, t reflect.Type, path string) {
	if !c.wantScalar(n, t, path) {
		return
	}
	var f float64
	if tag := n.ShortTag(); (tag != intTag && tag != floatTag) || n.Decode(&f) != nil {
		c.mismatchQuoted(n, t, path, func(s string) bool {
			_, err := strconv.ParseFloat(s, 64)
			return err == nil
		})
		return
	}
	if reflect.Zero(t).OverflowFloat(f) {
		c.fail(n, path, "%s is out of range for a %d-bit number", n.Value, t.Bits())
	}
}

func (c *checker) checkStruct(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.mismatch(n, t, path)
		return
	}
	info, err := structInfoOf(t)
	if err != nil {
		c.fail(n, path, "%s", err)
		return
	}
	c.structs = append(c.structs, n)
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMerge(k) {
			c.checkMerge(v, t, path)
			continue
		}
		name, ok := c.key(k, path)
		if !ok {
			continue
		}
		kpath := appendKey(path, name)
		if first, dup := seen[name]; dup {
			c.add(kpath, k.Line, "duplicate key (first set on line %d)", first)
			c.markBad(n, i)
			continue
		}
		seen[name] = k.Line
		c.setLine(kpath, k.Line)
		if fi, ok := info.byName[name]; ok {
			c.checkPair(n, i, v, info.fields[fi].typ, kpath)
			continue
		}
		if info.inlineMap != nil {
			c.checkPair(n, i, v, t.FieldByIndex(info.inlineMap).Type.Elem(), kpath)
			continue
		}
		c.add(kpath, k.Line, "unknown key%s", suggest(name, info))
		c.markBad(n, i)
	}
}

func (c *checker) markBad(mapping *yaml.Node, i int) { c.bad[mapping] = append(c.bad[mapping], i) }

// checkPair checks the value of pair i of mapping and marks the pair bad if
// the value has problems that the value's own mapping does not isolate: a
// nested section keeps its good keys, anything else is left out whole.
func (c *checker) checkPair(mapping *yaml.Node, i int, v *yaml.Node, t reflect.Type, path string) {
	before := len(c.errs)
	c.check(v, t, path)
	if len(c.errs) == before {
		return
	}
	it := indirect(t)
	nested := resolve(v).Kind == yaml.MappingNode && (it.Kind() == reflect.Struct || it.Kind() == reflect.Map) &&
		!reflect.PointerTo(it).Implements(unmarshalerType) && !reflect.PointerTo(it).Implements(textUnmarshalerType)
	if !nested || v.Kind == yaml.AliasNode {
		c.markBad(mapping, i)
	}
}

// dropBad removes the pairs with problems, so that the rest of the file can
// be applied and validated.
func (c *checker) dropBad() {
	for n, idx := range c.bad {
		drop := make(map[int]bool, len(idx))
		for _, i := range idx {
			drop[i] = true
		}
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !drop[i] {
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = kept
	}
}

func (c *checker) checkMap(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.mismatch(n, t, path)
		return
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMerge(k) {
			c.checkMerge(v, t, path)
			continue
		}
		name, ok := c.key(k, path)
		if !ok {
			continue
		}
		kpath := appendKey(path, name)
		if first, dup := seen[name]; dup {
			c.add(kpath, k.Line, "duplicate key (first set on line %d)", first)
			c.markBad(n, i)
			continue
		}
		seen[name] = k.Line
		c.setLine(kpath, k.Line)
		if t.Key().Kind() != reflect.String {
			before := len(c.errs)
			c.check(k, t.Key(), kpath)
			if len(c.errs) > before {
				c.markBad(n, i)
				continue
			}
		}
		c.checkPair(n, i, v, t.Elem(), kpath)
	}
}

// key returns the text of a mapping key, which must be a non-null scalar.
func (c *checker) key(k *yaml.Node, path string) (string, bool) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	switch {
	case k.Kind != yaml.ScalarNode:
		c.add(path, k.Line, "a key must be a scalar, got %s", describe(k))
		return "", false
	case isNull(k):
		c.add(path, k.Line, "a key must not be empty")
		return "", false
	}
	return k.Value, true
}

// checkMerge checks the value of a "<<" merge key: a mapping, an alias to
// one, or a sequence of those, each read as t at path.
func (c *checker) checkMerge(v *yaml.Node, t reflect.Type, path string) {
	switch resolve(v).Kind {
	case yaml.MappingNode:
		c.check(v, t, path)
		return
	case yaml.SequenceNode:
		if v.Kind != yaml.AliasNode {
			for _, item := range v.Content {
				if resolve(item).Kind != yaml.MappingNode {
					c.add(path, item.Line, "<< needs a mapping or a sequence of mappings")
					continue
				}
				c.check(item, t, path)
			}
			return
		}
	}
	c.add(path, v.Line, "<< needs a mapping or a sequence of mappings")
}

func (c *checker) checkSequence(n *yaml.Node, t reflect.Type, path string) {
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 && n.Kind == yaml.ScalarNode {
		c.decodeLeaf(n, t, path) // []byte from a string
		return
	}
	if n.Kind != yaml.SequenceNode {
		c.mismatch(n, t, path)
		return
	}
	if t.Kind() == reflect.Array && len(n.Content) != t.Len() {
		c.fail(n, path, "expected %d items, got %d", t.Len(), len(n.Content))
	}
	et := t.Elem()
	for i, item := range n.Content {
		ipath := appendIndex(path, i)
		if isNull(resolve(item)) {
			switch et.Kind() {
			case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
			default:
				// yaml.v3 would silently drop the item and shift the rest.
				c.add(ipath, item.Line, "empty item")
				continue
			}
		}
		c.check(item, et, ipath)
	}
}

// pruneNulls removes the keys with a null value from the mappings read into
// structs, so that decoding keeps the default of those fields whatever their
// type (yaml.v3 would zero pointers, slices and maps).
func (c *checker) pruneNulls() {
	done := make(map[*yaml.Node]bool)
	for _, n := range c.structs {
		if done[n] {
			continue
		}
		done[n] = true
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !isMerge(n.Content[i]) && isNull(resolve(n.Content[i+1])) {
				continue
			}
			kept = append(kept, n.Content[i], n.Content[i+1])
		}
		n.Content = kept
	}
}

// resolve follows one alias.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag
}

// isMerge reports whether n is the merge key "<<", as yaml.v3 decides it.
func isMerge(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "<<" &&
		(n.Tag == "" || n.Tag == "!" || n.Tag == mergeTag || n.Tag == "tag:yaml.org,2002:merge")
}

// isIntLiteral reports whether s is an integer as YAML writes one, of any size.
func isIntLiteral(s string) bool {
	_, ok := new(big.Int).SetString(strings.ReplaceAll(s, "_", ""), 0)
	return ok
}

func intRange(t reflect.Type) string {
	bits := t.Bits()
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("0 to %d", uint64(1)<<bits-1)
	}
	lo := int64(-1) << (bits - 1)
	return fmt.Sprintf("%d to %d", lo, ^lo)
}

// want describes what a value of type t looks like in YAML.
func want(t reflect.Type) string {
	t = indirect(t)
	switch {
	case t == durationType || t == stdDurationType:
		return "a duration such as 10s"
	case t.Kind() == reflect.String:
		return "a string"
	case reflect.PointerTo(t).Implements(unmarshalerType),
		reflect.PointerTo(t).Implements(textUnmarshalerType):
		return "a scalar value"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a sequence"
	}
	return "a value of Go type " + t.String()
}

// describe names what a node is, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.ScalarNode:
		return quote(n.Value)
	}
	return "nothing"
}

// quote quotes s for a message, shortened when long.
func quote(s string) string {
	const max = 40
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// suggest returns ` (did you mean "x"?)` for the known key closest to name,
// if one is within two edits.
func suggest(name string, info *structInfo) string {
	if len(name) > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, f := range info.fields {
		d := editDistance(strings.ToLower(name), f.name)
		if d < bestDist && d < utf8.RuneCountInString(name) {
			best, bestDist = f.name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

package conf

import (
	"errors"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem in a configuration, named by the path of the key
// it concerns, such as cameras[2].url.
type FieldError struct {
	// Path is the key path (see the package documentation), the file name for
	// errors that concern the whole file, or "" for the configuration as a whole.
	Path string
	// Line is the 1-based line of the key in the file, or 0 when it is not known
	// (the key came from the defaults or the environment, or the file had no line).
	Line int
	// Msg says what is wrong.
	Msg string
}

// Error returns "path: msg", or "path (line N): msg" when the line is known.
func (e FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		if e.Path != "" {
			b.WriteString(" (line ")
			b.WriteString(strconv.Itoa(e.Line))
			b.WriteString(")")
		} else {
			b.WriteString("line ")
			b.WriteString(strconv.Itoa(e.Line))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration, in the order they should
// be shown. Load returns a non-empty Errors or nil.
type Errors []FieldError

// Error returns one error per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// AsErrors finds the Errors in err's chain. A single FieldError is returned as
// an Errors of one. It reports false when err holds neither.
func AsErrors(err error) (Errors, bool) {
	var es Errors
	if errors.As(err, &es) {
		return es, true
	}
	var fe FieldError
	if errors.As(err, &fe) {
		return Errors{fe}, true
	}
	var pfe *FieldError
	if errors.As(err, &pfe) && pfe != nil {
		return Errors{*pfe}, true
	}
	return nil, false
}

// sortErrors orders errors with a known line by line, then path, followed by
// the errors without a line in the order they were found.
func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.Line == 0 || b.Line == 0 {
			return a.Line != 0 && b.Line == 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Path < b.Path
	})
}

// appendKey returns the path of key inside the mapping at path: path.key when
// key is a plain identifier, otherwise path["key"].
func appendKey(path, key string) string {
	if !isIdent(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// appendIndex returns the path of item i of the sequence at path.
func appendIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// joinPath appends rel, itself a path such as "url", "items[2].name" or "[3]",
// to base.
func joinPath(base, rel string) string {
	switch {
	case rel == "":
		return base
	case base == "":
		return strings.TrimPrefix(rel, ".")
	case rel[0] == '[':
		return base + rel
	case rel[0] == '.':
		return base + rel
	}
	return base + "." + rel
}

// isIdent reports whether s matches ^[A-Za-z_][A-Za-z0-9_-]*$.
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-'):
		default:
			return false
		}
	}
	return true
}

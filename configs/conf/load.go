package conf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load overlays a YAML document and the environment on dst, then validates
// the result.
//
// dst must be a non-nil pointer to a struct that already holds the compiled
// defaults. Maps and pointed-to sections of dst are updated in place, so
// build the defaults afresh for each Load rather than sharing them. data is
// the file's content (empty for no file); filename is only used in messages.
// environ is a list of "KEY=value" strings, usually os.Environ(); only
// variables named SHARPEYE_* are read.
//
// Load returns nil or an Errors listing every problem, each naming the key
// path it concerns (see the package documentation for the order of the steps
// and the path syntax). A file that is not valid YAML is reported alone.
// Other problems in the file leave the keys at fault (or the whole list or
// value containing them) unapplied, and the rest of the file is applied and
// validated, so that every problem is reported at once; a validation error
// under a key already reported is not repeated. When Load returns an error,
// dst holds what could be applied.
//
// A dst that is not a non-nil pointer to a struct is a programming error,
// reported by a plain error.
func Load(dst any, data []byte, filename string, environ []string) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("conf: Load needs a non-nil pointer to a struct, got %T", dst)
	}
	root, errs := parse(data, filename)
	if errs != nil {
		return errs
	}

	c := newChecker()
	if root != nil {
		errs = c.apply(root, rv, filename)
	}

	set, envErrs := applyEnv(rv.Elem(), environ)
	errs = append(errs, envErrs...)

	// Validate what could be applied, so that every problem is reported at
	// once; a key already reported as wrong is not reported again.
	c.forget(set)
	reported := errs
	for _, e := range validate(rv.Elem(), c.lines) {
		if !coveredBy(e.Path, reported) {
			errs = append(errs, e)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sortErrors(errs)
	return errs
}

// coveredBy reports whether path is, or lies under, the path of an error
// already in errs (for environment errors, the path in parentheses).
func coveredBy(path string, errs Errors) bool {
	for _, e := range errs {
		p := e.Path
		if i := strings.Index(p, " ("); strings.HasPrefix(p, "$") && i >= 0 {
			p = strings.TrimSuffix(p[i+2:], ")")
		}
		if p != "" && (path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[")) {
			return true
		}
	}
	return false
}

// apply checks root against the type dst points to and decodes into dst
// every part of it that has no problem.
func (c *checker) apply(root *yaml.Node, dst reflect.Value, filename string) Errors {
	c.check(root, dst.Elem().Type(), "")
	for i := range c.errs {
		if c.errs[i].Path == "" {
			c.errs[i].Path = filename // the file as a whole
		}
	}
	errs := c.errs
	if len(errs) > 0 {
		if root.Kind != yaml.MappingNode || c.steps > maxSteps {
			return errs // nothing sensible to apply
		}
		c.dropBad()
	}
	c.pruneNulls()
	if err := root.Decode(dst.Interface()); err != nil {
		return append(errs, decodeErrors(err, filename)...)
	}
	return errs
}

// forget drops the lines of the paths set by the environment, and of the
// paths under them: their values no longer come from the file.
func (c *checker) forget(set []string) {
	for _, p := range set {
		for path := range c.lines {
			if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
				delete(c.lines, path)
			}
		}
	}
}

// parse returns the single document's top node, or nil when there is
// nothing to apply.
func parse(data []byte, filename string) (*yaml.Node, Errors) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, Errors{syntaxError(filename, err)}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, Errors{syntaxError(filename, err)}
	case top(&extra) != nil:
		return nil, Errors{{Path: filename, Line: extra.Line, Msg: "found a second YAML document; only one is allowed"}}
	}
	return top(&doc), nil
}

// top returns the content of a document, or nil when it is empty or null.
func top(doc *yaml.Node) *yaml.Node {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	n := doc.Content[0]
	if isNull(n) {
		return nil
	}
	return n
}

// syntaxError turns a yaml.v3 parser error ("yaml: line 3: did not find
// expected key") into a FieldError.
func syntaxError(filename string, err error) FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, msg := splitLine(msg)
	return FieldError{Path: filename, Line: line, Msg: msg}
}

// splitLine removes a leading "line N: " from msg and returns N.
func splitLine(msg string) (int, string) {
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, msg
	}
	num, rest, ok := strings.Cut(rest, ": ")
	if !ok {
		return 0, msg
	}
	line, err := strconv.Atoi(num)
	if err != nil {
		return 0, msg
	}
	return line, rest
}

// decodeErrors turns an error from yaml.v3's decoder into Errors. The checker
// should have caught everything before decoding; this is a safety net.
func decodeErrors(err error, filename string) Errors {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var es Errors
		for _, m := range te.Errors {
			line, msg := splitLine(m)
			es = append(es, FieldError{Path: filename, Line: line, Msg: msg})
		}
		return es
	}
	return Errors{{Path: filename, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
}

// leafMessage returns the text of an error from decoding one value.
func leafMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			_, msgs[i] = splitLine(m)
		}
		return strings.Join(msgs, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

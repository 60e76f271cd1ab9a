package conf

import (
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts the name of every environment variable Load reads.
const EnvPrefix = "SHARPEYE_"

// envBinding ties one environment variable to the field it sets.
type envBinding struct {
	name  string       // SHARPEYE_HTTP_LISTEN
	path  string       // http.listen
	index []int        // field numbers from the root; pointers between are followed
	typ   reflect.Type // the field's type
	list  bool         // a slice of scalars, given as a comma-separated list
}

// EnvNames lists the environment variables Load reads for the configuration
// type of dst (a struct or a pointer to one), in field order.
func EnvNames(dst any) []string {
	t := reflect.TypeOf(dst)
	if t == nil {
		return nil
	}
	t = indirect(t)
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for _, b := range envBindings(t) {
		names = append(names, b.name)
	}
	return names
}

func envBindings(t reflect.Type) []envBinding {
	var out []envBinding
	collectEnv(t, "", strings.TrimSuffix(EnvPrefix, "_"), nil, nil, &out)
	return out
}

// collectEnv adds the bindings of the scalar leaves of struct type t, reached
// through structs and pointers to structs only.
func collectEnv(t reflect.Type, path, name string, index []int, visiting []reflect.Type, out *[]envBinding) {
	if slices.Contains(visiting, t) {
		return // a recursive type
	}
	visiting = append(visiting, t)
	info, err := structInfoOf(t)
	if err != nil {
		return
	}
	for _, f := range info.fields {
		b := envBinding{
			name:  name + "_" + envKey(f.name),
			path:  appendKey(path, f.name),
			index: append(slices.Clip(index), f.index...),
			typ:   f.typ,
		}
		switch ft := indirect(f.typ); {
		case isLeaf(ft):
			*out = append(*out, b)
		case f.typ.Kind() == reflect.Slice && f.typ.Elem().Kind() != reflect.Uint8 && isLeaf(f.typ.Elem()):
			b.list = true
			*out = append(*out, b)
		case ft.Kind() == reflect.Struct && ft != nodeType:
			collectEnv(ft, b.path, b.name, b.index, visiting, out)
		}
	}
}

// envKey turns a YAML key into its part of a variable name: upper case, with
// every character other than a letter or digit replaced by "_".
func envKey(key string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, key)
}

// applyEnv sets the fields of root named by SHARPEYE_* variables in environ,
// and returns the paths it set. Empty variables are treated as unset.
func applyEnv(root reflect.Value, environ []string) (set []string, errs Errors) {
	env := make(map[string]string)
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	if len(env) == 0 {
		return nil, nil
	}
	for _, b := range envBindings(root.Type()) {
		s := env[b.name]
		if s == "" {
			continue
		}
		where := "$" + b.name + " (" + b.path + ")"
		var v reflect.Value
		if b.list {
			v = reflect.MakeSlice(b.typ, 0, strings.Count(s, ",")+1)
			var bad bool
			for i, part := range strings.Split(s, ",") {
				part = strings.TrimSpace(part)
				if part == "" {
					continue
				}
				item, msg := parseEnv(part, b.typ.Elem())
				if msg != "" {
					errs = append(errs, FieldError{Path: "$" + b.name + " (" + appendIndex(b.path, i) + ")", Msg: msg})
					bad = true
					continue
				}
				v = reflect.Append(v, item)
			}
			if bad {
				continue
			}
		} else {
			var msg string
			if v, msg = parseEnv(s, b.typ); msg != "" {
				errs = append(errs, FieldError{Path: where, Msg: msg})
				continue
			}
		}
		field, ok := fieldByIndexAlloc(root, b.index)
		if !ok {
			errs = append(errs, FieldError{Path: where, Msg: "this field cannot be set"})
			continue
		}
		field.Set(v)
		set = append(set, b.path)
	}
	return set, errs
}

// parseEnv reads s as a YAML scalar of type t. Strings and text types take s
// as it is; other types resolve it as a plain YAML scalar would.
func parseEnv(s string, t reflect.Type) (reflect.Value, string) {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: s}
	base := indirect(t)
	pt := reflect.PointerTo(base)
	if base.Kind() == reflect.String || base == stdDurationType ||
		pt.Implements(textUnmarshalerType) && !pt.Implements(unmarshalerType) {
		n.Tag = "!!str"
	}
	if isNull(n) {
		return reflect.Value{}, "expected " + want(t) + ", got " + quote(s)
	}
	c := newChecker()
	c.check(n, t, "")
	if len(c.errs) > 0 {
		return reflect.Value{}, c.errs[0].Msg
	}
	p := reflect.New(t)
	if err := n.Decode(p.Interface()); err != nil {
		return reflect.Value{}, leafMessage(err)
	}
	return p.Elem(), ""
}

// fieldByIndexAlloc returns the field of v at index, allocating the nil
// pointers on the way.
func fieldByIndexAlloc(v reflect.Value, index []int) (reflect.Value, bool) {
	for _, i := range index {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return reflect.Value{}, false
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	return v, v.CanSet()
}

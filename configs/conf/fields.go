package conf

import (
	"encoding"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

var (
	durationType        = reflect.TypeFor[Duration]()
	stdDurationType     = reflect.TypeFor[time.Duration]()
	nodeType            = reflect.TypeFor[yaml.Node]()
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	validatorType       = reflect.TypeFor[Validator]()
)

// field is one key of a struct's mapping, with inline structs flattened.
type field struct {
	name  string
	index []int // field numbers from the outer struct down, through inline fields
	typ   reflect.Type
}

// directField is one field of the struct itself, before flattening.
type directField struct {
	num       int
	name      string // "" for inline fields
	inline    bool
	anonymous bool
}

type structInfo struct {
	fields    []field // in declaration order
	byName    map[string]int
	direct    []directField
	inlineMap []int // index of the ,inline map that takes unknown keys, or nil;
	// as in yaml.v3, the inline map of an inline struct is not used
}

var structInfos sync.Map // reflect.Type → *structInfo

// structInfoOf returns the keys of struct type t, following the rules of
// yaml.v3: the name comes from the yaml tag, else the lowercased field name;
// "-" is skipped; ,inline structs are flattened; ,omitempty and ,flow are
// accepted and ignored here.
func structInfoOf(t reflect.Type) (*structInfo, error) {
	if v, ok := structInfos.Load(t); ok {
		return v.(*structInfo), nil
	}
	info, err := buildStructInfo(t, nil)
	if err != nil {
		return nil, err
	}
	structInfos.Store(t, info)
	return info, nil
}

func buildStructInfo(t reflect.Type, visiting []reflect.Type) (*structInfo, error) {
	for _, v := range visiting {
		if v == t {
			return nil, fmt.Errorf("type %s inlines itself", t)
		}
	}
	visiting = append(visiting, t)
	info := &structInfo{byName: make(map[string]int)}
	add := func(f field) error {
		if _, dup := info.byName[f.name]; dup {
			return fmt.Errorf("key %q appears twice in type %s", f.name, t)
		}
		info.byName[f.name] = len(info.fields)
		info.fields = append(info.fields, f)
		return nil
	}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		if tag == "" && !strings.Contains(string(sf.Tag), ":") {
			tag = string(sf.Tag)
		}
		if tag == "-" {
			continue
		}
		name, flags, _ := strings.Cut(tag, ",")
		inline := false
		if flags != "" {
			for flag := range strings.SplitSeq(flags, ",") {
				switch flag {
				case "omitempty", "flow":
				case "inline":
					inline = true
				default:
					return nil, fmt.Errorf("unsupported flag %q in yaml tag of %s.%s", flag, t, sf.Name)
				}
			}
		}
		if !sf.IsExported() && !(sf.Anonymous && inline) {
			continue
		}
		if !inline {
			if name == "" {
				name = strings.ToLower(sf.Name)
			}
			info.direct = append(info.direct, directField{num: i, name: name, anonymous: sf.Anonymous})
			if err := add(field{name: name, index: []int{i}, typ: sf.Type}); err != nil {
				return nil, err
			}
			continue
		}
		info.direct = append(info.direct, directField{num: i, inline: true, anonymous: sf.Anonymous})
		ft := sf.Type
		if ft.Kind() == reflect.Map {
			if info.inlineMap != nil {
				return nil, fmt.Errorf("type %s has more than one ,inline map", t)
			}
			if ft.Key().Kind() != reflect.String {
				return nil, fmt.Errorf("the ,inline map %s.%s needs string keys", t, sf.Name)
			}
			info.inlineMap = []int{i}
			continue
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() != reflect.Struct {
			return nil, fmt.Errorf("%s.%s: ,inline needs a struct or a map", t, sf.Name)
		}
		if reflect.PointerTo(ft).Implements(unmarshalerType) {
			return nil, fmt.Errorf("%s.%s: ,inline of a yaml.Unmarshaler is not supported", t, sf.Name)
		}
		inner, err := buildStructInfo(ft, visiting)
		if err != nil {
			return nil, err
		}
		for _, f := range inner.fields {
			f.index = append([]int{i}, f.index...)
			if err := add(f); err != nil {
				return nil, err
			}
		}
	}
	return info, nil
}

// indirect returns t without its pointers.
func indirect(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// isLeaf reports whether values of t (pointers removed) are written as one
// scalar: basic kinds, durations and types that unmarshal themselves.
func isLeaf(t reflect.Type) bool {
	t = indirect(t)
	if t == nodeType {
		return false
	}
	pt := reflect.PointerTo(t)
	if pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType) {
		return true
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

package conf

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
)

// Validator is implemented by configuration sections that check themselves.
//
// Load calls Validate on every value of the loaded configuration that
// implements it (on the value or its pointer), children before parents,
// once the file and the environment have been applied. Validate may also
// normalise its section.
type Validator interface{ Validate(v *V) }

// V collects validation errors for one section; keys are relative to it.
type V struct {
	path string
	errs *Errors
}

// Errorf records a problem with key, a path relative to the section such as
// "url" or "items[2].name"; key "" is the section itself.
func (v *V) Errorf(key, format string, args ...any) {
	*v.errs = append(*v.errs, FieldError{Path: v.Path(key), Msg: fmt.Sprintf(format, args...)})
}

// Path returns the full path of a key relative to the section, for messages.
func (v *V) Path(key string) string {
	return joinPath(v.path, key)
}

// validate calls every Validator in the tree of root and returns their
// errors, each with the line of its path in the file when there is one.
func validate(root reflect.Value, lines map[string]int) Errors {
	w := &validation{onPath: make(map[visit]bool)}
	w.walk(root, "", false)
	for i := range w.errs {
		w.errs[i].Line = lines[w.errs[i].Path]
	}
	return w.errs
}

type visit struct {
	ptr uintptr
	typ reflect.Type
}

type validation struct {
	errs   Errors
	onPath map[visit]bool // pointers being walked, to stop cycles
}

// walk validates v's children, then v unless skipSelf.
func (w *validation) walk(v reflect.Value, path string, skipSelf bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		k := visit{v.Pointer(), v.Type()}
		if w.onPath[k] {
			return
		}
		w.onPath[k] = true
		w.walk(v.Elem(), path, skipSelf)
		delete(w.onPath, k)
		return
	case reflect.Interface:
		if !v.IsNil() {
			w.walk(v.Elem(), path, skipSelf)
		}
		return
	case reflect.Struct:
		info, err := structInfoOf(v.Type())
		if err != nil {
			break
		}
		// A Validate promoted from an embedded field is the struct's own:
		// call it once, on the struct.
		promoted := reflect.PointerTo(v.Type()).Implements(validatorType)
		for _, f := range info.direct {
			fv := v.Field(f.num)
			fpath := path
			if !f.inline {
				fpath = appendKey(path, f.name)
			}
			w.walk(fv, fpath, f.anonymous && promoted)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			w.walk(v.Index(i), appendIndex(path, i), false)
		}
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int {
			return cmp.Compare(mapKeyString(a), mapKeyString(b))
		})
		for _, k := range keys {
			// Map values cannot be addressed: validate a copy and store it
			// back, keeping what Validate normalised.
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			w.walk(e, appendKey(path, mapKeyString(k)), false)
			if v.CanInterface() {
				v.SetMapIndex(k, e)
			}
		}
	}
	if !skipSelf {
		w.call(v, path)
	}
}

func (w *validation) call(v reflect.Value, path string) {
	var val Validator
	switch {
	case v.CanAddr() && v.Addr().CanInterface():
		val, _ = v.Addr().Interface().(Validator)
	case v.CanInterface():
		val, _ = v.Interface().(Validator)
	}
	if val != nil {
		val.Validate(&V{path: path, errs: &w.errs})
	}
}

func mapKeyString(k reflect.Value) string {
	if k.Kind() == reflect.String {
		return k.String()
	}
	if k.CanInterface() {
		return fmt.Sprint(k.Interface())
	}
	return ""
}

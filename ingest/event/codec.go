package event

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// Decode parses one event in the wire format and validates it.
//
// Decoding is strict: the input must be a single JSON object of at most MaxSize bytes
// (larger input fails with an error wrapping ErrTooLarge), with no fields the schema
// does not define and nothing but white space after it. Attribute numbers become
// float64 and must fit one exactly enough: out-of-range numbers and integers beyond
// ±2^53 that a float64 would round are refused. Every other failure is an *Error
// naming the offending field.
//
// An event Decode returns can always be encoded again within MaxSize.
func Decode(data []byte) (*Event, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(data), MaxSize)
	}
	start := skipSpace(data)
	if start == len(data) {
		return nil, &Error{Reason: "empty input; expected a JSON object"}
	}
	if data[start] != '{' && json.Valid(data) {
		return nil, &Error{Reason: "must be a JSON object, got " + DescribeJSON(data[start:])}
	}

	e, ok := decodeFast(data)
	if !ok {
		var err error
		if e, err = decodeStd(data); err != nil {
			return nil, err
		}
		// The fast decoder parses numbers as it goes.
		e.parseNumbers()
	}
	e.dropEmpty()
	if err := e.validate(); err != nil {
		return nil, err
	}
	// The canonical encoding can be longer than the input (a number written as 1e20
	// becomes 100000000000000000000), but never more than about five times as long, so
	// only large input needs checking.
	if len(data) > MaxSize/8 {
		if _, err := e.appendJSON(nil); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// decodeStd decodes data with encoding/json, strictly: unknown members
// are refused, numbers kept as json.Number for parseNumbers. Its errors
// say where the input went wrong.
func decodeStd(data []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	e := new(Event)
	if err := dec.Decode(e); err != nil {
		return nil, decodeError(data, err)
	}
	if off := dec.InputOffset(); skipSpace(data[off:]) < len(data[off:]) {
		return nil, &Error{Reason: "unexpected data after the event object, at byte " +
			strconv.FormatInt(off+int64(skipSpace(data[off:])), 10)}
	}
	return e, nil
}

func skipSpace(data []byte) int {
	i := 0
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// parseNumbers turns attribute numbers into float64 where they fit,
// leaving the others for validate to report.
func (e *Event) parseNumbers() {
	for k, v := range e.Attributes {
		if n, ok := v.(json.Number); ok {
			if f, reason := parseNumber(n); reason == "" {
				e.Attributes[k] = f
			}
		}
	}
}

// dropEmpty drops empty collections, so that decoding what Encode wrote
// gives an equal event.
func (e *Event) dropEmpty() {
	if len(e.Attributes) == 0 {
		e.Attributes = nil
	}
	if len(e.Tags) == 0 {
		e.Tags = nil
	}
	if len(e.Evidence) == 0 {
		e.Evidence = nil
	}
}

// parseNumber converts the JSON number n to a float64, or explains why it does not fit.
func parseNumber(n json.Number) (float64, string) {
	s := string(n)
	f, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange):
		return 0, "number " + quoteNumber(s) + " is out of range for a 64-bit float"
	case err != nil:
		return 0, quoteShort(s) + " is not a number"
	case f == 0 && nonZeroMantissa(s):
		return 0, "number " + quoteNumber(s) + " is too small for a 64-bit float; it would become 0"
	case !strings.ContainsAny(s, ".eE") && math.Abs(f) >= 1<<53 && strconv.FormatFloat(f, 'f', -1, 64) != s:
		return 0, "integer " + quoteNumber(s) + " cannot be stored exactly in a 64-bit float; send it as a string"
	}
	return f, ""
}

func quoteNumber(s string) string {
	if len(s) <= maxQuote {
		return s
	}
	return quoteShort(s)
}

// nonZeroMantissa reports whether the number s has a non-zero digit before its exponent.
func nonZeroMantissa(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 'e' || c == 'E':
			return false
		case '1' <= c && c <= '9':
			return true
		}
	}
	return false
}

// decodeError turns an error from encoding/json into an *Error that says where the
// input went wrong and how, in terms a device vendor can act on.
func decodeError(data []byte, err error) *Error {
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		return &Error{Reason: "malformed JSON at byte " + strconv.FormatInt(syntax.Offset, 10) + ": " + syntax.Error()}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &Error{Reason: "malformed JSON: the input ends inside the event object"}
	}

	// The input is JSON but does not fit the schema. A producer on a newer schema is
	// the likeliest cause of unknown fields, so say that first.
	var probe struct {
		Schema json.RawMessage `json:"schema"`
	}
	if json.Unmarshal(data, &probe) == nil {
		if v, convErr := strconv.Atoi(string(probe.Schema)); convErr == nil && v > SchemaVersion {
			return checkSchema(v)
		}
	}
	if e := locate(data, reflect.TypeFor[Event](), ""); e != nil {
		return e
	}
	return &Error{Reason: strings.TrimPrefix(err.Error(), "json: ")}
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// locate walks the JSON value data as encoding/json would when decoding it into a
// value of type t, and returns the first thing it finds wrong, named by its path from
// the event (path names data itself). It runs only after encoding/json has refused
// the input, to say where: encoding/json reports unknown fields without their object
// and omits slice indices.
func locate(data []byte, t reflect.Type, path string) *Error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return nil // encoding/json leaves the value as it is
	}
	pt := reflect.PointerTo(t)
	switch {
	case pt.Implements(jsonUnmarshalerType):
		return locatedError(path, t, data, json.Unmarshal(data, reflect.New(t).Interface()))
	case pt.Implements(textUnmarshalerType):
		if data[0] != '"' {
			return mismatch(path, t, data)
		}
		return locatedError(path, t, data, json.Unmarshal(data, reflect.New(t).Interface()))
	}

	switch t.Kind() {
	case reflect.Pointer:
		return locate(data, t.Elem(), path)
	case reflect.Struct, reflect.Map:
		if data[0] != '{' {
			return mismatch(path, t, data)
		}
		var fail *Error
		walkObject(data, func(key string, value []byte) bool {
			fail = locateMember(t, path, key, value)
			return fail == nil
		})
		return fail
	case reflect.Slice:
		if data[0] != '[' {
			return mismatch(path, t, data)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		if _, err := dec.Token(); err != nil {
			return nil
		}
		for i := 0; dec.More(); i++ {
			var raw json.RawMessage
			if dec.Decode(&raw) != nil {
				return nil
			}
			if e := locate(raw, t.Elem(), path+"["+strconv.Itoa(i)+"]"); e != nil {
				return e
			}
		}
		return nil
	}
	return locatedError(path, t, data, json.Unmarshal(data, reflect.New(t).Interface()))
}

// locateMember checks the member key of an object decoded into t.
func locateMember(t reflect.Type, path, key string, value []byte) *Error {
	if t.Kind() == reflect.Map {
		return locate(value, t.Elem(), path+"["+quoteShort(key)+"]")
	}
	field, ok := fieldByName(t, key)
	if !ok {
		return fieldError(join(path, key), "unknown field; "+objectName(path)+" has only "+
			strings.Join(fieldNames(t), ", ")+" in schema "+strconv.Itoa(SchemaVersion))
	}
	return locate(value, field.Type, join(path, jsonName(field)))
}

// walkObject calls fn for each member of the JSON object data, in order, until fn
// returns false.
func walkObject(data []byte, fn func(key string, value []byte) bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		return
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if dec.Decode(&raw) != nil || !fn(key, raw) {
			return
		}
	}
}

// fieldByName finds the field of struct t that encoding/json would fill from the
// object key: the one named exactly, or else one whose name matches ignoring case.
func fieldByName(t reflect.Type, key string) (reflect.StructField, bool) {
	var folded reflect.StructField
	found := false
	for i := range t.NumField() {
		f := t.Field(i)
		name := jsonName(f)
		if name == "" {
			continue
		}
		if name == key {
			return f, true
		}
		if !found && strings.EqualFold(name, key) {
			folded, found = f, true
		}
	}
	return folded, found
}

// jsonName returns the name of f in JSON, or "" if it is not encoded.
func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return f.Name
	}
	return name
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name := jsonName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

func objectName(path string) string {
	if path == "" {
		return "an event"
	}
	return path
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// locatedError turns err, from decoding data into a value of type t, into an *Error
// for path.
func locatedError(path string, t reflect.Type, data []byte, err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		c := *e
		return at(path, &c)
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return mismatch(path, t, data)
	}
	return fieldError(path, strings.TrimPrefix(err.Error(), "json: "))
}

// mismatch reports that data does not fit type t.
func mismatch(path string, t reflect.Type, data []byte) *Error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if c := data[0]; c == '-' || '0' <= c && c <= '9' {
		switch t.Kind() {
		case reflect.Float32, reflect.Float64:
			return fieldError(path, "number "+quoteNumber(string(data))+" is out of range")
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return fieldError(path, "must be a whole number, got "+quoteNumber(string(data)))
		}
	}
	return fieldError(path, "expected "+describeType(t)+", got "+DescribeJSON(data))
}

// describeType names what JSON value fits type t, for an error message.
func describeType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[ID]():
		return "a UUIDv7 string"
	case reflect.TypeFor[Time]():
		return "an RFC 3339 time string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a JSON value"
}

// Encode validates e and returns its wire form. The output is stable: equal events
// encode to equal bytes. An event whose encoding would exceed MaxSize is refused with
// an error wrapping ErrTooLarge.
func (e *Event) Encode() ([]byte, error) {
	// Room for a usual event (a sensor's reading is about 450 bytes), so
	// that encoding it grows nothing.
	return e.AppendEncode(make([]byte, 0, 512))
}

// AppendEncode is like Encode but appends to dst and returns the extended slice. On
// error it returns dst unchanged.
func (e *Event) AppendEncode(dst []byte) ([]byte, error) {
	if err := e.validate(); err != nil {
		return dst, err
	}
	return e.appendJSON(dst)
}

// appendJSON appends the JSON form of e, which must be valid, to dst.
func (e *Event) appendJSON(dst []byte) ([]byte, error) {
	if out, ok := e.appendFast(dst); ok {
		if n := len(out) - len(dst); n > MaxSize {
			return dst, fmt.Errorf("%w: encoded to %d bytes, the limit is %d", ErrTooLarge, n, MaxSize)
		}
		return out, nil
	}
	return e.appendJSONStd(dst[:len(dst):len(dst)])
}

// appendJSONStd is appendJSON through encoding/json.
func (e *Event) appendJSONStd(dst []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	enc := json.NewEncoder(buf)
	// Events are not embedded in HTML, and escaping <, > and & would let the output
	// outgrow the input.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return dst, fmt.Errorf("encode event: %w", err)
	}
	out := buf.Bytes()
	out = out[:len(out)-1] // the newline Encode adds
	if n := len(out) - len(dst); n > MaxSize {
		return dst, fmt.Errorf("%w: encoded to %d bytes, the limit is %d", ErrTooLarge, n, MaxSize)
	}
	return out, nil
}

package event

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// ErrTooLarge is returned, wrapped, for an event larger than [MaxSize] bytes.
// Test for it with [errors.Is].
var ErrTooLarge = errors.New("event: too large")

// Error reports an event that breaks the schema. Field is the path of the offending
// field, such as "source.kind", "evidence[2].ref" or `attributes["Bad Key"]`, and is
// empty when the problem is with the input as a whole (malformed JSON, for example).
type Error struct {
	Field  string
	Reason string
}

// Error returns "event: <field>: <reason>", or "event: <reason>" without a field.
func (e *Error) Error() string {
	if e.Field == "" {
		return "event: " + e.Reason
	}
	return "event: " + e.Field + ": " + e.Reason
}

// fieldError returns an *Error for field.
func fieldError(field, reason string) *Error {
	return &Error{Field: field, Reason: reason}
}

// at returns err with its Field set to path, prefixing any field it already names.
func at(path string, err *Error) *Error {
	switch {
	case err.Field == "":
		err.Field = path
	case err.Field[0] == '[':
		err.Field = path + err.Field
	default:
		err.Field = path + "." + err.Field
	}
	return err
}

// maxQuote is how many bytes of a value an error message repeats.
const maxQuote = 64

// quoteShort quotes s for an error message, cutting it short if it is long.
func quoteShort(s string) string {
	if len(s) <= maxQuote {
		return strconv.Quote(s)
	}
	cut := maxQuote
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "… (" + strconv.Itoa(len(s)) + " bytes)"
}

// keyPath returns the path of the attribute key.
func keyPath(key string) string {
	return "attributes[" + quoteShort(key) + "]"
}

// DescribeJSON names the kind of the JSON value data for an error message:
// "a string", "an object", "the number 42", "invalid JSON" and so on.
func DescribeJSON(data []byte) string {
	if len(data) == 0 {
		return "nothing"
	}
	switch data[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if c := data[0]; c != '-' && (c < '0' || c > '9') {
		return "invalid JSON"
	}
	if len(data) <= maxQuote {
		return "the number " + string(data)
	}
	return "a number"
}

package conf

import (
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Secret is a string that must not be printed, such as a password or a DSN
// holding one. Every way of formatting or marshaling it (fmt, YAML, JSON,
// text, slog) gives "<redacted>", or "" when it is empty; only Reveal gives
// the value. Reading it from YAML, JSON, text or the environment accepts any
// string.
//
// fmt cannot redact a Secret where it does not call methods: in an
// unexported struct field, or inside a pointer field of a struct printed
// with a verb other than %v (such as %s of a whole configuration). Print
// configurations with %v or Marshal.
type Secret string

// Redacted is what a non-empty Secret prints as.
const Redacted = "<redacted>"

var (
	_ fmt.Stringer             = Secret("")
	_ fmt.Formatter            = Secret("")
	_ slog.LogValuer           = Secret("")
	_ yaml.Marshaler           = Secret("")
	_ json.Marshaler           = Secret("")
	_ encoding.TextMarshaler   = Secret("")
	_ encoding.TextUnmarshaler = (*Secret)(nil)
)

// Reveal returns the secret value, for the code that uses it.
func (s Secret) Reveal() string { return string(s) }

// String returns Redacted, or "" when s is empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// Format prints s.String() with any verb and flags, so that %v, %s, %q,
// %x, %#v and the like never print the value.
func (s Secret) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
}

// LogValue redacts s in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalYAML redacts s.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON redacts s.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText redacts s.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText accepts any string.
func (s *Secret) UnmarshalText(text []byte) error {
	*s = Secret(text)
	return nil
}

var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

// RedactURLs removes the user information from every URL in s (a log
// line, an error message): camera and database URLs carry passwords.
func RedactURLs(s string) string {
	return urlInText.ReplaceAllStringFunc(s, func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil || u.User == nil {
			if i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@"); i >= 0 && j > i {
				return raw[:i+3] + "<redacted>@" + raw[j+1:]
			}
			return raw
		}
		u.User = url.User("<redacted>")
		return strings.Replace(u.String(), "%3Credacted%3E", "<redacted>", 1)
	})
}

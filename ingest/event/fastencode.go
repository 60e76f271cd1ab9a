package event

import (
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// appendFast appends the JSON form of e, which must be valid, byte for byte
// as encoding/json writes it (with HTML escaping off), without reflection:
// every event the platform publishes is encoded once, and the MQTT intake
// and the rules engine's state spent a tenth of their time in
// encoding/json. It reports false for an attribute value of a type it does
// not write (validate admits none), and appendJSON then takes the
// encoding/json path. FuzzEncodeFastAgrees holds the two to the same bytes.
func (e *Event) appendFast(b []byte) ([]byte, bool) {
	b = append(b, `{"schema":`...)
	b = strconv.AppendInt(b, int64(e.Schema), 10)
	b = append(b, `,"id":"`...)
	b = e.ID.appendText(b)
	b = append(b, `","time":"`...)
	b = e.Time.appendText(b)
	b = append(b, `","source":{"kind":`...)
	b = AppendJSONString(b, string(e.Source.Kind))
	b = append(b, `,"id":`...)
	b = AppendJSONString(b, e.Source.ID)
	if e.Source.Name != "" {
		b = append(b, `,"name":`...)
		b = AppendJSONString(b, e.Source.Name)
	}
	b = append(b, `},"type":`...)
	b = AppendJSONString(b, e.Type)
	b = append(b, `,"severity":`...)
	b = AppendJSONString(b, string(e.Severity))
	if l := e.Location; l != (Location{}) {
		b = append(b, `,"location":{`...)
		first := true
		field := func(name string) {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, '"')
			b = append(b, name...)
			b = append(b, `":`...)
		}
		if l.Region != "" {
			field("region")
			b = AppendJSONString(b, l.Region)
		}
		if l.Grid != "" {
			field("grid")
			b = AppendJSONString(b, l.Grid)
		}
		if l.Lat != nil {
			field("lat")
			b = appendJSONFloat(b, *l.Lat)
		}
		if l.Lon != nil {
			field("lon")
			b = appendJSONFloat(b, *l.Lon)
		}
		b = append(b, '}')
	}
	if len(e.Attributes) > 0 {
		b = append(b, `,"attributes":{`...)
		var keyBuf [16]string // on the stack for the usual few attributes
		keys := keyBuf[:0]
		for k := range e.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSONString(b, k)
			b = append(b, ':')
			switch v := e.Attributes[k].(type) {
			case string:
				b = AppendJSONString(b, v)
			case float64:
				b = appendJSONFloat(b, v)
			case bool:
				b = strconv.AppendBool(b, v)
			default:
				return b, false
			}
		}
		b = append(b, '}')
	}
	if len(e.Tags) > 0 {
		b = append(b, `,"tags":[`...)
		for i, t := range e.Tags {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSONString(b, t)
		}
		b = append(b, ']')
	}
	if len(e.Evidence) > 0 {
		b = append(b, `,"evidence":[`...)
		for i, ev := range e.Evidence {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"kind":`...)
			b = AppendJSONString(b, string(ev.Kind))
			b = append(b, `,"ref":`...)
			b = AppendJSONString(b, ev.Ref)
			if ev.ContentType != "" {
				b = append(b, `,"content_type":`...)
				b = AppendJSONString(b, ev.ContentType)
			}
			if ev.Time != nil {
				b = append(b, `,"time":"`...)
				b = ev.Time.appendText(b)
				b = append(b, '"')
			}
			if ev.SHA256 != "" {
				b = append(b, `,"sha256":`...)
				b = AppendJSONString(b, ev.SHA256)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if e.Key != "" {
		b = append(b, `,"key":`...)
		b = AppendJSONString(b, e.Key)
	}
	return append(b, '}'), true
}

// AppendJSONString appends s quoted as encoding/json does with HTML
// escaping off: \" \\ \b \f \n \r \t, other control characters as
// \u00xx, U+2028 and U+2029 escaped, invalid UTF-8 as \ufffd.
func AppendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendJSONFloat appends f as encoding/json writes a float64 (f finite).
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9, as encoding/json does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

package mqtt

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// decodeTelemetryFast decodes the usual telemetry message without
// reflection: one object with "ts" (a number, a plain string or null) and
// "readings" (an object of numbers, booleans and plain strings under
// distinct keys). It reports false on anything else, valid or not,
// including any reading the checks would refuse, and DecodeTelemetry then
// decides with encoding/json: the two give the same answer wherever the
// fast one answers (FuzzTelemetryFast holds them to it). Strings with
// escapes, nested values and repeated keys all take the slow path.
func decodeTelemetryFast(data []byte) (*Telemetry, bool) {
	s := scanner{b: data}
	var tel Telemetry
	var seenTS, seenReadings bool
	if !s.next('{') {
		return nil, false
	}
	for first := true; ; first = false {
		if s.next('}') {
			if first || !seenReadings || !s.end() {
				return nil, false
			}
			return &tel, true
		}
		if !first && !s.next(',') {
			return nil, false
		}
		name, ok := s.plain()
		if !ok || !s.next(':') {
			return nil, false
		}
		switch string(name) {
		case "ts":
			raw, ok := s.scalar()
			if !ok || seenTS {
				return nil, false
			}
			seenTS = true
			ts, rej := timestamp(raw, "ts")
			if rej != nil {
				return nil, false
			}
			tel.TS = ts
		case "readings":
			if seenReadings {
				return nil, false
			}
			seenReadings = true
			if tel.Readings, ok = s.readings(MaxReadings); !ok {
				return nil, false
			}
		default:
			return nil, false
		}
	}
}

// readings scans an object of at most limit scalar readings that pass the
// checks, at least one.
func (s *scanner) readings(limit int) (map[string]any, bool) {
	if !s.next('{') {
		return nil, false
	}
	out := make(map[string]any, 4)
	for first := true; ; first = false {
		if s.next('}') {
			return out, !first
		}
		if !first && !s.next(',') {
			return nil, false
		}
		key, ok := s.plain()
		if !ok || !s.next(':') {
			return nil, false
		}
		k := string(key)
		if _, dup := out[k]; dup || len(out) == limit || checkKey(k) != "" || isReserved(k) {
			return nil, false
		}
		raw, ok := s.scalar()
		if !ok {
			return nil, false
		}
		switch raw[0] {
		case 't':
			out[k] = true
		case 'f':
			out[k] = false
		case '"':
			v := string(raw[1 : len(raw)-1])
			if checkText(v, MaxTextValue) != "" {
				return nil, false
			}
			out[k] = v
		case 'n':
			return nil, false
		default:
			f, rej := number(raw, k)
			if rej != nil {
				return nil, false
			}
			out[k] = f
		}
	}
}

func isReserved(k string) bool {
	for _, r := range reserved {
		if r == k {
			return true
		}
	}
	return false
}

// scanner reads JSON tokens; every method skips leading white space and
// reports false on anything it does not take.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// next takes the byte c.
func (s *scanner) next(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

// plain takes a string without escapes or control characters, valid
// UTF-8, and returns its content.
func (s *scanner) plain() ([]byte, bool) {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	end := bytes.IndexByte(s.b[start:], '"')
	if end < 0 {
		return nil, false
	}
	v := s.b[start : start+end]
	for _, c := range v {
		if c < 0x20 || c == '\\' {
			return nil, false
		}
	}
	if !utf8.Valid(v) {
		return nil, false
	}
	s.i = start + end + 1
	return v, true
}

// scalar takes a number, true, false, null or a plain string and returns
// its text (a string with its quotes).
func (s *scanner) scalar() ([]byte, bool) {
	s.space()
	if s.i >= len(s.b) {
		return nil, false
	}
	start := s.i
	switch c := s.b[s.i]; {
	case c == '"':
		if _, ok := s.plain(); !ok {
			return nil, false
		}
	case c == 't' || c == 'f' || c == 'n':
		for _, w := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.b[s.i:], []byte(w)) {
				s.i += len(w)
				break
			}
		}
		if s.i == start {
			return nil, false
		}
	case c == '-' || '0' <= c && c <= '9':
		for s.i < len(s.b) && bytes.IndexByte([]byte("+-.0123456789eE"), s.b[s.i]) >= 0 {
			s.i++
		}
		// The characters are right; json.Valid checks their order.
		if !json.Valid(s.b[start:s.i]) {
			return nil, false
		}
	default:
		return nil, false
	}
	return s.b[start:s.i], true
}

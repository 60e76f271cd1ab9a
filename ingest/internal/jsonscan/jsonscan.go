// Package jsonscan reads JSON token by token without reflection, for the
// fast paths that decode the usual shape of a message by hand (events,
// MQTT payloads) and leave anything else to encoding/json. Every method
// skips leading white space and reports false on input it does not take:
// strings with escapes among them, which the callers leave to
// encoding/json.
package jsonscan

import "unicode/utf8"

// Scanner reads one JSON document.
type Scanner struct {
	data []byte
	pos  int
}

// New scans data.
func New(data []byte) Scanner { return Scanner{data: data} }

// Space skips white space.
func (s *Scanner) Space() {
	i := s.pos
	for i < len(s.data) && space[s.data[i]] {
		i++
	}
	s.pos = i
}

// space marks JSON's white space; text marks the bytes a string's
// fast scan stops at: its end, escapes, control characters and the start
// of a multi-byte UTF-8 sequence.
var space, text = func() (sp, tx [256]bool) {
	for _, c := range " \t\n\r" {
		sp[c] = true
	}
	for c := range 256 {
		tx[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x80
	}
	return sp, tx
}()

// End reports whether only white space is left.
func (s *Scanner) End() bool {
	s.Space()
	return s.pos == len(s.data)
}

// Next reports whether the next byte is c, consuming it.
func (s *Scanner) Next(c byte) bool {
	s.Space()
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// Peek returns the next byte (0 at the end).
func (s *Scanner) Peek() byte {
	s.Space()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// Text reads a string without escapes or control characters, valid
// UTF-8, and returns its bytes (a slice of the input).
func (s *Scanner) Text() ([]byte, bool) {
	if !s.Next('"') {
		return nil, false
	}
	start, ascii := s.pos, true
	for i := start; i < len(s.data); i++ {
		c := s.data[i]
		if !text[c] {
			continue
		}
		switch {
		case c == '"':
			b := s.data[start:i]
			s.pos = i + 1
			return b, ascii || utf8.Valid(b)
		case c >= 0x80:
			ascii = false
		default: // an escape or a control character
			s.pos = i
			return nil, false
		}
	}
	s.pos = len(s.data)
	return nil, false
}

// Number reads a JSON number and returns its literal.
func (s *Scanner) Number() ([]byte, bool) {
	s.Space()
	b, i := s.data, s.pos
	digits := func() bool {
		n := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return nil, false
		}
	}
	lit := b[s.pos:i]
	s.pos = i
	return lit, true
}

// Literal reads word: true, false or null.
func (s *Scanner) Literal(word string) bool {
	s.Space()
	if len(s.data)-s.pos >= len(word) && string(s.data[s.pos:s.pos+len(word)]) == word {
		s.pos += len(word)
		return true
	}
	return false
}

// Object reads an object, calling member for each name (the value is
// next). encoding/json merges or overwrites a repeated name: members that
// must match it refuse names they have seen.
func (s *Scanner) Object(member func(name []byte) bool) bool {
	if !s.Next('{') {
		return false
	}
	if s.Next('}') {
		return true
	}
	for {
		name, ok := s.Text()
		if !ok || !s.Next(':') {
			return false
		}
		if !member(name) {
			return false
		}
		if s.Next('}') {
			return true
		}
		if !s.Next(',') {
			return false
		}
	}
}

// Array reads an array, calling elem for each element.
func (s *Scanner) Array(elem func() bool) bool {
	if !s.Next('[') {
		return false
	}
	if s.Next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.Next(']') {
			return true
		}
		if !s.Next(',') {
			return false
		}
	}
}

package event

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// decodeFast decodes the JSON object data into an event without
// reflection, for the common case: the compact form Encode writes (or any
// spacing of it), with every member named exactly, once, and strings
// without escapes. It reports false for anything else (escapes, nulls,
// duplicate or differently cased names, nested attribute values,
// malformed input), and Decode then takes the encoding/json path, which
// accepts or refuses the input and explains why. Where it reports true
// it gives the event encoding/json would (FuzzDecodeFastAgrees holds it to
// that); normalise and validate run after either.
//
// It exists for throughput: the analytics sink and the alerts role decode
// every event on the bus, and encoding/json spends most of its time in
// reflection and in scanning each value twice.
func decodeFast(data []byte) (*Event, bool) {
	d := fastDecoder{data: data}
	e := new(Event)
	if !d.event(e) {
		return nil, false
	}
	d.space()
	return e, d.pos == len(d.data)
}

type fastDecoder struct {
	data []byte
	pos  int
}

func (d *fastDecoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// next skips space and reports whether the next byte is c, consuming it.
func (d *fastDecoder) next(c byte) bool {
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

// peek skips space and returns the next byte (0 at the end).
func (d *fastDecoder) peek() byte {
	d.space()
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// text reads a string without escapes and returns its bytes (a slice of
// the input).
func (d *fastDecoder) text() ([]byte, bool) {
	if !d.next('"') {
		return nil, false
	}
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.data[start:d.pos]
			d.pos++
			return s, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		d.pos++
	}
	return nil, false
}

func (d *fastDecoder) str(dst *string) bool {
	b, ok := d.text()
	*dst = string(b)
	return ok
}

// number reads a JSON number and returns its literal.
func (d *fastDecoder) number() ([]byte, bool) {
	d.space()
	b, i := d.data, d.pos
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
	lit := b[d.pos:i]
	d.pos = i
	return lit, true
}

func (d *fastDecoder) float(dst **float64) bool {
	lit, ok := d.number()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return false
	}
	*dst = &f
	return true
}

// literal reads true, false or null.
func (d *fastDecoder) literal(word string) bool {
	d.space()
	if len(d.data)-d.pos >= len(word) && string(d.data[d.pos:d.pos+len(word)]) == word {
		d.pos += len(word)
		return true
	}
	return false
}

// object reads an object, calling member for each name (the value is
// next). Members refuse a name they have seen (encoding/json would merge
// or overwrite): see once.
func (d *fastDecoder) object(member func(name []byte) bool) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	for {
		name, ok := d.text()
		if !ok || !d.next(':') {
			return false
		}
		if !member(name) {
			return false
		}
		if d.next('}') {
			return true
		}
		if !d.next(',') {
			return false
		}
	}
}

// array reads an array, calling elem for each element.
func (d *fastDecoder) array(elem func() bool) bool {
	if !d.next('[') {
		return false
	}
	if d.next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if d.next(']') {
			return true
		}
		if !d.next(',') {
			return false
		}
	}
}

// once records member bit in seen and reports whether it is new.
func once(seen *uint16, bit uint16) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// members numbers each object's members for once.
var members = map[string]uint16{
	"schema": 1 << 0, "id": 1 << 1, "time": 1 << 2, "source": 1 << 3, "type": 1 << 4, "severity": 1 << 5,
	"location": 1 << 6, "attributes": 1 << 7, "tags": 1 << 8, "evidence": 1 << 9, "key": 1 << 10,
	"kind": 1 << 11, "name": 1 << 12, "region": 1 << 0, "grid": 1 << 1, "lat": 1 << 2, "lon": 1 << 3,
	"ref": 1 << 4, "content_type": 1 << 5, "sha256": 1 << 6,
}

func (d *fastDecoder) event(e *Event) bool {
	var seen uint16
	return d.object(func(name []byte) bool {
		if !once(&seen, members[string(name)]) {
			return false
		}
		switch string(name) {
		case "schema":
			lit, ok := d.number()
			if !ok {
				return false
			}
			n, err := strconv.Atoi(string(lit))
			e.Schema = n
			return err == nil
		case "id":
			b, ok := d.text()
			return ok && e.ID.UnmarshalText(b) == nil
		case "time":
			b, ok := d.text()
			return ok && e.Time.UnmarshalText(b) == nil
		case "source":
			var seen uint16
			return d.object(func(name []byte) bool {
				if !once(&seen, members[string(name)]) {
					return false
				}
				switch string(name) {
				case "kind":
					var s string
					ok := d.str(&s)
					e.Source.Kind = SourceKind(s)
					return ok
				case "id":
					return d.str(&e.Source.ID)
				case "name":
					return d.str(&e.Source.Name)
				}
				return false
			})
		case "type":
			return d.str(&e.Type)
		case "severity":
			var s string
			ok := d.str(&s)
			e.Severity = Severity(s)
			return ok
		case "location":
			var seen uint16
			return d.object(func(name []byte) bool {
				if !once(&seen, members[string(name)]) {
					return false
				}
				switch string(name) {
				case "region":
					return d.str(&e.Location.Region)
				case "grid":
					return d.str(&e.Location.Grid)
				case "lat":
					return d.float(&e.Location.Lat)
				case "lon":
					return d.float(&e.Location.Lon)
				}
				return false
			})
		case "attributes":
			if e.Attributes == nil {
				e.Attributes = map[string]any{}
			}
			return d.object(func(name []byte) bool {
				var v any
				switch d.peek() {
				case '"':
					var s string
					if !d.str(&s) {
						return false
					}
					v = s
				case 't':
					v = true
					if !d.literal("true") {
						return false
					}
				case 'f':
					v = false
					if !d.literal("false") {
						return false
					}
				default:
					lit, ok := d.number()
					if !ok {
						return false
					}
					v = json.Number(lit)
				}
				if _, dup := e.Attributes[string(name)]; dup {
					return false
				}
				e.Attributes[string(name)] = v
				return true
			})
		case "tags":
			e.Tags = []string{}
			return d.array(func() bool {
				var s string
				ok := d.str(&s)
				e.Tags = append(e.Tags, s)
				return ok
			})
		case "evidence":
			e.Evidence = []Evidence{}
			return d.array(func() bool {
				var ev Evidence
				var seen uint16
				ok := d.object(func(name []byte) bool {
					if !once(&seen, members[string(name)]) {
						return false
					}
					switch string(name) {
					case "kind":
						var s string
						ok := d.str(&s)
						ev.Kind = EvidenceKind(s)
						return ok
					case "ref":
						return d.str(&ev.Ref)
					case "content_type":
						return d.str(&ev.ContentType)
					case "time":
						b, ok := d.text()
						if !ok {
							return false
						}
						ev.Time = new(Time)
						return ev.Time.UnmarshalText(b) == nil
					case "sha256":
						return d.str(&ev.SHA256)
					}
					return false
				})
				e.Evidence = append(e.Evidence, ev)
				return ok
			})
		case "key":
			return d.str(&e.Key)
		}
		return false
	})
}

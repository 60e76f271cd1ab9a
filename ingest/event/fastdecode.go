package event

import (
	"encoding/json"
	"strconv"

	"sharpeye/ingest/internal/jsonscan"
)

// decodeFast decodes the JSON object data into an event without
// reflection, for the common case: the compact form Encode writes (or any
// spacing of it), with every member named exactly, once, and strings
// without escapes. It reports false for anything else (escapes, nulls,
// duplicate or differently cased names, nested attribute values,
// malformed input), and Decode then takes the encoding/json path, which
// accepts or refuses the input and explains why. Where it reports true
// it gives the event encoding/json would (FuzzDecodeFastAgrees holds it to
// that); dropEmpty and validate run after either.
//
// It exists for throughput: the analytics sink and the alerts role decode
// every event on the bus, and encoding/json spends most of its time in
// reflection and in scanning each value twice.
func decodeFast(data []byte) (*Event, bool) {
	d := fastDecoder{jsonscan.New(data)}
	e := new(Event)
	if !d.event(e) {
		return nil, false
	}
	return e, d.End()
}

// fastDecoder is the scanner with the event's own readers.
type fastDecoder struct{ jsonscan.Scanner }

func (d *fastDecoder) str(dst *string) bool {
	b, ok := d.Text()
	*dst = string(b)
	return ok
}

func (d *fastDecoder) float(dst **float64) bool {
	lit, ok := d.Number()
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

// once records member bit in seen and reports whether it is new.
func once(seen *uint16, bit uint16) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// member numbers each object's members for once (0 for a name no object
// has: the object's switch refuses it).
func member(name []byte) uint16 {
	switch string(name) {
	case "schema", "region":
		return 1 << 0
	case "id", "grid":
		return 1 << 1
	case "time", "lat":
		return 1 << 2
	case "source", "lon":
		return 1 << 3
	case "type", "ref":
		return 1 << 4
	case "severity", "content_type":
		return 1 << 5
	case "location", "sha256":
		return 1 << 6
	case "attributes":
		return 1 << 7
	case "tags":
		return 1 << 8
	case "evidence":
		return 1 << 9
	case "key":
		return 1 << 10
	case "kind":
		return 1 << 11
	case "name":
		return 1 << 12
	}
	return 0
}

func (d *fastDecoder) event(e *Event) bool {
	var seen uint16
	return d.Object(func(name []byte) bool {
		if !once(&seen, member(name)) {
			return false
		}
		switch string(name) {
		case "schema":
			lit, ok := d.Number()
			if !ok {
				return false
			}
			n, err := strconv.Atoi(string(lit))
			e.Schema = n
			return err == nil
		case "id":
			b, ok := d.Text()
			return ok && e.ID.UnmarshalText(b) == nil
		case "time":
			b, ok := d.Text()
			return ok && e.Time.UnmarshalText(b) == nil
		case "source":
			var seen uint16
			return d.Object(func(name []byte) bool {
				if !once(&seen, member(name)) {
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
			return d.Object(func(name []byte) bool {
				if !once(&seen, member(name)) {
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
			return d.Object(func(name []byte) bool {
				var v any
				switch d.Peek() {
				case '"':
					var s string
					if !d.str(&s) {
						return false
					}
					v = s
				case 't':
					v = true
					if !d.Literal("true") {
						return false
					}
				case 'f':
					v = false
					if !d.Literal("false") {
						return false
					}
				default:
					lit, ok := d.Number()
					if !ok {
						return false
					}
					// A number that does not fit stays a json.Number, for
					// validate to explain.
					n := json.Number(lit)
					if f, reason := parseNumber(n); reason == "" {
						v = f
					} else {
						v = n
					}
				}
				if _, dup := e.Attributes[string(name)]; dup {
					return false
				}
				e.Attributes[string(name)] = v
				return true
			})
		case "tags":
			e.Tags = []string{}
			return d.Array(func() bool {
				var s string
				ok := d.str(&s)
				e.Tags = append(e.Tags, s)
				return ok
			})
		case "evidence":
			e.Evidence = []Evidence{}
			return d.Array(func() bool {
				var ev Evidence
				var seen uint16
				ok := d.Object(func(name []byte) bool {
					if !once(&seen, member(name)) {
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
						b, ok := d.Text()
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

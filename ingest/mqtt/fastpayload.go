package mqtt

import (
	"slices"

	"sharpeye/ingest/internal/jsonscan"
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
	s := jsonscan.New(data)
	var tel Telemetry
	var seenTS, seenReadings bool
	ok := s.Object(func(name []byte) bool {
		switch string(name) {
		case "ts":
			if seenTS {
				return false
			}
			seenTS = true
			kind, raw, ok := scalar(&s)
			if !ok {
				return false
			}
			if kind == '"' {
				raw = append(append([]byte{'"'}, raw...), '"') // timestamp takes the JSON text
			}
			ts, rej := timestamp(raw, "ts")
			tel.TS = ts
			return rej == nil
		case "readings":
			if seenReadings {
				return false
			}
			seenReadings = true
			var ok bool
			tel.Readings, ok = readings(&s, MaxReadings)
			return ok
		}
		return false
	})
	if !ok || !seenReadings || !s.End() {
		return nil, false
	}
	return &tel, true
}

// readings scans an object of at most limit scalar readings that pass the
// checks, at least one.
func readings(s *jsonscan.Scanner, limit int) (map[string]any, bool) {
	out := make(map[string]any, 4)
	ok := s.Object(func(key []byte) bool {
		k := string(key)
		if _, dup := out[k]; dup || len(out) == limit || checkKey(k) != "" || slices.Contains(reserved, k) {
			return false
		}
		kind, raw, ok := scalar(s)
		if !ok {
			return false
		}
		switch kind {
		case 't':
			out[k] = true
		case 'f':
			out[k] = false
		case '"':
			v := string(raw)
			if checkText(v, MaxTextValue) != "" {
				return false
			}
			out[k] = v
		case 'n':
			return false
		default:
			f, rej := number(raw, k)
			if rej != nil {
				return false
			}
			out[k] = f
		}
		return true
	})
	return out, ok && len(out) > 0
}

// scalar reads a number, true, false, null or a plain string: kind is
// its first byte ('"' for a string, whose content is lit), lit its text.
func scalar(s *jsonscan.Scanner) (kind byte, lit []byte, ok bool) {
	switch kind = s.Peek(); kind {
	case '"':
		lit, ok = s.Text()
		return kind, lit, ok
	case 't', 'f', 'n':
		for _, w := range []string{"true", "false", "null"} {
			if w[0] == kind {
				return kind, []byte(w), s.Literal(w)
			}
		}
	}
	lit, ok = s.Number()
	return '0', lit, ok
}

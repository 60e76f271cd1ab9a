package event

import (
	"bytes"
	"encoding/json"
	"time"
)

// timeLayout is the form every Time is written in: RFC 3339 in UTC with exactly three
// fractional digits.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Earliest and latest times an event may carry.
var (
	minTime = time.Unix(0, 0).UTC()
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)
)

// Time is an instant with millisecond precision, always in UTC. It is written as
// RFC 3339 with exactly three fractional digits, for example 2026-11-21T06:40:00.123Z,
// and read from RFC 3339 with any UTC offset and any number of fractional digits.
//
// Build one with [NewTime] or [Now]; a Time set through its embedded field is
// normalised when it is encoded.
type Time struct {
	time.Time
}

// NewTime returns t in UTC, truncated to the millisecond, without a monotonic clock
// reading.
func NewTime(t time.Time) Time {
	return Time{t.UTC().Truncate(time.Millisecond)}
}

// Now returns the current time as a Time.
func Now() Time {
	return NewTime(time.Now())
}

// String returns t in the form it is encoded in.
func (t Time) String() string {
	return string(t.appendText(make([]byte, 0, len(timeLayout))))
}

func (t Time) appendText(dst []byte) []byte {
	return t.UTC().Truncate(time.Millisecond).AppendFormat(dst, timeLayout)
}

// checkRange reports whether t lies between 1970 and the end of year 9999, the range
// that can be written in RFC 3339 and carried by an ID.
func (t Time) checkRange() *Error {
	if t.Before(minTime) || t.After(maxTime) {
		return &Error{Reason: "must be between 1970-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z, got " +
			t.UTC().Format(time.RFC3339Nano)}
	}
	return nil
}

// MarshalText implements [encoding.TextMarshaler]. It fails for years outside 0-9999,
// which RFC 3339 cannot express.
func (t Time) MarshalText() ([]byte, error) {
	return t.AppendText(make([]byte, 0, len(timeLayout)))
}

// AppendText implements [encoding.TextAppender].
func (t Time) AppendText(dst []byte) ([]byte, error) {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return dst, &Error{Reason: "time " + t.UTC().Format(time.RFC3339Nano) + " has a year outside 0000-9999"}
	}
	return t.appendText(dst), nil
}

// MarshalJSON implements [encoding/json.Marshaler].
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(timeLayout)+2)
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, err
	}
	return append(b, '"'), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler]. It accepts RFC 3339 with any
// offset and fraction, and stores the instant in UTC truncated to the millisecond.
func (t *Time) UnmarshalText(text []byte) error {
	var v time.Time
	// time.Time accepts a comma before the fraction; RFC 3339 does not.
	if bytes.IndexByte(text, ',') >= 0 || v.UnmarshalText(text) != nil {
		return &Error{Reason: "must be an RFC 3339 time such as \"2026-11-21T06:40:00.123Z\" or \"2026-11-21T14:40:00+08:00\", got " +
			quoteShort(string(text))}
	}
	*t = NewTime(v)
	return nil
}

// UnmarshalJSON implements [encoding/json.Unmarshaler]. It accepts a JSON string holding
// what UnmarshalText accepts; null leaves t unchanged.
func (t *Time) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return &Error{Reason: "must be an RFC 3339 time string such as \"2026-11-21T06:40:00.123Z\", got " + DescribeJSON(data)}
	}
	text := data[1 : len(data)-1]
	if bytes.IndexByte(text, '\\') >= 0 {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return &Error{Reason: "must be an RFC 3339 time string, got " + DescribeJSON(data)}
		}
		text = []byte(s)
	}
	return t.UnmarshalText(text)
}

package event

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzDecode checks that Decode never panics, fails only with an *Error or
// ErrTooLarge, and that whatever it accepts encodes and decodes back to itself.
// The seed corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(validJSON))
	f.Add([]byte(`{"schema":1,"id":"01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b","time":"2026-11-21T14:40:00.5+08:00",` +
		`"source":{"kind":"camera","id":"cam-1"},"type":"camera.offline","severity":"major",` +
		`"location":{"region":"黄陂区/王家河街道"},"attributes":{"n":1e20,"s":"\u2028<&>"}}`))
	f.Add([]byte(`{"schema":2,"id":"x"}`))
	f.Add([]byte(`null`))

	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Decode error %v is of type %T", err, err)
			}
			return
		}
		out, err := e.Encode()
		if err != nil {
			t.Fatalf("Decode accepted %q but Encode failed: %v", data, err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode(Encode(e)) failed: %v\ninput:  %q\nencoded: %s", err, data, out)
		}
		if !reflect.DeepEqual(back, e) {
			t.Fatalf("Decode(Encode(e)) != e\n got %#v\nwant %#v\nencoded: %s", back, e, out)
		}
		again, err := back.Encode()
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("encoding is not stable: %v\n%s\n%s", err, out, again)
		}
	})
}

// FuzzDecodeFastAgrees holds the fast decoder to encoding/json: whatever
// it accepts, encoding/json (strict, as Decode uses it) accepts too and
// decodes to the same event, numbers parsed as Decode parses them after
// encoding/json, before validate. Its seeds are
// FuzzDecode's (testdata/fuzz/FuzzDecode) and these.
func FuzzDecodeFastAgrees(f *testing.F) {
	for _, s := range []string{
		validJSON,
		` { "schema" : 1 , "id" : "01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b" , "time" : "2026-11-21T14:40:00.5+08:00" , "tags" : [ ] , "attributes" : { } } `,
		`{"schema":1,"schema":2}`,
		`{"Schema":1}`,
		`{"attributes":{"a":1,"a":"x"}}`,
		`{"attributes":{"a":null,"b":[1],"c":{}}}`,
		`{"location":{"lat":-0.0e+5,"lon":1E-400}}`,
		`{"source":{"kind":"camera","id":"\u0063am"}}`,
		`{"schema":1.0}`,
		`{"schema":-0}`,
		`{"evidence":[{"kind":"event","ref":"x","time":"2026-11-21T06:40:00Z"},{}]}`,
		"{\"type\":\"a\xffb\"}",
		`{"schema":1}x`,
	} {
		f.Add([]byte(s))
	}
	if entries, err := os.ReadDir("testdata/fuzz/FuzzDecode"); err == nil {
		for _, en := range entries {
			data, err := os.ReadFile(filepath.Join("testdata/fuzz/FuzzDecode", en.Name()))
			if err != nil {
				f.Fatal(err)
			}
			// The corpus files hold "[]byte(...)" in Go syntax.
			if lines := strings.SplitN(string(data), "\n", 3); len(lines) >= 2 {
				if v, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")); err == nil {
					f.Add([]byte(v))
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeFast(data)
		if !ok {
			return
		}
		std, err := decodeStd(data)
		if err != nil {
			t.Fatalf("fast decoder accepted %q, encoding/json refused it: %v", data, err)
		}
		// The fast decoder turns attribute numbers into float64 as it
		// goes; parseNumbers does it after encoding/json.
		std.parseNumbers()
		fast.dropEmpty()
		std.dropEmpty()
		if !reflect.DeepEqual(fast, std) {
			t.Fatalf("decoders disagree on %q\nfast %#v\nstd  %#v", data, fast, std)
		}
	})
}

// The fast decoder takes what Encode writes: the common case is never
// left to encoding/json.
func TestDecodeFastTakesEncoded(t *testing.T) {
	for _, e := range []*Event{validEvent(), New(SourceCamera, "cam-0042", "camera.offline")} {
		data, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := decodeFast(data); !ok {
			t.Errorf("fast decoder refused what Encode wrote: %s", data)
		}
	}
}

// FuzzEncodeFastAgrees holds the reflection-free encoder to encoding/json:
// for every event Decode accepts, the same bytes.
func FuzzEncodeFastAgrees(f *testing.F) {
	for _, s := range []string{
		validJSON,
		`{"schema":1,"id":"01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b","time":"2026-11-21T14:40:00.5+08:00","source":{"kind":"camera","id":"cam-1","name":"a\"b\\c\u2028\u2029<&>\u00e9"},"type":"camera.offline","severity":"major","location":{"lat":1e-7,"lon":-123456789012345678901234},"attributes":{"n":1e20,"m":1e21,"z":0,"neg":-0.000001,"s":"tab\there\nnew\u0001","b":false}}`,
		`{"schema":1,"id":"01a1fcd5-4e7b-7e5f-8a6b-7c8d9e0f1a2b","time":"2026-11-21T14:40:00Z","source":{"kind":"device","id":"d"},"type":"t","severity":"info","location":{"grid":"g"},"tags":["x"],"evidence":[{"kind":"url","ref":"https://x/y?a=1&b=2"}],"key":"k"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			return
		}
		fast, ok := e.appendFast(nil)
		if !ok {
			t.Fatalf("the fast encoder refused a valid event: %q", data)
		}
		std, err := e.appendJSONStd(nil)
		if err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		if !bytes.Equal(fast, std) {
			t.Fatalf("encoders disagree on %q\nfast %s\nstd  %s", data, fast, std)
		}
	})
}

package event

import (
	"bytes"
	"errors"
	"reflect"
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

package jsonscan

import "testing"

// TestText: the fast string scan takes plain and multi-byte text and
// stops at escapes, control characters, invalid UTF-8 and a missing end.
func TestText(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		ok   bool
	}{
		{`"camera"`, "camera", true},
		{` "" `, "", true},
		{`"示范县/城关街道"`, "示范县/城关街道", true},
		{`"a\"b"`, "", false},
		{"\"a\tb\"", "", false},
		{"\"a\x7fb\"", "a\x7fb", true},
		{"\"bad \xff byte\"", "", false},
		{"\"cut \xe7\xa4\"", "", false},
		{`"open`, "", false},
		{`open"`, "", false},
	} {
		s := New([]byte(c.in))
		got, ok := s.Text()
		if ok != c.ok || (ok && string(got) != c.want) {
			t.Errorf("Text(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

package conf

import (
	"slices"
	"testing"
)

func TestAppendKey(t *testing.T) {
	tests := []struct{ path, key, want string }{
		{"", "http", "http"},
		{"http", "listen", "http.listen"},
		{"casedb", "max-open", "casedb.max-open"},
		{"sites", "front door", `sites["front door"]`},
		{"sites", "8080", `sites["8080"]`},
		{"", "log level", `["log level"]`},
		{"sites", `a"b`, `sites["a\"b"]`},
		{"sites", "", `sites[""]`},
	}
	for _, tt := range tests {
		if got := appendKey(tt.path, tt.key); got != tt.want {
			t.Errorf("appendKey(%q, %q) = %q, want %q", tt.path, tt.key, got, tt.want)
		}
	}
}

func TestVPath(t *testing.T) {
	tests := []struct{ base, key, want string }{
		{"cameras[2]", "", "cameras[2]"},
		{"cameras[2]", "url", "cameras[2].url"},
		{"", "url", "url"},
		{"", "", ""},
		{"http", "items[2].name", "http.items[2].name"},
		{"cameras", "[3]", "cameras[3]"},
		{"sites", `["a b"].zone`, `sites["a b"].zone`},
	}
	for _, tt := range tests {
		v := &V{path: tt.base, errs: new(Errors)}
		if got := v.Path(tt.key); got != tt.want {
			t.Errorf("V{%q}.Path(%q) = %q, want %q", tt.base, tt.key, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"listen", "listen", 0},
		{"listn", "listen", 1},
		{"kye", "key", 2},
		{"", "abc", 3},
		{"zoné", "zone", 1},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestSortErrors(t *testing.T) {
	es := Errors{
		{Path: "b", Msg: "no line 1"},
		{Path: "z", Line: 7},
		{Path: "a", Msg: "no line 2"},
		{Path: "y", Line: 3},
		{Path: "x", Line: 7},
	}
	sortErrors(es)
	var got []string
	for _, e := range es {
		got = append(got, e.Path)
	}
	if want := []string{"y", "x", "z", "b", "a"}; !slices.Equal(got, want) {
		t.Errorf("sorted %q, want %q", got, want)
	}
}

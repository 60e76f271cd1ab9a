package auth

import (
	"context"
	"testing"
	"time"

	"sharpeye/alerts/casedb/casedbtest"
)

func TestInRegion(t *testing.T) {
	for _, tc := range []struct {
		region, within string
		want           bool
	}{
		{"huangpi/wangjiahe/xinzhuang", "", true},
		{"huangpi/wangjiahe/xinzhuang", "huangpi", true},
		{"huangpi/wangjiahe", "huangpi/wangjiahe", true},
		{"huangpi/wangjiahe2", "huangpi/wangjiahe", false},
		{"huangpi", "huangpi/wangjiahe", false},
		{"", "huangpi", false},
		{"黄陂区/王家河街", "黄陂区", true},
	} {
		if got := InRegion(tc.region, tc.within); got != tc.want {
			t.Errorf("InRegion(%q, %q) = %v", tc.region, tc.within, got)
		}
	}
}

func TestScopeAllows(t *testing.T) {
	handler := Scope{Region: "huangpi/wangjiahe", Department: "police"}
	if !handler.Allows("huangpi/wangjiahe/xinzhuang", "") || !handler.Allows("huangpi/luohan", "police") || handler.Allows("huangpi/luohan", "housing") {
		t.Fatal("handler scope wrong")
	}
}

func TestCheckRegion(t *testing.T) {
	for _, ok := range []string{"", "huangpi", "huangpi/wangjiahe/xinzhuang/grid-07", "黄陂区/王家河街道", "a_b-c/d1"} {
		if err := CheckRegion(ok); err != nil {
			t.Errorf("CheckRegion(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"/huangpi", "huangpi/", "a//b", "a/b c", "a/b%", "a/b/c/d/e/f/g/h/i", "x\ny"} {
		if err := CheckRegion(bad); err == nil {
			t.Errorf("CheckRegion(%q) accepted", bad)
		}
	}
}

// TestScopeSQL runs the scope's WHERE condition on both backends, with
// region names that would be LIKE wildcards if not escaped.
func TestScopeSQL(t *testing.T) {
	for _, driver := range casedbtest.Drivers() {
		t.Run(driver, func(t *testing.T) {
			db := casedbtest.Open(t, driver)
			ctx := context.Background()
			if _, err := db.Exec(ctx, "CREATE TABLE things (name TEXT, region TEXT, department TEXT)"); err != nil {
				t.Fatal(err)
			}
			for _, r := range [][3]string{
				{"a", "county/town_1", ""},
				{"b", "county/town_1/village", ""},
				{"c", "county/townX1/village", ""},
				{"d", "county/town_10", ""},
				{"e", "county/other", "police"},
				{"f", "county/other", "housing"},
			} {
				if _, err := db.Exec(ctx, "INSERT INTO things VALUES (?, ?, ?)", r[0], r[1], r[2]); err != nil {
					t.Fatal(err)
				}
			}
			for _, tc := range []struct {
				scope Scope
				want  string
			}{
				{Scope{}, "abcdef"},
				{Scope{Region: "county/town_1"}, "ab"},
				{Scope{Region: "county/town_1", Department: "police"}, "abe"},
			} {
				cond, args := tc.scope.SQL("region", "department")
				rows, err := db.Query(ctx, "SELECT name FROM things WHERE "+cond+" ORDER BY name", args...)
				if err != nil {
					t.Fatal(err)
				}
				got := ""
				for rows.Next() {
					var n string
					rows.Scan(&n)
					got += n
				}
				rows.Close()
				if got != tc.want {
					t.Errorf("%+v: got %q, want %q", tc.scope, got, tc.want)
				}
			}
		})
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("s3cret-pass")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword("s3cret-pass")
	if h == h2 {
		t.Fatal("same hash twice: salt not random")
	}
	if ok, err := CheckPassword(h, "s3cret-pass"); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, _ := CheckPassword(h, "s3cret-pasS"); ok {
		t.Fatal("wrong password accepted")
	}
	for _, bad := range []string{"", "plain", "$argon2id$v=19$m=1,t=1$x$y", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"} {
		if ok, err := CheckPassword(bad, "x"); ok || err == nil {
			t.Errorf("CheckPassword(%q) = %v, %v", bad, ok, err)
		}
	}
	if ok, err := CheckPassword(noPassword, ""); ok || err != nil {
		t.Fatal("service account password matched")
	}
}

func TestLimiterBounded(t *testing.T) {
	l := newLimiter(60, 2, 100)
	now := timeNow()
	for i := range 1000 {
		l.allow(string(rune(i)), now)
	}
	if len(l.entries) > 100 {
		t.Fatalf("limiter holds %d keys", len(l.entries))
	}
}

var timeNow = func() time.Time { return time.Unix(1_800_000_000, 0) }

package m365sim

import (
	goparser "go/parser"
	"go/token"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEntraCostAndTenantSize(t *testing.T) {
	cases := []struct {
		method, path, query string
		ru                  float64
		write               bool
	}{
		{"GET", "users/x", "", 2, false},
		{"GET", "users/x", "$select=id", 1, false},
		{"GET", "users", "$top=5", 1, false},
		{"GET", "users", "$top=5&$select=id", 1, false},
		{"GET", "users", "$expand=manager", 3, false},
		{"GET", "domains", "", 1, false},
		{"PATCH", "users/x", "", 1, true},
		{"POST", "users/x/revokeSignInSessions", "", 1, true},
	}
	for _, c := range cases {
		q, _ := url.ParseQuery(c.query)
		segs, _ := splitPath(c.path)
		ru, w := entraCost(&req{method: c.method, segs: segs, query: q})
		if ru != c.ru || w != c.write {
			t.Errorf("%s %s?%s = %v,%v want %v,%v", c.method, c.path, c.query, ru, w, c.ru, c.write)
		}
	}
	th := newThrottler(time.Now, true)
	for users, want := range map[int]float64{0: 3500, 49: 3500, 50: 5000, 500: 5000, 501: 8000} {
		if got := th.ruLimit(users).Capacity; got != want {
			t.Errorf("ruLimit(%d) = %v, want %v", users, got, want)
		}
	}
	th.sized = false
	th.lim.EntraResourceUnits = Limit{7, time.Second}
	if got := th.ruLimit(9999).Capacity; got != 7 {
		t.Errorf("explicit limit ignored: %v", got)
	}
}

func TestFilterParser(t *testing.T) {
	obj := map[string]any{"subject": "let's go", "n": 5.0, "ok": true, "when": "2024-05-01T10:00:00Z",
		"from": map[string]any{"emailAddress": map[string]any{"address": "A@B.com"}}}
	for f, want := range map[string]bool{
		"subject eq 'let''s go'":                         true,
		"subject eq 'LET''S GO'":                         true,
		"from/emailAddress/address eq 'a@b.com'":         true,
		"when ge 2024-05-01T10:00:00Z":                   true,
		"when gt 2024-05-01T10:00:00Z":                   false,
		"ok eq true and (n gt 4 or subject eq 'x')":      true,
		"not (ok eq true)":                               false,
		"startswith(subject,'let')":                      true,
		"missing eq null":                                true,
		"when lt 2024-05-01T10:00:00.5+00:00 and n le 5": true,
	} {
		n, err := parseFilter(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		got, err := matches(n, obj)
		if err != nil || got != want {
			t.Errorf("%s = %v (%v), want %v", f, got, err, want)
		}
	}
	for _, bad := range []string{"subject eq 'open", "eq eq", "(subject eq 'a'", "subject eq", "foo(bar) eq 1", "tags/any(t:t eq 'x')"} {
		if _, err := parseFilter(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestSkipTokenRoundTrip(t *testing.T) {
	p := pageToken{Off: 40, Snap: 1234567890}
	s := encodeSkip(p)
	for _, v := range []string{s, "X'" + s[4:len(s)-3] + "'"} {
		got, ok := decodeSkip(v)
		if !ok || got != p {
			t.Fatalf("decode(%q) = %v %v", v, got, ok)
		}
	}
	if _, ok := decodeSkip("garbage"); ok {
		t.Fatal("garbage decoded")
	}
}

// The emulator itself must not depend on the SDKs it emulates for.
func TestNoSDKImports(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := goparser.ParseFile(fset, f, nil, goparser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if strings.Contains(p, ".") && !strings.HasPrefix(p, "github.com/responder-sec/responder/") {
				t.Errorf("%s imports %s: non-test files use the standard library only", f, p)
			}
		}
	}
}

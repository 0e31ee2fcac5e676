package actions

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// The seed corpus of these targets is the f.Add calls below (this package keeps
// no testdata/fuzz directory). Run one with, e.g.:
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 10s ./internal/actions

// FuzzDecode: decoding an action message never panics; every rejection is a
// *RejectError with a reason; an accepted request validates and survives an
// encode/decode round trip unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"id":"0b7e5a3c-2d1f-4e8a-9c6b-5f4d3e2a1b0c","action":"disable_user","target":{"user":"alice@contoso.com"},"requested_by":{"kind":"analyst","name":"x"},"reason":"r","requested_at":"2026-01-01T00:00:00Z"}`,
		`{"version":1,"id":"0b7e5a3c-2d1f-4e8a-9c6b-5f4d3e2a1b0c","action":"revoke_sessions","target":{"user":"26be570a-ae82-4b1e-9a8e-2b7c41d0c0de"},"requested_by":{"kind":"playbook","name":"high-risk-user"},"requested_at":"2026-01-01T00:00:00Z","next":[{"action":"disable_user","target":{"user":"o'brien@contoso.com"}}]}`,
		`{"version":1,"id":"0b7e5a3c-2d1f-4e8a-9c6b-5f4d3e2a1b0c","action":"block_ip","target":{"ip":"203.0.113.0/24"},"requested_by":{"kind":"analyst","name":"x"},"reason":"r","params":{"expires":"24h"}}`,
		`{"version":1,"id":"0b7e5a3c-2d1f-4e8a-9c6b-5f4d3e2a1b0c","action":"purge_mail","target":{"message_id":"<a@b>"},"requested_by":{"kind":"analyst","name":"x"},"reason":"r","params":{"hard":true,"mailboxes":["a@contoso.com"]}}`,
		`{"version":1,"id":"0b7e5a3c-2d1f-4e8a-9c6b-5f4d3e2a1b0c","action":"undo","target":{"request_id":"0b7e5a3c-2d1f-4e8a-9c6b-5f4d3e2a1b0d"},"requested_by":{"kind":"analyst","name":"x"},"reason":"r"}`,
		`{"version":1,"id":`,
		`{"version":2}`,
		`{"version":1,"id":"x","action":"format_disk"}`,
		`{"version":1,"unknown":1}`,
		`{} {}`,
		`null`,
		`[]`,
		"{\"version\":1,\"id\":\"0b7e5a3c-2d1f-4e8a-9c6b-5f4d3e2a1b0c\",\"action\":\"disable_user\",\"target\":{\"user\":\"a\\u0000@contoso.com\"},\"requested_by\":{\"kind\":\"analyst\",\"name\":\"x\"},\"reason\":\"r\"}",
		`{"version":1,"id":"0b7e5a3c-2d1f-4e8a-9c6b-5f4d3e2a1b0c","action":"block_ip","target":{"ip":"0.0.0.0/0"},"requested_by":{"kind":"analyst","name":"x"},"reason":"r"}`,
		`{"version":1,"id":"0b7e5a3c-2d1f-4e8a-9c6b-5f4d3e2a1b0c","action":"block_ip","target":{"ip":"fe80::1%eth0"},"requested_by":{"kind":"analyst","name":"x"},"reason":"r"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := Decode(data)
		if err != nil {
			var re *RejectError
			if !errors.As(err, &re) {
				t.Fatalf("rejection is %T, not a *RejectError: %v", err, err)
			}
			if strings.TrimSpace(re.Reason) == "" {
				t.Fatal("rejection without a reason")
			}
			return
		}
		if req == nil {
			t.Fatal("nil request without an error")
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("decoded request does not validate: %v", err)
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("accepted request does not encode: %v", err)
		}
		again, err := Decode(b)
		if err != nil {
			t.Fatalf("re-encoded request is rejected: %v\n%s", err, b)
		}
		b2, _ := json.Marshal(again)
		if string(b) != string(b2) {
			t.Fatalf("round trip changed the request:\n%s\n%s", b, b2)
		}
	})
}

// FuzzParseIPTarget: CIDR and address handling never panics; a parsed target is
// a valid masked prefix that parses back to itself; the block_ip guard gives a
// reason whenever it refuses.
func FuzzParseIPTarget(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "203.0.113.0/24", "10.0.0.0/8", "0.0.0.0/0", "::/0", "2001:db8::/32",
		"2001:db8::1", "::ffff:1.2.3.4", "fe80::1%eth0", "1.2.3.4/33", "1.2.3.4/-1", "01.2.3.4", "1.2.3", "", "/", "255.255.255.255/32"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseIPTarget(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("error without a message")
			}
			return
		}
		if !p.IsValid() || p != p.Masked() {
			t.Fatalf("ParseIPTarget(%q) = %v: not a valid masked prefix", s, p)
		}
		back, err := ParseIPTarget(p.String())
		if err != nil || back != p {
			t.Fatalf("ParseIPTarget(%q) = %v, which parses back as %v, %v", s, p, back, err)
		}
		if ValidIP(s) != true {
			t.Fatalf("ParseIPTarget accepts %q but ValidIP does not", s)
		}
		d := IPPolicy{}.CheckIP(p)
		if !d.Allow && strings.TrimSpace(d.Reason) == "" {
			t.Fatalf("CheckIP(%v) refuses without a reason", p)
		}
	})
}

// FuzzODataString: an OData string literal is quoted, every quote inside is
// doubled, and un-escaping gives the input back (so nothing can break out of
// the literal into the filter).
func FuzzODataString(f *testing.F) {
	for _, s := range []string{"", "o'brien", "'", "''", "a' or 1 eq 1 or 'a", "x') or startswith(subject,'", "ünïcödé", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lit := ODataString(s)
		if len(lit) < 2 || lit[0] != '\'' || lit[len(lit)-1] != '\'' {
			t.Fatalf("ODataString(%q) = %q: not a quoted literal", s, lit)
		}
		inner := lit[1 : len(lit)-1]
		// Every quote inside must be part of a doubled pair.
		for i := 0; i < len(inner); i++ {
			if inner[i] == '\'' {
				if i+1 >= len(inner) || inner[i+1] != '\'' {
					t.Fatalf("ODataString(%q) = %q: a lone quote ends the literal early", s, lit)
				}
				i++
			}
		}
		if got := strings.ReplaceAll(inner, "''", "'"); got != s {
			t.Fatalf("ODataString(%q) un-escapes to %q", s, got)
		}
	})
}

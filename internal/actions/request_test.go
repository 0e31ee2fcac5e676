package actions

import (
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/audit"
)

const goodID = "0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a11"

func TestDecodeRejectsWithReason(t *testing.T) {
	cases := []struct {
		name, msg, want string
	}{
		{"bad json", `{"version":1,`, "malformed request"},
		{"trailing", `{"version":1} {}`, "trailing data"},
		{"unknown field", `{"version":1,"id":"` + goodID + `","actoin":"x"}`, "unknown field"},
		{"version", `{"version":2,"id":"` + goodID + `"}`, "unsupported request version 2"},
		{"id", `{"version":1,"id":"42","action":"disable_user"}`, "not a UUID"},
		{"action", `{"version":1,"id":"` + goodID + `","action":"wipe","target":{"user":"a@b.com"},"requested_by":{"kind":"analyst","name":"x"},"reason":"r"}`, `unknown action "wipe"`},
		{"no user", `{"version":1,"id":"` + goodID + `","action":"disable_user","requested_by":{"kind":"analyst","name":"x"},"reason":"r"}`, "needs target.user"},
		{"bad user", `{"version":1,"id":"` + goodID + `","action":"disable_user","target":{"user":"a@b"},"requested_by":{"kind":"analyst","name":"x"},"reason":"r"}`, "not a UPN"},
		{"odata injection", `{"version":1,"id":"` + goodID + `","action":"disable_user","target":{"user":"x' or 1 eq 1@b.com"},"requested_by":{"kind":"analyst","name":"x"},"reason":"r"}`, "not a UPN"},
		{"no reason", `{"version":1,"id":"` + goodID + `","action":"disable_user","target":{"user":"a@b.com"},"requested_by":{"kind":"analyst","name":"x"}}`, "needs a reason"},
		{"kind", `{"version":1,"id":"` + goodID + `","action":"disable_user","target":{"user":"a@b.com"},"requested_by":{"kind":"robot","name":"x"}}`, "not playbook, analyst or engine"},
		{"next", `{"version":1,"id":"` + goodID + `","action":"disable_user","target":{"user":"a@b.com"},"requested_by":{"kind":"playbook","name":"p"},"next":[{"action":"revoke_sessions","target":{}}]}`, "next[0]: revoke_sessions needs target.user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.msg))
			if err == nil {
				t.Fatal("accepted")
			}
			if !IsReject(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want a rejection mentioning %q", err, c.want)
			}
		})
	}
}

func TestDecodeAcceptsValidRequests(t *testing.T) {
	for _, u := range []string{"alice@contoso.com", "o'brien@contoso.com", "3f2c1b0a-1111-4222-8333-944455556666"} {
		msg := `{"version":1,"id":"` + goodID + `","action":"disable_user","target":{"user":"` + u + `"},"requested_by":{"kind":"playbook","name":"p"},"requested_at":"2026-01-01T00:00:00Z"}`
		r, err := Decode([]byte(msg))
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if r.Target.User != u || r.Playbook() != "p" {
			t.Errorf("decoded %+v", r)
		}
	}
}

func TestProtectedGuard(t *testing.T) {
	p := Protected{Users: []string{"BreakGlass@contoso.com", "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"}}
	mk := func(kind, user string, override bool) *Request {
		return &Request{Action: DisableUser, Target: Target{User: user}, RequestedBy: audit.Actor{Kind: kind, Name: "n"}, OverrideProtected: override}
	}
	cases := []struct {
		r              *Request
		allow, overrid bool
	}{
		{mk("playbook", "breakglass@CONTOSO.com", false), false, false},
		{mk("playbook", "breakglass@contoso.com", true), false, false}, // playbooks never override
		{mk("analyst", "breakglass@contoso.com", false), false, false},
		{mk("analyst", "breakglass@contoso.com", true), true, true},
		{mk("playbook", "AAAAAAAA-bbbb-4ccc-8ddd-eeeeeeeeeeee", false), false, false},
		{mk("playbook", "alice@contoso.com", false), true, false},
	}
	for i, c := range cases {
		d := p.Check(c.r)
		if d.Allow != c.allow || d.Override != c.overrid {
			t.Errorf("case %d: %+v", i, d)
		}
		if !d.Allow && !strings.Contains(d.Reason, "protected") {
			t.Errorf("case %d: reason %q", i, d.Reason)
		}
	}
}

func TestBackoffHonoursRetryAfterAndCaps(t *testing.T) {
	none := func(d time.Duration) time.Duration { return d }
	if d := Backoff(&Error{RetryAfter: 3 * time.Second}, 1, time.Second, time.Minute, none); d != 3*time.Second {
		t.Errorf("Retry-After: %v", d)
	}
	if d := Backoff(&Error{RetryAfter: time.Hour}, 1, time.Second, time.Minute, none); d != time.Minute {
		t.Errorf("huge Retry-After not capped: %v", d)
	}
	if d := Backoff(&Error{}, 4, time.Second, time.Minute, none); d != 8*time.Second {
		t.Errorf("attempt 4 without Retry-After: %v, want 8s", d)
	}
	if d := Backoff(&Error{}, 30, time.Second, time.Minute, none); d != time.Minute {
		t.Errorf("not capped: %v", d)
	}
}

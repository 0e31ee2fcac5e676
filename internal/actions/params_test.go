package actions

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestODataEscaping(t *testing.T) {
	q := &PurgeQuery{Subject: `x' or 1 eq 1 or subject eq '`, Sender: "o'brien@contoso.com",
		ReceivedAfter: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	got := q.Filter()
	want := `receivedDateTime ge 2026-01-02T03:04:05Z and from/emailAddress/address eq 'o''brien@contoso.com' and subject eq 'x'' or 1 eq 1 or subject eq '''`
	if got != want {
		t.Fatalf("filter\n got %s\nwant %s", got, want)
	}
	// Every quote inside a literal is doubled: the literal count stays even.
	if strings.Count(got, "'")%2 != 0 {
		t.Error("unbalanced quotes")
	}
}

func TestParamsValidation(t *testing.T) {
	cases := []struct {
		action Name
		target Target
		params map[string]any
		err    string
	}{
		{PurgeMail, Target{}, map[string]any{"mailboxes": "a@contoso.com"}, "no narrowing criterion"},
		{PurgeMail, Target{}, map[string]any{"subject": "x", "mailboxes": "a@contoso.com"}, "needs a received-time window"},
		{PurgeMail, Target{MessageID: "<a@b>"}, map[string]any{}, "either params.mailboxes or params.all_mailboxes"},
		{PurgeMail, Target{MessageID: "<a@b>"}, map[string]any{"mailboxes": "x' or 1 eq 1"}, "not a UPN"},
		{PurgeMail, Target{}, map[string]any{"sender": "a@b.com", "received_after": "2026-02-01T00:00:00Z", "received_before": "2026-01-01T00:00:00Z", "all_mailboxes": true}, "before"},
		{PurgeMail, Target{}, map[string]any{"sender": "a@b.com", "received_after": "yesterday", "all_mailboxes": true}, "RFC 3339"},
		{BlockIP, Target{IP: "203.0.113.0/24"}, map[string]any{"expires": "forever"}, "duration"},
		{BlockIP, Target{IP: "203.0.113.0/24"}, map[string]any{"bogus": 1}, "unknown param"},
		{DeleteForwardRules, Target{User: "a@b.com"}, map[string]any{"scope": "everything"}, "external or all"},
		{DisableUser, Target{User: "a@b.com"}, map[string]any{"x": 1}, "takes no params"},
	}
	for _, c := range cases {
		_, err := ParseParams(c.action, c.target, c.params)
		if err == nil || !IsReject(err) || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s %v: err = %v, want %q", c.action, c.params, err, c.err)
		}
	}
	if !ValidMessageID("<CAF=abc+1@mail.example.com>") || ValidMessageID("<no at>") || ValidMessageID("plain@x") {
		t.Error("message id validation")
	}
	p, err := ParseParams(BlockIP, Target{IP: "203.0.113.7/24"}, map[string]any{"expires": "7d"})
	if err != nil || p.Prefix.String() != "203.0.113.0/24" || p.Expires != 7*24*time.Hour {
		t.Errorf("block params %+v %v", p, err)
	}
}

func TestIPPolicy(t *testing.T) {
	var pol IPPolicy
	for s, ok := range map[string]bool{
		"203.0.113.0/24": true, "198.51.100.7/32": true, "2001:db8:1::/48": true, "8.8.8.8/32": true,
		"8.0.0.0/15": false, "10.0.0.1/32": false, "192.168.1.0/24": false, "100.64.0.1/32": false, "127.0.0.1/32": false,
		"fe80::1/128": false, "fd00::/64": false, "2001:db8::/32": false, "224.0.0.1/32": false,
	} {
		if d := pol.CheckIP(netip.MustParsePrefix(s).Masked()); d.Allow != ok {
			t.Errorf("%s: allow=%t (%s), want %t", s, d.Allow, d.Reason, ok)
		}
	}
}

func TestUndoDecision(t *testing.T) {
	if _, why := undoDecision("x", nil); !strings.Contains(why, "unknown") {
		t.Error(why)
	}
}

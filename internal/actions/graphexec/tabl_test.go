package graphexec_test

import (
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

func sender(s string) actions.Target { return actions.Target{Sender: s} }

func blocked(sim *m365sim.Tenant, value string) []m365sim.TABLEntry {
	var out []m365sim.TABLEntry
	for _, e := range sim.TABLSenders() {
		if e.Value == value {
			out = append(out, e)
		}
	}
	return out
}

// TestBlockSender: block_sender adds one Tenant Allow/Block List entry with the
// request named in its notes and an expiry, keeps the entry in the audit
// record, is a no-op the second time, and its undo removes exactly that entry.
func TestBlockSender(t *testing.T) {
	h := newHarness(t, hopts{})
	req := request(actions.BlockSender, sender("Phisher@Evil.Example"), map[string]any{"expires": "7d"})
	req.Reason = "phishing campaign INC-7"
	o, rec := h.do(req)
	want(t, o, audit.Succeeded, "blocked sender phisher@evil.example in the Tenant Allow/Block List: entry RgAAAA")
	got := blocked(h.sim, "phisher@evil.example")
	if len(got) != 1 || got[0].Action != "Block" || got[0].NoExpiration || !strings.Contains(got[0].Notes, req.ID) || !strings.Contains(got[0].Notes, "INC-7") {
		t.Fatalf("tenant list: %+v", got)
	}
	if d := got[0].ExpirationDate.Sub(got[0].LastModified); d < 7*24*3600e9-60e9 || d > 7*24*3600e9+60e9 {
		t.Errorf("expiry %s after creation, want 7 days", d)
	}
	if !strings.Contains(string(rec.After), got[0].Identity) || len(rec.GraphRequestIDs) != 2 {
		t.Errorf("audit record: after %s ids %v", rec.After, rec.GraphRequestIDs)
	}

	// A second block finds the entry: no New- call, nothing to undo.
	n := invokeCount(h.sim)
	o2, _ := h.do(request(actions.BlockSender, sender("phisher@evil.example"), nil))
	want(t, o2, audit.Succeeded, "already blocked")
	if d := invokeCount(h.sim) - n; d != 1 {
		t.Errorf("%d admin API calls for a no-op, want 1 (Get-)", d)
	}

	// A whole domain, never expiring.
	od, _ := h.do(request(actions.BlockSender, sender("evil2.example"), map[string]any{"expires": "never"}))
	want(t, od, audit.Succeeded, "blocked domain evil2.example")
	if d := blocked(h.sim, "evil2.example"); len(d) != 1 || !d[0].NoExpiration {
		t.Errorf("domain entry: %+v", d)
	}

	// Undo removes the entry Responder created.
	undo := request(actions.Undo, actions.Target{RequestID: o.RequestID}, nil)
	wait := h.expect(actions.InverseRequestID(undo.ID))
	uo, _ := h.do(undo)
	want(t, uo, audit.Succeeded, "requested unblock_sender")
	io, _ := wait()
	want(t, io, audit.Succeeded, "removed Tenant Allow/Block List entry "+got[0].Identity)
	if left := blocked(h.sim, "phisher@evil.example"); len(left) != 0 {
		t.Errorf("undo left %+v", left)
	}
}

// TestBlockSenderRefusesSomeoneElsesEntry: a block that was already there is
// reported, not claimed: the undo of that request has nothing to undo, and the
// entry stays.
func TestBlockSenderRefusesSomeoneElsesEntry(t *testing.T) {
	h := newHarness(t, hopts{})
	id := h.sim.AddTABLSender("spam@evil.example", "added by the mail team")
	o, _ := h.do(request(actions.BlockSender, sender("spam@evil.example"), nil))
	want(t, o, audit.Succeeded, "Responder did not create it")
	uo, _ := h.do(request(actions.Undo, actions.Target{RequestID: o.RequestID}, nil))
	if uo.Outcome == audit.Succeeded && strings.Contains(uo.Detail, "requested unblock_sender") {
		t.Fatalf("undo of an already-present block issued an unblock: %q", uo.Detail)
	}
	if e := blocked(h.sim, "spam@evil.example"); len(e) != 1 || e[0].Identity != id {
		t.Errorf("someone else's entry changed: %+v", e)
	}
}

// TestBlockSenderMisuse: the tenant's own verified domains and Microsoft's are
// refused by the guard before any call, a malformed sender is rejected at
// decode, and an unblock_sender with a forged entry id is refused; each is
// audited and the list is untouched.
func TestBlockSenderMisuse(t *testing.T) {
	h := newHarness(t, hopts{})
	victim := h.sim.AddTABLSender("partner@fabrikam.example", "someone else's block")
	n := invokeCount(h.sim)
	for _, s := range []string{"contoso.com", "ceo@contoso.com", "mail.contoso.com", "microsoft.com", "account-security-noreply@accountprotection.microsoft.com", "contoso.onmicrosoft.com"} {
		o, rec := h.do(request(actions.BlockSender, sender(s), nil))
		if o.Outcome != audit.Refused || rec.Outcome != audit.Refused || !(strings.Contains(o.Detail, "verified domain") || strings.Contains(o.Detail, "Microsoft's domain")) {
			t.Errorf("%s: %s %q", s, o.Outcome, o.Detail)
		}
	}
	pb := request(actions.BlockSender, sender("contoso.com"), nil)
	pb.RequestedBy = audit.Actor{Kind: "playbook", Name: "phishing-alert"}
	if o, _ := h.do(pb); o.Outcome != audit.Refused {
		t.Errorf("playbook blocking the own domain: %s %q", o.Outcome, o.Detail)
	}
	if d := invokeCount(h.sim) - n; d != 0 {
		t.Errorf("%d admin API calls for refused requests", d)
	}

	// Malformed senders never reach a worker stage that acts.
	for _, s := range []string{"*.evil.example", "evil", "a@b@evil.example", "\"x\"@evil.example", "x@evil.example,y@evil.example", "-Entries x", "x@[192.0.2.1]"} {
		if err := request(actions.BlockSender, sender(s), nil).Validate(); err == nil || !actions.IsReject(err) {
			t.Errorf("%q accepted: %v", s, err)
		}
	}
	o, rec := h.do(request(actions.BlockSender, sender("*.evil.example"), nil))
	if o.Outcome != audit.Rejected || rec.Outcome != audit.Rejected {
		t.Errorf("malformed sender: %s %q", o.Outcome, o.Detail)
	}

	// An unblock_sender naming someone else's entry (no undo_of, or a forged
	// one) is refused at admission.
	forged := request(actions.UnblockSender, sender("partner@fabrikam.example"), map[string]any{"entry_id": victim})
	fo, frec := h.do(forged)
	if fo.Outcome != audit.Rejected || frec.Outcome != audit.Rejected || !strings.Contains(fo.Detail, "only as the inverse") {
		t.Errorf("forged unblock: %s %q", fo.Outcome, fo.Detail)
	}
	real, _ := h.do(request(actions.BlockSender, sender("other@evil.example"), nil))
	forged2 := request(actions.UnblockSender, sender("partner@fabrikam.example"), map[string]any{"entry_id": victim, "undo_of": real.RequestID})
	fo2, _ := h.do(forged2)
	if fo2.Outcome != audit.Rejected || !strings.Contains(fo2.Detail, "differs from the snapshot") {
		t.Errorf("forged unblock with undo_of: %s %q", fo2.Outcome, fo2.Detail)
	}
	if e := blocked(h.sim, "partner@fabrikam.example"); len(e) != 1 || e[0].Identity != victim {
		t.Errorf("forged unblock touched the list: %+v", e)
	}
}

// TestDisableForwardRulesScope: disable_forward_rules disables every
// forwarding rule by default, internal recipients included (Radiant's
// "disable all forward rules"); scope external leaves the internal one on.
func TestDisableForwardRulesScope(t *testing.T) {
	h := newHarness(t, hopts{})
	ext, _ := h.sim.AddRawMessageRule("bob@contoso.com", forwardRule("out", "evil@example.net"))
	in, _ := h.sim.AddRawMessageRule("bob@contoso.com", forwardRule("in", "alice@contoso.com"))
	enabled := func() map[string]bool {
		m := map[string]bool{}
		for _, r := range h.sim.MessageRules("bob@contoso.com") {
			m[r["id"].(string)] = r["isEnabled"] == true
		}
		return m
	}
	o, _ := h.do(request(actions.DisableForwardRules, user("bob@contoso.com"), map[string]any{"scope": "external"}))
	want(t, o, audit.Succeeded, "disabled 1 forwarding rule")
	if e := enabled(); e[ext] || !e[in] {
		t.Fatalf("scope external: %v", e)
	}
	o, _ = h.do(request(actions.DisableForwardRules, user("bob@contoso.com"), nil))
	want(t, o, audit.Succeeded, "disabled 1 forwarding rule(s) in bob@contoso.com's inbox: \"in\"")
	if e := enabled(); e[ext] || e[in] {
		t.Fatalf("scope all: %v", e)
	}
	if err := request(actions.DisableForwardRules, user("bob@contoso.com"), map[string]any{"scope": "internal"}).Validate(); !actions.IsReject(err) {
		t.Errorf("scope internal accepted: %v", err)
	}
}

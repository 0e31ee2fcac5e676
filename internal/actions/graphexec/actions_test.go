package graphexec_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/m365sim"
)

func user(u string) actions.Target { return actions.Target{User: u} }

func TestDisableEnableAndUndo(t *testing.T) {
	h := newHarness(t, hopts{})
	o, rec := h.do(request(actions.DisableUser, user("alice@contoso.com"), nil))
	want(t, o, audit.Succeeded, "account disabled")
	if u, _ := h.sim.User("alice@contoso.com"); u.AccountEnabled {
		t.Fatal("alice still enabled")
	}
	if !strings.Contains(string(rec.Before), `"accountEnabled":true`) || !strings.Contains(string(rec.After), `"accountEnabled":false`) || len(rec.GraphRequestIDs) == 0 {
		t.Errorf("record before/after/ids: %s %s %v", rec.Before, rec.After, rec.GraphRequestIDs)
	}
	// Re-running an action whose effect is in place succeeds with "already done".
	o2, _ := h.do(request(actions.DisableUser, user("alice@contoso.com"), nil))
	want(t, o2, audit.Succeeded, "already done")

	undo := request(actions.Undo, actions.Target{RequestID: o.RequestID}, nil)
	wait := h.expect(actions.InverseRequestID(undo.ID))
	uo, urec := h.do(undo)
	want(t, uo, audit.Succeeded, "requested enable_user")
	io, irec := wait()
	want(t, io, audit.Succeeded, "account enabled")
	if u, _ := h.sim.User("alice@contoso.com"); !u.AccountEnabled {
		t.Fatal("undo did not enable alice")
	}
	if !strings.Contains(string(urec.After), o.RequestID) || !strings.Contains(irec.Reason, o.RequestID) {
		t.Errorf("undo does not reference the original: %s / %q", urec.After, irec.Reason)
	}
	// An already-done request changed nothing: nothing to undo. Revoke is irreversible.
	no, _ := h.do(request(actions.Undo, actions.Target{RequestID: o2.RequestID}, nil))
	want(t, no, audit.Refused, "nothing to undo")
	ro, _ := h.do(request(actions.RevokeSessions, user("bob@contoso.com"), nil))
	want(t, ro, audit.Succeeded, "revoked")
	if u, _ := h.sim.User("bob@contoso.com"); u.RevokeCount != 1 {
		t.Errorf("bob revoked %d times", u.RevokeCount)
	}
	irr, _ := h.do(request(actions.Undo, actions.Target{RequestID: ro.RequestID}, nil))
	want(t, irr, audit.Refused, "irreversible")
}

func TestResetPasswordSecretGoesToRequesterOnly(t *testing.T) {
	h := newHarness(t, hopts{})
	req := request(actions.ResetPassword, user("bob@contoso.com"), nil)
	ck, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	req.SealTo, _ = ck.PublicKey()
	o, rec := h.do(req)
	want(t, o, audit.Succeeded, "must change it at next sign-in")
	secret, err := actions.OpenSecret(o, ck)
	if err != nil || len(secret) < 16 {
		t.Fatalf("reply carries no password the requester can open: %+v %v", o, err)
	}
	u, _ := h.sim.User("bob@contoso.com")
	if u.PasswordChanges != 1 || !u.ForceChangePasswordNextSignIn {
		t.Errorf("tenant: changes=%d force=%t", u.PasswordChanges, u.ForceChangePasswordNextSignIn)
	}
	for _, r := range h.records() {
		b, _ := json.Marshal(r)
		if strings.Contains(string(b), secret) {
			t.Errorf("audit record %s holds the password", r.ID)
		}
	}
	keys, _ := h.kv.ListKeys(context.Background())
	for k := range keys.Keys() {
		e, _ := h.kv.Get(context.Background(), k)
		if e != nil && strings.Contains(string(e.Value()), secret) {
			t.Errorf("KV %s holds the password", k)
		}
	}
	_ = rec
	// A redelivery never acts twice and never returns the password again.
	o2, _ := h.doRaw(req, req.ID+"-redelivered")
	if o2.Sealed != nil || !strings.Contains(o2.Detail, "delivered to the original requester") {
		t.Errorf("redelivery reply: %+v", o2)
	}
	if u, _ := h.sim.User("bob@contoso.com"); u.PasswordChanges != 1 {
		t.Errorf("password changed %d times after a redelivery", u.PasswordChanges)
	}
}

// TestResetPasswordByPlaybookDiscardsSecret: nobody waits for a playbook's
// reply, so the generated password never goes on the bus.
func TestResetPasswordByPlaybookDiscardsSecret(t *testing.T) {
	h := newHarness(t, hopts{})
	req := request(actions.ResetPassword, user("bob@contoso.com"), nil)
	req.RequestedBy = audit.Actor{Kind: "playbook", Name: "leaked-credentials"}
	o, rec := h.do(req)
	want(t, o, audit.Succeeded, "the password was discarded unseen")
	if o.Sealed != nil {
		t.Errorf("a playbook's reply carries the password")
	}
	if u, _ := h.sim.User("bob@contoso.com"); u.PasswordChanges != 1 || !u.ForceChangePasswordNextSignIn {
		t.Errorf("tenant: changes=%d force=%t", u.PasswordChanges, u.ForceChangePasswordNextSignIn)
	}
	if !strings.Contains(rec.Detail, "self-service password reset") {
		t.Errorf("audit detail %q", rec.Detail)
	}
}

func TestRedeliveredRequestActsOnce(t *testing.T) {
	h := newHarness(t, hopts{})
	req := request(actions.DisableUser, user("bob@contoso.com"), nil)
	o1, _ := h.do(req)
	o2, _ := h.doRaw(req, req.ID+"-again")
	if o1.AuditID != o2.AuditID || o2.Outcome != audit.Succeeded {
		t.Errorf("redelivery: %+v vs %+v", o1, o2)
	}
	if n := wireCount(h.sim, "PATCH", "/users/bob"); n != 1 {
		t.Errorf("%d PATCHes of bob, want 1", n)
	}
}

func TestRiskActions(t *testing.T) {
	h := newHarness(t, hopts{})
	o, _ := h.do(request(actions.ConfirmCompromised, user("alice@contoso.com"), nil))
	want(t, o, audit.Succeeded, "confirmed compromised")
	if ru, _ := h.sim.RiskyUser("alice@contoso.com"); ru["riskState"] != "confirmedCompromised" {
		t.Errorf("risky user: %v", ru)
	}
	o, _ = h.do(request(actions.DismissRisk, user("alice@contoso.com"), nil))
	want(t, o, audit.Succeeded, "risk dismissed")
	if ru, _ := h.sim.RiskyUser("alice@contoso.com"); ru["riskState"] != "dismissed" {
		t.Errorf("risky user: %v", ru)
	}
	o, _ = h.do(request(actions.DismissRisk, user("alice@contoso.com"), nil))
	want(t, o, audit.Succeeded, "already done")
}

func TestProtectedIdentities(t *testing.T) {
	h := newHarness(t, hopts{})
	// Listed by UPN, addressed by object id.
	pb := request(actions.DisableUser, user(m365sim.BreakGlassID), nil)
	pb.RequestedBy = audit.Actor{Kind: "playbook", Name: "p"}
	o, _ := h.do(pb)
	want(t, o, audit.Refused, "protected identity")
	// A Global Administrator (carol) is protected by role.
	o, _ = h.do(request(actions.DisableUser, user("carol@contoso.com"), nil))
	want(t, o, audit.Refused, "role Global Administrator")
	// An analyst may override explicitly; the override is audited.
	ov := request(actions.RevokeSessions, user("carol@contoso.com"), nil)
	ov.OverrideProtected = true
	o, rec := h.do(ov)
	want(t, o, audit.Succeeded, "analyst override")
	if !strings.Contains(rec.Detail, "override") {
		t.Errorf("override not in the audit record: %q", rec.Detail)
	}
	if n := wireCount(h.sim, "PATCH", "/users/"); n != 0 {
		t.Errorf("%d PATCHes on protected users", n)
	}
}

func TestBlastRadiusRefusesPastTheLimit(t *testing.T) {
	h := newHarness(t, hopts{worker: func(c *actions.WorkerConfig) {
		c.Blast = actions.BlastLimits{PerAction: map[actions.Name]int{actions.RevokeSessions: 2}, Window: time.Hour}
	}})
	for i, u := range []string{"alice@contoso.com", "bob@contoso.com", "alice@contoso.com"} {
		o, _ := h.do(request(actions.RevokeSessions, user(u), nil))
		if i < 2 {
			want(t, o, audit.Succeeded, "revoked")
		} else {
			want(t, o, audit.Refused, "blast radius")
		}
	}
}

func forwardRule(name, to string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"displayName":%q,"sequence":2,"isEnabled":true,"conditions":{"subjectContains":["invoice","payment"],"fromAddresses":[{"emailAddress":{"name":"CFO","address":"cfo@contoso.com"}}]},"actions":{"forwardTo":[{"emailAddress":{"name":"x","address":%q}}],"markAsRead":true,"stopProcessingRules":true}}`, name, to))
}

func TestDeleteForwardRulesAndUndoRestoresFieldForField(t *testing.T) {
	h := newHarness(t, hopts{})
	if _, err := h.sim.AddRawMessageRule("alice@contoso.com", forwardRule("ext", "evil@example.net")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sim.AddRawMessageRule("alice@contoso.com", forwardRule("internal", "bob@contoso.com")); err != nil {
		t.Fatal(err)
	}
	before := h.sim.MessageRules("alice@contoso.com")

	// Dry run: the record names the rule; nothing changes.
	dr := request(actions.DeleteForwardRules, user("alice@contoso.com"), map[string]any{"scope": "external"})
	dr.DryRun = true
	o, rec := h.do(dr)
	want(t, o, audit.DryRun, `"ext"`)
	if !strings.Contains(string(rec.Before), "evil@example.net") || len(h.sim.MessageRules("alice@contoso.com")) != 2 {
		t.Fatalf("dry run: %s", rec.Before)
	}
	if n := wireCount(h.sim, "DELETE", "messageRules"); n != 0 {
		t.Fatalf("dry run deleted %d rules", n)
	}

	o, rec = h.do(request(actions.DeleteForwardRules, user("alice@contoso.com"), nil))
	want(t, o, audit.Succeeded, "deleted 1 external")
	left := h.sim.MessageRules("alice@contoso.com")
	if len(left) != 1 || left[0]["displayName"] != "internal" {
		t.Fatalf("rules left: %v", left)
	}
	if !strings.Contains(string(rec.Before), `"subjectContains":["invoice","payment"]`) {
		t.Errorf("the full rule is not in the audit record: %s", rec.Before)
	}

	undo := request(actions.Undo, actions.Target{RequestID: o.RequestID}, nil)
	wait := h.expect(actions.InverseRequestID(undo.ID))
	h.do(undo)
	io, _ := wait()
	want(t, io, audit.Succeeded, "recreated 1 rule")
	var orig, restored map[string]any
	for _, r := range before {
		if r["displayName"] == "ext" {
			orig = r
		}
	}
	for _, r := range h.sim.MessageRules("alice@contoso.com") {
		if r["displayName"] == "ext" {
			restored = r
		}
	}
	if restored == nil {
		t.Fatal("rule not restored")
	}
	norm := func(m map[string]any) map[string]any {
		b, _ := json.Marshal(m)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		for _, k := range []string{"id", "hasError", "isReadOnly"} { // assigned by the server
			delete(out, k)
		}
		return out
	}
	if a, b := norm(orig), norm(restored); !reflect.DeepEqual(a, b) {
		t.Errorf("restored rule differs:\n was %v\n now %v", a, b)
	}
	// scope all deletes the internal forward as well.
	o, _ = h.do(request(actions.DeleteForwardRules, user("alice@contoso.com"), map[string]any{"scope": "all"}))
	want(t, o, audit.Succeeded, "deleted 2")
}

func TestDisableForwardRulesAndUndo(t *testing.T) {
	h := newHarness(t, hopts{})
	id, _ := h.sim.AddRawMessageRule("bob@contoso.com", forwardRule("fwd", "evil@example.net"))
	_, _ = h.sim.AddRawMessageRule("bob@contoso.com", json.RawMessage(`{"displayName":"news","isEnabled":true,"actions":{"markAsRead":true}}`))
	o, _ := h.do(request(actions.DisableForwardRules, user("bob@contoso.com"), nil))
	want(t, o, audit.Succeeded, "disabled 1 forwarding rule")
	for _, r := range h.sim.MessageRules("bob@contoso.com") {
		if (r["id"] == id) == (r["isEnabled"] == true) {
			t.Errorf("rule %v enabled=%v", r["displayName"], r["isEnabled"])
		}
	}
	undo := request(actions.Undo, actions.Target{RequestID: o.RequestID}, nil)
	wait := h.expect(actions.InverseRequestID(undo.ID))
	h.do(undo)
	io, _ := wait()
	want(t, io, audit.Succeeded, "enabled 1")
	for _, r := range h.sim.MessageRules("bob@contoso.com") {
		if r["isEnabled"] != true {
			t.Errorf("rule %v not re-enabled", r["displayName"])
		}
	}
}

func TestBlockUnblockAndExpiry(t *testing.T) {
	h := newHarness(t, hopts{exec: func(c *graphexec.Config) { c.CoalesceWindow = time.Millisecond }})
	o, rec := h.do(request(actions.BlockIP, actions.Target{IP: "203.0.113.7"}, map[string]any{"expires": "1h"}))
	want(t, o, audit.Succeeded, "203.0.113.7/32 blocked")
	if !strings.Contains(o.Detail, "unblocks automatically") {
		t.Errorf("no expiry in %q", o.Detail)
	}
	locs, pols := h.sim.NamedLocations(), h.sim.Policies()
	if len(locs) != 1 || len(pols) != 1 {
		t.Fatalf("locations %v policies %v", locs, pols)
	}
	pj, _ := json.Marshal(pols[0])
	for _, w := range []string{m365sim.BreakGlassID, m365sim.CarolID, `"block"`, `"state":"enabled"`, locs[0]["id"].(string)} {
		if !strings.Contains(string(pj), w) {
			t.Errorf("policy lacks %s: %s", w, pj)
		}
	}
	_ = rec
	o, _ = h.do(request(actions.BlockIP, actions.Target{IP: "203.0.113.7/32"}, nil))
	want(t, o, audit.Succeeded, "already")
	for _, bad := range []string{"10.1.2.0/24", "198.51.0.0/15", "2001:db8::/32"} {
		o, _ = h.do(request(actions.BlockIP, actions.Target{IP: bad}, nil))
		want(t, o, audit.Refused, "")
	}

	// The expiry passes: the scheduler requests the unblock, audited as the engine.
	s := actions.NewExpiryScheduler(actions.ExpiryConfig{Tenant: h.tenant, JS: h.b.JS, KV: h.kv, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	wait := h.expect(actions.UnblockRequestID(firstBlock(t, h)))
	n, err := s.Tick(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("tick: %d %v", n, err)
	}
	uo, urec := wait()
	want(t, uo, audit.Succeeded, "unblocked")
	if urec.Actor.Kind != "engine" {
		t.Errorf("unblock actor %+v", urec.Actor)
	}
	// The only range went: its location and the policy went with it.
	if l, p := h.sim.NamedLocations(), h.sim.Policies(); len(l) != 0 || len(p) != 0 {
		t.Errorf("range still blocked: locations %v policies %v", l, p)
	}
	if n, _ := s.Tick(context.Background()); n != 0 {
		t.Errorf("expiry fired twice")
	}
}

// firstBlock is the request id of the first block_ip in the audit trail.
func firstBlock(t *testing.T, h *harness) string {
	for _, r := range h.records() {
		if r.Action == string(actions.BlockIP) && r.Outcome == audit.Succeeded {
			return r.RequestID
		}
	}
	t.Fatal("no block")
	return ""
}

var _ = bus.Token
var _ jetstream.KeyValue

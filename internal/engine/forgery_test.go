package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/approval"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// An attacker who reached the state bucket (the bus's permissions forbid it;
// this proves the engine does not depend on that) marks a held request
// approved and re-publishes it with the approval header, then does the same
// for a request of their own making. Neither runs: releasing re-verifies the
// held request's signature and every approver's signed vote against the
// analysts file, and each attempt is audited as rejected. A real approval
// still releases the held request.
func TestForgedApprovalEntriesRunNothing(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	pb := `name: held
enabled: true
trigger:
  source: risk_detection
  when:
    - field: raw.riskLevel
      equals: high
steps:
  - action: revoke_sessions
    target:
      user: "{{ user }}"
    approval: required
`
	if err := os.WriteFile(filepath.Join(dir, "held.yaml"), []byte(pb), 0o600); err != nil {
		t.Fatal(err)
	}
	h.startWith(func(c *Config) { c.PlaybookDir = dir })
	h.attack("bob@contoso.com")
	held := h.waitRecord(func(r audit.Record) bool {
		return r.Target["user"] == "bob@contoso.com" && r.Outcome == audit.PendingApproval
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := h.eng.Bus().TenantState(ctx, h.eng.Tenant())
	if err != nil {
		t.Fatal(err)
	}
	store := approval.NewStore(kv, approval.StoreOptions{})

	forge := func(p approval.Pending) {
		t.Helper()
		p.State, p.DecidedAt = approval.StateApproved, time.Now().UTC()
		b, _ := json.Marshal(p)
		if _, err := kv.Put(ctx, bus.ApprovalKey(p.RequestID), b); err != nil {
			t.Fatal(err)
		}
		m := &nats.Msg{Subject: bus.ActionSubject(h.eng.Tenant(), p.Action), Data: p.Message, Header: nats.Header{}}
		for k, v := range p.Header {
			m.Header[k] = v
		}
		m.Header.Set(approval.HeaderApproval, p.RequestID)
		if _, err := h.eng.Bus().JS.PublishMsg(ctx, m, jetstream.WithMsgID(uuid.NewString())); err != nil {
			t.Fatal(err)
		}
	}

	// 1. The held request, "approved" by a vote with no signed command.
	p, err := store.Get(ctx, held.RequestID)
	if err != nil {
		t.Fatal(err)
	}
	p.Approvals = []approval.Vote{{Name: "carol", KeyID: "UFORGED", At: time.Now()}}
	forge(p)
	rej := h.waitRecord(func(r audit.Record) bool {
		return r.RequestID == held.RequestID && r.Outcome == audit.Rejected
	})
	if !strings.Contains(rej.Detail, "approval release refused") || !strings.Contains(rej.Detail, "verified approval") {
		t.Fatalf("forged approval: %q", rej.Detail)
	}

	// 2. A request of the attacker's own (their key is in no analysts file),
	// with a vote "signed" by that same unknown key.
	mallory, _ := nkeys.CreateUser()
	mpub, _ := mallory.PublicKey()
	req := &actions.Request{Version: actions.Version, ID: uuid.NewString(), Action: actions.DisableUser,
		Target: actions.Target{User: "alice@contoso.com"}, RequestedBy: audit.Actor{Kind: "analyst", Name: "mallory", KeyID: mpub},
		Reason: "forged", RequestedAt: time.Now().UTC()}
	signed, err := analyst.Sign(req, mallory)
	if err != nil {
		t.Fatal(err)
	}
	forge(approval.Pending{RequestID: req.ID, Action: string(req.Action), Target: req.Target.Map(), Requester: req.RequestedBy,
		Required: 1, Approvals: []approval.Vote{{Name: "mallory", KeyID: mpub}}, Message: signed.Body, Header: signed.Header,
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
	rej = h.waitRecord(func(r audit.Record) bool { return r.RequestID == req.ID && r.Outcome == audit.Rejected })
	if !strings.Contains(rej.Detail, "no longer verifies") {
		t.Fatalf("forged request: %q", rej.Detail)
	}
	for _, u := range []string{"bob@contoso.com", "alice@contoso.com"} {
		if x, _ := h.sim.User(u); x.RevokeCount != 0 || !x.AccountEnabled {
			t.Errorf("%s was actioned by a forged approval (revokes %d, enabled %t)", u, x.RevokeCount, x.AccountEnabled)
		}
	}

	// 3. The forged entry is gone from the way: restore it as held, and a real
	// approval releases it.
	p.State, p.Approvals = approval.StatePending, nil
	b, _ := json.Marshal(p)
	if _, err := kv.Put(ctx, bus.ApprovalKey(p.RequestID), b); err != nil {
		t.Fatal(err)
	}
	if rep := h.approve(held.RequestID); !rep.OK || !rep.Complete {
		t.Fatalf("approve: %+v", rep)
	}
	done := h.waitFinal(func(r audit.Record) bool { return r.RequestID == held.RequestID && r.Outcome != audit.Rejected })
	if done.Outcome != audit.Succeeded {
		t.Fatalf("after a real approval: %s %q", done.Outcome, done.Detail)
	}
	if x, _ := h.sim.User("bob@contoso.com"); x.RevokeCount != 1 {
		t.Errorf("bob revoked %d times, want 1", x.RevokeCount)
	}
}

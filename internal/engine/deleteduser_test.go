package engine

import (
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

// Identity Protection still reports a user who has been deleted since (the
// emulator keeps the detection and the riskyUsers record, isDeleted false, as
// Microsoft's offline risk state does). The high-risk-user playbook fires on
// the detection; each step is an audited failure saying the user no longer
// exists, not Graph's raw 404, and the tenant is unchanged.
func TestHighRiskUserWhoWasDeletedIsAnAuditedFailure(t *testing.T) {
	h := newHarness(t)
	u, ok := h.sim.User("bob@contoso.com")
	if !ok {
		t.Fatal("no seeded bob")
	}
	h.sim.InjectRiskDetection(m365sim.RiskDetection{UserID: u.ID, UserPrincipalName: u.UserPrincipalName,
		RiskEventType: "unlikelyTravel", RiskLevel: "high", IPAddress: "198.51.100.23"})
	if err := h.sim.DeleteUser(u.ID); err != nil {
		t.Fatal(err)
	}
	if ru, ok := h.sim.RiskyUser(u.ID); !ok || ru["isDeleted"] != false || ru["riskLevel"] != "high" {
		t.Fatalf("risky user record of the deleted user: %v %v", ru, ok)
	}
	h.start()
	for _, action := range []string{"disable_user", "revoke_sessions"} {
		r := h.waitFinal(func(r audit.Record) bool { return string(r.Action) == action })
		if r.Outcome != audit.Failed || !strings.Contains(r.Detail, "no longer exists (deleted") || !strings.Contains(r.Detail, "nothing to do") {
			t.Errorf("%s: %s %q", action, r.Outcome, r.Detail)
		}
		t.Logf("%s: %s: %s", action, r.Outcome, r.Detail)
		if r.Playbook != "high-risk-user" || r.Attempts > 1 {
			t.Errorf("%s: playbook %q, %d attempts", action, r.Playbook, r.Attempts)
		}
	}
	d, ok := h.sim.DeletedUser(u.ID)
	if !ok || !d.AccountEnabled || !d.SignInSessionsValidFrom.Equal(u.SignInSessionsValidFrom) {
		t.Fatalf("the deleted user was changed: %+v", d)
	}
	if _, ok := h.sim.User(u.UserPrincipalName); ok {
		t.Fatal("the deleted user is back in the directory")
	}
}

package graphexec_test

import (
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

// TestProtectedRolesTransitiveAndEligible plays a playbook fooled into
// disabling an administrator who is not a direct member of a protected role:
// one holds Global Administrator through a nested role-assignable group, one
// is only PIM-eligible for Privileged Role Administrator (and could activate
// it at will). Both are refused as protected, the tenant is unchanged and the
// audit record says why; an ordinary user is still disabled.
func TestProtectedRolesTransitiveAndEligible(t *testing.T) {
	roles := []string{"Global Administrator", "Privileged Role Administrator", "Privileged Authentication Administrator"}
	protect := actions.Protected{Users: []string{"breakglass@contoso.com"}, Roles: roles}
	h := newHarness(t, hopts{
		exec:   func(c *graphexec.Config) { c.Protected = protect },
		worker: func(c *actions.WorkerConfig) { c.Protected = protect },
	})
	for _, upn := range []string{"ga.viagroup@contoso.com", "pra.eligible@contoso.com", "plain.user@contoso.com"} {
		h.sim.AddUser(m365sim.User{UserPrincipalName: upn, DisplayName: upn})
	}
	inner, err := h.sim.AddGroup("Tier 0 operators", false, "ga.viagroup@contoso.com")
	if err != nil {
		t.Fatal(err)
	}
	outer, err := h.sim.AddGroup("Tier 0 admins", true, inner)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.sim.AssignRole("Global Administrator", outer); err != nil {
		t.Fatal(err)
	}
	if err := h.sim.AssignRole("Global Administrator", inner); err == nil {
		t.Fatal("the emulator assigned a role to a group that is not role-assignable")
	}
	if err := h.sim.AddEligibleRole("Privileged Role Administrator", "pra.eligible@contoso.com"); err != nil {
		t.Fatal(err)
	}

	for upn, why := range map[string]string{
		"ga.viagroup@contoso.com":  "role Global Administrator through group",
		"pra.eligible@contoso.com": "eligible for role Privileged Role Administrator",
	} {
		req := request(actions.DisableUser, user(upn), nil)
		req.RequestedBy = audit.Actor{Kind: "playbook", Name: "impossible-travel"}
		o, rec := h.do(req)
		want(t, o, audit.Refused, "protected identity")
		if rec.Outcome != audit.Refused || !strings.Contains(rec.Detail, why) || !strings.Contains(rec.Detail, "playbook requests never act on it") {
			t.Errorf("%s: audit %s %q, want refused naming %q", upn, rec.Outcome, rec.Detail, why)
		}
		if u, _ := h.sim.User(upn); !u.AccountEnabled {
			t.Errorf("%s was disabled", upn)
		}
	}
	if n := wireCount(h.sim, "PATCH", "/users/"); n != 0 {
		t.Fatalf("%d user writes reached the tenant", n)
	}
	req := request(actions.DisableUser, user("plain.user@contoso.com"), nil)
	req.RequestedBy = audit.Actor{Kind: "playbook", Name: "impossible-travel"}
	o, _ := h.do(req)
	want(t, o, audit.Succeeded, "")
	if u, _ := h.sim.User("plain.user@contoso.com"); u.AccountEnabled {
		t.Fatal("the ordinary user was not disabled")
	}
}

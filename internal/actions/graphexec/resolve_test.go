package graphexec_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/m365sim"
)

// TestResolveUser: every identity form real Exchange records carry resolves,
// through the emulated Get-Mailbox, to the mailbox owner's UPN and object id;
// an identity that names no mailbox (or another tenant's) is a permanent
// failure naming it, and a UPN or object id costs no call.
func TestResolveUser(t *testing.T) {
	h := newHarness(t, hopts{})
	ctx := context.Background()
	for _, id := range []string{
		"bob", "Bob Brown", "smtp:bob@contoso.com",
		"NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/bob",
		"NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/" + m365sim.BobID,
		"/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=" + strings.ReplaceAll(m365sim.BobID, "-", "") + "-bob",
	} {
		upn, oid, err := h.exec.ResolveUser(ctx, id)
		if err != nil || upn != "bob@contoso.com" || oid != m365sim.BobID {
			t.Errorf("ResolveUser(%q) = %q, %q, %v", id, upn, oid, err)
		}
	}
	n := invokeCount(h.sim)
	if upn, _, err := h.exec.ResolveUser(ctx, "bob@contoso.com"); err != nil || upn != "bob@contoso.com" || invokeCount(h.sim) != n {
		t.Errorf("UPN: %q %v, %d calls", upn, err, invokeCount(h.sim)-n)
	}
	for _, id := range []string{
		"nobody at all",
		"NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/fabrikam.onmicrosoft.com/bob",
	} {
		_, _, err := h.exec.ResolveUser(ctx, id)
		var ae *actions.Error
		if !errors.As(err, &ae) || ae.Class != actions.Permanent || ae.Code != "UnresolvedIdentity" || !strings.Contains(ae.Message, id) {
			t.Errorf("ResolveUser(%q): %v", id, err)
		}
	}
}

package graphexec_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// TestInvokeCommandGone: when the undocumented InvokeCommand endpoint answers
// 404 or 410 outside any cmdlet (retired), the action is an audited failure
// with CodeInvokeCommandGone naming the cmdlet and the documented fallback,
// tried once (permanent), and nothing changes in the tenant; an identity that
// needs Get-Mailbox to resolve fails the same way, not as an unresolvable
// identity. A cmdlet's own 404 (an unknown mailbox) keeps its cmdlet code.
func TestInvokeCommandGone(t *testing.T) {
	h := newHarness(t, hopts{})
	if _, err := h.sim.InjectMailboxForwarding(m365sim.MailboxForwarding{User: "bob@contoso.com", ForwardingSmtpAddress: "exfil@evil.example"}); err != nil {
		t.Fatal(err)
	}
	for _, status := range []int{http.StatusNotFound, http.StatusGone} {
		restore := h.sim.RetireInvokeCommand(status)
		o, rec := h.do(request(actions.RemoveMailboxForwarding, user("bob@contoso.com"), nil))
		want(t, o, audit.Failed, "Exchange admin API InvokeCommand answered "+strconv.Itoa(status)+" for Get-Mailbox")
		for _, w := range []string{"may have been retired", graphexec.InvokeCommandFallbackDoc, "v2.0 admin API"} {
			if !strings.Contains(o.Detail, w) {
				t.Errorf("%d: detail %q lacks %q", status, o.Detail, w)
			}
		}
		if o.ErrorCode != graphexec.CodeInvokeCommandGone || rec.ErrorCode != graphexec.CodeInvokeCommandGone || o.Attempts != 1 {
			t.Errorf("%d: code %q/%q attempts %d", status, o.ErrorCode, rec.ErrorCode, o.Attempts)
		}
		if u, _ := h.sim.User("bob@contoso.com"); u.ForwardingSmtpAddress != "smtp:exfil@evil.example" {
			t.Errorf("%d: forwarding changed: %+v", status, u)
		}
		_, _, err := h.exec.ResolveUser(context.Background(), "Bob Brown")
		if e := actions.AsError(err); e.Code != graphexec.CodeInvokeCommandGone {
			t.Errorf("%d: resolve: %+v", status, e)
		}
		restore()
	}
	// Back: a cmdlet's own 404 is not the endpoint's.
	o, _ := h.do(request(actions.RemoveMailboxForwarding, user("nobody@contoso.com"), nil))
	if o.ErrorCode != "ManagementObjectNotFoundException" {
		t.Errorf("unknown mailbox: %+v", o)
	}
}

// TestInvokeCommandProbe: doctor's probe answers nil while the endpoint
// works, the gone code when it is retired, and the admin API's 403 when the
// app lacks the permission.
func TestInvokeCommandProbe(t *testing.T) {
	probeOf := func(sim *m365sim.Tenant) func(context.Context) error {
		info := sim.Info()
		creds := m365.Credentials{TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
			LoginURL: info.LoginURL, GraphURL: info.GraphURL, ExchangeURL: info.ExchangeURL, HTTPClient: sim.HTTPClient()}
		cred, err := creds.TokenCredential()
		if err != nil {
			t.Fatal(err)
		}
		return graphexec.InvokeCommandProbe(m365.BearerClient(creds, cred, creds.ExchangeScope()), creds.ExchangeAdminURL(), info.TenantID)
	}
	ctx := context.Background()
	sim := newSim(t)
	probe := probeOf(sim)
	if err := probe(ctx); err != nil {
		t.Fatalf("working endpoint: %v", err)
	}
	restore := sim.RetireInvokeCommand(http.StatusGone)
	if e := actions.AsError(probe(ctx)); e.Code != graphexec.CodeInvokeCommandGone || !strings.Contains(e.Error(), "answered 410 for Get-Mailbox") {
		t.Errorf("retired: %+v", e)
	}
	restore()
	bare := newSim(t)
	bare.SetRoles(bare.Info().ClientID, []string{"User.Read.All"})
	if e := actions.AsError(probeOf(bare)(ctx)); e.Status != http.StatusForbidden {
		t.Errorf("no permission: %+v", e)
	}
}

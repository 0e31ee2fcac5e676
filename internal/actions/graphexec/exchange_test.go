package graphexec_test

import (
	"context"
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

func invokeCount(sim *m365sim.Tenant) int { return wireCount(sim, "POST", "/InvokeCommand") }

// TestRemoveMailboxForwarding: the action clears Set-Mailbox forwarding through
// the Exchange admin API, keeps what it removed in the audit record, is a no-op
// the second time, and its undo sets the forwarding back.
func TestRemoveMailboxForwarding(t *testing.T) {
	h := newHarness(t, hopts{})
	if _, err := h.sim.InjectMailboxForwarding(m365sim.MailboxForwarding{User: "bob@contoso.com", ForwardingSmtpAddress: "exfil@evil.example", DeliverToMailboxAndForward: true}); err != nil {
		t.Fatal(err)
	}
	o, rec := h.do(request(actions.RemoveMailboxForwarding, user("bob@contoso.com"), map[string]any{"recipients": []any{"exfil@evil.example"}}))
	want(t, o, audit.Succeeded, "removed mailbox forwarding of bob@contoso.com: ForwardingSmtpAddress smtp:exfil@evil.example")
	if !strings.Contains(o.Detail, "still forwards to exfil@evil.example") {
		t.Errorf("detail does not compare with the event: %q", o.Detail)
	}
	if u, _ := h.sim.User("bob@contoso.com"); u.ForwardingSmtpAddress != "" || u.ForwardingAddress != "" || u.DeliverToMailboxAndForward {
		t.Fatalf("forwarding still set in the tenant: %+v", u)
	}
	if !strings.Contains(string(rec.Before), `"ForwardingSmtpAddress":"smtp:exfil@evil.example"`) || !strings.Contains(string(rec.Before), `"DeliverToMailboxAndForward":true`) ||
		!strings.Contains(string(rec.After), `"ForwardingSmtpAddress":""`) || len(rec.GraphRequestIDs) != 2 {
		t.Errorf("audit record: before %s after %s ids %v", rec.Before, rec.After, rec.GraphRequestIDs)
	}

	// Nothing left to remove: succeeded, noted, no Set-Mailbox sent.
	n := invokeCount(h.sim)
	o2, _ := h.do(request(actions.RemoveMailboxForwarding, user("bob@contoso.com"), nil))
	want(t, o2, audit.Succeeded, "already done: no mailbox forwarding")
	if d := invokeCount(h.sim) - n; d != 1 {
		t.Errorf("%d admin API calls for a no-op, want 1 (Get-Mailbox)", d)
	}

	// Undo restores the captured values.
	undo := request(actions.Undo, actions.Target{RequestID: o.RequestID}, nil)
	wait := h.expect(actions.InverseRequestID(undo.ID))
	uo, _ := h.do(undo)
	want(t, uo, audit.Succeeded, "requested restore_mailbox_forwarding")
	io, _ := wait()
	want(t, io, audit.Succeeded, "set mailbox forwarding of bob@contoso.com back to ForwardingSmtpAddress smtp:exfil@evil.example (keeping a copy")
	if u, _ := h.sim.User("bob@contoso.com"); u.ForwardingSmtpAddress != "smtp:exfil@evil.example" || !u.DeliverToMailboxAndForward {
		t.Errorf("undo did not restore: %+v", u)
	}
	irr, _ := h.do(request(actions.Undo, actions.Target{RequestID: io.RequestID}, nil))
	want(t, irr, audit.Refused, "irreversible")
}

// TestRemoveMailboxForwardingFailures: a bad identity fails with Exchange's
// error code; a protected account and a dry run touch nothing.
func TestRemoveMailboxForwardingFailures(t *testing.T) {
	h := newHarness(t, hopts{})
	o, rec := h.do(request(actions.RemoveMailboxForwarding, user("nobody@contoso.com"), nil))
	want(t, o, audit.Failed, "Ex6F9304: The operation couldn't be performed because object 'nobody@contoso.com' couldn't be found")
	if o.ErrorCode != "ManagementObjectNotFoundException" || rec.ErrorCode != "ManagementObjectNotFoundException" || o.Attempts != 1 || len(rec.GraphRequestIDs) == 0 {
		t.Errorf("bad identity: code %q/%q attempts %d ids %v", o.ErrorCode, rec.ErrorCode, o.Attempts, rec.GraphRequestIDs)
	}

	// Carol is a Global Administrator: protected by default.
	if _, err := h.sim.InjectMailboxForwarding(m365sim.MailboxForwarding{User: "carol@contoso.com", ForwardingSmtpAddress: "x@evil.example"}); err != nil {
		t.Fatal(err)
	}
	n := invokeCount(h.sim)
	pb := request(actions.RemoveMailboxForwarding, user("carol@contoso.com"), nil)
	pb.RequestedBy = audit.Actor{Kind: "playbook", Name: "external-mailbox-forwarding"}
	po, _ := h.do(pb)
	want(t, po, audit.Refused, "protected identity")
	ao, _ := h.do(request(actions.RemoveMailboxForwarding, user("carol@contoso.com"), nil))
	want(t, ao, audit.Refused, "protected identity")
	if u, _ := h.sim.User("carol@contoso.com"); u.ForwardingSmtpAddress != "smtp:x@evil.example" || invokeCount(h.sim) != n {
		t.Errorf("protected account touched: %+v, %d admin API calls", u, invokeCount(h.sim)-n)
	}

	// Dry run: reads, says what it would remove, changes nothing.
	if _, err := h.sim.InjectMailboxForwarding(m365sim.MailboxForwarding{User: "alice@contoso.com", ForwardingSmtpAddress: "y@evil.example"}); err != nil {
		t.Fatal(err)
	}
	dr := request(actions.RemoveMailboxForwarding, user("alice@contoso.com"), nil)
	dr.DryRun = true
	n = invokeCount(h.sim)
	do, _ := h.do(dr)
	want(t, do, audit.DryRun, "remove mailbox forwarding of alice@contoso.com: ForwardingSmtpAddress smtp:y@evil.example")
	if u, _ := h.sim.User("alice@contoso.com"); u.ForwardingSmtpAddress != "smtp:y@evil.example" || invokeCount(h.sim)-n != 1 {
		t.Errorf("dry run changed something: %+v, %d admin API calls", u, invokeCount(h.sim)-n)
	}
}

// TestMailboxForwardingPermissions: a 403 names the permission and role; an
// executor without the admin API says so instead of calling anything.
func TestMailboxForwardingPermissions(t *testing.T) {
	sim := newSim(t)
	ctx := context.Background()
	sim.SetRoles(sim.Info().ClientID, []string{"User.Read.All"})
	ex := newExecutor(t, sim, graphexec.Config{})
	_, err := ex.Execute(ctx, request(actions.RemoveMailboxForwarding, user("bob@contoso.com"), nil))
	e := actions.AsError(err)
	if e.Status != 403 || e.Class != actions.Permanent || !strings.HasPrefix(e.Permission, actions.ExchangePermission) || !strings.Contains(e.Permission, actions.ExchangeRole) || !strings.Contains(e.Error(), "Exchange.ManageAsApp") {
		t.Errorf("403: %+v", e)
	}

	off := newExecutor(t, sim, graphexec.Config{TenantID: "no-exchange"}) // Exchange client nil
	n := invokeCount(sim)
	_, err = off.Execute(ctx, request(actions.RemoveMailboxForwarding, user("bob@contoso.com"), nil))
	if e := actions.AsError(err); e.Code != "ExchangeNotConfigured" || e.Class != actions.Permanent || invokeCount(sim) != n {
		t.Errorf("not configured: %+v", e)
	}
}

package defenderexec_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/defenderexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

// undo runs an undo of orig and returns the inverse's outcome.
func (h *harness) undo(orig string) (actions.Outcome, audit.Record) {
	h.t.Helper()
	u := request(actions.Undo, actions.Target{RequestID: orig}, nil)
	inv := h.expect(actions.InverseRequestID(u.ID))
	o, _ := h.do(u)
	want(h.t, o, audit.Succeeded, "requested")
	return inv()
}

func isolated(t *testing.T, sim *m365sim.Tenant, name string) bool {
	t.Helper()
	m, ok := sim.MachineByName(name)
	if !ok {
		t.Fatalf("no device %s", name)
	}
	return m.Isolated
}

func TestIsolateReleaseUndoEndToEnd(t *testing.T) {
	h := newHarness(t, hopts{})
	// By computer DNS name: resolved, isolated, the machine action followed.
	o, rec := h.do(request(actions.IsolateDevice, actions.Target{Device: "desktop-04.contoso.com"}, nil))
	want(t, o, audit.Succeeded, "Succeeded")
	if !isolated(t, h.sim, "desktop-04.contoso.com") {
		t.Fatal("device not isolated")
	}
	var after map[string]any
	_ = json.Unmarshal(rec.After, &after)
	if after["status"] != "Succeeded" || after["type"] != "Isolate" {
		t.Fatalf("audit after: %s", rec.After)
	}
	acts := h.sim.MachineActions()
	if len(acts) != 1 || !strings.Contains(acts[0].RequestorComment, o.RequestID) || !strings.Contains(acts[0].RequestorComment, "test reason") {
		t.Fatalf("machine actions: %+v", acts)
	}
	// Again: already in force, not requested twice.
	o2, _ := h.do(request(actions.IsolateDevice, actions.Target{Device: "desktop-04.contoso.com"}, nil))
	want(t, o2, audit.Succeeded, "already done")
	if n := len(h.sim.MachineActions()); n != 1 {
		t.Fatalf("%d machine actions after a repeat, want 1", n)
	}
	// Undo releases it.
	inv, _ := h.undo(o.RequestID)
	if inv.Action != actions.ReleaseDevice {
		t.Fatalf("inverse %s", inv.Action)
	}
	want(t, inv, audit.Succeeded, "Unisolate")
	if isolated(t, h.sim, "desktop-04.contoso.com") {
		t.Fatal("device still isolated after undo")
	}
	// By Entra device id, selective.
	m, _ := h.sim.MachineByName("desktop-05.contoso.com")
	o3, _ := h.do(request(actions.IsolateDevice, actions.Target{Device: m.AADDeviceID}, map[string]any{"selective": true}))
	want(t, o3, audit.Succeeded, "Selective")
}

func TestIsolationFinalStatusesAudited(t *testing.T) {
	h := newHarness(t, hopts{})
	for i, status := range []string{"Failed", "TimeOut", "Cancelled"} {
		name := []string{"desktop-07.contoso.com", "desktop-08.contoso.com", "desktop-09.contoso.com"}[i]
		m, _ := h.sim.MachineByName(name)
		h.sim.SetMachineActionOutcome(m.ID, status)
		o, rec := h.do(request(actions.IsolateDevice, actions.Target{Device: m.ID}, nil))
		if o.Outcome != audit.Failed || o.ErrorCode != "MachineAction"+status || rec.Outcome != audit.Failed || !strings.Contains(rec.Detail, status) {
			t.Fatalf("%s: %+v / %+v", status, o, rec)
		}
		if isolated(t, h.sim, name) {
			t.Fatalf("%s: device isolated", status)
		}
	}
}

func TestIndicatorsEndToEndAndUndo(t *testing.T) {
	h := newHarness(t, hopts{})
	sha := strings.Repeat("ab", 32)
	cases := []struct {
		action actions.Name
		target actions.Target
		typ    string
		value  string
		act    string
	}{
		{actions.BlockFile, actions.Target{File: strings.ToUpper(sha)}, "FileSha256", sha, "BlockAndRemediate"},
		{actions.BlockFile, actions.Target{File: strings.Repeat("c", 40)}, "FileSha1", strings.Repeat("c", 40), "BlockAndRemediate"},
		{actions.BlockURL, actions.Target{URL: "https://evil.example.net/login.php"}, "Url", "https://evil.example.net/login.php", "Block"},
		{actions.BlockDomain, actions.Target{Domain: "Evil-Domain.example"}, "DomainName", "evil-domain.example", "Block"},
		{actions.BlockDeviceIP, actions.Target{IP: "203.0.113.99"}, "IpAddress", "203.0.113.99", "Block"},
	}
	for _, c := range cases {
		req := request(c.action, c.target, map[string]any{"expires": "2d"})
		o, rec := h.do(req)
		want(t, o, audit.Succeeded, "indicator")
		var got *m365sim.DefenderIndicator
		for _, i := range h.sim.Indicators() {
			if i.IndicatorValue == c.value && i.IndicatorType == c.typ {
				got = &i
			}
		}
		if got == nil || got.Action != c.act || !strings.Contains(got.Title, req.ID) || !strings.Contains(got.Description, "test reason") || !strings.Contains(got.Description, req.ID) {
			t.Fatalf("%s: indicator %+v", c.action, got)
		}
		if got.ExpirationTime == nil || got.ExpirationTime.Sub(time.Now()) < 47*time.Hour || got.ExpirationTime.Sub(time.Now()) > 49*time.Hour {
			t.Fatalf("%s: expiry %v, want in 2 days", c.action, got.ExpirationTime)
		}
		if !strings.Contains(string(rec.After), got.ID) {
			t.Fatalf("%s: audit after %s lacks the indicator id", c.action, rec.After)
		}
		inv, irec := h.undo(req.ID)
		want(t, inv, audit.Succeeded, "deleted")
		if inv.Action != actions.RemoveIndicator || !strings.Contains(irec.Detail, got.ID) {
			t.Fatalf("inverse %+v", inv)
		}
		for _, i := range h.sim.Indicators() {
			if i.ID == got.ID {
				t.Fatalf("%s: indicator %s still there after undo", c.action, got.ID)
			}
		}
	}
}

func TestIndicatorExpiryRemovesIt(t *testing.T) {
	var now time.Time
	h := newHarness(t, hopts{})
	req := request(actions.BlockDomain, actions.Target{Domain: "expiring.example"}, map[string]any{"expires": "1h"})
	o, _ := h.do(req)
	want(t, o, audit.Succeeded, "unblocks automatically")
	now = time.Now().Add(2 * time.Hour)
	s := actions.NewExpiryScheduler(actions.ExpiryConfig{Tenant: h.tenant, JS: h.b.JS, KV: h.kv, Now: func() time.Time { return now }})
	wait := h.expect(actions.UnblockRequestID(req.ID))
	if n, err := s.Tick(context.Background()); err != nil || n != 1 {
		t.Fatalf("tick: %d %v", n, err)
	}
	inv, _ := wait()
	want(t, inv, audit.Succeeded, "deleted")
	if n := len(h.sim.Indicators()); n != 0 {
		t.Fatalf("%d indicators left after expiry", n)
	}
}

// Misuse: each attempt changes nothing in the tenant and is audited.
func TestDefenderMisuse(t *testing.T) {
	allowed := strings.Repeat("e", 64)
	h := newHarness(t, hopts{exec: func(c *defenderexec.Config) {
		c.AllowedHashes = []string{strings.ToUpper(allowed)}
		c.ProtectedDevices = []string{"desktop-10"}
	}})
	foreign := h.sim.AddIndicator(m365sim.DefenderIndicator{IndicatorValue: "partner.example", IndicatorType: "DomainName", Action: "Allowed", Title: "partner", Description: "allowed by the SOC"}, "analyst@contoso.com")

	cases := []struct {
		name    string
		req     *actions.Request
		outcome audit.Outcome
		detail  string
	}{
		{"CIDR to block_device_ip", request(actions.BlockDeviceIP, actions.Target{IP: "203.0.113.0/24"}, nil), audit.Rejected, "CIDR"},
		{"private address", request(actions.BlockDeviceIP, actions.Target{IP: "10.1.2.3"}, nil), audit.Refused, "private"},
		{"verified domain", request(actions.BlockDomain, actions.Target{Domain: "contoso.com"}, nil), audit.Refused, "verified domain"},
		{"verified subdomain URL", request(actions.BlockURL, actions.Target{URL: "https://mail.contoso.com/owa"}, nil), audit.Refused, "verified domain"},
		{"Microsoft's domain", request(actions.BlockURL, actions.Target{URL: "https://login.microsoftonline.com/common"}, nil), audit.Refused, "Microsoft"},
		{"allowed hash", request(actions.BlockFile, actions.Target{File: allowed}, nil), audit.Refused, "allow list"},
		{"protected device by playbook", byPlaybook(request(actions.IsolateDevice, actions.Target{Device: "ceo-laptop.contoso.com"}, nil)), audit.Refused, "protected"},
		{"listed device by playbook", byPlaybook(request(actions.IsolateDevice, actions.Target{Device: "desktop-10.contoso.com"}, nil)), audit.Refused, "protected"},
		{"protected device by analyst without override", request(actions.IsolateDevice, actions.Target{Device: "ceo-laptop.contoso.com"}, nil), audit.Refused, "may override"},
		{"server by playbook without an approval gate", byPlaybook(request(actions.IsolateDevice, actions.Target{Device: "dc01.contoso.com"}, nil)), audit.Refused, "needs approval"},
		{"remove_indicator without a snapshot", request(actions.RemoveIndicator, actions.Target{Domain: "partner.example"}, map[string]any{"indicator_id": foreign.ID}), audit.Rejected, "only as the inverse"},
		{"another principal's indicator kept", request(actions.BlockDomain, actions.Target{Domain: "partner.example"}, nil), audit.Failed, "does not overwrite"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, rec := h.do(c.req)
			if o.Outcome != c.outcome || !strings.Contains(o.Detail, c.detail) || rec.Outcome != c.outcome {
				t.Fatalf("%s %q, record %s; want %s mentioning %q", o.Outcome, o.Detail, rec.Outcome, c.outcome, c.detail)
			}
		})
	}
	// A forged inverse: a real block's undo_of with another indicator's id.
	real := request(actions.BlockDomain, actions.Target{Domain: "real-block.example"}, nil)
	o, _ := h.do(real)
	want(t, o, audit.Succeeded, "indicator")
	forged := request(actions.RemoveIndicator, actions.Target{Domain: "real-block.example"}, map[string]any{"indicator_id": foreign.ID, "undo_of": real.ID})
	fo, frec := h.do(forged)
	if fo.Outcome != audit.Rejected || !strings.Contains(frec.Detail, "differs from the snapshot") {
		t.Fatalf("forged inverse: %+v", fo)
	}
	// Nothing happened: no machine action, the foreign indicator unchanged,
	// only the real block added.
	if n := len(h.sim.MachineActions()); n != 0 {
		t.Fatalf("%d machine actions after refused isolations", n)
	}
	var values []string
	for _, i := range h.sim.Indicators() {
		values = append(values, i.IndicatorValue)
		if i.ID == foreign.ID && i.Action != "Allowed" {
			t.Fatalf("foreign indicator changed: %+v", i)
		}
	}
	if strings.Join(values, ",") != "partner.example,real-block.example" {
		t.Fatalf("indicators %v", values)
	}
}

func TestServerIsolationByPlaybookWaitsForApproval(t *testing.T) {
	h := newHarness(t, hopts{gate: true})
	o, rec := h.do(byPlaybook(request(actions.IsolateDevice, actions.Target{Device: "fs01.contoso.com"}, nil)))
	if o.Outcome != audit.PendingApproval || !strings.Contains(rec.Detail, "server") {
		t.Fatalf("%+v", o)
	}
	if n := len(h.sim.MachineActions()); n != 0 {
		t.Fatalf("%d machine actions while waiting for approval", n)
	}
	// A workstation by a playbook needs none; an analyst may isolate a server.
	want(t, first(h.do(byPlaybook(request(actions.IsolateDevice, actions.Target{Device: "desktop-11.contoso.com"}, nil)))), audit.Succeeded, "Succeeded")
	want(t, first(h.do(request(actions.IsolateDevice, actions.Target{Device: "sql01.contoso.com"}, nil))), audit.Succeeded, "Succeeded")
}

func first(o actions.Outcome, _ audit.Record) actions.Outcome { return o }

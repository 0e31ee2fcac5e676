package graphexec_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

func ip(s string) actions.Target { return actions.Target{IP: s} }

// rangesOf lists the ranges of every named location, by display name.
func rangesOf(sim *m365sim.Tenant) map[string][]string {
	out := map[string][]string{}
	for _, l := range sim.NamedLocations() {
		name, _ := l["displayName"].(string)
		rs, _ := l["ipRanges"].([]any)
		out[name] = []string{}
		for _, r := range rs {
			m, _ := r.(map[string]any)
			c, _ := m["cidrAddress"].(string)
			out[name] = append(out[name], c)
		}
	}
	return out
}

func policyJSON(t *testing.T, sim *m365sim.Tenant) string {
	t.Helper()
	pols := sim.Policies()
	if len(pols) != 1 {
		t.Fatalf("%d policies, want 1", len(pols))
	}
	b, _ := json.Marshal(pols[0])
	return string(b)
}

// TestUnblockLastRangeDeletesTheLocation: unblocking the last address of a
// location deletes the location (no placeholder range, which Entra may refuse)
// after the policy stopped naming it; with no blocked range left the policy
// is deleted too, and blocking again (the unblock's undo) creates both anew
// and blocks.
func TestUnblockLastRangeDeletesTheLocation(t *testing.T) {
	h := newHarness(t, hopts{exec: func(c *graphexec.Config) { c.CoalesceWindow = time.Millisecond }})
	for _, a := range []string{"203.0.113.7", "2001:db8:1::5"} {
		o, _ := h.do(request(actions.BlockIP, ip(a), nil))
		want(t, o, audit.Succeeded, "blocked")
	}
	o, _ := h.do(request(actions.UnblockIP, ip("203.0.113.7"), nil))
	want(t, o, audit.Succeeded, "unblocked")
	got := rangesOf(h.sim)
	if len(got) != 1 || len(got["Responder blocked IPs 1"]) != 1 || got["Responder blocked IPs 1"][0] != "2001:db8:1::5/128" {
		t.Fatalf("after the first unblock: %v", got)
	}
	dr := request(actions.UnblockIP, ip("2001:db8:1::5"), nil)
	dr.DryRun = true
	do, _ := h.do(dr)
	want(t, do, audit.DryRun, "the last range of \"Responder blocked IPs 1\": delete the location")
	if len(h.sim.NamedLocations()) != 1 || len(h.sim.Policies()) != 1 {
		t.Fatal("the dry run deleted something")
	}
	o, rec := h.do(request(actions.UnblockIP, ip("2001:db8:1::5"), nil))
	want(t, o, audit.Succeeded, "was deleted")
	if !strings.Contains(o.Detail, "policy") {
		t.Errorf("detail does not say the policy went: %q", o.Detail)
	}
	if n := len(h.sim.NamedLocations()); n != 0 {
		t.Fatalf("%d named locations left: %v", n, rangesOf(h.sim))
	}
	if n := len(h.sim.Policies()); n != 0 {
		t.Fatalf("%d policies left after the last range went", n)
	}
	if wireCount(h.sim, "PATCH", "namedLocations") != 2 { // the second block's and the first unblock's
		t.Errorf("a location was patched instead of deleted: %d PATCHes", wireCount(h.sim, "PATCH", "namedLocations"))
	}
	// Undo: block again; a new location and a new blocking policy.
	undo := request(actions.Undo, actions.Target{RequestID: rec.RequestID}, nil)
	wait := h.expect(actions.InverseRequestID(undo.ID))
	h.do(undo)
	uo, _ := wait()
	want(t, uo, audit.Succeeded, "blocked")
	got = rangesOf(h.sim)
	if len(got) != 1 || len(got["Responder blocked IPs 1"]) != 1 {
		t.Fatalf("after undo: %v", got)
	}
	pj := policyJSON(t, h.sim)
	for _, w := range []string{h.sim.NamedLocations()[0]["id"].(string), `"block"`} {
		if !strings.Contains(pj, w) {
			t.Errorf("recreated policy lacks %s: %s", w, pj)
		}
	}
}

// TestUnblockLastRangeOfOneOfTwoLocations: the emptied location leaves the
// policy, which keeps blocking the other location.
func TestUnblockLastRangeOfOneOfTwoLocations(t *testing.T) {
	h := newHarness(t, hopts{exec: func(c *graphexec.Config) { c.CoalesceWindow = time.Millisecond; c.MaxRangesPerLocation = 1 }})
	for _, a := range []string{"203.0.113.7", "203.0.113.8"} {
		o, _ := h.do(request(actions.BlockIP, ip(a), nil))
		want(t, o, audit.Succeeded, "blocked")
	}
	ids := map[string]string{}
	for _, l := range h.sim.NamedLocations() {
		ids[l["displayName"].(string)] = l["id"].(string)
	}
	if len(ids) != 2 {
		t.Fatalf("locations %v", rangesOf(h.sim))
	}
	o, _ := h.do(request(actions.UnblockIP, ip("203.0.113.7"), nil))
	want(t, o, audit.Succeeded, "was deleted")
	got := rangesOf(h.sim)
	if len(got) != 1 || len(got["Responder blocked IPs 2"]) != 1 {
		t.Fatalf("locations after the unblock: %v", got)
	}
	pj := policyJSON(t, h.sim)
	if strings.Contains(pj, ids["Responder blocked IPs 1"]) || !strings.Contains(pj, ids["Responder blocked IPs 2"]) || !strings.Contains(pj, `"block"`) {
		t.Errorf("policy: %s", pj)
	}
}

// TestLegacyPlaceholderLocationReused: a location an earlier version left
// holding only the 192.0.2.0/32 placeholder counts as empty: the next block
// replaces the placeholder.
func TestLegacyPlaceholderLocationReused(t *testing.T) {
	h := newHarness(t, hopts{exec: func(c *graphexec.Config) { c.CoalesceWindow = time.Millisecond }})
	raw := `{"@odata.type":"#microsoft.graph.ipNamedLocation","displayName":"Responder blocked IPs 1","isTrusted":false,
		"ipRanges":[{"@odata.type":"#microsoft.graph.iPv4CidrRange","cidrAddress":"192.0.2.0/32"}]}`
	if err := h.sim.AddRawNamedLocation(json.RawMessage(raw)); err != nil {
		t.Fatal(err)
	}
	o, _ := h.do(request(actions.BlockIP, ip("203.0.113.9"), nil))
	want(t, o, audit.Succeeded, "blocked")
	got := rangesOf(h.sim)
	if len(got) != 1 || len(got["Responder blocked IPs 1"]) != 1 || got["Responder blocked IPs 1"][0] != "203.0.113.9/32" {
		t.Fatalf("locations: %v", got)
	}
}

// TestUnblockLeavesOthersLocationsAlone (misuse): unblocking a range only an
// administrator's own location holds touches nothing; and when the location
// of Responder's last range is also used by another policy, the unblock is
// an audited failure that deletes nothing and leaves the range blocked.
func TestUnblockLeavesOthersLocationsAlone(t *testing.T) {
	h := newHarness(t, hopts{exec: func(c *graphexec.Config) { c.CoalesceWindow = time.Millisecond }})
	admin := `{"@odata.type":"#microsoft.graph.ipNamedLocation","id":"0000aaaa-0000-4000-8000-00000000000a","displayName":"Branch office","isTrusted":true,
		"ipRanges":[{"@odata.type":"#microsoft.graph.iPv4CidrRange","cidrAddress":"198.51.100.0/24"}]}`
	if err := h.sim.AddRawNamedLocation(json.RawMessage(admin)); err != nil {
		t.Fatal(err)
	}
	o, _ := h.do(request(actions.UnblockIP, ip("198.51.100.0/24"), nil))
	want(t, o, audit.Succeeded, "not blocked by Responder")
	if got := rangesOf(h.sim); len(got) != 1 || len(got["Branch office"]) != 1 || wireCount(h.sim, "DELETE", "conditionalAccess") != 0 {
		t.Fatalf("an administrator's location was touched: %v", got)
	}

	o, _ = h.do(request(actions.BlockIP, ip("203.0.113.7"), nil))
	want(t, o, audit.Succeeded, "blocked")
	var ours string
	for _, l := range h.sim.NamedLocations() {
		if l["displayName"] == "Responder blocked IPs 1" {
			ours = l["id"].(string)
		}
	}
	other := `{"displayName":"Admin: MFA outside the office","state":"enabled","conditions":{"users":{"includeUsers":["All"]},
		"locations":{"includeLocations":["All"],"excludeLocations":["` + ours + `"]}},"grantControls":{"operator":"OR","builtInControls":["mfa"]}}`
	if err := h.sim.AddRawPolicy(json.RawMessage(other)); err != nil {
		t.Fatal(err)
	}
	o, rec := h.do(request(actions.UnblockIP, ip("203.0.113.7"), nil))
	want(t, o, audit.Failed, "also uses")
	if o.ErrorCode != "NamedLocationInUse" || rec.ErrorCode != "NamedLocationInUse" || o.Attempts != 1 {
		t.Errorf("code %q/%q attempts %d", o.ErrorCode, rec.ErrorCode, o.Attempts)
	}
	if got := rangesOf(h.sim); len(got["Responder blocked IPs 1"]) != 1 || wireCount(h.sim, "DELETE", "conditionalAccess") != 0 {
		t.Errorf("the range was not left blocked: %v, %d DELETEs", got, wireCount(h.sim, "DELETE", "conditionalAccess"))
	}
	for _, p := range h.sim.Policies() {
		if p["displayName"] == "Responder: block sign-ins from blocked IPs" {
			if b, _ := json.Marshal(p); !strings.Contains(string(b), ours) {
				t.Errorf("Responder's policy dropped the location that still blocks: %s", b)
			}
		}
	}
}

package graphexec_test

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

// TestBlockIPRefusesTrustedRanges plays a spray from the company's own egress:
// block_ip of an address inside a trusted named location, or on the
// never-block list, is refused by the worker (the executor read the trusted
// locations), the tenant's named locations and policies are unchanged and the
// audit record says refused. A range outside them, even inside an untrusted
// location, is still blocked.
func TestBlockIPRefusesTrustedRanges(t *testing.T) {
	h := newHarness(t, hopts{worker: func(c *actions.WorkerConfig) {
		c.IP.NeverBlock = []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/48")}
	}})
	for _, raw := range []string{
		`{"@odata.type":"#microsoft.graph.ipNamedLocation","displayName":"Head office egress","isTrusted":true,
		  "ipRanges":[{"@odata.type":"#microsoft.graph.iPv4CidrRange","cidrAddress":"203.0.113.0/25"}]}`,
		`{"@odata.type":"#microsoft.graph.ipNamedLocation","displayName":"Suspicious hosting","isTrusted":false,
		  "ipRanges":[{"@odata.type":"#microsoft.graph.iPv4CidrRange","cidrAddress":"198.51.100.0/24"}]}`,
		`{"@odata.type":"#microsoft.graph.countryNamedLocation","displayName":"Home country","countriesAndRegions":["NL"]}`,
	} {
		if err := h.sim.AddRawNamedLocation(json.RawMessage(raw)); err != nil {
			t.Fatal(err)
		}
	}
	before, policies := h.sim.NamedLocations(), h.sim.Policies()
	for ip, why := range map[string]string{
		"203.0.113.7":       "trusted named location",
		"203.0.113.0/26":    "trusted named location",
		"203.0.112.0/23":    "trusted named location", // a broader range around it
		"2001:db8:1::5":     "never-block list",
		"2001:db8:1:2::/64": "never-block list",
	} {
		o, rec := h.do(request(actions.BlockIP, actions.Target{IP: ip}, nil))
		want(t, o, audit.Refused, why)
		if rec.Outcome != audit.Refused || rec.Action != string(actions.BlockIP) {
			t.Fatalf("%s: audit %s %s", ip, rec.Action, rec.Outcome)
		}
	}
	if got := h.sim.NamedLocations(); !reflect.DeepEqual(got, before) {
		t.Fatalf("the named locations changed:\n%v\n%v", before, got)
	}
	if !reflect.DeepEqual(h.sim.Policies(), policies) {
		t.Fatal("the Conditional Access policies changed")
	}
	if n := wireCount(h.sim, "POST", "namedLocations") + wireCount(h.sim, "PATCH", "namedLocations") + wireCount(h.sim, "POST", "conditionalAccess/policies"); n != 0 {
		t.Fatalf("%d writes reached the tenant", n)
	}
	// Outside the trusted range (and in an untrusted location): blocked.
	o, _ := h.do(request(actions.BlockIP, actions.Target{IP: "203.0.113.200"}, nil))
	want(t, o, audit.Succeeded, "")
	o, _ = h.do(request(actions.BlockIP, actions.Target{IP: "198.51.100.9"}, nil))
	want(t, o, audit.Succeeded, "")
}

// TestBlockIPFailsClosedWithoutTrustedLocations: when the named locations
// cannot be read, nothing is blocked.
func TestBlockIPFailsClosedWithoutTrustedLocations(t *testing.T) {
	h := newHarness(t, hopts{})
	h.sim.AddFault(m365sim.Fault{Method: "GET", PathPrefix: "/v1.0/identity/conditionalAccess/namedLocations", Status: 403,
		Code: "Authorization_RequestDenied", Message: "Insufficient privileges to complete the operation."})
	before := h.sim.NamedLocations()
	o, rec := h.do(request(actions.BlockIP, actions.Target{IP: "203.0.113.7"}, nil))
	if o.Outcome == audit.Succeeded || rec.Outcome == audit.Succeeded || !strings.Contains(o.Detail, "Policy.Read.All") {
		t.Fatalf("blocked without knowing the trusted locations: %+v", o)
	}
	if !reflect.DeepEqual(h.sim.NamedLocations(), before) || wireCount(h.sim, "POST", "namedLocations") != 0 {
		t.Fatal("the tenant changed")
	}
}

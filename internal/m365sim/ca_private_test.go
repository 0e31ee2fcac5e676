package m365sim

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestNamedLocationRefusesNonPublicRanges: an IP named location takes public
// ranges only; a private, loopback or link-local range (or one overlapping
// them) is a 400 and nothing is stored. An update may not empty ipRanges.
func TestNamedLocationRefusesNonPublicRanges(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	url := tn.Info().GraphURL + "/identity/conditionalAccess/namedLocations"
	body := func(cidrs ...string) string {
		var rs []map[string]any
		for _, c := range cidrs {
			typ := "#microsoft.graph.iPv4CidrRange"
			if strings.Contains(c, ":") {
				typ = "#microsoft.graph.iPv6CidrRange"
			}
			rs = append(rs, map[string]any{"@odata.type": typ, "cidrAddress": c})
		}
		b, _ := json.Marshal(map[string]any{"@odata.type": "#microsoft.graph.ipNamedLocation", "displayName": "x", "ipRanges": rs})
		return string(b)
	}
	before := len(tn.NamedLocations())
	for _, c := range []string{"10.1.2.0/24", "172.20.0.1/32", "192.168.1.0/24", "127.0.0.1/32", "169.254.10.0/24", "100.64.1.1/32",
		"172.0.0.0/9", "fd12:3456::/48", "fe80::1/128", "::1/128"} {
		res, b := do(t, tn, "POST", url, tok, body("203.0.113.0/24", c))
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal([]byte(b), &e)
		if res.StatusCode != 400 || e.Error.Code != "BadRequest" || !strings.Contains(e.Error.Message, fmt.Sprintf("'%s' is not allowed", c)) {
			t.Errorf("%s: %d %s", c, res.StatusCode, b)
		}
	}
	if n := len(tn.NamedLocations()); n != before {
		t.Fatalf("%d named locations stored from refused requests", n-before)
	}
	res, b := do(t, tn, "POST", url, tok, body("203.0.113.0/24", "2001:db8:1::5/128", "8.8.8.8/32"))
	if res.StatusCode != 201 {
		t.Fatalf("public ranges: %d %s", res.StatusCode, b)
	}
	var got struct{ ID string }
	_ = json.Unmarshal([]byte(b), &got)
	res, b = do(t, tn, "PATCH", url+"/"+got.ID, tok, `{"@odata.type":"#microsoft.graph.ipNamedLocation","ipRanges":[]}`)
	if res.StatusCode != 400 || !strings.Contains(b, "at least one IP range") {
		t.Errorf("emptying PATCH: %d %s", res.StatusCode, b)
	}
	res, b = do(t, tn, "PATCH", url+"/"+got.ID, tok, body("10.0.0.0/16"))
	if res.StatusCode != 400 {
		t.Errorf("private PATCH: %d %s", res.StatusCode, b)
	}
	for _, l := range tn.NamedLocations() {
		if l["id"] == got.ID {
			if rs, _ := l["ipRanges"].([]any); len(rs) != 3 {
				t.Errorf("refused updates changed the location: %v", l["ipRanges"])
			}
		}
	}
}

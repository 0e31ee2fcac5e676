package m365sim

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSecurityAlertsV2: the list is newest first, filters on
// lastUpdateDateTime, pages with $skip in @odata.nextLink, refuses a filter
// on a property the List alerts_v2 page does not name and an invalid $top,
// and needs SecurityAlert.Read.All.
func TestSecurityAlertsV2(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	in := tn.Info()
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	first := tn.InjectAlert(AlertSpec{Title: "first", Category: "Ransomware", DeviceID: "4f1b6f1e0a5c3d2e1f00112233445566778899aa"})
	second := tn.InjectAlert(AlertSpec{Title: "second", Category: "InitialAccess", Sender: "x@evil.example", Mailbox: "alice@contoso.com", URL: "https://evil.example/a"})
	list := func(q url.Values) (int, map[string]any) {
		r, body := do(t, tn, "GET", in.GraphURL+"/security/alerts_v2?"+strings.ReplaceAll(q.Encode(), "+", "%20"), tok, "")
		var out map[string]any
		_ = json.Unmarshal([]byte(body), &out)
		return r.StatusCode, out
	}
	code, out := list(url.Values{"$top": {"1"}, "$filter": {"lastUpdateDateTime ge " + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}})
	vals, _ := out["value"].([]any)
	if code != 200 || len(vals) != 1 || vals[0].(map[string]any)["id"] != second || out["@odata.nextLink"] == nil {
		t.Fatalf("first page: %d %v", code, out)
	}
	next, _ := out["@odata.nextLink"].(string)
	if !strings.Contains(next, "skip=1") {
		t.Errorf("nextLink %q does not carry $skip", next)
	}
	r, body := do(t, tn, "GET", next, tok, "")
	if r.StatusCode != 200 || !strings.Contains(body, first) || strings.Contains(body, "@odata.nextLink") {
		t.Errorf("second page: %d %s", r.StatusCode, body)
	}
	if code, _ := list(url.Values{"$filter": {"lastUpdateDateTime ge 2999-01-01T00:00:00Z"}}); code != 200 {
		t.Errorf("future filter: %d", code)
	}
	if code, out := list(url.Values{"$filter": {"title eq 'first'"}}); code != 400 {
		t.Errorf("filter on title: %d %v", code, out)
	}
	if code, _ := list(url.Values{"$top": {"0"}}); code != 400 {
		t.Errorf("$top=0: %d", code)
	}
	var roles []string
	for _, r := range ResponderRoles() {
		if r != "SecurityAlert.Read.All" {
			roles = append(roles, r)
		}
	}
	tn.SetRoles(in.ClientID, roles)
	tok = bearer(t, tn, "https://graph.microsoft.com/.default")
	if code, _ := list(url.Values{}); code != 403 {
		t.Errorf("without SecurityAlert.Read.All: %d", code)
	}
}

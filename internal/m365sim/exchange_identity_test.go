package m365sim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestGetMailboxIdentityForms: Get-Mailbox -Identity accepts every form
// Microsoft documents (name/alias, display name, canonical path form, DN,
// legacyExchangeDN, smtp: address, UPN, object id, mailbox GUID) and resolves
// each to the one mailbox; a path form naming another tenant, or a name that
// matches nobody, is Exchange's not-found error.
// Source: https://learn.microsoft.com/powershell/module/exchange/get-mailbox#-identity
func TestGetMailboxIdentityForms(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	in := tn.Info()
	invoke := in.ExchangeURL + "/" + in.TenantID + "/InvokeCommand?$select=UserPrincipalName,ExternalDirectoryObjectId,LegacyExchangeDN,ExchangeGuid"
	tok := bearer(t, tn, "https://outlook.office365.com/.default")
	get := func(id string) (int, map[string]any, string) {
		b, _ := json.Marshal(map[string]any{"CmdletInput": map[string]any{"CmdletName": "Get-Mailbox", "Parameters": map[string]any{"Identity": id}}})
		r, body := do(t, tn, "POST", invoke, tok, string(b))
		var got struct {
			Value []map[string]any `json:"value"`
		}
		_ = json.Unmarshal([]byte(body), &got)
		if r.StatusCode != 200 || len(got.Value) != 1 {
			return r.StatusCode, nil, body
		}
		return r.StatusCode, got.Value[0], body
	}
	_, bob, body := get("bob@contoso.com")
	if bob == nil {
		t.Fatalf("Get-Mailbox bob: %s", body)
	}
	legacy, _ := bob["LegacyExchangeDN"].(string)
	guid, _ := bob["ExchangeGuid"].(string)
	if !strings.HasPrefix(legacy, "/o=ExchangeLabs/") || guid == "" || guid == BobID {
		t.Fatalf("LegacyExchangeDN %q ExchangeGuid %q", legacy, guid)
	}
	for _, id := range []string{
		"bob", "Bob Brown", "smtp:bob@contoso.com", "SMTP:Bob@Contoso.com", BobID, guid, legacy,
		"NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.com/bob",
		"NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.com/" + BobID,
		"contoso.com/bob",
		"CN=bob,OU=contoso.com,OU=Microsoft Exchange Hosted Organizations,DC=NAMPR11A004,DC=PROD,DC=OUTLOOK,DC=COM",
	} {
		status, v, body := get(id)
		if v == nil || v["UserPrincipalName"] != "bob@contoso.com" || v["ExternalDirectoryObjectId"] != BobID {
			t.Errorf("Get-Mailbox -Identity %q: %d %s", id, status, body)
		}
	}
	for _, id := range []string{
		"NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/fabrikam.onmicrosoft.com/bob",
		"nobody", "/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=0000-bob",
	} {
		status, v, body := get(id)
		if v != nil || status == http.StatusOK || !strings.Contains(body, "couldn't be found") {
			t.Errorf("Get-Mailbox -Identity %q resolved: %d %s", id, status, body)
		}
	}
}

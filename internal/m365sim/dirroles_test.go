package m365sim

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/m365"
)

// An app holding User-PasswordProfile.ReadWrite.All but no User Administrator
// role is refused a password reset with Graph's 403; the wire log names the
// missing role; the user's password is unchanged. With the role it succeeds
// for an ordinary user and is refused for an administrator until the app
// holds Privileged Authentication Administrator.
func TestPasswordResetNeedsDirectoryRole(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	c := creds(tn)
	app := tn.AddApp(App{ClientSecret: "s3cret~value", Roles: []string{"User-PasswordProfile.ReadWrite.All", "User.Read.All"}, DisplayName: "no-role"})
	c.ClientID, c.ClientSecret = app.ClientID, app.ClientSecret
	tok := func() string {
		cred, err := c.TokenCredential()
		if err != nil {
			t.Fatal(err)
		}
		tk, _, err := m365.Token(context.Background(), cred, "https://graph.microsoft.com/.default")
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	reset := `{"passwordProfile":{"password":"Tr0ub4dor&3xyz","forceChangePasswordNextSignIn":true}}`
	before, _ := tn.User(BobID)
	res, body := do(t, tn, "PATCH", tn.Info().GraphURL+"/users/"+BobID, tok(), reset)
	if res.StatusCode != 403 || !strings.Contains(body, `"Authorization_RequestDenied"`) || !strings.Contains(body, "Insufficient privileges to complete the operation.") {
		t.Fatalf("reset without role: %d %s", res.StatusCode, body)
	}
	if after, _ := tn.User(BobID); after.PasswordChanges != before.PasswordChanges {
		t.Fatalf("password changed without the role")
	}
	if w := lastWire(tn); w.MissingPermission != "User Administrator" {
		t.Fatalf("wire names %q, want User Administrator", w.MissingPermission)
	}

	app.DirectoryRoles = []string{"User Administrator"}
	tn.AddApp(app)
	if res, body := do(t, tn, "PATCH", tn.Info().GraphURL+"/users/"+BobID, tok(), reset); res.StatusCode != 204 {
		t.Fatalf("reset with User Administrator: %d %s", res.StatusCode, body)
	}
	// A Global Administrator needs Privileged Authentication Administrator.
	res, _ = do(t, tn, "PATCH", tn.Info().GraphURL+"/users/breakglass@contoso.com", tok(), reset)
	if res.StatusCode != 403 || lastWire(tn).MissingPermission != "Privileged Authentication Administrator" {
		t.Fatalf("reset of an administrator: %d %q", res.StatusCode, lastWire(tn).MissingPermission)
	}
	app.DirectoryRoles = []string{"Privileged Authentication Administrator"}
	tn.AddApp(app)
	if res, body := do(t, tn, "PATCH", tn.Info().GraphURL+"/users/breakglass@contoso.com", tok(), reset); res.StatusCode != 204 {
		t.Fatalf("reset with PAA: %d %s", res.StatusCode, body)
	}
}

// The service principal's directory roles are role assignments whose
// principalId is its object id.
func TestServicePrincipalRoleAssignments(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	sp := spID(tn.Info().ClientID)
	q := url.Values{"$filter": {"principalId eq '" + sp + "'"}}
	res, body := do(t, tn, "GET", tn.Info().GraphURL+"/roleManagement/directory/roleAssignments?"+q.Encode(), tok, "")
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	var out struct {
		Value []struct{ RoleDefinitionID, PrincipalID string } `json:"value"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, v := range out.Value {
		if v.PrincipalID != sp {
			t.Fatalf("filter leaked %s", v.PrincipalID)
		}
		got[v.RoleDefinitionID] = true
	}
	if !got[roleTemplates["User Administrator"]] || !got[exchangeRoleTemplates["Exchange Recipient Administrator"]] || len(got) != 3 { // and Security Administrator (the Tenant Allow/Block List)
		t.Fatalf("sp roles = %v", got)
	}
}

func lastWire(tn *Tenant) WireEntry {
	w := tn.WireLog()
	return w[len(w)-1]
}

package m365sim

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/m365"
)

// TestExchangeAdminMailboxForwarding: Get-Mailbox and Set-Mailbox through
// InvokeCommand read and change the state InjectMailboxForwarding sets, with
// Exchange's token audience, permission, role and error shapes.
func TestExchangeAdminMailboxForwarding(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	in := tn.Info()
	invoke := in.ExchangeURL + "/" + in.TenantID + "/InvokeCommand"
	tok := bearer(t, tn, "https://outlook.office365.com/.default")
	if _, err := tn.InjectMailboxForwarding(MailboxForwarding{User: "bob@contoso.com", ForwardingSmtpAddress: "exfil@evil.example", DeliverToMailboxAndForward: true}); err != nil {
		t.Fatal(err)
	}
	cmd := func(name string, params map[string]any) string {
		b, _ := json.Marshal(map[string]any{"CmdletInput": map[string]any{"CmdletName": name, "Parameters": params}})
		return string(b)
	}

	// A Graph token is refused: wrong audience, Exchange's bare 401.
	r, body := do(t, tn, "POST", invoke, bearer(t, tn, "https://graph.microsoft.com/.default"), cmd("Get-Mailbox", map[string]any{"Identity": "bob@contoso.com"}))
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), "00000002-0000-0ff1-ce00-000000000000") {
		t.Fatalf("graph token: %d %s %q", r.StatusCode, body, r.Header.Get("WWW-Authenticate"))
	}

	r, body = do(t, tn, "POST", invoke+"?$select=ForwardingSmtpAddress,DeliverToMailboxAndForward,UserPrincipalName", tok, cmd("Get-Mailbox", map[string]any{"Identity": "bob@contoso.com"}))
	var got struct {
		Value []map[string]any `json:"value"`
	}
	if r.StatusCode != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got.Value) != 1 {
		t.Fatalf("Get-Mailbox: %d %s", r.StatusCode, body)
	}
	if v := got.Value[0]; v["ForwardingSmtpAddress"] != "smtp:exfil@evil.example" || v["DeliverToMailboxAndForward"] != true || len(v) != 3 {
		t.Errorf("Get-Mailbox value %v", v)
	}

	// Clear it, as remove_mailbox_forwarding does.
	r, body = do(t, tn, "POST", invoke, tok, cmd("Set-Mailbox", map[string]any{"Identity": "bob@contoso.com", "ForwardingSmtpAddress": nil, "ForwardingAddress": nil, "DeliverToMailboxAndForward": false}))
	if r.StatusCode != 200 || r.Header.Get("request-id") == "" {
		t.Fatalf("Set-Mailbox: %d %s", r.StatusCode, body)
	}
	if u, _ := tn.User("bob@contoso.com"); u.ForwardingSmtpAddress != "" || u.ForwardingAddress != "" || u.DeliverToMailboxAndForward {
		t.Errorf("forwarding not cleared: %+v", u)
	}
	// The same again changes nothing, and Exchange says so.
	_, body = do(t, tn, "POST", invoke, tok, cmd("Set-Mailbox", map[string]any{"Identity": "bob@contoso.com", "ForwardingSmtpAddress": nil}))
	if !strings.Contains(body, "no settings of 'bob' have been modified") {
		t.Errorf("no-op warning missing: %s", body)
	}
	// ForwardingAddress resolves to a recipient of the tenant.
	r, body = do(t, tn, "POST", invoke, tok, cmd("Set-Mailbox", map[string]any{"Identity": "bob", "ForwardingAddress": "alice@contoso.com"}))
	if u, _ := tn.User("bob@contoso.com"); r.StatusCode != 200 || u.ForwardingAddress != "alice" {
		t.Errorf("ForwardingAddress: %d %s %+v", r.StatusCode, body, u)
	}

	// Errors in Exchange's shape.
	cases := []struct {
		name, body string
		status     int
		want       string
	}{
		{"unknown identity", cmd("Set-Mailbox", map[string]any{"Identity": "nobody@contoso.com", "ForwardingSmtpAddress": nil}), 404,
			`Ex6F9304|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|The operation couldn't be performed because object 'nobody@contoso.com' couldn't be found`},
		{"unknown parameter", cmd("Set-Mailbox", map[string]any{"Identity": "bob", "Nope": 1}), 400, "ParameterBindingException"},
		{"bad address", cmd("Set-Mailbox", map[string]any{"Identity": "bob", "ForwardingSmtpAddress": "not an address"}), 400, "is not a valid SMTP address"},
		{"unknown cmdlet", cmd("Remove-Mailbox", map[string]any{"Identity": "bob"}), 400, "CommandNotFoundException"},
		{"no body", `{}`, 400, "CmdletInput"},
	}
	for _, c := range cases {
		r, body := do(t, tn, "POST", invoke, tok, c.body)
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Details []struct {
					Message string `json:"message"`
				} `json:"details"`
			} `json:"error"`
		}
		if r.StatusCode != c.status || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code == "" || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s", c.name, r.StatusCode, body)
		}
	}

	// Without Exchange.ManageAsApp: 403; with it but no Exchange role: 403 too.
	tn.SetRoles(in.ClientID, []string{"User.Read.All"})
	r, body = do(t, tn, "POST", invoke, bearer(t, tn, "https://outlook.office365.com/.default"), cmd("Get-Mailbox", map[string]any{"Identity": "bob"}))
	if r.StatusCode != http.StatusForbidden || !strings.Contains(body, "Exchange.ManageAsApp") {
		t.Errorf("no ManageAsApp: %d %s", r.StatusCode, body)
	}
	app := tn.AddApp(App{ClientSecret: "s3cret-exo", Roles: []string{"Exchange.ManageAsApp"}})
	c := creds(tn)
	c.ClientID, c.ClientSecret = app.ClientID, app.ClientSecret
	cred, err := c.TokenCredential()
	if err != nil {
		t.Fatal(err)
	}
	tok2, _, err := m365.Token(context.Background(), cred, "https://outlook.office365.com/.default")
	if err != nil {
		t.Fatal(err)
	}
	r, body = do(t, tn, "POST", invoke, tok2, cmd("Set-Mailbox", map[string]any{"Identity": "bob", "ForwardingSmtpAddress": nil}))
	if r.StatusCode != http.StatusForbidden || !strings.Contains(body, "CmdletAccessDeniedException") {
		t.Errorf("no Exchange role: %d %s", r.StatusCode, body)
	}
}

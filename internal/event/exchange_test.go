package event

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Exchange records keep both the actor (User) and the mailbox (Mailbox), in the
// identity form the record used; rule ids keep their exact digits.
func TestExchangeMailboxAndActor(t *testing.T) {
	cases := []struct {
		name, rec           string
		user, mailbox, rule string
	}{
		{"mailbox audit by a delegate",
			`{"CreationTime":"2025-01-02T03:04:05","Id":"a1","Operation":"UpdateInboxRules","RecordType":2,"Workload":"Exchange",
			"UserId":"adele.vance@contoso.com","MailboxOwnerUPN":"megan.bowen@contoso.com",
			"OperationProperties":[{"Name":"RuleId","Value":"18446744073709551615"},{"Name":"RuleActions","Value":"[]"}]}`,
			"adele.vance@contoso.com", "megan.bowen@contoso.com", "18446744073709551615"},
		{"rule id as a JSON number above 2^63",
			`{"CreationTime":"2025-01-02T03:04:05","Id":"a2","Operation":"UpdateInboxRules","UserId":"u@contoso.com","MailboxOwnerUPN":"u@contoso.com",
			"OperationProperties":[{"Name":"RuleId","Value":9223372036854775809}]}`,
			"u@contoso.com", "u@contoso.com", "9223372036854775809"},
		{"New-InboxRule by an admin with -Mailbox",
			`{"CreationTime":"2025-01-02T03:04:05","Id":"a3","Operation":"New-InboxRule","RecordType":1,"UserId":"admin@contoso.com",
			"ObjectId":"NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/megan.bowen\\Fwd",
			"Parameters":[{"Name":"Mailbox","Value":"megan.bowen"},{"Name":"ForwardTo","Value":"x@evil.example"}]}`,
			"admin@contoso.com", "megan.bowen", ""},
		{"New-InboxRule without -Mailbox: the path form of ObjectId",
			`{"CreationTime":"2025-01-02T03:04:05","Id":"a4","Operation":"New-InboxRule","RecordType":1,"UserId":"admin@contoso.com",
			"ObjectId":"NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/megan.bowen\\Fwd"}`,
			"admin@contoso.com", "NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/megan.bowen", ""},
		{"Set-InboxRule -Identity mailbox\\rule",
			`{"CreationTime":"2025-01-02T03:04:05","Id":"a5","Operation":"Set-InboxRule","UserId":"admin@contoso.com",
			"Parameters":[{"Name":"Identity","Value":"Megan Bowen\\Fwd"}]}`,
			"admin@contoso.com", "Megan Bowen", ""},
		{"Set-Mailbox -Identity legacyExchangeDN",
			`{"CreationTime":"2025-01-02T03:04:05","Id":"a6","Operation":"Set-Mailbox","UserId":"admin@contoso.com",
			"Parameters":[{"Name":"Identity","Value":"/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=1a2b-megan.bowen"}]}`,
			"admin@contoso.com", "/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=1a2b-megan.bowen", ""},
		{"Set-Mailbox, Identity only in ObjectId",
			`{"CreationTime":"2025-01-02T03:04:05","Id":"a7","Operation":"Set-Mailbox","UserId":"admin@contoso.com",
			"ObjectId":"contoso.onmicrosoft.com/megan.bowen","Parameters":"-ForwardingSmtpAddress x@evil.example"}`,
			"admin@contoso.com", "contoso.onmicrosoft.com/megan.bowen", ""},
		{"sign-in record: no mailbox",
			`{"CreationTime":"2025-01-02T03:04:05","Id":"a8","Operation":"UserLoggedIn","UserId":"u@contoso.com",
			"OperationProperties":[{"Name":"RuleId","Value":"1"}]}`,
			"u@contoso.com", "", ""},
	}
	for _, c := range cases {
		env, err := Normalize("", json.RawMessage(c.rec))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if env.User != c.user || env.Mailbox != c.mailbox || env.RuleID != c.rule {
			t.Errorf("%s: user %q mailbox %q rule %q, want %q %q %q", c.name, env.User, env.Mailbox, env.RuleID, c.user, c.mailbox, c.rule)
		}
		ref, err := normalizeReference("", json.RawMessage(c.rec))
		if err != nil || ref.Mailbox != env.Mailbox || ref.RuleID != env.RuleID {
			t.Errorf("%s: reference %q %q %v", c.name, ref.Mailbox, ref.RuleID, err)
		}
	}
}

// The public SEKOIA capture of New-InboxRule names the mailbox only in its
// path-form ObjectId; the UpdateInboxRules capture in MailboxOwnerUPN, with a
// negative 64-bit RuleId.
func TestExchangeMailboxPublicFixtures(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "fixtures", "public", "o365-audit", "sekoia-o365")
	read := func(name string) json.RawMessage {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("public fixtures: %v", err)
		}
		var f struct {
			Input struct{ Message string } `json:"input"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		return json.RawMessage(f.Input.Message)
	}
	env, err := Normalize("", read("inbox_rule.json"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "EURPR07A010.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/example.onmicrosoft.com/bc1b1df3-f861-4aec-bf7c-40ce5b5566c1"; env.Mailbox != want {
		t.Errorf("inbox_rule.json: mailbox %q, want %q", env.Mailbox, want)
	}
	env, err = Normalize("", read("operation_properties_03.json"))
	if err != nil {
		t.Fatal(err)
	}
	if env.Mailbox != "user1" || env.RuleID != "-5555555555555555555" {
		t.Errorf("operation_properties_03.json: mailbox %q rule %q", env.Mailbox, env.RuleID)
	}
}

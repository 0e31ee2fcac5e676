package playbook

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/event"
)

// publicRecords returns every Microsoft record of the public fixtures that
// Normalize accepts, named "<folder>/<file>[#n]": SEKOIA files unwrapped,
// NDJSON logs line by line, Graph list responses item by item.
func publicRecords(t *testing.T) map[string]event.Envelope {
	t.Helper()
	out := map[string]event.Envelope{}
	add := func(name string, raw []byte) {
		if env, err := event.Normalize("", raw); err == nil {
			out[name] = env
		}
	}
	root := fixtures(t)
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch {
		case strings.HasSuffix(path, ".log"):
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(nil, 1<<20)
			for i := 0; sc.Scan(); i++ {
				add(fmt.Sprintf("%s#%d", rel, i), bytes.Clone(sc.Bytes()))
			}
		case strings.HasSuffix(path, ".json"):
			var f struct {
				Input *struct {
					Message string `json:"message"`
				} `json:"input"`
				Value []json.RawMessage `json:"value"`
			}
			_ = json.Unmarshal(b, &f)
			switch {
			case f.Input != nil:
				add(rel, []byte(f.Input.Message))
			case len(f.Value) > 0:
				for i, v := range f.Value {
					add(fmt.Sprintf("%s#%d", rel, i), v)
				}
			default:
				add(rel, b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// firing describes a match: "<playbook> <action>=<target>,…" or an error.
func firing(ms []Match, err error) []string {
	var out []string
	for _, m := range ms {
		var steps []string
		for _, s := range m.Steps {
			steps = append(steps, string(s.Action)+"="+s.Target.User+s.Target.IP)
		}
		out = append(out, m.Playbook+" "+strings.Join(steps, ","))
	}
	if err != nil {
		out = append(out, "error: "+err.Error())
	}
	sort.Strings(out)
	return out
}

// TestShippedPlaybooksOnPublicFixtures runs the shipped playbooks over every
// record of the public fixtures (real records, written by others) and checks
// which fire, on which record, and on whom: rule actions on the mailbox the
// rule lives in (in the record's own identity form, which the executor
// resolves through Get-Mailbox), session revocation on whoever acted.
func TestShippedPlaybooksOnPublicFixtures(t *testing.T) {
	set := loadShipped(t)
	recs := publicRecords(t)
	if len(recs) < 100 {
		t.Fatalf("only %d public records read", len(recs))
	}
	const (
		joe   = "joe.danger@mauriziobrancaoutlook.onmicrosoft.com"
		joel  = "joel.miller@mauriziobrancaoutlook.onmicrosoft.com"
		noUsr = "error: playbook \"external-forwarding-rule\": step 2 (revoke_sessions): the event has no user to act on"
	)
	want := map[string][]string{
		// Identity Protection, anonymizedIPAddress high (Azure diagnostic export):
		// the anonymous-IP response as for the sign-in record, besides high-risk-user.
		"graph/elastic-integrations-azure-identity-protection/test-userriskevents-raw.log#0": {
			"high-risk-user disable_user=" + joe + ",revoke_sessions=" + joe + ",confirm_compromised=" + joe,
			"risky-detection-anonymous-ip revoke_sessions=" + joe + ",block_ip=67.43.156.42"},
		"graph/elastic-integrations-azure-identity-protection/test-userriskevents-raw.log#1": {
			"high-risk-user disable_user=" + joel + ",revoke_sessions=" + joel + ",confirm_compromised=" + joel,
			"password-spray-success reset_password=" + joel + ",revoke_sessions=" + joel},
		// Graph's own tutorial: anonymizedIPAddress, medium, atRisk.
		"graph/ms-graph-docs/concepts_tutorial-riskdetection-api.md.response-riskDetections-atRisk.json#0": {
			"risky-detection-anonymous-ip revoke_sessions=MyTestUser1@contoso.com,block_ip=178.17.170.23"},
		// Real forwarding rules whose actor SEKOIA anonymised ("user1"): the
		// match fails naming what is missing, never a silent no-op.
		"o365-audit/sekoia-o365/inbox_rule.json":              {noUsr},
		"o365-audit/sekoia-o365/operation_properties_02.json": {noUsr},
	}
	for name, env := range recs {
		ms, err := set.Match(&env)
		got := firing(ms, err)
		if w := want[name]; strings.Join(got, "\n") != strings.Join(w, "\n") {
			t.Errorf("%s:\n got  %q\n want %q", name, got, w)
		}
	}

	// The same real records with a real actor: an admin created the rule in
	// someone else's mailbox. The rule is deleted from the mailbox (New-InboxRule:
	// the path-form ObjectId; UpdateInboxRules: MailboxOwnerUPN), the admin's
	// sessions are revoked.
	with := func(name string, set map[string]any) event.Envelope {
		var rec map[string]any
		if err := json.Unmarshal(recs[name].Raw, &rec); err != nil {
			t.Fatal(err)
		}
		for k, v := range set {
			rec[k] = v
		}
		b, _ := json.Marshal(rec)
		env, err := event.Normalize("", b)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	for _, c := range []struct {
		name string
		set  map[string]any
		want string
	}{
		{"o365-audit/sekoia-o365/inbox_rule.json", map[string]any{"UserId": "admin@example.onmicrosoft.com"},
			"external-forwarding-rule delete_forward_rules=EURPR07A010.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/example.onmicrosoft.com/bc1b1df3-f861-4aec-bf7c-40ce5b5566c1,revoke_sessions=admin@example.onmicrosoft.com"},
		{"o365-audit/sekoia-o365/operation_properties_02.json", map[string]any{"UserId": "delegate@organization.name.com", "MailboxOwnerUPN": "owner@organization.name.com"},
			"external-forwarding-rule delete_forward_rules=owner@organization.name.com,revoke_sessions=delegate@organization.name.com"},
	} {
		env := with(c.name, c.set)
		ms, err := set.Match(&env)
		if got := firing(ms, err); len(got) != 1 || got[0] != c.want {
			t.Errorf("%s with %v:\n got  %q\n want %q", c.name, c.set, got, c.want)
		}
	}

	// One incident, both feeds: the sign-in record of the detection above
	// (same user and address) gets the same suppression key, so the engine
	// acts on whichever arrives first and suppresses the other.
	det := recs["graph/elastic-integrations-azure-identity-protection/test-userriskevents-raw.log#0"]
	dm := fired(mustMatch(t, set, &det), "risky-detection-anonymous-ip")
	signin := fmt.Sprintf(`{"id":"0d9f2c1e-7b3a-4c5d-8e6f-1a2b3c4d5e6f","createdDateTime":"2022-08-22T18:05:06Z",
		"userPrincipalName":%q,"userId":%q,"ipAddress":"67.43.156.42","appDisplayName":"Office 365 Exchange Online",
		"status":{"errorCode":0},"riskState":"atRisk","riskEventTypes_v2":["anonymizedIPAddress"]}`, joe, det.UserID)
	senv, err := event.Normalize("", json.RawMessage(signin))
	if err != nil {
		t.Fatal(err)
	}
	sm := fired(mustMatch(t, set, &senv), "risky-signin-anonymous-ip")
	if dm == nil || sm == nil || dm.SuppressionKey == "" || dm.SuppressionKey != sm.SuppressionKey {
		t.Errorf("detection and sign-in of one incident: keys %v / %v", dm, sm)
	}
	// An IPv6 detection blocks that one address.
	v6 := with2(t, det, map[string]any{"ipAddress": "2001:DB8:4a::17", "riskLevel": "medium"})
	if m := fired(mustMatch(t, set, &v6), "risky-detection-anonymous-ip"); m == nil || m.Steps[1].Target.IP != "2001:db8:4a::17" {
		t.Errorf("IPv6 detection: %+v", m)
	}
	// Low risk, or an unrelated detection type, does not fire.
	low := with2(t, det, map[string]any{"riskLevel": "low"})
	if m := fired(mustMatch(t, set, &low), "risky-detection-anonymous-ip"); m != nil {
		t.Errorf("low-risk detection fired: %s", m.Reason)
	}
	// additionalInfo's Key/Value pairs reach the reason.
	if dm != nil && !strings.Contains(dm.Reason, "Firefox/91.0") {
		t.Errorf("reason %q lacks the user agent from additionalInfo", dm.Reason)
	}
}

func mustMatch(t *testing.T, set *Set, env *event.Envelope) []Match {
	t.Helper()
	ms, err := set.Match(env)
	if err != nil {
		t.Fatalf("%s: %v", env.ID, err)
	}
	return ms
}

// with2 returns env with members of its Microsoft record (inside any
// diagnostic wrapper) replaced.
func with2(t *testing.T, env event.Envelope, set map[string]any) event.Envelope {
	t.Helper()
	var top map[string]any
	if err := json.Unmarshal(env.Raw, &top); err != nil {
		t.Fatal(err)
	}
	rec := top
	if p, ok := top["properties"].(map[string]any); ok {
		rec = p
	}
	for k, v := range set {
		rec[k] = v
	}
	b, _ := json.Marshal(top)
	out, err := event.Normalize("", b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Recipients named by legacyExchangeDN / X500 are internal, never external,
// and no address is invented for them.
func TestExchangeDNRecipientsInternal(t *testing.T) {
	set := loadShipped(t)
	rec := `{"CreationTime":"2025-01-02T03:04:05","Id":"x1","Operation":"UpdateInboxRules","RecordType":2,"Workload":"Exchange",
	"UserId":"meganb@contoso.com","MailboxOwnerUPN":"meganb@contoso.com","ClientIP":"198.51.100.7",
	"OperationProperties":[{"Name":"RuleActions","Value":"[{\"ActionType\":\"Forward\",\"Recipients\":[\"\\\"Adele Vance\\\" [EX:/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=5f1e-adele@evil.example]\",\"X500:/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=77aa-lynne\"]}]"}]}`
	env, err := event.Normalize("", json.RawMessage(rec))
	if err != nil {
		t.Fatal(err)
	}
	got := ForwardRecipients(&env)
	if len(got) != 2 || !strings.HasPrefix(got[0], "/o=exchangelabs/") || !strings.HasPrefix(got[1], "/o=exchangelabs/") {
		t.Errorf("recipients %q", got)
	}
	ms, err := set.Match(&env)
	if err != nil || fired(ms, "external-forwarding-rule") != nil {
		t.Errorf("internal X500 recipients fired: %v %v", names(ms), err)
	}
}

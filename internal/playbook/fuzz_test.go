package playbook

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/responder-sec/responder/internal/event"
)

// FuzzLoad: loading never panics, and a set that loads matches sample events
// without panicking.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(pbWith("audit", `- {field: raw.Parameters, exists: true}`)))
	f.Add([]byte("name: a\nenabled: true\ntrigger: {source: signin, when: [{expr: 'len(raw) > 0'}]}\nsteps: [{action: revoke_sessions, params: {x: '{{ raw.a || \"b\" }}'}}]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("---\n---\nname: [\n"))
	f.Add([]byte("name: a\nenabled: true\ntrigger: {source: signin, threshold: {count: 3, by: [user, ip], distinct: raw.appId, window: 10m, then: {kind: success}}}\nsteps: [{action: revoke_sessions}]\n"))
	events := []*event.Envelope{
		{Source: event.SourceAudit, Kind: "New-InboxRule", User: "a@contoso.com", IP: "192.0.2.1", Raw: json.RawMessage(auditRec)},
		{Source: event.SourceSignIn, Kind: "failure", User: "a@contoso.com", Raw: json.RawMessage(`{"status":{"errorCode":500121},"riskEventTypes_v2":["x"]}`)},
		{Source: event.SourceRiskDetection, Raw: json.RawMessage(`[]`)},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Load("fuzz.yaml", data, LoadOptions{BaseDir: t.TempDir()})
		if err != nil {
			if set != nil {
				t.Fatal("set and error both returned")
			}
			return
		}
		for _, env := range events {
			_, _ = set.WithAllEnabled().Match(env)
		}
	})
}

// FuzzSigma: parsing a Sigma rule never panics, and a rule that parses
// matches every record (the sample events, and the fuzzed record under
// each source) exactly as the reference evaluation does: the compiled
// program, its memo shared between two copies of the rule, the index, and
// matching a decoded event all agree with the rule's tree.
func FuzzSigma(f *testing.F) {
	rules := []string{
		"title: t\nlogsource: {product: azure, service: signinlogs}\ndetection:\n  sel_a: {ResultType: [50074, 500121], ResultDescription|contains: 'Strong'}\n  sel_b: {UserAgent|re|i: '^b.*', DeviceDetail.trusttype: null}\n  condition: 1 of sel_* and not (sel_a and sel_b)\n",
		"title: t\nlogsource: {product: m365, service: audit}\ndetection:\n  s: {Operation|contains|all: ['New-', Inbox], Parameters|contains: '*Forw?rd\\\\*'}\n  condition: all of them\n",
		"title: t\nlogsource: {product: azure, service: riskdetection}\ndetection:\n  s: {ipAddress|cidr: 10.0.0.0/8, riskLevel|exists: true}\n  condition: s | count() > 3\n",
		"title: t\nlogsource: {product: azure, service: auditlogs}\ndetection:\n  s: [{ConsentContext.IsAdminConsent: 'false'}, {properties.targetResources|contains: Admin}]\n  condition: s\n",
		"title: t\nlogsource: {product: m365, service: threat_management}\ndetection: {s: {eventName: x, status: success}, condition: (((s)))}\n",
		"title: t\nlogsource: {product: azure, service: riskdetection}\ndetection:\n  s: {riskEventType: [leakedCredentials, passwordSpray], riskLevel|startswith: HI, ipAddress|endswith: '.3'}\n  t: {additionalInfo|contains: [ua, Value], riskState|gte: 1}\n  condition: s or not t\n",
		// a rule in the contains index (index.go containsIndex): no index key, Operation must contain one of three words
		"title: t\nlogsource: {product: m365, service: audit}\ndetection:\n  a: {Operation|contains: InboxRule, Parameters|contains: Forw}\n  b: {Operation|contains: [mailbox, New-], Parameters|contains: ''}\n  condition: 1 of them\n",
	}
	records := []string{
		auditRec,
		`{"status":{"errorCode":500121,"failureReason":"Strong auth"},"userAgent":"BAV2ROPC","deviceDetail":{"trustType":null},"ResultType":50074}`,
		`{"ipAddress":"10.1.2.3","riskLevel":"high","riskEventType":"PasswordSpray","additionalInfo":"[{\"Key\":\"userAgent\",\"Value\":\"x\"}]"}`,
		`{"Workload":"AzureActiveDirectory","ModifiedProperties":"[{\\"Name\\":1}]","Target":[[[]]]}`,
		`{"Workload":`,
	}
	for i, r := range rules {
		f.Add([]byte(r), []byte(records[i%len(records)]))
	}
	events := []*event.Envelope{
		{Source: event.SourceAudit, Kind: "New-InboxRule", Raw: json.RawMessage(auditRec)},
		{Source: event.SourceSignIn, Kind: "failure", Raw: json.RawMessage(`{"status":{"errorCode":500121},"userAgent":"BAV2ROPC","deviceDetail":{"trustType":null}}`)},
		{Source: event.SourceRiskDetection, Raw: json.RawMessage(`{"ipAddress":"10.1.2.3","riskLevel":{"a":[1,2]}}`)},
		{Source: event.SourceAudit, Raw: json.RawMessage(`{"Workload":"AzureActiveDirectory","ModifiedProperties":"[{\\"Name\\":1}]","Target":[[[]]]}`)},
		{Source: event.SourceAudit, Raw: json.RawMessage(`{"Workload":`)},
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data, record []byte) {
		r, err := ParseSigma("f.yml", data)
		if err != nil {
			if r != nil {
				t.Fatal("rule and error both returned")
			}
			return
		}
		set := sigmaSet([]*SigmaRule{r}, 2)
		envs := append([]*event.Envelope(nil), events...)
		for _, src := range []event.Source{event.SourceAudit, event.SourceSignIn, event.SourceRiskDetection, event.SourceRiskyUser} {
			envs = append(envs, &event.Envelope{Source: src, Kind: "k", ID: "f", Raw: json.RawMessage(record)})
		}
		for _, env := range envs {
			want, wantErr := set.matchReference(ctx, env, nil)
			got, gotErr := set.Match(env)
			if !sameMatches(got, gotErr, want, wantErr) {
				t.Fatalf("rule %q, record %q:\n got %s\nwant %s", data, env.Raw, showMatches(got, gotErr), showMatches(want, wantErr))
			}
			var d Decoded
			set.Decode(env, &d)
			dec, decErr := set.MatchDecoded(ctx, &d, nil)
			if !sameMatches(dec, decErr, want, wantErr) {
				t.Fatalf("rule %q, record %q: decoded\n got %s\nwant %s", data, env.Raw, showMatches(dec, decErr), showMatches(want, wantErr))
			}
			if r.matchRef(env) != (len(want) > 0) {
				t.Fatalf("rule %q, record %q: the rule alone and the set disagree", data, env.Raw)
			}
		}
	})
}

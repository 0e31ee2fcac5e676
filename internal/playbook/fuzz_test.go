package playbook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
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

// FuzzTestRecords: any input stream is read without panicking.
func FuzzTestRecords(f *testing.F) {
	f.Add([]byte(`{"value":[{"id":"1","createdDateTime":"2026-01-01T00:00:00Z","status":{"errorCode":0}}]}`))
	f.Add([]byte(`[{"CreationTime":"2026-01-01T00:00:00","Id":"x","Operation":"New-InboxRule"}]` + "\n{}\n"))
	f.Add([]byte(`{"value":{"a":[1,{"b":2}]},"x":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Load("p.yaml", []byte(pbWith("audit", `- {field: forward_recipients, exists: true}`)), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_ = TestRecords(context.Background(), set, bytes.NewReader(data), "f", io.Discard, true)
	})
}

// FuzzSigma: parsing a Sigma rule never panics, and a rule that parses
// matches sample events without panicking.
func FuzzSigma(f *testing.F) {
	f.Add([]byte("title: t\nlogsource: {product: azure, service: signinlogs}\ndetection:\n  sel_a: {ResultType: [50074, 500121], ResultDescription|contains: 'Strong'}\n  sel_b: {UserAgent|re|i: '^b.*', DeviceDetail.trusttype: null}\n  condition: 1 of sel_* and not (sel_a and sel_b)\n"))
	f.Add([]byte("title: t\nlogsource: {product: m365, service: audit}\ndetection:\n  s: {Operation|contains|all: ['New-', Inbox], Parameters|contains: '*Forw?rd\\\\*'}\n  condition: all of them\n"))
	f.Add([]byte("title: t\nlogsource: {product: azure, service: riskdetection}\ndetection:\n  s: {ipAddress|cidr: 10.0.0.0/8, riskLevel|exists: true}\n  condition: s | count() > 3\n"))
	f.Add([]byte("title: t\nlogsource: {product: azure, service: auditlogs}\ndetection:\n  s: [{ConsentContext.IsAdminConsent: 'false'}, {properties.targetResources|contains: Admin}]\n  condition: s\n"))
	f.Add([]byte("title: t\nlogsource: {product: m365, service: threat_management}\ndetection: {s: {eventName: x, status: success}, condition: (((s)))}\n"))
	events := []*event.Envelope{
		{Source: event.SourceAudit, Kind: "New-InboxRule", Raw: json.RawMessage(auditRec)},
		{Source: event.SourceSignIn, Kind: "failure", Raw: json.RawMessage(`{"status":{"errorCode":500121},"userAgent":"BAV2ROPC","deviceDetail":{"trustType":null}}`)},
		{Source: event.SourceRiskDetection, Raw: json.RawMessage(`{"ipAddress":"10.1.2.3","riskLevel":{"a":[1,2]}}`)},
		{Source: event.SourceAudit, Raw: json.RawMessage(`{"Workload":"AzureActiveDirectory","ModifiedProperties":"[{\\"Name\\":1}]","Target":[[[]]]}`)},
		{Source: event.SourceAudit, Raw: json.RawMessage(`{"Workload":`)},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseSigma("f.yml", data)
		if err != nil {
			if r != nil {
				t.Fatal("rule and error both returned")
			}
			return
		}
		set := SigmaSet([]*SigmaRule{r}, 1)
		for _, env := range events {
			_ = r.Match(env)
			_, _ = set.Match(env)
		}
	})
}

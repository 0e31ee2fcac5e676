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

package analyst

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "action-request.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("action-request.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("action-request.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var jsonBlock = regexp.MustCompile("(?ms)^```json\\n(.*?)^```")

// Every ```json example in docs/action-requests.md is a valid request.
func TestDocsExamplesValidate(t *testing.T) {
	s := compileSchema(t)
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "action-requests.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := jsonBlock.FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 3 {
		t.Fatalf("found %d json examples, want at least 3", len(blocks))
	}
	for i, b := range blocks {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(b[1]))
		if err != nil {
			t.Errorf("example %d is not JSON: %v\n%s", i+1, err, b[1])
			continue
		}
		if err := s.Validate(inst); err != nil {
			t.Errorf("example %d: %v", i+1, err)
		}
	}
}

// The schema is not vacuous: it refuses what the engine refuses.
func TestSchemaRefuses(t *testing.T) {
	s := compileSchema(t)
	good := `{"version":1,"id":"0f8e3a52-3c1b-4d5e-9a7b-2c6d8e1f4a90","action":"disable_user","target":{"user":"a@b.c"},"requested_by":{"kind":"analyst","name":"alice","key_id":"UAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RLKK"},"reason":"r","requested_at":"2025-06-01T09:30:00Z"}`
	bad := map[string]string{
		"version 2":         strings.Replace(good, `"version":1`, `"version":2`, 1),
		"unknown field":     strings.Replace(good, `"reason":"r"`, `"reason":"r","colour":"red"`, 1),
		"analyst no reason": strings.Replace(good, `"reason":"r",`, ``, 1),
		"no key id":         strings.Replace(good, `,"key_id":"UAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RLKK"`, ``, 1),
		"bad time":          strings.Replace(good, `2025-06-01T09:30:00Z`, `yesterday`, 1),
		"bad id":            strings.Replace(good, `0f8e3a52-`, `x`, 1),
		"empty target":      strings.Replace(good, `{"user":"a@b.c"}`, `{}`, 1),
	}
	for name, in := range bad {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if s.Validate(inst) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(good))
	if err := s.Validate(inst); err != nil {
		t.Fatal(err)
	}
}

// TestGoRequestMatchesSchema keeps the Go contract and the published schema in
// step: a request with every field the Go type has must validate.
func TestGoRequestMatchesSchema(t *testing.T) {
	s := compileSchema(t)
	req := actions.Request{
		Version: 1, ID: "0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a11", Action: actions.DisableUser,
		Target:      actions.Target{User: "alice@contoso.com", IP: "203.0.113.7", MessageID: "<a@b>", RequestID: "0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a12"},
		Params:      map[string]any{"k": "v"},
		RequestedBy: audit.Actor{Kind: "analyst", Name: "ann", KeyID: "U" + strings.Repeat("A", 55)},
		Reason:      "r", Ticket: "INC-1", EventID: "e", DryRun: true, OverrideProtected: true, Approval: "required",
		RequestedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Next:        []actions.Step{{Action: actions.RevokeSessions, Target: actions.Target{User: "a@b.com"}, Params: map[string]any{"x": 1}, DryRun: true, Approval: "required"}},
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("a full Go request does not validate against docs/action-request.schema.json: %v\n%s", err, b)
	}
}

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
		Version: 1, ID: "0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a11", Action: actions.DisableForwardRules,
		Target:      actions.Target{User: "alice@contoso.com", IP: "203.0.113.7", MessageID: "<a@b>", RequestID: "0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a12"},
		Params:      map[string]any{"scope": "all"},
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

// The schema's per-action rules (made from the catalogue's Args) and the
// engine's parser agree on what a parameter may be: for every action, an
// unknown parameter and a value of the wrong type are refused by both, and a
// value of the declared kind passes the schema.
func TestSchemaParamsAgreeWithTheParser(t *testing.T) {
	s := compileSchema(t)
	goodTarget := map[string]string{"user": "a@contoso.com", "ip": "203.0.113.7", "message_id": "<a@b>",
		"sender": "a@contoso.com", "device": "host1", "file": strings.Repeat("a", 64), "url": "https://x.example/",
		"domain": "x.example", "request_id": "0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a12"}
	validate := func(action actions.Name, params map[string]any) error {
		spec, _ := actions.Lookup(action)
		target := map[string]any{"user": "a@contoso.com"}
		if f, ok := spec.TargetField(); ok {
			target = map[string]any{f: goodTarget[f]}
		}
		req := map[string]any{"version": 1, "id": "0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a11", "action": string(action),
			"target": target, "params": params, "requested_by": map[string]any{"kind": "engine", "name": "e"},
			"requested_at": "2026-01-01T00:00:00Z"}
		return s.Validate(req)
	}
	wrong := map[actions.ArgKind]any{
		actions.ArgString: 42.0, actions.ArgID: "not an id!", actions.ArgEmail: "nobody", actions.ArgBool: "maybe",
		actions.ArgDuration: "soon", actions.ArgTime: "yesterday", actions.ArgObject: "x", actions.ArgGUID: "AAMkAGI2",
	}
	good := map[actions.ArgKind]any{
		actions.ArgString: "x", actions.ArgID: "AAMkAGI2", actions.ArgEmail: "a@contoso.com", actions.ArgBool: true,
		actions.ArgDuration: "7d", actions.ArgTime: "2026-01-02T15:04:05Z", actions.ArgGUID: "0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a11", actions.ArgObject: map[string]any{"displayName": "r", "actions": map[string]any{}},
	}
	checked := 0
	for _, spec := range actions.Specs() {
		if validate(spec.Name, map[string]any{"no_such_param": "x"}) == nil {
			t.Errorf("%s: the schema accepts an unknown param", spec.Name)
		}
		if _, err := actions.ParseParams(spec.Name, actions.Target{}, map[string]any{"no_such_param": "x"}); err == nil {
			t.Errorf("%s: the parser accepts an unknown param", spec.Name)
		}
		for _, a := range spec.Args {
			v := wrong[a.Kind]
			if a.List {
				v = []any{v}
			}
			if validate(spec.Name, map[string]any{a.Name: v}) == nil {
				t.Errorf("%s: the schema accepts params.%s = %v", spec.Name, a.Name, v)
			}
			if _, err := actions.ParseParams(spec.Name, actions.Target{}, map[string]any{a.Name: v}); err == nil {
				t.Errorf("%s: the parser accepts params.%s = %v", spec.Name, a.Name, v)
			}
			g := good[a.Kind]
			if len(a.Enum) > 0 {
				g = a.Enum[0]
			}
			if a.Pattern != nil {
				g = "12345"
			}
			if a.List {
				g = []any{g}
			}
			params := map[string]any{a.Name: g}
			for _, r := range spec.Args { // the other required ones
				if r.Required && r.Name != a.Name {
					params[r.Name] = good[r.Kind]
					if r.List {
						params[r.Name] = []any{good[r.Kind]}
					}
					if r.Pattern != nil {
						params[r.Name] = "12345"
					}
				}
			}
			if spec.InverseOnly {
				params["undo_of"] = "0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a12"
			}
			if err := validate(spec.Name, params); err != nil {
				t.Errorf("%s: the schema refuses params.%s = %v: %v", spec.Name, a.Name, g, err)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Fatalf("only %d parameters checked", checked)
	}
}

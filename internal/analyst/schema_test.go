package analyst

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
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

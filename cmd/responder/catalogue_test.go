package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/doctor"
)

// The action catalogue (internal/actions/catalogue.go) is the one source of
// truth. This test fails when an action is missing anywhere else: the act
// subcommands, doctor's permission table, the README's permission table, the
// JSON Schema's action enum and per-action rules, serve --help's blast-radius
// defaults and action settings.
//
// RESPONDER_UPDATE_README=1 go test -run TestCatalogue ./cmd/responder
// rewrites the README's action rows from the catalogue.

const (
	readmeBegin = "<!-- permissions:actions (generated from the catalogue by cmd/responder/catalogue_test.go) -->"
	readmeEnd   = "<!-- /permissions:actions -->"
)

// permissionRows renders the README's action rows from the catalogue.
func permissionRows() string {
	var b strings.Builder
	for _, s := range actions.Specs() {
		if s.API == actions.APINone {
			continue
		}
		var perms []string
		for _, p := range s.Least() {
			perms = append(perms, "`"+p+"`")
		}
		api := ""
		if s.API == actions.APIExchange {
			api = "Office 365 Exchange Online: "
		}
		if s.API == actions.APIDefender {
			api = "WindowsDefenderATP: "
		}
		role := s.Role
		if role == "" {
			role = "—"
		}
		why := s.Why
		if s.InverseOnly {
			why += " (only as the inverse an undo issues)"
		}
		b.WriteString("| `" + string(s.Name) + "` | " + api + strings.Join(perms, " + ") + " | " + role + " | " + why + " |\n")
	}
	return b.String()
}

// schemaFromCatalogue is the published schema with its action enum and its
// per-action rules made from the catalogue (actions.SchemaRules); the rules
// that are not about one action (an analyst's reason) are kept as written.
func schemaFromCatalogue(b []byte) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	defs, _ := doc["$defs"].(map[string]any)
	action, _ := defs["action"].(map[string]any)
	if action == nil {
		return nil, errors.New("the schema has no $defs.action")
	}
	var names []any
	for _, n := range actions.Names() {
		names = append(names, string(n))
	}
	action["enum"] = names
	var rules []any
	all, _ := doc["allOf"].([]any)
	for _, r := range all {
		m, _ := r.(map[string]any)
		cond, _ := m["if"].(map[string]any)
		props, _ := cond["properties"].(map[string]any)
		if _, perAction := props["action"]; !perAction {
			rules = append(rules, r)
		}
	}
	doc["allOf"] = append(rules, actions.SchemaRules()...)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func TestCatalogueIsTheOneSourceOfTruth(t *testing.T) {
	specs := actions.Specs()

	t.Run("act subcommands", func(t *testing.T) {
		p, err := kong.New(newCLI(), kongVars(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		var act *kong.Node
		for _, n := range p.Model.Children {
			if n.Name == "act" {
				act = n
			}
		}
		if act == nil {
			t.Fatal("no act command")
		}
		var verbs []string
		for _, n := range act.Children {
			verbs = append(verbs, n.Name)
		}
		for _, s := range specs {
			if s.CLI == "" {
				if slices.Contains(verbs, s.Name.CLIName()) {
					t.Errorf("%s is inverse-only but `act %s` exists", s.Name, s.Name.CLIName())
				}
				continue
			}
			if !slices.Contains(verbs, s.CLI) {
				t.Errorf("catalogue action %s has no `responder act %s`", s.Name, s.CLI)
			}
		}
		for _, v := range verbs {
			if !slices.ContainsFunc(specs, func(s actions.Spec) bool { return s.CLI == v }) {
				t.Errorf("`responder act %s` is not a catalogue action", v)
			}
		}
	})

	t.Run("doctor", func(t *testing.T) {
		rows := doctor.Requirements()
		for _, s := range specs {
			if s.API == actions.APINone {
				continue
			}
			i := slices.IndexFunc(rows, func(r doctor.Requirement) bool { return r.Kind == doctor.KindAction && r.Name == string(s.Name) })
			if i < 0 {
				t.Errorf("doctor does not check %s", s.Name)
				continue
			}
			if len(rows[i].Clauses) != len(s.Permissions) {
				t.Errorf("doctor checks %d clauses for %s, the catalogue names %d", len(rows[i].Clauses), s.Name, len(s.Permissions))
			}
		}
	})

	t.Run("README", func(t *testing.T) {
		b, err := os.ReadFile("../../README.md")
		if err != nil {
			t.Fatal(err)
		}
		i, j := bytes.Index(b, []byte(readmeBegin)), bytes.Index(b, []byte(readmeEnd))
		if i < 0 || j < i {
			t.Fatalf("README.md has no %q … %q block", readmeBegin, readmeEnd)
		}
		want := permissionRows()
		got := string(b[i+len(readmeBegin)+1 : j])
		if got == want {
			return
		}
		if os.Getenv("RESPONDER_UPDATE_README") != "" {
			out := append(append(append([]byte{}, b[:i+len(readmeBegin)+1]...), want...), b[j:]...)
			if err := os.WriteFile("../../README.md", out, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("README.md's permission rows differ from the catalogue; run RESPONDER_UPDATE_README=1 go test -run TestCatalogue ./cmd/responder\nwant:\n%s", want)
	})

	t.Run("JSON Schema", func(t *testing.T) {
		const path = "../../docs/action-request.schema.json"
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := schemaFromCatalogue(b)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(b, want) {
			return
		}
		if os.Getenv("RESPONDER_UPDATE_README") != "" {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("docs/action-request.schema.json's action enum or per-action rules differ from the catalogue; run RESPONDER_UPDATE_README=1 go test -run TestCatalogue ./cmd/responder")
	})

	t.Run("serve --help", func(t *testing.T) {
		var out bytes.Buffer
		p, err := kong.New(newCLI(), kong.Name("responder"), kong.Writers(&out, &out), kong.Exit(func(int) {}),
			kongVars(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = p.Parse([]string{"serve", "--help"})
		help := strings.Join(strings.Fields(out.String()), " ")
		for _, s := range specs {
			if s.BlastLimit > 0 && !strings.Contains(help, string(s.Name)+"=") {
				t.Errorf("serve --help does not show %s's default blast limit", s.Name)
			}
			for _, a := range s.Settings {
				if !strings.Contains(help, string(s.Name)+"."+a.Name) {
					t.Errorf("serve --help does not show the setting %s.%s", s.Name, a.Name)
				}
			}
		}
	})

	t.Run("blast defaults", func(t *testing.T) {
		d := actions.DefaultBlastLimits()
		for _, s := range specs {
			if d.PerAction[s.Name] != s.BlastLimit {
				t.Errorf("%s: default limit %d, catalogue %d", s.Name, d.PerAction[s.Name], s.BlastLimit)
			}
		}
	})
}

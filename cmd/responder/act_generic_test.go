package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/responder-sec/responder/internal/actions"
)

// genericRoot mounts the generated verb of every catalogue action (none
// skipped), so that the generated path is exercised on real actions even
// while each has a hand-written command.
type genericRoot struct {
	Act struct {
		Generic kong.Plugins `embed:""`
	} `cmd:""`
}

func runGeneric(t *testing.T, dataDir string, args ...string) (int, map[string]any, string) {
	t.Helper()
	var out, errb bytes.Buffer
	root := &genericRoot{}
	root.Act.Generic = genericVerbs(nil)
	p, err := kong.New(root, kong.Writers(&out, &errb), kong.Exit(func(int) {}), kongVars(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := p.Parse(append([]string{"act"}, append(args, "--data-dir", dataDir, "--json", "--wait", "60s")...))
	code := 0
	if err == nil {
		err = kctx.Run(&env{ctx: t.Context(), stdout: &out, stderr: &errb}, kctx)
	}
	if err != nil {
		code = 1
		errb.WriteString(err.Error())
	}
	var o map[string]any
	_ = json.Unmarshal(out.Bytes(), &o)
	return code, o, out.String() + errb.String()
}

// TestGeneratedActVerbs: a verb generated from the catalogue entry alone
// (target as its argument, parameters as --param) carries out the action
// through a running engine, and a parameter the action does not declare, or
// one not of its kind, is refused before anything is sent: the tenant is
// unchanged.
func TestGeneratedActVerbs(t *testing.T) {
	sim, dataDir, _, _ := runningEngine(t, nil)

	code, o, text := runGeneric(t, dataDir, "disable-user", "bob@contoso.com", "--reason", "generated verb")
	if code != 0 || o["outcome"] != "succeeded" {
		t.Fatalf("disable-user: exit %d %s", code, text)
	}
	if u, _ := sim.User("bob@contoso.com"); u.AccountEnabled {
		t.Fatal("bob is still enabled")
	}
	code, o, text = runGeneric(t, dataDir, "block-sender", "phisher@evil.example", "--param", "expires=7d", "--reason", "phish")
	if code != 0 || o["outcome"] != "succeeded" {
		t.Fatalf("block-sender: exit %d %s", code, text)
	}
	if e := sim.TABLSenders(); len(e) != 1 || e[0].Value != "phisher@evil.example" {
		t.Fatalf("tenant list: %+v", e)
	}

	for name, args := range map[string][]string{
		"undeclared param":      {"block-sender", "other@evil.example", "--param", "colour=red", "--reason", "r"},
		"param not of its kind": {"block-ip", "203.0.113.9", "--param", "expires=soon", "--reason", "r"},
		"bad target":            {"disable-user", "not a user'", "--reason", "r"},
	} {
		code, _, text := runGeneric(t, dataDir, args...)
		if code == 0 {
			t.Errorf("%s: accepted: %s", name, text)
		}
	}
	if e := sim.TABLSenders(); len(e) != 1 {
		t.Errorf("a refused verb changed the tenant list: %+v", e)
	}
	if u, _ := sim.User("alice@contoso.com"); !u.AccountEnabled {
		t.Error("alice was disabled")
	}
}

// Every generated verb's help names its target and its parameters, from the
// catalogue.
func TestGeneratedVerbHelp(t *testing.T) {
	for _, s := range actions.Specs() {
		if s.CLI == "" {
			continue
		}
		h := genericHelp(s)
		if f, _ := s.TargetField(); f != "" && !strings.Contains(h, "Target: "+f) {
			t.Errorf("%s: help %q does not name the target", s.Name, h)
		}
		for _, a := range s.Args {
			if !strings.Contains(h, "--param "+a.Name+"=") {
				t.Errorf("%s: help %q does not name --param %s", s.Name, h, a.Name)
			}
		}
	}
}

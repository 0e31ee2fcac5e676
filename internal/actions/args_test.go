package actions

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// An action declared by its Args alone (no Parse): each kind accepts its
// forms and refuses the rest with a RejectError naming the parameter, and
// Check sees the typed values.
func TestParseArgsByKind(t *testing.T) {
	spec := Spec{Name: "test_action", Args: []Arg{
		{Name: "group", Kind: ArgID, Required: true},
		{Name: "note", Kind: ArgString, Max: 8},
		{Name: "owner", Kind: ArgEmail},
		{Name: "force", Kind: ArgBool},
		{Name: "expires", Kind: ArgDuration},
		{Name: "since", Kind: ArgTime},
		{Name: "mode", Kind: ArgString, Enum: []string{"soft", "hard"}},
		{Name: "ids", Kind: ArgID, List: true, Max: 2},
		{Name: "snap", Kind: ArgObject, List: true},
		{Name: "num", Kind: ArgString, Pattern: regexp.MustCompile(`^[0-9]+$`)},
		{Name: "oid", Kind: ArgGUID},
		{Name: "wait", Kind: ArgDuration},
	}, Check: func(_ Target, p Params) error {
		if p.Values.Bool("force") && p.Values.String("mode") == "soft" {
			return reject("force with mode soft")
		}
		return nil
	}}
	ok := map[string]any{
		"group": " 0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a11 ", "note": "short", "owner": "a@contoso.com", "force": "TRUE",
		"expires": "7d", "since": "2026-01-02T15:04:05+01:00", "mode": "hard", "ids": "a1, b2", "num": "42",
		"snap": []any{map[string]any{"displayName": "r"}}, "oid": "0B6F6C52-5A8E-4C1C-9A57-2F1D8F0C8A11", "wait": "90m",
	}
	p, err := parseArgs(spec, Target{}, ok)
	if err != nil {
		t.Fatal(err)
	}
	v := p.Values
	if v.String("group") != "0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a11" || !v.Bool("force") || v.Duration("expires") != 7*24*time.Hour ||
		p.Expires != 7*24*time.Hour || !v.Time("since").Equal(time.Date(2026, 1, 2, 14, 4, 5, 0, time.UTC)) ||
		strings.Join(v.Strings("ids"), "|") != "a1|b2" || len(v.Objects("snap")) != 1 || v.String("num") != "42" ||
		v.Duration("wait") != 90*time.Minute || p.Expires != 7*24*time.Hour {
		t.Fatalf("values %#v", v)
	}
	bad := map[string]struct {
		k   string
		v   any
		err string
	}{
		"missing required":  {"group", nil, "needs params.group"},
		"id with a quote":   {"group", "x' or 1 eq 1", "not an id"},
		"too long":          {"note", "123456789", "at most 8"},
		"control char":      {"note", "a\nb", "printable"},
		"not a string":      {"note", 42.0, "must be a string"},
		"not an address":    {"owner", "nobody", "e-mail"},
		"not a bool":        {"force", "maybe", "true or false"},
		"out of range":      {"expires", "365d", "outside"},
		"not a duration":    {"expires", "soon", "duration"},
		"not a time":        {"since", "yesterday", "RFC 3339"},
		"not in the enum":   {"mode", "medium", "soft or hard"},
		"too many items":    {"ids", []any{"a", "b", "c"}, "at most 2"},
		"item not an id":    {"ids", []any{"a", "b c"}, "not an id"},
		"object as text":    {"snap", "x", "list of objects"},
		"item not object":   {"snap", []any{"x"}, "must be an object"},
		"pattern":           {"num", "4x", "not of the form"},
		"not a GUID":        {"oid", "AAMkAGI2", "not an object id"},
		"named in errors":   {"wait", "soon", "params.wait"},
		"object item named": {"snap", []any{map[string]any{}, "x"}, "params.snap[1]"},
	}
	for name, c := range bad {
		in := map[string]any{}
		for k, x := range ok {
			in[k] = x
		}
		if c.v == nil {
			delete(in, c.k)
		} else {
			in[c.k] = c.v
		}
		_, err := parseArgs(spec, Target{}, in)
		var re *RejectError
		if err == nil || !errors.As(err, &re) || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: err = %v, want a rejection with %q", name, err, c.err)
		}
	}
	in := map[string]any{"group": "g1", "force": true, "mode": "soft"}
	if _, err := parseArgs(spec, Target{}, in); err == nil || !strings.Contains(err.Error(), "force with mode soft") {
		t.Errorf("Check not applied: %v", err)
	}
}

// Settings: only what an action declares, of its kind; anything else is an
// error at start-up, never a setting silently ignored.
func TestParseSettings(t *testing.T) {
	s, _ := Lookup(DisableUser) // a copy: the catalogue is not changed
	s.Settings = []Arg{{Name: "allowed", Kind: ArgID, List: true, Doc: "allowed ids"}, {Name: "strict", Kind: ArgBool}}
	lookup := func(n Name) (Spec, bool) {
		if n == DisableUser {
			return s, true
		}
		return Lookup(n)
	}
	got, err := parseSettings([]string{"disable_user.allowed=g1,g2", "disable_user.strict=true"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if v := got.Of(DisableUser); strings.Join(v.Strings("allowed"), ",") != "g1,g2" || !v.Bool("strict") {
		t.Fatalf("settings %#v", got)
	}
	if v := got.Of(EnableUser); v.Bool("strict") || v.Strings("allowed") != nil {
		t.Fatalf("another action's settings: %#v", v)
	}
	// A list given again adds to it; a single value given twice is refused.
	got, err = parseSettings([]string{"disable_user.allowed=g1", "disable_user.allowed=g2,g3"}, lookup)
	if err != nil || strings.Join(got.Of(DisableUser).Strings("allowed"), ",") != "g1,g2,g3" {
		t.Errorf("repeated list: %v %v", got, err)
	}
	if _, err := parseSettings([]string{"disable_user.strict=true", "disable_user.strict=false"}, lookup); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a single value given twice: %v", err)
	}
	if _, err := parseSettings([]string{"disable_user.allowed=x'y"}, lookup); err == nil || !strings.Contains(err.Error(), "setting disable_user.allowed") || strings.Contains(err.Error(), "params.") {
		t.Errorf("a bad setting's error does not name the setting: %v", err)
	}
	if h := settingsHelp([]Spec{s}); !strings.Contains(h, "disable_user.allowed (allowed ids)") {
		t.Errorf("help %q", h)
	}
	for _, bad := range []string{
		"disable_user.allowed",           // no value
		"allowed=g1",                     // no action
		"no_such_action.allowed=g1",      // unknown action
		"disable_user.alowed=g1",         // misspelt setting
		"enable_user.allowed=g1",         // declared by another action only
		"disable_user.allowed=g1,b a d'", // not of its kind
		"disable_user.strict=perhaps",
	} {
		if _, err := parseSettings([]string{bad}, lookup); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

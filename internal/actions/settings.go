package actions

import (
	"fmt"
	"strings"
)

// Settings are the actions' own settings, as `serve --action-setting
// ACTION.NAME=VALUE` (RESPONDER_ACTION_SETTING) gives them: each declared in
// its action's Spec.Settings (kind, list, doc), parsed and checked as a
// parameter of that kind, and read by the action's executor with
// Settings.Of(action). An action that needs a setting adds it to its
// catalogue entry only; the engine and serve pass them all through.
type Settings map[Name]Values

// Of is the action's settings (empty when none is set).
func (s Settings) Of(n Name) Values { return s[n] }

// ParseSettings parses ACTION.NAME=VALUE items. An unknown action, a setting
// the action does not declare or a value not of its kind is an error: a
// misspelt setting must not leave a guard off silently.
func ParseSettings(items []string) (Settings, error) { return parseSettings(items, Lookup) }

func parseSettings(items []string, lookup func(Name) (Spec, bool)) (Settings, error) {
	out := Settings{}
	for _, it := range items {
		key, value, ok := strings.Cut(it, "=")
		key = strings.TrimSpace(key)
		action, name, ok2 := strings.Cut(key, ".")
		if !ok || !ok2 {
			return nil, fmt.Errorf("action setting %q: want ACTION.NAME=VALUE", it)
		}
		spec, found := lookup(Name(action))
		if !found {
			return nil, fmt.Errorf("action setting %q: no action %q", it, action)
		}
		var decl *Arg
		for i := range spec.Settings {
			if spec.Settings[i].Name == name {
				decl = &spec.Settings[i]
			}
		}
		if decl == nil {
			return nil, fmt.Errorf("action setting %q: %s has no setting %q (it has: %s)", it, action, name, settingNames(spec))
		}
		v, err := decl.check("setting "+key, value)
		if err != nil {
			return nil, err
		}
		if out[spec.Name] == nil {
			out[spec.Name] = Values{}
		}
		// A list given again adds to it; a single value given twice is an
		// error (which one was meant?).
		if old, seen := out[spec.Name][name]; seen {
			prev, isList := old.([]string)
			if !isList {
				return nil, fmt.Errorf("action setting %s is given twice", key)
			}
			v = append(prev, v.([]string)...)
		}
		out[spec.Name][name] = v
	}
	return out, nil
}

func settingNames(s Spec) string {
	if len(s.Settings) == 0 {
		return "none"
	}
	var n []string
	for _, a := range s.Settings {
		n = append(n, a.Name)
	}
	return strings.Join(n, ", ")
}

// SettingsHelp describes every declared setting, as `serve --help` prints
// them ("none" when no action has one).
func SettingsHelp() string { return settingsHelp(Specs()) }

func settingsHelp(specs []Spec) string {
	var parts []string
	for _, s := range specs {
		for _, a := range s.Settings {
			parts = append(parts, string(s.Name)+"."+a.Name+" ("+a.Doc+")")
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

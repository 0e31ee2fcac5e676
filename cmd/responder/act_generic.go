package main

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/responder-sec/responder/internal/actions"
)

// An `act` verb for every catalogue action that has a CLI verb and no
// hand-written command in actCmd: its target is the one argument, its
// parameters --param NAME=VALUE, checked by the engine's own parser before
// anything is sent. Adding an action to the catalogue adds its verb here;
// a hand-written command (richer flags, warnings) replaces it when wanted.

// actGenericCmd is one generated verb.
type actGenericCmd struct {
	actCommon
	Target string            `arg:"" help:"What to act on: the action's target (its help says which)."`
	Param  map[string]string `help:"A parameter, as NAME=VALUE; repeat for several (a list value is comma-separated, an object is JSON)." placeholder:"NAME=VALUE"`

	action actions.Name
}

func (c *actGenericCmd) Run(e *env) error {
	spec, ok := actions.Lookup(c.action)
	if !ok {
		return fmt.Errorf("no action %q", c.action)
	}
	target, err := spec.TargetFor(c.Target)
	if err != nil {
		return err
	}
	params, err := spec.ParamsFromText(c.Param)
	if err != nil {
		return err
	}
	return c.send(e, spec.Name, target, params)
}

// genericHelp is a generated verb's help: the catalogue's description, the
// target and each parameter.
func genericHelp(spec actions.Spec) string {
	var b strings.Builder
	b.WriteString(strings.ToUpper(spec.Description[:1]) + spec.Description[1:] + ".")
	if f, _ := spec.TargetField(); f != "" {
		b.WriteString(" Target: " + f + ".")
	}
	for _, a := range spec.Args {
		fmt.Fprintf(&b, " --param %s=… (%s): %s", a.Name, a.Describe(), a.Doc)
	}
	return b.String()
}

// genericActs are the generated verbs: those the catalogue names that actCmd
// does not declare itself.
func genericActs() kong.Plugins {
	declared := map[string]bool{}
	t := reflect.TypeFor[actCmd]()
	for i := range t.NumField() {
		if n := t.Field(i).Tag.Get("name"); n != "" {
			declared[n] = true
		}
	}
	return genericVerbs(declared)
}

// genericVerbs generates the verbs of every catalogue action with a CLI verb
// not in skip.
func genericVerbs(skip map[string]bool) kong.Plugins {
	var out kong.Plugins
	for _, s := range actions.Specs() {
		if s.CLI == "" || skip[s.CLI] {
			continue
		}
		// One struct type per verb: kong reads a command's name and help
		// from its field's tag.
		st := reflect.StructOf([]reflect.StructField{{
			Name: "Verb", Type: reflect.TypeFor[actGenericCmd](),
			Tag: reflect.StructTag(fmt.Sprintf(`cmd:"" name:%q help:%q`, s.CLI, genericHelp(s))),
		}})
		v := reflect.New(st)
		v.Elem().Field(0).Addr().Interface().(*actGenericCmd).action = s.Name
		out = append(out, v.Interface())
	}
	return out
}

// newCLI is the command line with its generated verbs.
func newCLI() *cli {
	c := &cli{}
	c.Act.Generic = genericActs()
	return c
}

// kongVars are the variables the help texts use.
func kongVars(dataDir string) kong.Vars {
	return kong.Vars{"default_data_dir": dataDir, "blast_defaults": actions.BlastDefaults(), "action_settings": actions.SettingsHelp()}
}

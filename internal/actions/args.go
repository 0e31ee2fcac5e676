package actions

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ArgKind is the type of an action parameter: what the parser accepts, what
// the JSON Schema says and how `responder act` passes it.
type ArgKind string

// Parameter kinds.
const (
	// ArgString is printable text (at most Arg.Max characters, default
	// DefaultArgMax).
	ArgString ArgKind = "string"
	// ArgID is a Microsoft object id: an Entra GUID or an Exchange or Graph
	// id of letters, digits and +/=-_ (at most 512).
	ArgID ArgKind = "id"
	// ArgGUID is an Entra object id (a GUID: groups, users, devices).
	ArgGUID ArgKind = "guid"
	// ArgEmail is an e-mail address.
	ArgEmail ArgKind = "email"
	// ArgBool is true or false (a JSON boolean, or the string "true" or
	// "false").
	ArgBool ArgKind = "bool"
	// ArgDuration is a duration such as 24h or 7d, within MinExpiry and
	// MaxExpiry.
	ArgDuration ArgKind = "duration"
	// ArgTime is an RFC 3339 time.
	ArgTime ArgKind = "time"
	// ArgObject is a JSON object (snapshots an undo sends back).
	ArgObject ArgKind = "object"
)

// DefaultArgMax bounds an ArgString parameter that names no Max.
const DefaultArgMax = 1024

// Arg declares one parameter of an action. An action whose Spec has no Parse
// gets its parameters parsed from these alone, into Params.Values (read with
// Values.String, Strings, Bool, Duration, Time); the JSON Schema's per-action
// rules and `responder act`'s help come from them for every action.
type Arg struct {
	Name string
	Kind ArgKind
	// List: a list of Kind, as a JSON array or one comma-separated string
	// (objects: an array only).
	List bool
	// Enum restricts a string to these values; Pattern (optional) is a
	// pattern a string must match, in the syntax RE2 and the JSON Schema
	// share.
	Enum    []string
	Pattern *regexp.Regexp
	// Required: the request must carry it.
	Required bool
	// Max bounds a string's length, or a list's items (0: DefaultArgMax for
	// strings, unbounded lists).
	Max int
	// Doc says what it is, for the schema and `act --help`.
	Doc string
}

// Describe says what the parameter takes, for help texts: "id",
// "list of string, required".
func (a Arg) Describe() string {
	k := string(a.Kind)
	if a.List {
		k = "list of " + k
	}
	if a.Required {
		k += ", required"
	}
	return k
}

// ArgNames lists the action's parameter names.
func (s Spec) ArgNames() []string {
	out := make([]string, len(s.Args))
	for i, a := range s.Args {
		out[i] = a.Name
	}
	return out
}

// Arg returns the declaration of parameter name.
func (s Spec) Arg(name string) (Arg, bool) {
	i := slices.IndexFunc(s.Args, func(a Arg) bool { return a.Name == name })
	if i < 0 {
		return Arg{}, false
	}
	return s.Args[i], true
}

// parseArgs is the parser of an action declared by its Args alone: every
// declared parameter is checked against its kind and stored typed in
// Params.Values; an "expires" duration also sets Params.Expires. Check, when
// the Spec has one, runs last for rules across parameters.
func parseArgs(s Spec, t Target, params map[string]any) (Params, error) {
	p := Params{Values: Values{}}
	for _, a := range s.Args {
		v, ok := params[a.Name]
		if !ok || v == nil {
			if a.Required {
				return p, reject("%s needs params.%s", s.Name, a.Name)
			}
			continue
		}
		x, err := a.parse(v)
		if err != nil {
			return p, err
		}
		p.Values[a.Name] = x
		if d, ok := x.(time.Duration); ok && a.Name == "expires" {
			p.Expires = d
		}
	}
	if s.Check != nil {
		if err := s.Check(t, p); err != nil {
			return p, err
		}
	}
	return p, nil
}

// parse checks one value of a parameter against the declaration.
func (a Arg) parse(v any) (any, error) { return a.check("params."+a.Name, v) }

// check checks one value against the declaration; where names it in a
// rejection ("params.group", "setting add_to_group.allowed_groups").
func (a Arg) check(where string, v any) (any, error) {
	if !a.List {
		return a.one(where, v)
	}
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case string:
		if a.Kind == ArgObject {
			return nil, reject("%s must be a list of objects", where)
		}
		for _, s := range strings.Split(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
	default:
		return nil, reject("%s must be a list", where)
	}
	if a.Max > 0 && len(items) > a.Max {
		return nil, reject("%s holds %d items; at most %d", where, len(items), a.Max)
	}
	if a.Required && len(items) == 0 {
		return nil, reject("%s must not be empty", where)
	}
	switch a.Kind {
	case ArgObject:
		out := make([]json.RawMessage, 0, len(items))
		for i, it := range items {
			x, err := a.one(fmt.Sprintf("%s[%d]", where, i), it)
			if err != nil {
				return nil, err
			}
			out = append(out, x.(json.RawMessage))
		}
		return out, nil
	default:
		out := make([]string, 0, len(items))
		for _, it := range items {
			x, err := a.one(where, it)
			if err != nil {
				return nil, err
			}
			s, ok := x.(string)
			if !ok {
				return nil, reject("%s must hold strings", where)
			}
			out = append(out, s)
		}
		return out, nil
	}
}

// one checks a single value of the declared kind.
func (a Arg) one(where string, v any) (any, error) {
	switch a.Kind {
	case ArgBool:
		switch b := v.(type) {
		case bool:
			return b, nil
		case string:
			switch strings.ToLower(strings.TrimSpace(b)) {
			case "true":
				return true, nil
			case "false", "":
				return false, nil
			}
		}
		return nil, reject("%s must be true or false", where)
	case ArgObject:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, reject("%s must be an object", where)
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, reject("%s: %v", where, err)
		}
		return json.RawMessage(b), nil
	case ArgDuration:
		x, ok := v.(string)
		if !ok {
			return nil, reject("%s must be a duration such as 24h or 7d", where)
		}
		d, ok := durationOf(strings.TrimSpace(x))
		if !ok {
			return nil, reject("%s %q is not a duration such as 24h or 7d", where, short(x))
		}
		if d < MinExpiry || d > MaxExpiry {
			return nil, reject("%s %s is outside %s..%s", where, x, MinExpiry, MaxExpiry)
		}
		return d, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, reject("%s must be a string", where)
	}
	s = strings.TrimSpace(s)
	switch a.Kind {
	case ArgID:
		if !validGraphID(s) {
			return nil, reject("%s: %q is not an id", where, short(s))
		}
	case ArgGUID:
		if !uuidRE.MatchString(s) {
			return nil, reject("%s: %q is not an object id (a GUID)", where, short(s))
		}
	case ArgEmail:
		if !senderRE.MatchString(s) {
			return nil, reject("%s %q is not an e-mail address", where, short(s))
		}
	case ArgTime:
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, reject("%s %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", where, short(s))
		}
		return t.UTC(), nil
	default:
		if a.Pattern != nil && !a.Pattern.MatchString(s) {
			return nil, reject("%s %q is not of the form %s", where, short(s), a.Pattern)
		}
		if len(a.Enum) > 0 && !slices.Contains(a.Enum, s) {
			return nil, reject("%s must be %s (got %q)", where, oneOf(a.Enum), short(s))
		}
		if n := a.max(); len(s) > n || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, reject("%s must be at most %d printable characters", where, n)
		}
	}
	return s, nil
}

func (a Arg) max() int {
	if a.Max > 0 && !a.List {
		return a.Max
	}
	return DefaultArgMax
}

// Values are typed parameter (or setting) values, by name: what parseArgs
// makes of the declared Args.
type Values map[string]any

// String is name's value (an ArgString, ArgID or ArgEmail; "" when absent).
func (v Values) String(name string) string { s, _ := v[name].(string); return s }

// Strings is a list's values.
func (v Values) Strings(name string) []string { s, _ := v[name].([]string); return s }

// Bool is an ArgBool's value (false when absent).
func (v Values) Bool(name string) bool { b, _ := v[name].(bool); return b }

// Duration is an ArgDuration's value (0 when absent).
func (v Values) Duration(name string) time.Duration { d, _ := v[name].(time.Duration); return d }

// Time is an ArgTime's value (zero when absent).
func (v Values) Time(name string) time.Time { t, _ := v[name].(time.Time); return t }

// Objects is a list of objects.
func (v Values) Objects(name string) []json.RawMessage { o, _ := v[name].([]json.RawMessage); return o }

// TargetFields maps a Spec's Target kind to the target member that names it,
// and whether a request must carry it (purge_mail's message id is optional:
// a search by sender or subject has none).
var targetFields = map[string]struct {
	field    string
	required bool
}{
	"user": {"user", true}, "ip": {"ip", true}, "message": {"message_id", false},
	"sender": {"sender", true}, "device": {"device", true}, "file": {"file", true},
	"url": {"url", true}, "domain": {"domain", true}, "request": {"request_id", true},
	"indicator": {"", false},
}

// TargetField is the target member an action of this Spec names ("" when it
// takes several, as remove_indicator does) and whether it is required.
func (s Spec) TargetField() (field string, required bool) {
	f := targetFields[s.Target]
	return f.field, f.required
}

// TargetFor builds the target of an action of this Spec from one value (what
// `responder act VERB VALUE` takes).
func (s Spec) TargetFor(value string) (Target, error) {
	var t Target
	field, _ := s.TargetField()
	switch field {
	case "user":
		t.User = value
	case "ip":
		t.IP = value
	case "message_id":
		t.MessageID = value
	case "sender":
		t.Sender = value
	case "device":
		t.Device = value
	case "file":
		t.File = value
	case "url":
		t.URL = value
	case "domain":
		t.Domain = value
	case "request_id":
		t.RequestID = value
	default:
		return t, fmt.Errorf("%s takes no single target value", s.Name)
	}
	return t, nil
}

// oneOf is "a, b or c".
func oneOf(vs []string) string {
	if len(vs) < 2 {
		return strings.Join(vs, "")
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " or " + vs[len(vs)-1]
}

// ParamsFromText turns parameters given as text (`act --param NAME=VALUE`,
// the console's parameter lines) into a request's params: strings, as a JSON
// request would carry them, objects decoded from JSON. A name the action does
// not declare is refused here; the values are checked by ParseParams.
func (s Spec) ParamsFromText(in map[string]string) (map[string]any, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]any, len(in))
	for k, v := range in {
		a, ok := s.Arg(k)
		if !ok {
			takes := "none"
			if len(s.Args) > 0 {
				takes = strings.Join(s.ArgNames(), ", ")
			}
			return nil, reject("%s has no parameter %q (it takes: %s)", s.Name, short(k), takes)
		}
		if a.Kind == ArgObject {
			var x any
			if err := json.Unmarshal([]byte(v), &x); err != nil {
				return nil, reject("params.%s is not JSON: %v", k, err)
			}
			out[k] = x
			continue
		}
		out[k] = v
	}
	return out, nil
}

// CheckParam checks one parameter as ParseParams would: the action declares
// it and the value is of its kind (a playbook's fixed step parameters are
// checked so at load, not first when the step runs). Rules across
// parameters and the action's own Parse are not run.
func (s Spec) CheckParam(name string, v any) error {
	if name == "undo_of" {
		return nil
	}
	a, ok := s.Arg(name)
	if !ok {
		takes := "none"
		if len(s.Args) > 0 {
			takes = strings.Join(s.ArgNames(), ", ")
		}
		return reject("%s has no parameter %q (it takes: %s)", s.Name, short(name), takes)
	}
	_, err := a.parse(v)
	return err
}

package actions

import "strings"

// The JSON Schema's per-action rules (docs/action-request.schema.json), made
// from the catalogue: what each action's target must name and which
// parameters it takes, of which kind. cmd/responder's catalogue test keeps
// the published file equal to them.

// SchemaRules are the schema's per-action "if action is X then ..." rules,
// one per catalogue action, sorted by name.
func SchemaRules() []any {
	out := make([]any, 0, len(catalogue))
	for _, s := range Specs() {
		out = append(out, s.schemaRule())
	}
	return out
}

func (s Spec) schemaRule() map[string]any {
	props := map[string]any{}
	var required []string
	for _, a := range s.Args {
		props[a.Name] = a.schema(s.Parse == nil)
		if a.Required {
			required = append(required, a.Name)
		}
	}
	props["undo_of"] = map[string]any{"$ref": "#/$defs/uuid", "description": "The request this one reverses (set by undo)."}
	if s.InverseOnly {
		required = append(required, "undo_of")
	}
	params := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
	if len(required) > 0 {
		params["required"] = required
	}
	then := map[string]any{"description": s.Description}
	properties := map[string]any{"params": params}
	if field, ok := s.TargetField(); ok {
		properties["target"] = map[string]any{"required": []string{field}}
	}
	then["properties"] = properties
	if len(required) > 0 {
		then["required"] = []string{"params"}
	}
	return map[string]any{
		"if":   map[string]any{"required": []string{"action"}, "properties": map[string]any{"action": map[string]any{"const": string(s.Name)}}},
		"then": then,
	}
}

// schema is the parameter's JSON Schema. Bounds the parser applies by
// default (DefaultArgMax) are stated only for the actions parsed from their
// Args alone (generic); an action's own Parse states its own.
func (a Arg) schema(generic bool) map[string]any {
	item := a.itemSchema(generic)
	var out map[string]any
	switch {
	case !a.List:
		out = item
	case a.Kind == ArgObject:
		out = map[string]any{"type": "array", "items": item}
		if a.Max > 0 {
			out["maxItems"] = a.Max
		}
	default:
		arr := map[string]any{"type": "array", "items": item}
		if a.Max > 0 {
			arr["maxItems"] = a.Max
		}
		out = map[string]any{"oneOf": []any{map[string]any{"type": "string", "description": "comma-separated"}, arr}}
	}
	if a.Doc != "" {
		out["description"] = a.Doc
	}
	return out
}

func (a Arg) itemSchema(generic bool) map[string]any {
	switch a.Kind {
	case ArgBool:
		return map[string]any{"anyOf": []any{
			map[string]any{"type": "boolean"},
			map[string]any{"type": "string", "pattern": "^\\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])?\\s*$"},
		}}
	case ArgObject:
		return map[string]any{"type": "object"}
	case ArgTime:
		return map[string]any{"type": "string", "format": "date-time"}
	case ArgDuration:
		return map[string]any{"type": "string", "pattern": "^\\s*([0-9]+d|([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)\\s*$", "description": "a duration such as 24h or 7d"}
	case ArgID:
		return map[string]any{"type": "string", "pattern": "^\\s*[A-Za-z0-9+/=_-]{1,512}\\s*$"}
	case ArgEmail:
		return map[string]any{"type": "string", "pattern": senderRE.String()}
	case ArgGUID:
		return map[string]any{"type": "string", "pattern": "^\\s*" + strings.Trim(uuidRE.String(), "^$") + "\\s*$"}
	}
	out := map[string]any{"type": "string"}
	if len(a.Enum) > 0 {
		out["enum"] = a.Enum
	}
	if a.Pattern != nil {
		out["pattern"] = a.Pattern.String()
	}
	if a.Max > 0 && !a.List {
		out["maxLength"] = a.Max
	} else if generic {
		out["maxLength"] = DefaultArgMax
	}
	return out
}

package playbook

import (
	"encoding/json"
	"fmt"
	"strings"
)

// template is a string with {{ … }} placeholders. A placeholder is a list of
// alternatives separated by ||: field paths (as in conditions) or quoted
// literals; the first one that resolves to a non-empty value wins.
//
// A value that is exactly one placeholder keeps the type of what it resolves
// to (a list of recipients stays a list); otherwise everything is rendered into
// one string, lists joined with ";".
type template struct {
	src   string
	parts []tmplPart
}

type tmplPart struct {
	lit  string
	alts []tmplAlt // nil for a literal part
}

type tmplAlt struct {
	ref    *ref
	lit    string
	hasLit bool
}

func (t *template) String() string { return t.src }

func parseTemplate(s string) (*template, error) {
	t := &template{src: s}
	rest := s
	for {
		i := strings.Index(rest, "{{")
		j := strings.Index(rest, "}}")
		if i < 0 {
			if j >= 0 {
				return nil, fmt.Errorf("template %q: }} without {{", s)
			}
			if rest != "" {
				t.parts = append(t.parts, tmplPart{lit: rest})
			}
			return t, nil
		}
		if j >= 0 && j < i {
			return nil, fmt.Errorf("template %q: }} without {{", s)
		}
		if i > 0 {
			t.parts = append(t.parts, tmplPart{lit: rest[:i]})
		}
		rest = rest[i+2:]
		end := strings.Index(rest, "}}")
		if end < 0 {
			return nil, fmt.Errorf("template %q: unterminated {{", s)
		}
		body := strings.TrimSpace(rest[:end])
		rest = rest[end+2:]
		if strings.Contains(body, "{{") {
			return nil, fmt.Errorf("template %q: nested {{", s)
		}
		if body == "" {
			return nil, fmt.Errorf("template %q: empty {{ }}", s)
		}
		var part tmplPart
		for _, alt := range strings.Split(body, "||") {
			alt = strings.TrimSpace(alt)
			if len(alt) >= 2 && (alt[0] == '"' || alt[0] == '\'') {
				if alt[len(alt)-1] != alt[0] {
					return nil, fmt.Errorf("template %q: unterminated literal %s", s, alt)
				}
				part.alts = append(part.alts, tmplAlt{lit: alt[1 : len(alt)-1], hasLit: true})
				continue
			}
			r, err := parseRef(alt, false)
			if err != nil {
				return nil, fmt.Errorf("template %q: %w", s, err)
			}
			part.alts = append(part.alts, tmplAlt{ref: &r})
		}
		t.parts = append(t.parts, part)
	}
}

// isTemplate reports whether s holds any placeholder (or a stray brace pair).
func isTemplate(s string) bool { return strings.Contains(s, "{{") || strings.Contains(s, "}}") }

// value resolves the template. A single placeholder yields its typed value.
func (t *template) value(c *evalCtx) any {
	if len(t.parts) == 1 && t.parts[0].alts != nil {
		return t.parts[0].resolve(c)
	}
	return t.render(c)
}

// render resolves the template into a string.
func (t *template) render(c *evalCtx) string {
	if len(t.parts) == 1 && t.parts[0].alts != nil {
		return toText(t.parts[0].resolve(c))
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.alts == nil {
			b.WriteString(p.lit)
			continue
		}
		b.WriteString(toText(p.resolve(c)))
	}
	return b.String()
}

func (p tmplPart) resolve(c *evalCtx) any {
	for _, a := range p.alts {
		if a.hasLit {
			return a.lit
		}
		v, ok := c.resolve(*a.ref, nil)
		if ok && !empty(v) {
			return v
		}
	}
	return ""
}

// empty: null, "", an empty list or object.
func empty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	}
	return false
}

// toText renders a resolved value as text.
func toText(v any) string {
	if s, ok := scalarString(v); ok {
		return s
	}
	switch t := v.(type) {
	case nil:
		return ""
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			parts = append(parts, toText(e))
		}
		return strings.Join(parts, ";")
	case map[string]any:
		b, err := json.Marshal(t)
		if err != nil {
			return ""
		}
		return string(b)
	}
	return fmt.Sprint(v)
}

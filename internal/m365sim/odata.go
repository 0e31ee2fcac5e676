package m365sim

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// A tiny OData $filter evaluator over JSON objects: comparisons (eq ne gt ge lt
// le), and/or/not, parentheses, startswith/endswith/contains, string literals
// with '' escaping, unquoted DateTimeOffset, numbers, true/false/null, and
// navigation paths such as from/emailAddress/address.

type filterNode interface {
	eval(obj map[string]any) (any, error)
}

type tok struct {
	kind string // ident, str, num, op, lp, rp, comma
	val  string
}

type filterError struct{ msg string }

func (e *filterError) Error() string { return e.msg }

func lexFilter(s string) ([]tok, error) {
	var out []tok
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(':
			out = append(out, tok{"lp", "("})
			i++
		case c == ')':
			out = append(out, tok{"rp", ")"})
			i++
		case c == ',':
			out = append(out, tok{"comma", ","})
			i++
		case c == '\'':
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, &filterError{fmt.Sprintf("Invalid filter clause: unterminated string literal at position %d in '%s'.", i, s)}
			}
			out = append(out, tok{"str", b.String()})
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '(' && s[j] != ')' && s[j] != ',' && s[j] != '\'' {
				j++
			}
			w := s[i:j]
			if w == "" {
				return nil, &filterError{fmt.Sprintf("Invalid filter clause: syntax error at position %d in '%s'.", i, s)}
			}
			if unicode.IsDigit(rune(w[0])) || (w[0] == '-' && len(w) > 1) {
				out = append(out, tok{"num", w})
			} else {
				out = append(out, tok{"ident", w})
			}
			i = j
		}
	}
	return out, nil
}

type parser struct {
	toks []tok
	pos  int
	src  string
}

func parseFilter(s string) (filterNode, error) {
	toks, err := lexFilter(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, src: s}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, p.errf()
	}
	return n, nil
}

func (p *parser) errf() error {
	return &filterError{fmt.Sprintf("Invalid filter clause: syntax error at position %d in '%s'.", p.pos, p.src)}
}

func (p *parser) peek() *tok {
	if p.pos < len(p.toks) {
		return &p.toks[p.pos]
	}
	return nil
}

func (p *parser) isWord(w string) bool {
	t := p.peek()
	return t != nil && t.kind == "ident" && strings.EqualFold(t.val, w)
}

type logicNode struct {
	op   string
	l, r filterNode
}

func (n logicNode) eval(o map[string]any) (any, error) {
	l, err := n.l.eval(o)
	if err != nil {
		return nil, err
	}
	lb, _ := l.(bool)
	if n.op == "and" && !lb {
		return false, nil
	}
	if n.op == "or" && lb {
		return true, nil
	}
	r, err := n.r.eval(o)
	if err != nil {
		return nil, err
	}
	rb, _ := r.(bool)
	return rb, nil
}

type notNode struct{ x filterNode }

func (n notNode) eval(o map[string]any) (any, error) {
	v, err := n.x.eval(o)
	if err != nil {
		return nil, err
	}
	b, _ := v.(bool)
	return !b, nil
}

func (p *parser) or() (filterNode, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.isWord("or") {
		p.pos++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = logicNode{"or", l, r}
	}
	return l, nil
}

func (p *parser) and() (filterNode, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.isWord("and") {
		p.pos++
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = logicNode{"and", l, r}
	}
	return l, nil
}

func (p *parser) unary() (filterNode, error) {
	if p.isWord("not") {
		p.pos++
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notNode{x}, nil
	}
	l, err := p.operand()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	if t != nil && t.kind == "ident" {
		op := strings.ToLower(t.val)
		switch op {
		case "eq", "ne", "gt", "ge", "lt", "le":
			p.pos++
			r, err := p.operand()
			if err != nil {
				return nil, err
			}
			return cmpNode{op, l, r}, nil
		case "in":
			p.pos++
			return p.inList(l)
		}
	}
	return l, nil
}

// inNode is "property in ('a','b')", which Graph supports on some directory
// properties (https://learn.microsoft.com/graph/filter-query-parameter#operators-and-functions-supported-in-filter-expressions).
type inNode struct {
	l    filterNode
	vals []filterNode
}

func (n inNode) eval(o map[string]any) (any, error) {
	for _, v := range n.vals {
		ok, err := cmpNode{"eq", n.l, v}.eval(o)
		if err != nil {
			return nil, err
		}
		if b, _ := ok.(bool); b {
			return true, nil
		}
	}
	return false, nil
}

func (p *parser) inList(l filterNode) (filterNode, error) {
	if t := p.peek(); t == nil || t.kind != "lp" {
		return nil, p.errf()
	}
	p.pos++
	var vals []filterNode
	for {
		v, err := p.operand()
		if err != nil {
			return nil, err
		}
		if _, ok := v.(litNode); !ok {
			return nil, p.errf()
		}
		vals = append(vals, v)
		t := p.peek()
		if t == nil {
			return nil, p.errf()
		}
		p.pos++
		if t.kind == "rp" {
			return inNode{l, vals}, nil
		}
		if t.kind != "comma" {
			return nil, p.errf()
		}
	}
}

type litNode struct{ v any }

func (n litNode) eval(map[string]any) (any, error) { return n.v, nil }

type pathNode struct{ path []string }

func (n pathNode) eval(o map[string]any) (any, error) {
	var cur any = o
	for _, p := range n.path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, nil
		}
		var found bool
		cur, found = m[p]
		if !found {
			for k, v := range m {
				if strings.EqualFold(k, p) {
					cur, found = v, true
					break
				}
			}
		}
		if !found {
			return nil, nil
		}
	}
	return cur, nil
}

type funcNode struct {
	name string
	args []filterNode
}

func (n funcNode) eval(o map[string]any) (any, error) {
	if len(n.args) != 2 {
		return nil, &filterError{"Invalid filter clause: function " + n.name + " takes two arguments."}
	}
	a, err := n.args[0].eval(o)
	if err != nil {
		return nil, err
	}
	b, err := n.args[1].eval(o)
	if err != nil {
		return nil, err
	}
	as, _ := a.(string)
	bs, _ := b.(string)
	as, bs = strings.ToLower(as), strings.ToLower(bs)
	switch n.name {
	case "startswith":
		return strings.HasPrefix(as, bs), nil
	case "endswith":
		return strings.HasSuffix(as, bs), nil
	case "contains":
		return strings.Contains(as, bs), nil
	}
	return nil, &filterError{"Invalid filter clause: unsupported function " + n.name + "."}
}

func (p *parser) operand() (filterNode, error) {
	t := p.peek()
	if t == nil {
		return nil, p.errf()
	}
	switch t.kind {
	case "lp":
		p.pos++
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if r := p.peek(); r == nil || r.kind != "rp" {
			return nil, p.errf()
		}
		p.pos++
		return n, nil
	case "str":
		p.pos++
		return litNode{t.val}, nil
	case "num":
		p.pos++
		if tm, ok := parseODataTime(t.val); ok {
			return litNode{tm}, nil
		}
		f, err := strconv.ParseFloat(t.val, 64)
		if err != nil {
			return nil, &filterError{fmt.Sprintf("Invalid filter clause: the literal '%s' is not valid.", t.val)}
		}
		return litNode{f}, nil
	case "ident":
		p.pos++
		low := strings.ToLower(t.val)
		switch low {
		case "true":
			return litNode{true}, nil
		case "false":
			return litNode{false}, nil
		case "null":
			return litNode{nil}, nil
		case "startswith", "endswith", "contains":
			if n := p.peek(); n == nil || n.kind != "lp" {
				return nil, p.errf()
			}
			p.pos++
			var args []filterNode
			for {
				a, err := p.operand()
				if err != nil {
					return nil, err
				}
				args = append(args, a)
				n := p.peek()
				if n == nil {
					return nil, p.errf()
				}
				p.pos++
				if n.kind == "rp" {
					break
				}
				if n.kind != "comma" {
					return nil, p.errf()
				}
			}
			return funcNode{low, args}, nil
		}
		if strings.Contains(t.val, "/any") || strings.Contains(t.val, "/all") {
			return nil, &filterError{"Unsupported query: lambda operators are not supported on this resource."}
		}
		if n := p.peek(); n != nil && n.kind == "lp" {
			return nil, &filterError{fmt.Sprintf("Invalid filter clause: unknown function '%s'.", t.val)}
		}
		// An enum literal: microsoft.graph.riskLevel'medium' (List riskyUsers'
		// example, https://learn.microsoft.com/graph/api/riskyuser-list).
		if n := p.peek(); n != nil && n.kind == "str" && strings.Contains(t.val, ".") {
			p.pos++
			return litNode{n.val}, nil
		}
		return pathNode{strings.Split(t.val, "/")}, nil
	}
	return nil, p.errf()
}

func parseODataTime(s string) (time.Time, bool) {
	if len(s) < 10 || s[4] != '-' {
		return time.Time{}, false
	}
	for _, f := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z07:00", "2006-01-02"} {
		if tm, err := time.Parse(f, s); err == nil {
			return tm, true
		}
	}
	return time.Time{}, false
}

type cmpNode struct {
	op   string
	l, r filterNode
}

func (n cmpNode) eval(o map[string]any) (any, error) {
	a, err := n.l.eval(o)
	if err != nil {
		return nil, err
	}
	b, err := n.r.eval(o)
	if err != nil {
		return nil, err
	}
	c, ok := compare(a, b)
	if !ok {
		switch n.op {
		case "eq":
			return a == nil && b == nil, nil
		case "ne":
			return !(a == nil && b == nil), nil
		}
		return false, nil
	}
	switch n.op {
	case "eq":
		return c == 0, nil
	case "ne":
		return c != 0, nil
	case "gt":
		return c > 0, nil
	case "ge":
		return c >= 0, nil
	case "lt":
		return c < 0, nil
	}
	return c <= 0, nil
}

// compare orders two JSON values; strings compare case-insensitively.
func compare(a, b any) (int, bool) {
	if a == nil || b == nil {
		return 0, false
	}
	if tb, ok := b.(time.Time); ok {
		as, _ := a.(string)
		ta, ok := parseODataTime(as)
		if !ok {
			return 0, false
		}
		return ta.Compare(tb), true
	}
	if ta, ok := a.(time.Time); ok {
		bs, _ := b.(string)
		tb, ok := parseODataTime(bs)
		if !ok {
			return 0, false
		}
		return ta.Compare(tb), true
	}
	switch bv := b.(type) {
	case float64:
		var af float64
		switch av := a.(type) {
		case json.Number:
			f, err := av.Float64()
			if err != nil {
				return 0, false
			}
			af = f
		case float64:
			af = av
		default:
			return 0, false
		}
		switch {
		case af < bv:
			return -1, true
		case af > bv:
			return 1, true
		}
		return 0, true
	case bool:
		ab, ok := a.(bool)
		if !ok {
			return 0, false
		}
		if ab == bv {
			return 0, true
		}
		return 1, true
	case string:
		as, ok := a.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(strings.ToLower(as), strings.ToLower(bv)), true
	}
	return 0, false
}

func matches(n filterNode, obj map[string]any) (bool, error) {
	if n == nil {
		return true, nil
	}
	v, err := n.eval(obj)
	if err != nil {
		return false, err
	}
	b, _ := v.(bool)
	return b, nil
}

// ---- paging ----

// pageToken is an opaque $skiptoken: offset plus the snapshot instant, so that
// records arriving between pages do not shift later pages.
type pageToken struct {
	Off  int   `json:"o"`
	Snap int64 `json:"s"`
}

func encodeSkip(p pageToken) string {
	b, _ := json.Marshal(p)
	return "X%27" + strings.ToUpper(fmt.Sprintf("%x", b)) + "%27"
}

func decodeSkip(s string) (pageToken, bool) {
	s = strings.TrimPrefix(s, "X'")
	s = strings.TrimPrefix(s, "X%27")
	s = strings.TrimSuffix(strings.TrimSuffix(s, "'"), "%27")
	var b []byte
	if _, err := fmt.Sscanf(strings.ToLower(s), "%x", &b); err != nil {
		return pageToken{}, false
	}
	var p pageToken
	if json.Unmarshal(b, &p) != nil || p.Off < 0 {
		return pageToken{}, false
	}
	return p, true
}

// nextLink builds an absolute @odata.nextLink to the emulator, replacing the
// skip token and keeping the other query options.
func (t *Tenant) nextLink(r *req, param, value string) string {
	q := url.Values{}
	for k, v := range r.query {
		if strings.EqualFold(k, "$skiptoken") || strings.EqualFold(k, "$skip") {
			continue
		}
		q[k] = v
	}
	// Encode like Graph: keep '$' literal in names.
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, strings.ReplaceAll(url.QueryEscape(k), "%24", "$")+"="+strings.ReplaceAll(url.QueryEscape(v), "+", "%20"))
		}
	}
	sortStrings(parts)
	parts = append(parts, param+"="+value)
	return t.base + r.path + "?" + strings.Join(parts, "&")
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// selectProps applies $select (id and @odata.type are always kept).
func selectProps(obj map[string]any, sel string) map[string]any {
	if sel == "" {
		return obj
	}
	out := map[string]any{}
	for _, f := range strings.Split(sel, ",") {
		f = strings.TrimSpace(f)
		if v, ok := obj[f]; ok {
			// The property as spelled (the usual case): no scan.
			out[f] = v
			continue
		}
		for k, v := range obj {
			if strings.EqualFold(k, f) {
				out[k] = v
			}
		}
	}
	if v, ok := obj["id"]; ok {
		out["id"] = v
	}
	if v, ok := obj["@odata.type"]; ok {
		out["@odata.type"] = v
	}
	return out
}

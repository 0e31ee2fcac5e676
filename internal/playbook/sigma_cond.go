package playbook

import (
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// sigmaNode is a compiled piece of a Sigma condition.
type sigmaNode interface {
	eval(c *evalCtx) bool
}

type sigmaAnd struct{ kids []sigmaNode }
type sigmaOr struct{ kids []sigmaNode }
type sigmaNot struct{ kid sigmaNode }

func (n *sigmaAnd) eval(c *evalCtx) bool {
	for _, k := range n.kids {
		if !k.eval(c) {
			return false
		}
	}
	return true
}

func (n *sigmaOr) eval(c *evalCtx) bool {
	for _, k := range n.kids {
		if k.eval(c) {
			return true
		}
	}
	return false
}

func (n *sigmaNot) eval(c *evalCtx) bool { return !n.kid.eval(c) }

// sigmaGuard is the logsource's own condition (say Workload
// AzureActiveDirectory); the index does not file rules under it.
type sigmaGuard struct{ sigmaNode }

// sigmaFieldMatch is one "field|modifiers: values" of a selection.
type sigmaFieldMatch struct {
	src    string
	field  *sigmaField
	values []sigmaValue
	all    bool // all values must hold (|all); otherwise any
	cased  bool
}

func (f *sigmaFieldMatch) eval(c *evalCtx) bool {
	vals, present := f.field.values(c)
	if f.all {
		for i := range f.values {
			if !f.values[i].match(vals, present) {
				return false
			}
		}
		return true
	}
	for i := range f.values {
		if f.values[i].match(vals, present) {
			return true
		}
	}
	return false
}

// match: the value holds for a field whose values are vals (a field may have
// several, from list values or several mapped paths).
func (v *sigmaValue) match(vals []any, present bool) bool {
	switch v.kind {
	case svExists:
		has := false
		for _, x := range vals {
			if x != nil {
				has = true
				break
			}
		}
		return (present && has) == v.exists
	case svNull:
		if !present {
			return true
		}
		for _, x := range vals {
			if x == nil {
				return true
			}
		}
		return false
	}
	if !present {
		return false
	}
	budget := maxLeaves
	for _, x := range vals {
		if v.matchAny(x, &budget, 0) {
			return true
		}
	}
	return false
}

// maxLeaves bounds how many scalar leaves of one compound value are compared.
const maxLeaves = 4096

// matchAny matches a scalar, or any scalar leaf of a list or object (Sigma's
// "greedy" search over compound fields such as Parameters).
func (v *sigmaValue) matchAny(x any, budget *int, depth int) bool {
	switch t := x.(type) {
	case []any:
		if depth > maxCondDepth {
			return false
		}
		for _, e := range t {
			if v.matchAny(e, budget, depth+1) {
				return true
			}
		}
		return false
	case map[string]any:
		if depth > maxCondDepth {
			return false
		}
		for _, e := range t {
			if v.matchAny(e, budget, depth+1) {
				return true
			}
		}
		return false
	case nil:
		return false
	}
	*budget--
	if *budget < 0 {
		return false
	}
	return v.matchScalar(x)
}

func (v *sigmaValue) matchScalar(x any) bool {
	switch v.kind {
	case svNum:
		n, ok := number(x)
		if !ok {
			return false
		}
		switch v.cmp {
		case "gt":
			return n > v.num
		case "gte":
			return n >= v.num
		case "lt":
			return n < v.num
		}
		return n <= v.num
	case svCIDR:
		s, ok := x.(string)
		if !ok {
			return false
		}
		a, ok := parseIP(s)
		return ok && v.nets[0].Contains(a)
	}
	s, ok := x.(string)
	if !ok {
		if s, ok = scalarString(x); !ok {
			return false
		}
	}
	switch v.kind {
	case svRe:
		return v.re.MatchString(s)
	case svEq:
		if v.cased {
			if s == v.s {
				return true
			}
		} else if strings.EqualFold(s, v.s) {
			return true
		}
		if _, isStr := x.(string); !isStr || (len(s) > 0 && (s[0] >= '0' && s[0] <= '9' || s[0] == '-')) {
			return numEqual(s, v.s)
		}
		return false
	case svContains:
		if v.cased {
			return strings.Contains(s, v.s)
		}
		return containsFold(s, v.s)
	case svPrefix:
		if v.cased {
			return strings.HasPrefix(s, v.s)
		}
		return len(s) >= len(v.s) && strings.EqualFold(s[:len(v.s)], v.s)
	case svSuffix:
		if v.cased {
			return strings.HasSuffix(s, v.s)
		}
		return len(s) >= len(v.s) && strings.EqualFold(s[len(s)-len(v.s):], v.s)
	case svGlob:
		if !v.cased {
			s = lowerIfNeeded(s)
		}
		return globMatch(v.glob, s)
	}
	return false
}

// lowerIfNeeded lower-cases s, allocating only when it has upper-case letters.
func lowerIfNeeded(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return strings.ToLower(s)
		}
	}
	return s
}

// containsFold reports whether sub (lower-case) occurs in s ignoring case.
func containsFold(s, sub string) bool {
	if sub == "" {
		return true
	}
	if len(sub) > len(s) {
		return false
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		return strings.Contains(strings.ToLower(s), sub)
	}
	first := sub[0]
	upper := first
	if 'a' <= first && first <= 'z' {
		upper = first - 'a' + 'A'
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i] != first && s[i] != upper {
			continue
		}
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// globMatch matches s against tokens: literals, * (any run) and ? (one rune).
// Iterative with one backtrack point per star: linear in practice.
func globMatch(toks []globTok, s string) bool {
	ti, si := 0, 0
	starT, starS := -1, 0
	for {
		if ti < len(toks) {
			t := toks[ti]
			switch {
			case t.star:
				starT, starS = ti, si
				ti++
				continue
			case t.any:
				if si < len(s) {
					_, w := utf8.DecodeRuneInString(s[si:])
					si += w
					ti++
					continue
				}
			default:
				if strings.HasPrefix(s[si:], t.lit) {
					si += len(t.lit)
					ti++
					continue
				}
			}
		} else if si == len(s) {
			return true
		}
		if starT < 0 || starS >= len(s) {
			return false
		}
		_, w := utf8.DecodeRuneInString(s[starS:])
		starS += w
		ti, si = starT+1, starS
	}
}

// ---- condition grammar ----
//
//	cond   := or
//	or     := and { "or" and }
//	and    := unary { "and" unary }
//	unary  := "not" unary | "(" or ")" | quant | ident
//	quant  := ("1" | "any" | "all") "of" ( "them" | pattern )
//
// "| count() …" aggregations and "near" are refused by name.

type condParser struct {
	toks  []string
	pos   int
	sels  map[string]sigmaNode
	names []string // sorted
	depth int
}

func parseSigmaCondition(s string, sels map[string]sigmaNode, names []string) (sigmaNode, error) {
	if len(s) > maxSigmaCondLen {
		return nil, fmt.Errorf("condition longer than %d characters", maxSigmaCondLen)
	}
	if i := strings.IndexByte(s, '|'); i >= 0 {
		agg := strings.TrimSpace(s[i+1:])
		feat := "aggregation | " + agg
		if j := strings.IndexByte(agg, '('); j >= 0 {
			feat = "aggregation | " + strings.TrimSpace(agg[:j]) + "()"
		}
		return nil, &SigmaError{Feature: feat, Msg: "aggregations count across events; use a playbook threshold"}
	}
	p := &condParser{toks: tokenizeCond(s), sels: sels, names: names}
	for _, t := range p.toks {
		if strings.EqualFold(t, "near") {
			return nil, &SigmaError{Feature: "near", Msg: "temporal proximity across events is not supported; use a playbook threshold with then"}
		}
	}
	if len(p.toks) == 0 {
		return nil, fmt.Errorf("empty condition")
	}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.toks[p.pos])
	}
	return n, nil
}

func tokenizeCond(s string) []string {
	var out []string
	i := 0
	for i < len(s) {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case unicode.IsSpace(r):
			i += w
		case r == '(' || r == ')':
			out = append(out, string(r))
			i += w
		default:
			j := i
			for j < len(s) {
				r2, w2 := utf8.DecodeRuneInString(s[j:])
				if unicode.IsSpace(r2) || r2 == '(' || r2 == ')' {
					break
				}
				j += w2
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}

func (p *condParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *condParser) or() (sigmaNode, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxSigmaCondDepth {
		return nil, fmt.Errorf("condition nests deeper than %d", maxSigmaCondDepth)
	}
	first, err := p.and()
	if err != nil {
		return nil, err
	}
	kids := []sigmaNode{first}
	for strings.EqualFold(p.peek(), "or") {
		p.pos++
		n, err := p.and()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return &sigmaOr{kids: kids}, nil
}

func (p *condParser) and() (sigmaNode, error) {
	first, err := p.unary()
	if err != nil {
		return nil, err
	}
	kids := []sigmaNode{first}
	for strings.EqualFold(p.peek(), "and") {
		p.pos++
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return &sigmaAnd{kids: kids}, nil
}

func (p *condParser) unary() (sigmaNode, error) {
	t := p.peek()
	switch {
	case t == "":
		return nil, fmt.Errorf("condition ends early")
	case strings.EqualFold(t, "not"):
		p.pos++
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxSigmaCondDepth {
			return nil, fmt.Errorf("condition nests deeper than %d", maxSigmaCondDepth)
		}
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &sigmaNot{kid: n}, nil
	case t == "(":
		p.pos++
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("missing )")
		}
		p.pos++
		return n, nil
	case t == ")":
		return nil, fmt.Errorf("unexpected )")
	case p.pos+1 < len(p.toks) && strings.EqualFold(p.toks[p.pos+1], "of"):
		return p.quant()
	case strings.EqualFold(t, "and") || strings.EqualFold(t, "or") || strings.EqualFold(t, "of"):
		return nil, fmt.Errorf("unexpected %q", t)
	}
	p.pos++
	n, ok := p.sels[t]
	if !ok {
		return nil, fmt.Errorf("unknown selection %q", t)
	}
	return n, nil
}

func (p *condParser) quant() (sigmaNode, error) {
	q := strings.ToLower(p.toks[p.pos])
	p.pos += 2 // quantifier, "of"
	if q != "1" && q != "any" && q != "all" {
		return nil, &SigmaError{Feature: q + " of", Msg: "only 1 of, any of and all of are defined"}
	}
	target := p.peek()
	if target == "" || target == "(" || target == ")" {
		return nil, fmt.Errorf("%s of: a selection pattern or them is required", q)
	}
	p.pos++
	var kids []sigmaNode
	for _, name := range p.names {
		if strings.EqualFold(target, "them") {
			if strings.HasPrefix(name, "_") {
				continue
			}
		} else if ok, err := path.Match(target, name); err != nil {
			return nil, fmt.Errorf("pattern %q: %w", target, err)
		} else if !ok {
			continue
		}
		kids = append(kids, p.sels[name])
	}
	if len(kids) == 0 {
		return nil, fmt.Errorf("%s of %s: no selection matches", q, target)
	}
	if q == "all" {
		return &sigmaAnd{kids: kids}, nil
	}
	return &sigmaOr{kids: kids}, nil
}

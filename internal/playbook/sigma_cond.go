package playbook

import (
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// sigmaNode is a piece of a Sigma condition as parsed: the rule's tree,
// which each Set compiles into its program (prog.go). Its reference
// evaluation lives with the tests (reference_test.go).
type sigmaNode interface {
	isSigmaNode()
}

type sigmaAnd struct{ kids []sigmaNode }
type sigmaOr struct{ kids []sigmaNode }
type sigmaNot struct{ kid sigmaNode }

func (*sigmaAnd) isSigmaNode()        {}
func (*sigmaOr) isSigmaNode()         {}
func (*sigmaNot) isSigmaNode()        {}
func (*sigmaFieldMatch) isSigmaNode() {}

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

// maxLeaves bounds how many scalar leaves of one compound value are compared.
const maxLeaves = 4096

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

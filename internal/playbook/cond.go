package playbook

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/vm"
)

// fieldCond tests one field with one or more operators (all must hold). When the
// field is a list, a scalar operator holds if it holds for any element.
type fieldCond struct {
	src           string
	field         ref
	caseSensitive bool
	ops           []fieldOp
}

type fieldOp struct {
	name   string
	values []string // equals, in, contains, starts_with, ends_with
	re     *regexp.Regexp
	nets   []netip.Prefix // cidr, in_ip_list
	lists  []*ipList      // in_ip_list
	num    float64        // gt, gte, lt, lte
	exists bool
	// nums are the values of equals / in that are numbers (maybeNumber and
	// strconv.ParseFloat): what a JSON number can equal (scalar).
	nums []float64
}

// numbersOf returns the values that numEqual can find equal to a number.
func numbersOf(values []string) []float64 {
	var out []float64
	for _, w := range values {
		if !maybeNumber(w) {
			continue
		}
		if f, err := strconv.ParseFloat(w, 64); err == nil {
			out = append(out, f)
		}
	}
	return out
}

func (f *fieldCond) String() string { return f.src }

func (f *fieldCond) eval(c *evalCtx, elem any) (bool, error) {
	v, present := c.resolve(f.field, elem)
	for _, op := range f.ops {
		if !f.evalOp(op, v, present) {
			return false, nil
		}
	}
	return true, nil
}

func (f *fieldCond) evalOp(op fieldOp, v any, present bool) bool {
	if op.name == "exists" {
		return (present && !empty(v)) == op.exists
	}
	if !present {
		return false
	}
	if list, ok := v.([]any); ok {
		for _, e := range list {
			if f.scalar(op, e) {
				return true
			}
		}
		return false
	}
	return f.scalar(op, v)
}

func (f *fieldCond) scalar(op fieldOp, v any) bool {
	switch op.name {
	case "gt", "gte", "lt", "lte":
		n, ok := number(v)
		if !ok {
			return false
		}
		switch op.name {
		case "gt":
			return n > op.num
		case "gte":
			return n >= op.num
		case "lt":
			return n < op.num
		default:
			return n <= op.num
		}
	case "cidr", "in_ip_list":
		s, ok := v.(string)
		if !ok {
			return false
		}
		a, ok := parseIP(s)
		if !ok {
			return false
		}
		for _, p := range op.nets {
			if p.Contains(a) {
				return true
			}
		}
		for _, l := range op.lists {
			if l.contains(a) {
				return true
			}
		}
		return false
	}
	if f, ok := v.(float64); ok && (op.name == "equals" || op.name == "in") && !math.IsNaN(f) && !math.IsInf(f, 0) {
		// A finite number's text (strconv.FormatFloat 'f') is digits, '-'
		// and '.', so it equals a value, or numEqual finds it equal, exactly
		// when the value is a number (op.nums) equal to it: no text to
		// render for every event (TestEqualsOnNumbers holds it to that).
		for _, w := range op.nums {
			if w == f {
				return true
			}
		}
		return false
	}
	s, ok := scalarString(v)
	if !ok {
		return false
	}
	if op.name == "matches" {
		return op.re.MatchString(s)
	}
	if !f.caseSensitive {
		s = strings.ToLower(s)
	}
	for _, want := range op.values {
		switch op.name {
		case "equals", "in":
			if s == want || numEqual(s, want) {
				return true
			}
		case "contains":
			if strings.Contains(s, want) {
				return true
			}
		case "starts_with":
			if strings.HasPrefix(s, want) {
				return true
			}
		case "ends_with":
			if strings.HasSuffix(s, want) {
				return true
			}
		}
	}
	return false
}

// numEqual: "0" equals "0.0"; both must be numbers.
func numEqual(a, b string) bool {
	if !maybeNumber(a) || !maybeNumber(b) {
		return false
	}
	x, err1 := strconv.ParseFloat(a, 64)
	y, err2 := strconv.ParseFloat(b, 64)
	return err1 == nil && err2 == nil && x == y
}

// maybeNumber is false for text that strconv.ParseFloat certainly refuses
// (it would build an error to say so): a number starts, after an optional
// sign, with a digit, a point, or the i of inf or the n of nan.
func maybeNumber(s string) bool {
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if len(s) == 0 {
		return false
	}
	switch c := s[0]; {
	case c >= '0' && c <= '9', c == '.', c == 'i', c == 'I', c == 'n', c == 'N':
		return true
	}
	return false
}

// notCond negates.
type notCond struct{ c Condition }

func (n *notCond) String() string { return "not (" + n.c.String() + ")" }

func (n *notCond) eval(c *evalCtx, elem any) (bool, error) {
	ok, err := n.c.eval(c, elem)
	return !ok, err
}

// boolCond is and/or over conditions.
type boolCond struct {
	or    bool
	conds []Condition
}

func (b *boolCond) String() string {
	parts := make([]string, len(b.conds))
	for i, c := range b.conds {
		parts[i] = c.String()
	}
	sep := " and "
	if b.or {
		sep = " or "
	}
	return "(" + strings.Join(parts, sep) + ")"
}

func (b *boolCond) eval(c *evalCtx, elem any) (bool, error) {
	for _, cc := range b.conds {
		ok, err := cc.eval(c, elem)
		if err != nil {
			return false, err
		}
		if ok == b.or {
			return ok, nil
		}
	}
	return !b.or, nil
}

// quantCond is any/all over a list: where-conditions see each element as ".".
// all over an absent or empty list is false, never vacuously true.
type quantCond struct {
	all   bool
	list  ref
	where []Condition
}

func (q *quantCond) String() string {
	w := (&boolCond{conds: q.where}).String()
	if q.all {
		return "all " + q.list.String() + " where " + w
	}
	return "any " + q.list.String() + " where " + w
}

func (q *quantCond) eval(c *evalCtx, elem any) (bool, error) {
	v, ok := c.resolve(q.list, elem)
	if !ok {
		return false, nil
	}
	if s, isStr := v.(string); isStr {
		if dec, ok := decodeEmbedded(s); ok {
			v = dec
		}
	}
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return false, nil
	}
	for _, e := range list {
		hold := true
		for _, w := range q.where {
			ok, err := w.eval(c, e)
			if err != nil {
				return false, err
			}
			if !ok {
				hold = false
				break
			}
		}
		if hold && !q.all {
			return true, nil
		}
		if !hold && q.all {
			return false, nil
		}
	}
	return q.all, nil
}

// exprCond is a compiled expr-lang expression returning bool.
type exprCond struct {
	src  string
	prog *vm.Program
}

func (e *exprCond) String() string { return "expr " + strconv.Quote(e.src) }

func (e *exprCond) eval(c *evalCtx, _ any) (bool, error) {
	out, err := runExpr(e.prog, c.exprEnvironment())
	if err != nil {
		return false, fmt.Errorf("expr %q: %w", e.src, err)
	}
	b, _ := out.(bool)
	return b, nil
}

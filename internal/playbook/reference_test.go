package playbook

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/responder-sec/responder/internal/event"
)

// The reference evaluation of the matcher: each Sigma rule evaluated on its
// parsed tree (no compiled program, no per-event memo, no index), every
// unit of a set in order, and the plain construction of a Match. The
// differential tests and FuzzSigma hold the compiled matcher to it.

// evalRef evaluates a rule's tree node.
func evalRef(n sigmaNode, c *evalCtx) bool {
	e, ok := n.(interface{ eval(*evalCtx) bool })
	return ok && e.eval(c)
}

// refNode runs a tree node where the matcher takes a compiled one.
type refNode struct{ n sigmaNode }

func (r refNode) eval(c *evalCtx) bool { return evalRef(r.n, c) }

// matchRef reports whether the rule matches env on its own.
func (r *SigmaRule) matchRef(env *event.Envelope) bool {
	if env == nil || env.Source != r.Source {
		return false
	}
	return evalRef(r.cond, newEvalCtx(nil, env))
}

func (n *sigmaAnd) eval(c *evalCtx) bool {
	for _, k := range n.kids {
		if !evalRef(k, c) {
			return false
		}
	}
	return true
}

func (n *sigmaOr) eval(c *evalCtx) bool {
	for _, k := range n.kids {
		if evalRef(k, c) {
			return true
		}
	}
	return false
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

func (n *sigmaNot) eval(c *evalCtx) bool { return !evalRef(n.kid, c) }

func (n *sigmaGuard) eval(c *evalCtx) bool { return evalRef(n.sigmaNode, c) }

// values returns the field's values for this event (several when mapped from
// several paths or virtual), and whether any path was present.
func (f *sigmaField) values(c *evalCtx) ([]any, bool) {
	var scratch [4]any
	out := scratch[:0]
	if f.virtual != nil {
		return f.virtual(c, out)
	}
	present := false
	for _, r := range f.refs {
		v, ok := c.resolve(r, nil)
		if !ok {
			continue
		}
		present = true
		switch f.xform {
		case xfTrimDot:
			if s, ok := v.(string); ok {
				v = strings.TrimSuffix(s, ".")
			}
		case xfResultStr:
			if s, ok := v.(string); ok {
				v = normResultStatus(s)
			}
		}
		out = append(out, v)
	}
	return out, present
}

// matchReference is the matcher without its optimisations, for the
// differential test: every unit of the set in order (no index), each Sigma
// rule evaluated on its original tree (no compiled program, no memo).
func (s *Set) matchReference(ctx context.Context, env *event.Envelope, counter Counter) ([]Match, error) {
	if env == nil {
		return nil, errors.New("playbook: Match: nil event")
	}
	c := newEvalCtx(s, env)
	c.beginMatch()
	all := make([]int32, len(s.idx.units))
	for i := range all {
		all[i] = int32(i)
	}
	return s.matchUnitsRef(ctx, c, counter, all)
}

// matchUnitsRef evaluates units in order with holdsRef and fireRef.
func (s *Set) matchUnitsRef(ctx context.Context, c *evalCtx, counter Counter, units []int32) ([]Match, error) {
	var ms []Match
	var errs []error
	last := int32(-1) // the last playbook that fired: its other units are skipped
	for _, id := range units {
		u := s.idx.units[id]
		if u.pb == last {
			continue
		}
		p := s.playbooks[u.pb]
		th := p.Trigger.Threshold
		if th != nil && counter == nil {
			continue
		}
		ok, rule, err := p.holdsRef(c, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		var fire *ThresholdFire
		if th != nil {
			o, ok := p.observation(c, u.follow)
			if !ok {
				continue
			}
			res, err := counter.Observe(ctx, o)
			if err != nil {
				errs = append(errs, fmt.Errorf("playbook %q: threshold: %w", p.Name, err))
				continue
			}
			if !res.Fired {
				continue
			}
			fire = &ThresholdFire{Key: o.Key, Count: res.Count}
		}
		m, err := p.fireRef(c, rule, fire)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		last = u.pb
		ms = append(ms, *m)
	}
	if c.rawErr != nil {
		errs = append([]error{c.rawErr}, errs...)
	}
	return ms, errors.Join(errs...)
}

// evaluate tests one playbook against env whether or not it is enabled; nil
// when it does not fire. A threshold playbook is evaluated as if its count
// had been reached.
func (s *Set) evaluate(p *Playbook, env *event.Envelope) (*Match, error) {
	if env == nil || p == nil {
		return nil, errors.New("playbook: evaluate: nil argument")
	}
	c := newEvalCtx(s, env)
	var m *Match
	var err error
	rules := len(p.Trigger.Sigma)
	if rules == 0 {
		rules = 1
	}
	for j := 0; j < rules && m == nil && err == nil; j++ {
		u := unit{rule: -1}
		if len(p.Trigger.Sigma) > 0 {
			u.rule = int32(j)
		}
		var ok bool
		var rule *SigmaRule
		ok, rule, err = p.holdsRef(c, u)
		if ok && err == nil {
			m, err = p.fireRef(c, rule, nil)
		}
	}
	if err == nil && c.rawErr != nil {
		err = c.rawErr
	}
	return m, err
}

// holdsRef is holds with the Sigma rule's reference evaluation.
func (p *Playbook) holdsRef(c *evalCtx, u unit) (bool, *SigmaRule, error) {
	var node cnode
	if !u.follow && u.rule >= 0 && int(u.rule) < len(p.Trigger.Sigma) {
		node = refNode{p.Trigger.Sigma[u.rule].cond}
	}
	return p.holdsWith(c, u, node)
}

// fireRef builds the Match of a playbook whose trigger held (the reference
// construction, for evaluate and the differential test).
func (p *Playbook) fireRef(c *evalCtx, rule *SigmaRule, th *ThresholdFire) (*Match, error) {
	m := &Match{Playbook: p.Name, Suppression: p.Suppression.Window, BlastRadius: p.BlastRadius, Sigma: rule, Threshold: th}
	if p.reason != nil {
		m.Reason = p.reason.render(c)
	} else {
		m.Reason = string(c.env.Source) + " event"
		if c.env.Kind != "" {
			m.Reason = string(c.env.Source) + " " + strconv.Quote(c.env.Kind)
		}
		if len(p.Trigger.Conditions) > 0 {
			held := make([]string, 0, len(p.Trigger.Conditions))
			for _, cond := range p.Trigger.Conditions {
				held = append(held, cond.String())
			}
			m.Reason += " where " + strings.Join(held, " and ")
		}
		if rule != nil {
			m.Reason += rule.reason
		}
		if th != nil {
			t := p.Trigger.Threshold
			what := "events"
			if t.Distinct != "" {
				what = "distinct " + t.Distinct
			}
			m.Reason += fmt.Sprintf("; %d %s for %s %s within %s", th.Count, what, strings.Join(t.By, "/"), th.Key, t.Window)
			if t.Then != nil {
				m.Reason += ", then this event"
			}
		}
	}
	for i, st := range p.Steps {
		step, err := st.resolve(c, p.DryRun)
		if err != nil {
			return nil, fmt.Errorf("playbook %q: step %d (%s): %w", p.Name, i+1, st.Action, err)
		}
		m.Steps = append(m.Steps, step)
		m.Approval = append(m.Approval, st.Approval)
	}
	if p.Suppression.Window > 0 && p.Suppression.key != nil {
		k := p.Suppression.key.render(c)
		if k == "" {
			k = c.env.ID
		}
		m.SuppressionKey = p.Name + "/" + k
		if p.Suppression.Scope != "" {
			m.SuppressionKey = "scope:" + p.Suppression.Scope + "/" + k
		}
	}
	return m, nil
}

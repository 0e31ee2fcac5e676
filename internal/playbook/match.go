package playbook

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/event"
)

// Match returns, for each enabled playbook that fires on env, its steps with
// targets and parameters resolved from the event. It is a pure function: no
// I/O, no clock, no state; suppression and blast-radius limits are reported
// in the Match for the engine to enforce. Playbooks with a threshold trigger
// never fire here: they need state (MatchStateful).
//
// A playbook whose conditions fail to evaluate, or whose steps resolve to an
// invalid target (say, no user on the event), does not fire; the error says
// which, and the other playbooks' matches are still returned.
func (s *Set) Match(env *event.Envelope) ([]Match, error) {
	out, err := s.match(context.Background(), env, nil)
	return out, err
}

// MatchStateful is Match plus the threshold triggers, whose state counter
// keeps: an event that meets a threshold playbook's trigger (or its then) is
// observed, and the playbook fires when the counter says so. With a KV-backed
// counter, several engine processes share the state. An error from the
// counter is returned with the matches that did not need it.
func (s *Set) MatchStateful(ctx context.Context, env *event.Envelope, counter Counter) ([]Match, error) {
	if counter == nil && s.idx.stateful {
		return nil, errNoCounter
	}
	return s.match(ctx, env, counter)
}

// Stateful reports whether the set has enabled threshold triggers.
func (s *Set) Stateful() bool { return s.idx.stateful }

func (s *Set) match(ctx context.Context, env *event.Envelope, counter Counter) ([]Match, error) {
	if env == nil {
		return nil, errors.New("playbook: Match: nil event")
	}
	c, _ := s.ctxPool.Get().(*evalCtx)
	if c == nil {
		c = &evalCtx{}
	}
	c.reset(s, env)
	out, err := s.matchCtx(ctx, c, counter)
	c.reset(nil, nil)
	s.ctxPool.Put(c)
	return out, err
}

func (s *Set) matchCtx(ctx context.Context, c *evalCtx, counter Counter) ([]Match, error) {
	var out []Match
	var errs []error
	var cb [64]int32
	last := int32(-1) // the last playbook that fired: its other units are skipped
	for _, id := range s.candidates(c, cb[:0]) {
		u := s.idx.units[id]
		if u.pb == last {
			continue
		}
		p := s.playbooks[u.pb]
		th := p.Trigger.Threshold
		if th != nil && counter == nil {
			continue
		}
		ok, rule, err := p.holds(c, u)
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
		m, err := p.fire(c, rule, fire)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		last = u.pb
		out = append(out, *m)
	}
	if c.rawErr != nil {
		errs = append([]error{c.rawErr}, errs...)
	}
	return out, errors.Join(errs...)
}

// Evaluate tests one playbook against env whether or not it is enabled; nil
// when it does not fire. A threshold playbook is evaluated as if its count
// had been reached.
func (s *Set) Evaluate(p *Playbook, env *event.Envelope) (*Match, error) {
	if env == nil || p == nil {
		return nil, errors.New("playbook: Evaluate: nil argument")
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
		ok, rule, err = p.holds(c, u)
		if ok && err == nil {
			m, err = p.fire(c, rule, nil)
		}
	}
	if err == nil && c.rawErr != nil {
		err = c.rawErr
	}
	return m, err
}

// holds reports whether the unit's trigger holds for the event (source, kind,
// conditions, Sigma rule), and which rule matched.
func (p *Playbook) holds(c *evalCtx, u unit) (bool, *SigmaRule, error) {
	src, kinds, conds := p.Trigger.Source, p.Trigger.Kinds, p.Trigger.Conditions
	var rule *SigmaRule
	if u.follow {
		fu := p.Trigger.Threshold.Then
		src, kinds, conds = fu.Source, fu.Kinds, fu.Conditions
	} else if u.rule >= 0 && int(u.rule) < len(p.Trigger.Sigma) {
		rule = p.Trigger.Sigma[u.rule]
		if src == "" {
			src = rule.Source
		}
	}
	if c.env.Source != src {
		return false, nil, nil
	}
	if len(kinds) > 0 {
		ok := false
		for _, k := range kinds {
			if strings.EqualFold(k, c.env.Kind) {
				ok = true
				break
			}
		}
		if !ok {
			return false, nil, nil
		}
	}
	for _, cond := range conds {
		ok, err := cond.eval(c, nil)
		if err != nil {
			return false, nil, fmt.Errorf("playbook %q: %w", p.Name, err)
		}
		if !ok {
			return false, nil, nil
		}
	}
	if rule != nil && !rule.cond.eval(c) {
		return false, nil, nil
	}
	return true, rule, nil
}

// fire builds the Match of a playbook whose trigger held.
func (p *Playbook) fire(c *evalCtx, rule *SigmaRule, th *ThresholdFire) (*Match, error) {
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
	}
	return m, nil
}

func (st *Step) resolve(c *evalCtx, dryRun bool) (actions.Step, error) {
	out := actions.Step{Action: st.Action, DryRun: dryRun || st.DryRun}
	if st.target.user != nil {
		out.Target.User = strings.TrimSpace(st.target.user.render(c))
	}
	if st.target.ip != nil {
		ip := strings.TrimSpace(st.target.ip.render(c))
		if a, ok := parseIP(ip); ok {
			ip = a.String()
		}
		out.Target.IP = ip
	}
	if st.target.messageID != nil {
		out.Target.MessageID = strings.TrimSpace(st.target.messageID.render(c))
	}
	switch st.targetKind {
	case "user":
		if out.Target.User == "" {
			return out, errors.New("the event has no user to act on")
		}
		if !actions.ValidUser(out.Target.User) {
			return out, fmt.Errorf("target user %q is not a UPN or object id", out.Target.User)
		}
	case "ip":
		if out.Target.IP == "" {
			return out, errors.New("the event has no IP address to act on")
		}
		if !actions.ValidIP(out.Target.IP) {
			return out, fmt.Errorf("target ip %q is not an address or CIDR", out.Target.IP)
		}
	case "message":
		if out.Target.MessageID == "" {
			return out, errors.New("the event has no message id to act on")
		}
	}
	if len(st.params) > 0 {
		out.Params = resolveParams(st.params, c).(map[string]any)
	}
	return out, nil
}

func resolveParams(v any, c *evalCtx) any {
	switch t := v.(type) {
	case *template:
		return t.value(c)
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = resolveParams(x, c)
		}
		return m
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = resolveParams(x, c)
		}
		return out
	}
	return v
}

package playbook

import (
	"errors"
	"fmt"
	"strings"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/event"
)

// Match returns, for each enabled playbook that fires on env, its steps with
// targets and parameters resolved from the event. It is a pure function: no
// I/O, no clock, no state; suppression and blast-radius limits are reported
// in the Match for the engine to enforce.
//
// A playbook whose conditions fail to evaluate, or whose steps resolve to an
// invalid target (say, no user on the event), does not fire; the error says
// which, and the other playbooks' matches are still returned.
func (s *Set) Match(env *event.Envelope) ([]Match, error) {
	if env == nil {
		return nil, errors.New("playbook: Match: nil event")
	}
	c := newEvalCtx(s, env)
	var out []Match
	var errs []error
	if c.rawErr != nil {
		errs = append(errs, c.rawErr)
	}
	for _, p := range s.playbooks {
		if !p.Enabled {
			continue
		}
		m, err := p.evaluate(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if m != nil {
			out = append(out, *m)
		}
	}
	return out, errors.Join(errs...)
}

// Evaluate tests one playbook against env whether or not it is enabled; nil
// when it does not fire.
func (s *Set) Evaluate(p *Playbook, env *event.Envelope) (*Match, error) {
	if env == nil || p == nil {
		return nil, errors.New("playbook: Evaluate: nil argument")
	}
	c := newEvalCtx(s, env)
	m, err := p.evaluate(c)
	if err == nil && c.rawErr != nil {
		err = c.rawErr
	}
	return m, err
}

func (p *Playbook) evaluate(c *evalCtx) (*Match, error) {
	if c.env.Source != p.Trigger.Source {
		return nil, nil
	}
	if len(p.Trigger.Kinds) > 0 {
		ok := false
		for _, k := range p.Trigger.Kinds {
			if strings.EqualFold(k, c.env.Kind) {
				ok = true
				break
			}
		}
		if !ok {
			return nil, nil
		}
	}
	held := make([]string, 0, len(p.Trigger.Conditions))
	for _, cond := range p.Trigger.Conditions {
		ok, err := cond.eval(c, nil)
		if err != nil {
			return nil, fmt.Errorf("playbook %q: %w", p.Name, err)
		}
		if !ok {
			return nil, nil
		}
		held = append(held, cond.String())
	}
	m := &Match{Playbook: p.Name, Suppression: p.Suppression.Window, BlastRadius: p.BlastRadius}
	if p.reason != nil {
		m.Reason = p.reason.render(c)
	} else {
		m.Reason = fmt.Sprintf("%s event", c.env.Source)
		if c.env.Kind != "" {
			m.Reason = fmt.Sprintf("%s %q", c.env.Source, c.env.Kind)
		}
		if len(held) > 0 {
			m.Reason += " where " + strings.Join(held, " and ")
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

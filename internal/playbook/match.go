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
	c := s.ctxHot.Swap(nil)
	if c == nil {
		c, _ = s.ctxPool.Get().(*evalCtx)
	}
	if c == nil {
		c = &evalCtx{}
	}
	c.reset(s, env)
	out, err := s.matchCtx(ctx, c, counter)
	c.reset(nil, nil)
	if !s.ctxHot.CompareAndSwap(nil, c) {
		s.ctxPool.Put(c)
	}
	return out, err
}

func (s *Set) matchCtx(ctx context.Context, c *evalCtx, counter Counter) ([]Match, error) {
	hits, err := s.hitsCtx(ctx, c, counter, c.hitBuf[:0])
	out, rerr := s.render(c, hits)
	clear(hits)
	if cap(hits) <= 64 {
		c.hitBuf = hits[:0]
	}
	if rerr != nil {
		err = errors.Join(err, rerr)
	}
	return out, err
}

// hitsCtx appends to hits the playbooks that fire on the event, in order.
func (s *Set) hitsCtx(ctx context.Context, c *evalCtx, counter Counter, hits []Hit) ([]Hit, error) {
	if c.prepGen == 0 || c.prepGen != c.gen {
		c.beginMatch()
	}
	var cb [64]int32
	return s.matchUnits(ctx, c, counter, s.candidates(c, cb[:0]), hits)
}

// Hit is one playbook that fired on one event, before its Match is built:
// the trigger held (and, for a threshold playbook, the counter fired) and
// every step has a valid target. Set.RenderDecoded builds its Match
// (reason, steps, suppression key) from the event.
type Hit struct {
	pb    *Playbook
	unit  int32
	rule  *SigmaRule
	th    ThresholdFire
	hasTh bool
}

// Playbook is the name of the playbook that fired.
func (h *Hit) Playbook() string { return h.pb.Name }

// render builds the Matches of hits on the event of c (fire).
func (s *Set) render(c *evalCtx, hits []Hit) ([]Match, error) {
	if len(hits) == 0 {
		return nil, nil
	}
	out := make([]Match, 0, len(hits))
	var errs []error
	for i := range hits {
		h := &hits[i]
		var th *ThresholdFire
		if h.hasTh {
			th = &ThresholdFire{Key: h.th.Key, Count: h.th.Count}
		}
		m, err := h.pb.fire(c, &s.idx.units[h.unit], h.rule, th)
		if err != nil {
			errs = append(errs, err) // not reached: the hit's steps were checked
			continue
		}
		out = append(out, m)
	}
	return out, errors.Join(errs...)
}

// matchUnits evaluates units in order (reference_test.go has its reference)
// and appends the hits.
func (s *Set) matchUnits(ctx context.Context, c *evalCtx, counter Counter, units []int32, hits []Hit) ([]Hit, error) {
	var errs []error
	last := int32(-1) // the last playbook that fired: its other units are skipped
	for _, id := range units {
		u := &s.idx.units[id]
		if u.pb == last || (u.stateful && counter == nil) {
			continue
		}
		var ok bool
		var rule *SigmaRule
		var err error
		if u.plain {
			// the unit alone decides: the playbook is read when it holds
			ok, rule = c.env.Source == u.src && u.node.eval(c), u.sigma
		} else {
			ok, rule, err = s.playbooks[u.pb].holds(c, u)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		p := s.playbooks[u.pb]
		th := p.Trigger.Threshold
		h := Hit{pb: p, unit: id, rule: rule}
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
			h.th, h.hasTh = ThresholdFire{Key: o.Key, Count: res.Count}, true
		}
		if err := p.checkSteps(c, u); err != nil {
			errs = append(errs, err)
			continue
		}
		last = u.pb
		hits = append(hits, h)
	}
	if c.rawErr != nil {
		errs = append([]error{c.rawErr}, errs...)
	}
	return hits, errors.Join(errs...)
}

// holds reports whether the unit's trigger holds for the event (source, kind,
// conditions, Sigma rule), and which rule matched. The Sigma rule runs as
// the set's compiled program.
func (p *Playbook) holds(c *evalCtx, u *unit) (bool, *SigmaRule, error) {
	if u.plain {
		if c.env.Source != u.src || !u.node.eval(c) {
			return false, nil, nil
		}
		return true, u.sigma, nil
	}
	return p.holdsWith(c, *u, u.node)
}

// holdsWith is holds with node as the unit's Sigma rule.
func (p *Playbook) holdsWith(c *evalCtx, u unit, node cnode) (bool, *SigmaRule, error) {
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
	if rule != nil && (node == nil || !node.eval(c)) {
		return false, nil, nil
	}
	return true, rule, nil
}

// whereText is the default reason's account of the trigger's conditions.
func whereText(conds []Condition) string {
	if len(conds) == 0 {
		return ""
	}
	held := make([]string, 0, len(conds))
	for _, cond := range conds {
		held = append(held, cond.String())
	}
	return " where " + strings.Join(held, " and ")
}

// defaultReasonPrefix is "<source> event" or "<source> \"<kind>\"". The last
// one is kept with the evalCtx: consecutive events mostly share it.
func (c *evalCtx) defaultReasonPrefix() string {
	rc := &c.reasons
	if rc.preOK && rc.preSrc == c.env.Source && rc.preKind == c.env.Kind {
		return rc.pre
	}
	pre := string(c.env.Source) + " event"
	if c.env.Kind != "" {
		pre = string(c.env.Source) + " " + strconv.Quote(c.env.Kind)
	}
	rc.preOK, rc.preSrc, rc.preKind, rc.pre = true, c.env.Source, c.env.Kind, pre
	return pre
}

// reasonCache keeps recent default reasons of Sigma playbooks: the reason
// depends only on the event's source and kind, the trigger's conditions and
// the rule, so events of one kind share it (strings are immutable).
type reasonCache struct {
	preOK   bool
	preSrc  event.Source
	preKind string
	pre     string
	next    int
	ents    [8]reasonEntry
}

type reasonEntry struct {
	rule   *SigmaRule
	pre    string
	where  string
	reason string
}

func (c *evalCtx) sigmaReason(where string, rule *SigmaRule) string {
	pre := c.defaultReasonPrefix()
	rc := &c.reasons
	for i := range rc.ents {
		e := &rc.ents[i]
		if e.rule == rule && e.pre == pre && e.where == where {
			return e.reason
		}
	}
	r := pre + where + rule.reason
	rc.ents[rc.next] = reasonEntry{rule: rule, pre: pre, where: where, reason: r}
	rc.next = (rc.next + 1) % len(rc.ents)
	return r
}

// fire builds the Match of a playbook whose trigger held in unit u (its
// where is whereText(p.Trigger.Conditions), its noTarget the steps' errors
// when the event gives no target, both precomputed). It builds what fireRef
// builds, with fewer allocations.
func (p *Playbook) fire(c *evalCtx, u *unit, rule *SigmaRule, th *ThresholdFire) (Match, error) {
	where := u.where
	m := Match{Playbook: p.Name, Suppression: p.Suppression.Window, BlastRadius: p.BlastRadius, Sigma: rule, Threshold: th}
	switch {
	case p.reason != nil:
		m.Reason = p.reason.render(c)
	case th != nil:
		m.Reason = c.defaultReasonPrefix() + where
		if rule != nil {
			m.Reason += rule.reason
		}
		m.Reason += thresholdReason(p.Trigger.Threshold, th)
	case rule != nil:
		m.Reason = c.sigmaReason(where, rule)
	default:
		m.Reason = c.defaultReasonPrefix() + where
	}
	if len(p.Steps) > 0 {
		m.Steps = make([]actions.Step, 0, len(p.Steps))
		m.Approval = make([]string, 0, len(p.Steps))
	}
	for i, st := range p.Steps {
		step, err := st.resolve(c, p.DryRun)
		if err != nil {
			if _, ok := err.(noTarget); ok && i < len(u.noTarget) {
				return Match{}, u.noTarget[i]
			}
			return Match{}, fmt.Errorf("playbook %q: step %d (%s): %w", p.Name, i+1, st.Action, err)
		}
		m.Steps = append(m.Steps, step)
		m.Approval = append(m.Approval, st.Approval)
	}
	if p.Suppression.Window > 0 && p.Suppression.key != nil {
		k := p.Suppression.key.render(c)
		if k == "" {
			k = c.env.ID
		}
		if p.Suppression.Scope != "" {
			m.SuppressionKey = "scope:" + p.Suppression.Scope + "/" + k
		} else {
			m.SuppressionKey = p.Name + "/" + k
		}
	}
	return m, nil
}

// checkSteps reports the error fire would report for the playbook's steps
// on the event (a step without a valid target), without building them.
func (p *Playbook) checkSteps(c *evalCtx, u *unit) error {
	for i := range p.Steps {
		st := &p.Steps[i]
		if err := st.check(c); err != nil {
			if _, ok := err.(noTarget); ok && i < len(u.noTarget) {
				return u.noTarget[i]
			}
			return fmt.Errorf("playbook %q: step %d (%s): %w", p.Name, i+1, st.Action, err)
		}
	}
	return nil
}

// check is resolve's verdict on the step's target, without the step: the
// same error for the same event (TestDifferentialMatch holds the two to the
// reference).
func (st *Step) check(c *evalCtx) error {
	if tp, ok := st.target.more[st.targetKind]; ok {
		v := strings.TrimSpace(tp.render(c))
		if v == "" {
			return noTarget(st.targetKind)
		}
		if st.targetKind == "sender" {
			if _, _, err := actions.ParseSender(v); err != nil {
				return fmt.Errorf("target sender: %v", err)
			}
		}
	}
	switch st.targetKind {
	case "user":
		v := ""
		if st.target.user != nil {
			v = strings.TrimSpace(st.target.user.render(c))
		}
		if v == "" {
			return noTarget("user")
		}
		if !c.validUser(v) && !(mailboxAction(st.Action) && exchangeIdentity(v)) {
			return fmt.Errorf("target user %q is not a UPN or object id", v)
		}
	case "ip":
		ip := ""
		if st.target.ip != nil {
			ip = strings.TrimSpace(st.target.ip.render(c))
			if a, ok := parseIP(ip); ok {
				ip = a.String()
			}
		}
		if ip == "" {
			return noTarget("IP address")
		}
		if !actions.ValidIP(ip) {
			return fmt.Errorf("target ip %q is not an address or CIDR", ip)
		}
	case "message":
		if st.target.messageID == nil || strings.TrimSpace(st.target.messageID.render(c)) == "" {
			return noTarget("message id")
		}
	}
	return nil
}

func thresholdReason(t *Threshold, th *ThresholdFire) string {
	what := "events"
	if t.Distinct != "" {
		what = "distinct " + t.Distinct
	}
	r := fmt.Sprintf("; %d %s for %s %s within %s", th.Count, what, strings.Join(t.By, "/"), th.Key, t.Window)
	if t.Then != nil {
		r += ", then this event"
	}
	return r
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
	for k, tp := range st.target.more {
		v := strings.TrimSpace(tp.render(c))
		switch k {
		case "sender":
			out.Target.Sender = v
		case "device":
			out.Target.Device = v
		case "file":
			out.Target.File = v
		case "url":
			out.Target.URL = v
		case "domain":
			out.Target.Domain = v
		}
	}
	if _, ok := st.target.more[st.targetKind]; ok {
		if v := out.Target.Map()[st.targetKind]; v == "" {
			return out, noTarget(st.targetKind)
		}
		if st.targetKind == "sender" {
			if _, _, err := actions.ParseSender(out.Target.Sender); err != nil {
				return out, fmt.Errorf("target sender: %v", err)
			}
		}
	}
	switch st.targetKind {
	case "user":
		if out.Target.User == "" {
			return out, noTarget("user")
		}
		if !c.validUser(out.Target.User) && !(mailboxAction(st.Action) && exchangeIdentity(out.Target.User)) {
			return out, fmt.Errorf("target user %q is not a UPN or object id", out.Target.User)
		}
	case "ip":
		if out.Target.IP == "" {
			return out, noTarget("IP address")
		}
		if !actions.ValidIP(out.Target.IP) {
			return out, fmt.Errorf("target ip %q is not an address or CIDR", out.Target.IP)
		}
	case "message":
		if out.Target.MessageID == "" {
			return out, noTarget("message id")
		}
	}
	if len(st.params) > 0 {
		out.Params = resolveParams(st.params, c).(map[string]any)
	}
	return out, nil
}

// noTarget is the error of a step whose target the event does not give:
// "the event has no <what> to act on".
type noTarget string

func (e noTarget) Error() string { return "the event has no " + string(e) + " to act on" }

// noTargetText is what a step's noTarget names (Step.resolve).
func (st *Step) noTargetText() string {
	if _, ok := st.target.more[st.targetKind]; ok {
		return st.targetKind
	}
	switch st.targetKind {
	case "ip":
		return "IP address"
	case "message":
		return "message id"
	}
	return st.targetKind
}

// stepErrors are a playbook's steps' errors when the event gives no target,
// as fire reports them: built once per set, not per event.
func stepErrors(p *Playbook) []error {
	out := make([]error, len(p.Steps))
	for i := range p.Steps {
		st := &p.Steps[i]
		out[i] = fmt.Errorf("playbook %q: step %d (%s): %w", p.Name, i+1, st.Action, noTarget(st.noTargetText()))
	}
	return out
}

// validUser is actions.ValidUser, remembered for the last few values: the
// steps of the playbooks that fire on one event mostly act on its user.
func (c *evalCtx) validUser(s string) bool {
	vc := &c.users
	for i := range vc.ents {
		if e := &vc.ents[i]; e.set && e.s == s {
			return e.ok
		}
	}
	ok := actions.ValidUser(s)
	vc.ents[vc.next] = userValidity{set: true, s: s, ok: ok}
	vc.next = (vc.next + 1) % len(vc.ents)
	return ok
}

// userCache is validUser's memory, kept across events.
type userCache struct {
	next int
	ents [4]userValidity
}

type userValidity struct {
	set, ok bool
	s       string
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

// mailboxAction: the actions whose target may be any of Exchange's identity
// forms (the catalogue's MailboxTarget).
func mailboxAction(a actions.Name) bool {
	s, ok := actions.Lookup(a)
	return ok && s.MailboxTarget
}

// exchangeIdentity is actions.ValidMailboxIdentity.
func exchangeIdentity(s string) bool { return actions.ValidMailboxIdentity(s) }

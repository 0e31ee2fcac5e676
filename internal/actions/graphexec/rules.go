package graphexec

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	abs "github.com/microsoft/kiota-abstractions-go"

	"github.com/responder-sec/responder/internal/actions"
)

// rule is the part of a Graph messageRule the decisions need; the raw JSON is
// what is kept and restored.
type rule struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	IsEnabled   bool   `json:"isEnabled"`
	Actions     struct {
		ForwardTo             []recipient `json:"forwardTo"`
		ForwardAsAttachmentTo []recipient `json:"forwardAsAttachmentTo"`
		RedirectTo            []recipient `json:"redirectTo"`
	} `json:"actions"`
	raw json.RawMessage
}

type recipient struct {
	EmailAddress struct {
		Address string `json:"address"`
	} `json:"emailAddress"`
}

func (r *rule) recipients() []string {
	var out []string
	for _, l := range [][]recipient{r.Actions.ForwardTo, r.Actions.ForwardAsAttachmentTo, r.Actions.RedirectTo} {
		for _, x := range l {
			if a := strings.TrimSpace(x.EmailAddress.Address); a != "" {
				out = append(out, a)
			}
		}
	}
	return out
}

func (r *rule) forwards() bool { return len(r.recipients()) > 0 }

// external reports whether a recipient's domain is not a verified domain.
func (r *rule) external(domains []string) []string {
	var out []string
	for _, a := range r.recipients() {
		_, d, _ := strings.Cut(strings.TrimPrefix(strings.ToLower(a), "smtp:"), "@")
		if !slices.ContainsFunc(domains, func(v string) bool { return strings.EqualFold(v, d) }) {
			out = append(out, a)
		}
	}
	return out
}

const permRulesRead = "MailboxSettings.Read"

func rulesPath(user string, id ...string) string {
	return seg(append([]string{"users", user, "mailFolders", "inbox", "messageRules"}, id...)...)
}

func (e *Executor) outlook(user string) func(context.Context) (func(), error) {
	return func(ctx context.Context) (func(), error) { return e.budgets.Mailbox(ctx, user) }
}

func (e *Executor) listRules(ctx context.Context, c *calls, user string) ([]*rule, error) {
	raws, err := e.list(ctx, c, rulesPath(user), "", permRulesRead, e.outlook(user))
	if err != nil {
		return nil, err
	}
	out := make([]*rule, 0, len(raws))
	for _, r := range raws {
		var x rule
		if err := json.Unmarshal(r, &x); err != nil {
			return nil, Classify(fmt.Errorf("decode inbox rule: %w", err), permRulesRead)
		}
		x.raw = r
		out = append(out, &x)
	}
	return out, nil
}

// mailboxCall runs one Outlook call within the mailbox's concurrency budget.
func (e *Executor) mailboxCall(ctx context.Context, c *calls, user string, method abs.HttpMethod, path, q string, body any, perm string) ([]byte, error) {
	release, err := e.budgets.Mailbox(ctx, user)
	if err != nil {
		return nil, Classify(err, perm)
	}
	defer release()
	b, err := e.raw(ctx, c, method, path, q, body)
	if err != nil {
		return nil, Classify(err, perm)
	}
	return b, nil
}

func rawList(rs []*rule) json.RawMessage {
	arr := make([]json.RawMessage, len(rs))
	for i, r := range rs {
		arr[i] = r.raw
	}
	b, _ := json.Marshal(map[string]any{"rules": arr})
	return b
}

// setForwardRules disables every enabled forwarding rule (enable=false), or
// re-enables the listed rules (enable=true).
func (e *Executor) setForwardRules(ctx context.Context, user string, ids []string, enable bool, perm string, plan bool) (actions.Result, error) {
	return e.setForwardRulesIn(ctx, newCalls(), user, ids, nil, enable, perm, plan)
}

// disableForwardRules disables every forwarding rule (scope all: internal
// recipients too), or those forwarding outside the verified domains (scope
// external).
func (e *Executor) disableForwardRules(ctx context.Context, user, scope, perm string, plan bool) (actions.Result, error) {
	c := newCalls()
	var domains []string
	if scope == "external" {
		d, err := e.verifiedDomains(ctx, c)
		if err != nil {
			return actions.Result{GraphRequestIDs: c.list()}, err
		}
		domains = d
	}
	return e.setForwardRulesIn(ctx, c, user, nil, domains, false, perm, plan)
}

// setForwardRulesIn: domains non-nil limits a disable to the rules that
// forward outside them.
func (e *Executor) setForwardRulesIn(ctx context.Context, c *calls, user string, ids, domains []string, enable bool, perm string, plan bool) (actions.Result, error) {
	rules, err := e.listRules(ctx, c, user)
	if err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, err
	}
	var todo []*rule
	var missing []string
	if enable {
		for _, id := range ids {
			i := slices.IndexFunc(rules, func(r *rule) bool { return r.ID == id })
			if i < 0 {
				missing = append(missing, id)
				continue
			}
			if !rules[i].IsEnabled {
				todo = append(todo, rules[i])
			}
		}
	} else {
		for _, r := range rules {
			if r.forwards() && r.IsEnabled && (domains == nil || len(r.external(domains)) > 0) {
				todo = append(todo, r)
			}
		}
	}
	verb := "disable"
	if enable {
		verb = "enable"
	}
	note := ""
	if len(missing) > 0 {
		note = fmt.Sprintf("; %d rule(s) no longer exist: %s", len(missing), strings.Join(missing, ", "))
	}
	before := rawList(todo)
	if len(todo) == 0 {
		return actions.Result{Detail: fmt.Sprintf("no forwarding rule to %s in %s's inbox%s", verb, user, note), Before: before, GraphRequestIDs: c.list(), AlreadyDone: true}, nil
	}
	names := make([]string, len(todo))
	for i, r := range todo {
		names[i] = fmt.Sprintf("%q", r.DisplayName)
	}
	if plan {
		return actions.Result{Detail: fmt.Sprintf("%s %d forwarding rule(s) in %s's inbox: %s%s", verb, len(todo), user, strings.Join(names, ", "), note), Before: before, GraphRequestIDs: c.list()}, nil
	}
	var done []string
	for _, r := range todo {
		if _, err := e.mailboxCall(ctx, c, user, abs.PATCH, rulesPath(user, r.ID), "", map[string]any{"isEnabled": enable}, perm); err != nil {
			return actions.Result{GraphRequestIDs: c.list()}, err
		}
		done = append(done, r.ID)
	}
	after, _ := json.Marshal(map[string]any{"rule_ids": done, "isEnabled": enable})
	res := actions.Result{Detail: fmt.Sprintf("%sd %d forwarding rule(s) in %s's inbox: %s%s", verb, len(done), user, strings.Join(names, ", "), note),
		Before: before, After: after, GraphRequestIDs: c.list()}
	if enable {
		res.Undo = &actions.Step{Action: actions.DisableForwardRules, Target: actions.Target{User: user}}
	} else {
		res.Undo = &actions.Step{Action: actions.EnableForwardRules, Target: actions.Target{User: user}, Params: map[string]any{"rule_ids": toAny(done)}}
	}
	return res, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// deleteForwardRules deletes the forwarding rules in scope, keeping each whole
// rule (as Graph returned it) in Before and in the undo step.
func (e *Executor) deleteForwardRules(ctx context.Context, user, scope, perm string, plan bool) (actions.Result, error) {
	c := newCalls()
	var domains []string
	if scope != "all" {
		d, err := e.verifiedDomains(ctx, c)
		if err != nil {
			return actions.Result{GraphRequestIDs: c.list()}, err
		}
		domains = d
	}
	rules, err := e.listRules(ctx, c, user)
	if err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, err
	}
	var todo []*rule
	var why []string
	for _, r := range rules {
		if !r.forwards() {
			continue
		}
		if scope == "all" {
			todo = append(todo, r)
			why = append(why, fmt.Sprintf("%q → %s", r.DisplayName, strings.Join(r.recipients(), ", ")))
			continue
		}
		if ext := r.external(domains); len(ext) > 0 {
			todo = append(todo, r)
			why = append(why, fmt.Sprintf("%q → %s", r.DisplayName, strings.Join(ext, ", ")))
		}
	}
	before := rawList(todo)
	if len(todo) == 0 {
		return actions.Result{Detail: fmt.Sprintf("no %s forwarding rule in %s's inbox", scopeWord(scope), user), Before: before, GraphRequestIDs: c.list(), AlreadyDone: true}, nil
	}
	if plan {
		return actions.Result{Detail: fmt.Sprintf("delete %d %s forwarding rule(s) in %s's inbox: %s", len(todo), scopeWord(scope), user, strings.Join(why, "; ")),
			Before: before, GraphRequestIDs: c.list()}, nil
	}
	var deleted []*rule
	var failed []string
	var firstErr error
	for _, r := range todo {
		if _, err := e.mailboxCall(ctx, c, user, abs.DELETE, rulesPath(user, r.ID), "", nil, perm); err != nil {
			if ce := actions.AsError(err); ce.Status == 404 {
				continue // gone already
			}
			failed = append(failed, fmt.Sprintf("%q: %v", r.DisplayName, err))
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		deleted = append(deleted, r)
	}
	if len(deleted) == 0 && firstErr != nil {
		return actions.Result{GraphRequestIDs: c.list()}, firstErr
	}
	warn := ""
	if len(failed) > 0 {
		// Partly done: succeed with what was deleted, so that its snapshots are
		// recorded and can be restored; a re-run deletes the rest.
		warn = fmt.Sprintf("; %d rule(s) could not be deleted (run again): %s", len(failed), strings.Join(failed, "; "))
	}
	before = rawList(deleted)
	snaps := make([]any, len(deleted))
	ids := make([]string, len(deleted))
	for i, r := range deleted {
		var m map[string]any
		_ = json.Unmarshal(r.raw, &m)
		snaps[i] = m
		ids[i] = r.ID
	}
	after, _ := json.Marshal(map[string]any{"deleted_rule_ids": ids})
	return actions.Result{Detail: fmt.Sprintf("deleted %d %s forwarding rule(s) in %s's inbox (each kept in this record): %s%s", len(deleted), scopeWord(scope), user, strings.Join(why, "; "), warn),
		Before: before, After: after, GraphRequestIDs: c.list(),
		Undo: &actions.Step{Action: actions.RestoreForwardRules, Target: actions.Target{User: user}, Params: map[string]any{"rules": snaps}}}, nil
}

func scopeWord(scope string) string {
	if scope == "all" {
		return "(any)"
	}
	return "external"
}

// ruleBody is a snapshot without the properties the server assigns.
func ruleBody(raw json.RawMessage) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	for k := range m {
		if strings.HasPrefix(k, "@odata.") {
			delete(m, k)
		}
	}
	for _, k := range []string{"id", "hasError", "isReadOnly"} {
		delete(m, k)
	}
	return m, nil
}

// restoreForwardRules recreates each snapshot unless an identical rule exists.
func (e *Executor) restoreForwardRules(ctx context.Context, user string, snaps []json.RawMessage, perm string, plan bool) (actions.Result, error) {
	c := newCalls()
	cur, err := e.listRules(ctx, c, user)
	if err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, err
	}
	var existing []map[string]any
	for _, r := range cur {
		m, _ := ruleBody(r.raw)
		existing = append(existing, m)
	}
	var todo []map[string]any
	for _, s := range snaps {
		m, err := ruleBody(s)
		if err != nil {
			return actions.Result{}, &actions.Error{Class: actions.Permanent, Code: "InvalidSnapshot", Message: "a rule snapshot is not a JSON object"}
		}
		if slices.ContainsFunc(existing, func(x map[string]any) bool { return reflect.DeepEqual(x, m) }) {
			continue
		}
		todo = append(todo, m)
	}
	if len(todo) == 0 {
		return actions.Result{Detail: fmt.Sprintf("every rule is already present in %s's inbox", user), GraphRequestIDs: c.list(), AlreadyDone: true}, nil
	}
	names := make([]string, len(todo))
	for i, m := range todo {
		names[i] = fmt.Sprintf("%q", m["displayName"])
	}
	if plan {
		return actions.Result{Detail: fmt.Sprintf("recreate %d rule(s) in %s's inbox: %s", len(todo), user, strings.Join(names, ", ")), GraphRequestIDs: c.list()}, nil
	}
	var created []json.RawMessage
	for _, m := range todo {
		b, err := e.mailboxCall(ctx, c, user, abs.POST, rulesPath(user), "", m, perm)
		if err != nil {
			return actions.Result{GraphRequestIDs: c.list()}, err
		}
		created = append(created, b)
	}
	after, _ := json.Marshal(map[string]any{"rules": created})
	return actions.Result{Detail: fmt.Sprintf("recreated %d rule(s) in %s's inbox from their snapshots: %s", len(created), user, strings.Join(names, ", ")),
		After: after, GraphRequestIDs: c.list()}, nil
}

// addRules registers the inbox-rule actions.
func (e *Executor) addRules(h actions.Handlers) {
	h[actions.DisableForwardRules] = userAction(actions.DisableForwardRules, func(ctx context.Context, u string, p actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.disableForwardRules(ctx, u, p.Scope, perm, plan)
	})
	h[actions.EnableForwardRules] = userAction(actions.EnableForwardRules, func(ctx context.Context, u string, p actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.setForwardRules(ctx, u, p.RuleIDs, true, perm, plan)
	})
	h[actions.DeleteForwardRules] = userAction(actions.DeleteForwardRules, func(ctx context.Context, u string, p actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.deleteForwardRules(ctx, u, p.Scope, perm, plan)
	})
	h[actions.RestoreForwardRules] = userAction(actions.RestoreForwardRules, func(ctx context.Context, u string, p actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.restoreForwardRules(ctx, u, p.Rules, perm, plan)
	})
}

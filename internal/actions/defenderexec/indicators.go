package defenderexec

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/responder-sec/responder/internal/actions"
)

// Indicator is a Defender indicator
// (https://learn.microsoft.com/defender-endpoint/api/ti-indicator).
type Indicator struct {
	ID             string     `json:"id"`
	IndicatorValue string     `json:"indicatorValue"`
	IndicatorType  string     `json:"indicatorType"`
	Action         string     `json:"action"`
	Title          string     `json:"title"`
	CreatedBy      string     `json:"createdBy"`
	ExpirationTime *time.Time `json:"expirationTime"`
}

// blocking reports whether an indicator's action blocks.
func (i Indicator) blocking() bool {
	switch i.Action {
	case "Block", "BlockAndRemediate", "AlertAndBlock":
		return true
	}
	return false
}

// MaxImport is the most indicators one import call takes.
const MaxImport = 500

// MaxActive is the tenant's limit of active indicators.
const MaxActive = 15000

// CheckIndicator is the indicator guard, a pure function: never the tenant's
// verified domains or Microsoft's (as a URL's host or a domain), never a hash
// on the allow list.
func CheckIndicator(ind actions.Indicator, verified, allowedHashes []string) actions.Decision {
	switch ind.Type {
	case actions.IndicatorFileSha256, actions.IndicatorFileSha1:
		if slices.ContainsFunc(allowedHashes, func(h string) bool { return strings.EqualFold(strings.TrimSpace(h), ind.Value) }) {
			return actions.Decision{Reason: fmt.Sprintf("file hash %s is on the allow list (RESPONDER_DEFENDER_ALLOWED_HASHES)", ind.Value)}
		}
	case actions.IndicatorURL:
		host := actions.URLHost(ind.Value)
		if _, err := netip.ParseAddr(host); err == nil || host == "" {
			return actions.Decision{Allow: true}
		}
		if d := actions.CheckDomain(host, verified); !d.Allow {
			return actions.Decision{Reason: "url " + ind.Value + ": " + d.Reason}
		}
	case actions.IndicatorDomain:
		return actions.CheckDomain(ind.Value, verified)
	}
	return actions.Decision{Allow: true}
}

// indicatorGuard reads the verified domains when the indicator names a host.
func (e *Executor) indicatorGuard(ctx context.Context, _ *actions.Request, p actions.Params) (actions.Decision, error) {
	if p.Indicator == nil {
		return actions.Decision{Reason: "no indicator"}, nil
	}
	var verified []string
	if p.Indicator.Type == actions.IndicatorURL || p.Indicator.Type == actions.IndicatorDomain {
		if e.cfg.Domains == nil {
			return actions.Decision{}, &actions.Error{Class: actions.Permanent, Code: "NoVerifiedDomains", Message: "the tenant's verified domains cannot be read (no source configured): refusing to block a URL or domain"}
		}
		v, err := e.cfg.Domains.VerifiedDomains(ctx)
		if err != nil {
			return actions.Decision{}, fmt.Errorf("read the tenant's verified domains: %w", err)
		}
		verified = v
	}
	return CheckIndicator(*p.Indicator, verified, e.cfg.AllowedHashes), nil
}

// indOp is one indicator request waiting for a round.
type indOp struct {
	req  *actions.Request
	ind  actions.Indicator
	exp  time.Time
	done chan struct{}
	res  actions.Result
	err  error
}

// coalescer gathers concurrent indicator requests into rounds. It owns no
// goroutine: the caller that finds no round running leads rounds until no
// request waits.
type coalescer struct {
	mu      sync.Mutex
	pending []*indOp
	busy    bool
	arrived chan struct{} // closed and replaced on every arrival
	// Rounds counts the rounds led (tests and benchmarks).
	rounds int
}

// indicatorAction is the Defender action of a block: BlockAndRemediate for
// files (stop and quarantine), Block for the rest.
func indicatorAction(t string) string {
	if t == actions.IndicatorFileSha256 || t == actions.IndicatorFileSha1 {
		return "BlockAndRemediate"
	}
	return "Block"
}

func (e *Executor) body(op *indOp) map[string]any {
	r := op.req
	desc := fmt.Sprintf("Blocked by Responder request %s, requested by %s %s", r.ID, r.RequestedBy.Kind, r.RequestedBy.Name)
	if r.Reason != "" {
		desc += ": " + r.Reason
	}
	if r.Ticket != "" {
		desc += " (ticket " + r.Ticket + ")"
	}
	if len(desc) > 1000 {
		desc = desc[:1000]
	}
	return map[string]any{
		"indicatorValue": op.ind.Value, "indicatorType": op.ind.Type, "action": indicatorAction(op.ind.Type),
		"title":       "Responder " + string(r.Action) + " (request " + r.ID + ")",
		"description": desc, "expirationTime": op.exp.UTC().Format(time.RFC3339),
		"severity": "High", "generateAlert": true, "application": "Responder",
		"recommendedActions": "Created by Responder; undo the request to remove it",
	}
}

// block submits one indicator through a coalesced round.
func (e *Executor) block(ctx context.Context, req *actions.Request, p actions.Params, plan bool) (actions.Result, error) {
	if p.Indicator == nil {
		return actions.Result{}, &actions.Error{Class: actions.Permanent, Code: "InvalidRequest", Message: "no indicator"}
	}
	exp := e.clock.Now().Add(max(p.Expires, actions.MinExpiry))
	if plan {
		return actions.Result{Detail: fmt.Sprintf("add a %s indicator %s with action %s until %s", p.Indicator.Type, p.Indicator.Value, indicatorAction(p.Indicator.Type), exp.UTC().Format(time.RFC3339))}, nil
	}
	op := &indOp{req: req, ind: *p.Indicator, exp: exp, done: make(chan struct{})}
	c := e.inds
	c.mu.Lock()
	c.pending = append(c.pending, op)
	if c.arrived != nil {
		close(c.arrived)
	}
	c.arrived = make(chan struct{})
	lead := !c.busy
	c.busy = true
	c.mu.Unlock()
	if lead {
		// Rounds serve other callers too: they finish even if ctx ends.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		for {
			e.gather(rctx)
			// Several waiting: the round imports. Its call waits for the
			// import budget before the round takes the requests, so that
			// those arriving meanwhile go in the same call.
			paid := false
			c.mu.Lock()
			several := len(c.pending) > 1
			c.mu.Unlock()
			if several {
				paid = e.c.budgets.Wait(rctx, apiIndicatorsImport) == nil
			}
			ops := c.take(MaxImport)
			e.round(rctx, ops, paid)
			c.mu.Lock()
			if len(c.pending) == 0 {
				c.busy = false
				c.mu.Unlock()
				break
			}
			c.mu.Unlock()
		}
	}
	select {
	case <-op.done:
		return op.res, op.err
	case <-ctx.Done():
		return actions.Result{}, classifyTransport(ctx.Err())
	}
}

// gather waits until a full import (MaxImport) is waiting or no request
// arrived for CoalesceWindow.
func (e *Executor) gather(ctx context.Context) {
	c := e.inds
	for {
		c.mu.Lock()
		n, arrived := len(c.pending), c.arrived
		c.mu.Unlock()
		if n >= MaxImport {
			return
		}
		t, stop := e.clock.After(e.cfg.CoalesceWindow)
		select {
		case <-arrived:
			stop()
			continue
		case <-t:
			return
		case <-ctx.Done():
			stop()
			return
		}
	}
}

// take removes up to n waiting requests.
func (c *coalescer) take(n int) []*indOp {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rounds++
	k := min(n, len(c.pending))
	ops := slices.Clone(c.pending[:k])
	c.pending = slices.Delete(c.pending, 0, k)
	return ops
}

// Rounds reports how many indicator rounds ran.
func (e *Executor) Rounds() int {
	e.inds.mu.Lock()
	defer e.inds.mu.Unlock()
	return e.inds.rounds
}

func finish(op *indOp, res actions.Result, err error) {
	op.res, op.err = res, err
	close(op.done)
}

// round reads the existing indicators of the round's values, leaves alone what
// another principal created, and submits the rest in the fewest calls.
func (e *Executor) round(ctx context.Context, ops []*indOp, paid bool) {
	if len(ops) == 0 {
		return
	}
	perm := permission(actions.BlockFile)
	existing, err := e.existing(ctx, ops, perm)
	if err != nil {
		for _, op := range ops {
			finish(op, actions.Result{}, err)
		}
		return
	}
	type key struct{ t, v string }
	var submit []*indOp
	seen := map[key]*indOp{}
	active := -1
	if len(ops) > 1 {
		active = len(existing)
	}
	var dup []*indOp
	for _, op := range ops {
		k := key{op.ind.Type, strings.ToLower(op.ind.Value)}
		if cur, ok := existing[k]; ok && !e.ownedBy(cur) {
			if cur.blocking() {
				finish(op, actions.Result{AlreadyDone: true, Detail: fmt.Sprintf("indicator %s (%s %s, action %s) already exists, created by %s: left alone, nothing is Responder's to undo", cur.ID, cur.IndicatorType, cur.IndicatorValue, cur.Action, cur.CreatedBy)}, nil)
			} else {
				finish(op, actions.Result{}, &actions.Error{Class: actions.Permanent, Code: "IndicatorExists",
					Message: fmt.Sprintf("indicator %s for %s %s exists with action %s, created by %s; Responder does not overwrite another principal's indicator", cur.ID, cur.IndicatorType, cur.IndicatorValue, cur.Action, cur.CreatedBy)})
			}
			continue
		}
		if first, ok := seen[k]; ok {
			_ = first
			dup = append(dup, op)
			continue
		}
		seen[k] = op
		submit = append(submit, op)
	}
	if active >= 0 && active+len(submit) > MaxActive {
		for _, op := range submit {
			finish(op, actions.Result{}, &actions.Error{Class: actions.Permanent, Code: "IndicatorLimit",
				Message: fmt.Sprintf("the tenant has %d active indicators; %d more would pass Microsoft's limit of %d", active, len(submit), MaxActive)})
		}
		submit = nil
	}
	ids := map[key]string{}
	if len(submit) == 1 {
		op := submit[0]
		var got Indicator
		if _, err := e.c.call(ctx, apiIndicatorsSubmit, http.MethodPost, "/api/indicators", e.body(op), &got, perm); err != nil {
			finish(op, actions.Result{}, err)
		} else {
			ids[key{op.ind.Type, strings.ToLower(op.ind.Value)}] = got.ID
			finish(op, e.created(op, got.ID), nil)
		}
	} else if len(submit) > 1 {
		bodies := make([]map[string]any, len(submit))
		for i, op := range submit {
			bodies[i] = e.body(op)
		}
		var out struct {
			Value []struct {
				ID            any    `json:"id"`
				Indicator     string `json:"indicator"`
				IsFailed      bool   `json:"isFailed"`
				FailureReason string `json:"failureReason"`
			} `json:"value"`
		}
		if _, err := e.c.callPaid(ctx, apiIndicatorsImport, http.MethodPost, "/api/indicators/import", map[string]any{"Indicators": bodies}, &out, perm, paid); err != nil {
			for _, op := range submit {
				finish(op, actions.Result{}, err)
			}
		} else {
			for i, op := range submit {
				if i >= len(out.Value) {
					finish(op, actions.Result{}, &actions.Error{Class: actions.Transient, Code: "InvalidResponse", Message: "the import answered fewer results than indicators sent"})
					continue
				}
				r := out.Value[i]
				if r.IsFailed {
					finish(op, actions.Result{}, &actions.Error{Class: actions.Permanent, Status: 400, Code: "IndicatorRefused", Message: r.FailureReason})
					continue
				}
				id := idString(r.ID)
				ids[key{op.ind.Type, strings.ToLower(op.ind.Value)}] = id
				finish(op, e.created(op, id), nil)
			}
		}
	}
	for _, op := range dup {
		k := key{op.ind.Type, strings.ToLower(op.ind.Value)}
		if id := ids[k]; id != "" {
			finish(op, actions.Result{AlreadyDone: true, Detail: fmt.Sprintf("indicator %s for %s %s was created in the same round by request %s", id, op.ind.Type, op.ind.Value, seen[k].req.ID)}, nil)
		} else {
			finish(op, actions.Result{}, &actions.Error{Class: actions.Transient, Code: "IndicatorNotCreated", Message: "the same indicator requested in the same round was not created"})
		}
	}
}

func idString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatInt(int64(x), 10)
	}
	return fmt.Sprint(v)
}

// ownedBy reports whether Responder created the indicator: createdBy is its
// app's client id (ClientID); without one configured, the title prefix.
func (e *Executor) ownedBy(i Indicator) bool {
	if e.cfg.ClientID != "" {
		return strings.EqualFold(i.CreatedBy, e.cfg.ClientID)
	}
	return strings.HasPrefix(i.Title, "Responder ")
}

// created is the result of a submitted indicator: its id is the inverse's.
func (e *Executor) created(op *indOp, id string) actions.Result {
	after := mustJSON(map[string]any{"indicator_id": id, "indicator_type": op.ind.Type, "indicator_value": op.ind.Value,
		"action": indicatorAction(op.ind.Type), "expiration_time": op.exp.UTC().Format(time.RFC3339)})
	return actions.Result{
		Detail: fmt.Sprintf("indicator %s: %s %s, action %s, expires %s", id, op.ind.Type, op.ind.Value, indicatorAction(op.ind.Type), op.exp.UTC().Format(time.RFC3339)),
		After:  after, GraphRequestIDs: []string{id},
		Undo: &actions.Step{Action: actions.RemoveIndicator, Target: op.req.Target, Params: map[string]any{"indicator_id": id}},
	}
}

// existing reads the indicators the round's values already have: one
// filtered read for one request, else one listing of every active indicator
// (at most 15,000: two pages of 10,000).
func (e *Executor) existing(ctx context.Context, ops []*indOp, perm string) (map[struct{ t, v string }]Indicator, error) {
	out := map[struct{ t, v string }]Indicator{}
	add := func(l []Indicator) {
		for _, i := range l {
			out[struct{ t, v string }{i.IndicatorType, strings.ToLower(i.IndicatorValue)}] = i
		}
	}
	if len(ops) == 1 {
		q := url.Values{"$filter": {"indicatorValue eq " + odataString(ops[0].ind.Value)}}
		var l list[Indicator]
		if _, err := e.c.call(ctx, apiIndicatorsList, http.MethodGet, "/api/indicators?"+q.Encode(), nil, &l, perm); err != nil {
			return nil, err
		}
		add(l.Value)
		return out, nil
	}
	for skip := 0; skip <= MaxActive; skip += 10000 {
		var l list[Indicator]
		path := "/api/indicators?$top=10000"
		if skip > 0 {
			path += "&$skip=" + strconv.Itoa(skip)
		}
		if _, err := e.c.call(ctx, apiIndicatorsList, http.MethodGet, path, nil, &l, perm); err != nil {
			return nil, err
		}
		add(l.Value)
		if len(l.Value) < 10000 {
			break
		}
	}
	return out, nil
}

// remove deletes the indicator a block created (remove_indicator: the worker
// accepts it only as the stored inverse, so the id is the one Responder
// created). An indicator already gone (expired, or removed in the portal)
// is not an error.
func (e *Executor) remove(ctx context.Context, req *actions.Request, p actions.Params, plan bool) (actions.Result, error) {
	id := p.IndicatorID
	if plan {
		return actions.Result{Detail: "delete indicator " + id + " (" + p.Indicator.Type + " " + p.Indicator.Value + ")"}, nil
	}
	_, err := e.c.call(ctx, apiIndicatorsDelete, http.MethodDelete, "/api/indicators/"+url.PathEscape(id), nil, nil, permission(actions.RemoveIndicator))
	if err != nil {
		if ae := actions.AsError(err); ae.Status == http.StatusNotFound {
			return actions.Result{AlreadyDone: true, Detail: "indicator " + id + " is gone already (expired or removed)"}, nil
		}
		return actions.Result{}, err
	}
	return actions.Result{Detail: fmt.Sprintf("indicator %s (%s %s) deleted", id, p.Indicator.Type, p.Indicator.Value),
		Before: mustJSON(map[string]any{"indicator_id": id, "indicator_type": p.Indicator.Type, "indicator_value": p.Indicator.Value}),
		Undo:   nil}, nil
}

package graphexec

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	abs "github.com/microsoft/kiota-abstractions-go"
	khttp "github.com/microsoft/kiota-http-go"

	"github.com/responder-sec/responder/internal/actions"
)

const (
	permCA         = "Policy.ReadWrite.ConditionalAccess"
	permCARead     = "Policy.Read.All"
	ipLocationType = "#microsoft.graph.ipNamedLocation"
	namedLocations = "identity/conditionalAccess/namedLocations"
	caPolicies     = "identity/conditionalAccess/policies"
	// legacyPlaceholder is the range earlier versions left in a location
	// whose last address was unblocked. Entra requires at least one range in
	// an ipNamedLocation and may refuse reserved ranges, so an emptied
	// location is now deleted instead (see ipRound); a location holding only
	// this range is treated as empty.
	legacyPlaceholder = "192.0.2.0/32"
)

// coalescer gathers concurrent block_ip / unblock_ip requests into rounds of one
// read and one update per changed named location. It owns no goroutine: the
// caller that finds no round running leads rounds until no request waits.
type coalescer struct {
	mu      sync.Mutex
	pending []*ipOp
	busy    bool

	policyID string
	policyAt time.Time

	// queued, when set (tests), hears of every request queued for a round.
	queued chan<- struct{}
}

// take removes and returns the requests waiting for a round.
func (co *coalescer) take() []*ipOp {
	co.mu.Lock()
	defer co.mu.Unlock()
	ops := co.pending
	co.pending = nil
	return ops
}

type ipOp struct {
	add    bool
	pfx    netip.Prefix
	target string
	done   chan struct{}
	res    actions.Result
	err    error
}

type location struct {
	ID          string   `json:"id"`
	DisplayName string   `json:"displayName"`
	Ranges      []string `json:"-"`
	changed     bool
	isNew       bool
	ops         []*ipOp
}

func cidrType(p string) string {
	if strings.Contains(p, ":") {
		return "#microsoft.graph.iPv6CidrRange"
	}
	return "#microsoft.graph.iPv4CidrRange"
}

func rangesBody(ranges []string) []map[string]any {
	out := make([]map[string]any, len(ranges))
	for i, r := range ranges {
		out[i] = map[string]any{"@odata.type": cidrType(r), "cidrAddress": r}
	}
	return out
}

// changeIP blocks (add) or unblocks one range.
func (e *Executor) changeIP(ctx context.Context, target string, pfx netip.Prefix, add bool, plan bool) (actions.Result, error) {
	if plan {
		return e.planIP(ctx, target, pfx, add)
	}
	op := &ipOp{add: add, pfx: pfx, target: target, done: make(chan struct{})}
	c := e.ips
	c.mu.Lock()
	c.pending = append(c.pending, op)
	lead := !c.busy
	c.busy = true
	queued := c.queued
	c.mu.Unlock()
	if queued != nil {
		queued <- struct{}{}
	}
	if lead {
		// Rounds serve other callers too: they finish even if ctx ends.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		for {
			t := time.NewTimer(e.cfg.CoalesceWindow)
			<-t.C
			e.ipRound(rctx, c.take())
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
		// The request stays queued and is applied by the running round; the
		// worker's retry then finds it done.
		return actions.Result{}, Classify(ctx.Err(), permCA)
	}
}

// noSDKRetry turns the SDK's retry handler off for one request.
var noSDKRetry = &khttp.RetryHandlerOptions{ShouldRetry: func(time.Duration, int, *http.Request, *http.Response) bool { return false }}

// idpRetries bounds the resends of one throttled Identity Protection /
// Conditional Access request.
const idpRetries = 3

// idpCall sends one Identity Protection / Conditional Access request within
// the tenant's 1 request/s budget. A 429 is resent here, after waiting for the
// budget again, and never by the SDK's retry handler: that one resends after
// its own backoff outside the budget, so the next paced call arrives less than
// a second after the resend and is refused in turn, and every later call meets
// a 429 first (a cascade `responder bench block-ip` showed under CPU load).
func (e *Executor) idpCall(ctx context.Context, c *calls, method abs.HttpMethod, path string, body any) ([]byte, error) {
	return e.idpCallPaid(ctx, c, method, path, body, false)
}

// idpCallPaid is idpCall; paid says the caller already waited for the
// budget's token of the first attempt.
func (e *Executor) idpCallPaid(ctx context.Context, c *calls, method abs.HttpMethod, path string, body any, paid bool) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		if !paid || attempt > 0 {
			if err := e.budgets.IdentityProtectionCA(ctx); err != nil {
				return nil, err
			}
		}
		b, err := e.raw(ctx, c, method, path, "", body, noSDKRetry)
		if err == nil || attempt >= idpRetries || Classify(err, "").Status != http.StatusTooManyRequests {
			return b, err
		}
		e.log.Debug("identity protection / conditional access request throttled; resending within the budget", "path", path, "attempt", attempt+1)
	}
}

// idpList reads every page of an Identity Protection / Conditional Access
// collection, each page an idpCall.
func (e *Executor) idpList(ctx context.Context, c *calls, path, perm string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	for next, i := path, 0; next != "" && i < 1000; i++ {
		b, err := e.idpCall(ctx, c, abs.GET, next, nil)
		if err != nil {
			return nil, Classify(err, perm)
		}
		var p page
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, Classify(fmt.Errorf("decode %s: %w", path, err), perm)
		}
		out = append(out, p.Value...)
		next = p.NextLink
	}
	return out, nil
}

var locNumRE = regexp.MustCompile(` (\d+)$`)

// readLocations returns Responder's IP named locations, in name order.
func (e *Executor) readLocations(ctx context.Context, c *calls) ([]*location, error) {
	raws, err := e.idpList(ctx, c, namedLocations, permCARead)
	if err != nil {
		return nil, err
	}
	var out []*location
	for _, r := range raws {
		var l struct {
			Type        string `json:"@odata.type"`
			ID          string `json:"id"`
			DisplayName string `json:"displayName"`
			IPRanges    []struct {
				CIDR string `json:"cidrAddress"`
			} `json:"ipRanges"`
		}
		if json.Unmarshal(r, &l) != nil || l.Type != ipLocationType || !strings.HasPrefix(l.DisplayName, e.cfg.LocationName) {
			continue
		}
		loc := &location{ID: l.ID, DisplayName: l.DisplayName}
		for _, x := range l.IPRanges {
			if x.CIDR != legacyPlaceholder {
				loc.Ranges = append(loc.Ranges, x.CIDR)
			}
		}
		out = append(out, loc)
	}
	slices.SortFunc(out, func(a, b *location) int { return locNumber(a.DisplayName) - locNumber(b.DisplayName) })
	return out, nil
}

func locNumber(name string) int {
	if m := locNumRE.FindStringSubmatch(name); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 1
}

func findRange(locs []*location, p string) (*location, int) {
	for _, l := range locs {
		for i, r := range l.Ranges {
			if rp, err := netip.ParsePrefix(r); err == nil && rp.Masked().String() == p {
				return l, i
			}
		}
	}
	return nil, -1
}

func (e *Executor) planIP(ctx context.Context, target string, pfx netip.Prefix, add bool) (actions.Result, error) {
	c := newCalls()
	locs, err := e.readLocations(ctx, c)
	if err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, err
	}
	l, _ := findRange(locs, pfx.String())
	switch {
	case add && l != nil:
		return actions.Result{Detail: fmt.Sprintf("nothing: %s is already blocked in %q", pfx, l.DisplayName), AlreadyDone: true, GraphRequestIDs: c.list()}, nil
	case add:
		return actions.Result{Detail: fmt.Sprintf("add %s to Responder's blocked IP named locations (%d exist) and make sure policy %q blocks them", pfx, len(locs), e.cfg.PolicyName), GraphRequestIDs: c.list()}, nil
	case l != nil && len(l.Ranges) == 1:
		return actions.Result{Detail: fmt.Sprintf("remove %s, the last range of %q: delete the location and drop it from policy %q (delete the policy if no blocked range is left)", pfx, l.DisplayName, e.cfg.PolicyName), GraphRequestIDs: c.list()}, nil
	case l != nil:
		return actions.Result{Detail: fmt.Sprintf("remove %s from %q", pfx, l.DisplayName), GraphRequestIDs: c.list()}, nil
	}
	return actions.Result{Detail: fmt.Sprintf("nothing: %s is not blocked by Responder", pfx), AlreadyDone: true, GraphRequestIDs: c.list()}, nil
}

// ipRound applies ops with one read of the named locations, one write per
// changed location and, when needed, one read and one write of the policy.
//
// Requests that arrive while the round waits for the budget's token of its
// first write join that write (late binding): under the 1 request/s budget the
// write leaves at least a second after the read, and the worker's other
// requests in flight arrive meanwhile. A burst of N requests at worker
// concurrency C then takes ceil(N/C) rounds, the fewest there can be: 4
// requests for the first in a fresh tenant (read and create the location, read
// and create the policy) and 2 for each further one (read and update the
// location). The read stays valid for the late requests: the locations are
// Responder's own and this process's rounds run one at a time.
func (e *Executor) ipRound(ctx context.Context, ops []*ipOp) {
	c := newCalls()
	fail := func(ops []*ipOp, err error) {
		for _, op := range ops {
			op.err = err
			op.res.GraphRequestIDs = c.list()
			close(op.done)
		}
	}
	locs, err := e.readLocations(ctx, c)
	if err != nil {
		fail(ops, err)
		return
	}
	r := &ipPlan{locs: locs, next: 1, max: e.cfg.MaxRangesPerLocation, name: e.cfg.LocationName}
	for _, l := range locs {
		r.next = max(r.next, locNumber(l.DisplayName)+1)
	}
	r.apply(ops)
	paid := false
	if slices.ContainsFunc(r.locs, func(l *location) bool { return l.changed }) {
		// Wait for the first write's token here, then take whoever came
		// meanwhile into this round.
		if err := e.budgets.IdentityProtectionCA(ctx); err != nil {
			err = Classify(err, permCA)
			fail(r.settled, err)
			for _, l := range r.locs {
				fail(l.ops, err)
			}
			return
		}
		paid = true
		r.apply(e.ips.take())
	}
	locs, settled := r.locs, r.settled
	// Write each changed location that keeps a range: PATCH replaces the whole
	// ipRanges collection. A location left without a range is deleted below:
	// Entra requires at least one range in an ipNamedLocation
	// (https://learn.microsoft.com/graph/api/resources/ipnamedlocation: ipRanges
	// "Required"), and a placeholder range may be refused as reserved.
	var pending []*ipOp
	var gone []*location
	created := false
	for _, l := range locs {
		if len(l.Ranges) == 0 && !l.isNew && l.ID != "" {
			gone = append(gone, l) // emptied now, or by an earlier version
			continue
		}
		if !l.changed {
			continue
		}
		body := map[string]any{"@odata.type": ipLocationType, "ipRanges": rangesBody(l.Ranges)}
		var werr error
		first := paid
		paid = false
		if l.isNew {
			body["displayName"] = l.DisplayName
			body["isTrusted"] = false
			var out []byte
			out, werr = e.idpCallPaid(ctx, c, abs.POST, namedLocations, body, first)
			if werr == nil {
				var got struct {
					ID string `json:"id"`
				}
				_ = json.Unmarshal(out, &got)
				l.ID = got.ID
				created = true
			}
		} else {
			_, werr = e.idpCallPaid(ctx, c, abs.PATCH, seg("identity", "conditionalAccess", "namedLocations", l.ID), body, first)
		}
		if werr != nil {
			fail(l.ops, Classify(werr, permCA))
			continue
		}
		pending = append(pending, l.ops...)
	}
	// The policy must block every location that keeps a range (and exclude
	// the protected).
	var ids []string
	for _, l := range locs {
		if l.ID != "" && len(l.Ranges) > 0 {
			ids = append(ids, l.ID)
		}
	}
	var goneOps []*ipOp
	for _, l := range gone {
		goneOps = append(goneOps, l.ops...)
	}
	var polState string
	adds := slices.ContainsFunc(pending, func(op *ipOp) bool { return op.add }) || slices.ContainsFunc(settled, func(op *ipOp) bool { return op.add })
	if len(ids) > 0 && (created || adds && time.Since(e.policyVerifiedAt()) > e.cfg.CacheTTL) {
		st, err := e.ensurePolicy(ctx, c, ids)
		if err != nil {
			fail(pending, err)
			fail(settled, err)
			fail(goneOps, err)
			return
		}
		polState = st
	}
	if len(gone) > 0 {
		drop, inUse, note, err := e.dropLocations(ctx, c, gone, ids)
		for l, err := range inUse {
			fail(l.ops, err)
		}
		if err != nil {
			for _, l := range gone {
				if inUse[l] == nil {
					fail(l.ops, err)
				}
			}
		} else {
			for _, l := range drop {
				_, derr := e.idpCall(ctx, c, abs.DELETE, seg("identity", "conditionalAccess", "namedLocations", l.ID), nil)
				if derr != nil && Classify(derr, "").Status != http.StatusNotFound {
					fail(l.ops, Classify(derr, permCA))
					continue
				}
				for _, op := range l.ops {
					if !op.add {
						op.res.Detail += fmt.Sprintf("; %q held no other range and was deleted%s", l.DisplayName, note)
					}
				}
				pending = append(pending, l.ops...)
			}
		}
	}
	for _, op := range append(pending, settled...) {
		after, _ := json.Marshal(map[string]any{"range": op.pfx.String(), "blocked": op.add, "policy": e.cfg.PolicyName, "policy_id": e.policyIDCached(), "policy_state": polState})
		beforeJ, _ := json.Marshal(map[string]any{"range": op.pfx.String(), "blocked": op.add == op.res.AlreadyDone})
		op.res.Before, op.res.After = beforeJ, after
		op.res.GraphRequestIDs = c.list()
		close(op.done)
	}
}

// dropLocations removes the emptied locations from Responder's policy before
// they are deleted (Entra refuses to delete a location a policy references,
// and a policy may not name a location that does not exist). keep are the
// locations that still hold ranges: the policy keeps (or gains) them. A
// location another policy also uses is not touched: its requests fail in
// inUse (the unblock would otherwise leave the range in a location no longer
// Responder's to manage), and it stays in Responder's policy, still blocking.
// When the policy would be left naming no location it is deleted rather than
// left without a location condition, which would block every sign-in; the
// next block_ip creates it again, in the configured state. It returns the
// locations to delete and a note for the details.
func (e *Executor) dropLocations(ctx context.Context, c *calls, gone []*location, keep []string) (drop []*location, inUse map[*location]error, note string, err error) {
	raws, err := e.idpList(ctx, c, caPolicies, permCARead)
	if err != nil {
		return nil, nil, "", err
	}
	type policy struct {
		raw        map[string]any
		id, name   string
		incl, excl []string
	}
	var ours *policy
	var others []policy
	for _, r := range raws {
		var p policy
		if json.Unmarshal(r, &p.raw) != nil {
			continue
		}
		p.id, _ = p.raw["id"].(string)
		p.name, _ = p.raw["displayName"].(string)
		cond, _ := p.raw["conditions"].(map[string]any)
		locs, _ := cond["locations"].(map[string]any)
		for k, dst := range map[string]*[]string{"includeLocations": &p.incl, "excludeLocations": &p.excl} {
			xs, _ := locs[k].([]any)
			for _, x := range xs {
				if s, _ := x.(string); s != "" {
					*dst = append(*dst, s)
				}
			}
		}
		if p.name == e.cfg.PolicyName && ours == nil {
			ours = &p
		} else {
			others = append(others, p)
		}
	}
	uses := func(p policy, id string) bool {
		eq := func(x string) bool { return strings.EqualFold(x, id) }
		return slices.ContainsFunc(p.incl, eq) || slices.ContainsFunc(p.excl, eq)
	}
	inUse = map[*location]error{}
	for _, l := range gone {
		if i := slices.IndexFunc(others, func(p policy) bool { return uses(p, l.ID) }); i >= 0 {
			inUse[l] = &actions.Error{Class: actions.Permanent, Code: "NamedLocationInUse",
				Message: fmt.Sprintf("the range was the last of %q, which Conditional Access policy %q (%s) also uses: the location cannot be deleted, so the range stays blocked; remove the location from that policy and retry", l.DisplayName, others[i].name, others[i].id)}
			keep = append(keep, l.ID)
			continue
		}
		drop = append(drop, l)
	}
	if len(drop) == 0 || ours == nil {
		return drop, inUse, "", nil
	}
	defer func() {
		// Verify the policy again at the next block.
		e.ips.mu.Lock()
		e.ips.policyAt = time.Time{}
		e.ips.mu.Unlock()
	}()
	dropped := func(id string) bool {
		return slices.ContainsFunc(drop, func(l *location) bool { return strings.EqualFold(l.ID, id) })
	}
	incl := slices.DeleteFunc(slices.Clone(ours.incl), dropped)
	for _, id := range keep {
		if !slices.ContainsFunc(incl, func(x string) bool { return strings.EqualFold(x, id) }) {
			incl = append(incl, id)
		}
	}
	if len(incl) == 0 {
		_, err := e.idpCall(ctx, c, abs.DELETE, seg("identity", "conditionalAccess", "policies", ours.id), nil)
		if err != nil && Classify(err, "").Status != http.StatusNotFound {
			return nil, inUse, "", Classify(err, permCA)
		}
		e.ips.mu.Lock()
		e.ips.policyID = ""
		e.ips.mu.Unlock()
		return drop, inUse, fmt.Sprintf(", and policy %q, left with no blocked range, was deleted (the next block creates it again)", e.cfg.PolicyName), nil
	}
	excl := slices.DeleteFunc(slices.Clone(ours.excl), dropped)
	if !slices.Equal(incl, ours.incl) || len(excl) != len(ours.excl) {
		cond, _ := ours.raw["conditions"].(map[string]any)
		if cond == nil {
			cond = map[string]any{}
		}
		locs, _ := cond["locations"].(map[string]any)
		if locs == nil {
			locs = map[string]any{}
			cond["locations"] = locs
		}
		locs["includeLocations"] = incl
		if _, ok := locs["excludeLocations"]; ok {
			locs["excludeLocations"] = excl
		}
		if _, err := e.idpCall(ctx, c, abs.PATCH, seg("identity", "conditionalAccess", "policies", ours.id), map[string]any{"conditions": cond}); err != nil {
			return nil, inUse, "", Classify(err, permCA)
		}
	}
	return drop, inUse, fmt.Sprintf(" after policy %q stopped naming it", e.cfg.PolicyName), nil
}

// ipPlan applies block / unblock requests to the named locations read at the
// start of a round.
type ipPlan struct {
	locs    []*location
	next    int // number of the next new location
	max     int // ranges per location
	name    string
	settled []*ipOp // already in the wanted state when read
}

// apply records ops in the plan: each op joins the location it changes (and
// shares its write) or the settled list.
func (r *ipPlan) apply(ops []*ipOp) {
	for _, op := range ops {
		p := op.pfx.String()
		l, i := findRange(r.locs, p)
		switch {
		case op.add && l != nil:
			op.res = actions.Result{Detail: fmt.Sprintf("%s already blocked (named location %q)", p, l.DisplayName), AlreadyDone: true}
			if l.changed {
				l.ops = append(l.ops, op) // added earlier in this round: shares its write
			} else {
				r.settled = append(r.settled, op)
			}
		case op.add:
			var dst *location
			for _, x := range r.locs {
				if len(x.Ranges) < r.max {
					dst = x
					break
				}
			}
			if dst == nil {
				dst = &location{DisplayName: fmt.Sprintf("%s %d", r.name, r.next), isNew: true}
				r.next++
				r.locs = append(r.locs, dst)
			}
			dst.Ranges = append(dst.Ranges, p)
			dst.changed = true
			dst.ops = append(dst.ops, op)
			op.res = actions.Result{Detail: fmt.Sprintf("%s blocked (named location %q)", p, dst.DisplayName),
				Undo: &actions.Step{Action: actions.UnblockIP, Target: actions.Target{IP: op.target}}}
		case l != nil:
			l.Ranges = slices.Delete(l.Ranges, i, i+1)
			l.changed = true
			l.ops = append(l.ops, op)
			op.res = actions.Result{Detail: fmt.Sprintf("%s unblocked (removed from named location %q)", p, l.DisplayName),
				Undo: &actions.Step{Action: actions.BlockIP, Target: actions.Target{IP: op.target}}}
		default:
			op.res = actions.Result{Detail: p + " is not blocked by Responder", AlreadyDone: true}
			r.settled = append(r.settled, op)
		}
	}
}

func (e *Executor) policyVerifiedAt() time.Time {
	e.ips.mu.Lock()
	defer e.ips.mu.Unlock()
	return e.ips.policyAt
}

func (e *Executor) policyIDCached() string {
	e.ips.mu.Lock()
	defer e.ips.mu.Unlock()
	return e.ips.policyID
}

// ensurePolicy creates Responder's blocking policy, or adds missing locations
// and protected exclusions to it. It returns the policy's state.
func (e *Executor) ensurePolicy(ctx context.Context, c *calls, locIDs []string) (string, error) {
	protected, roleIDs, err := e.protected(ctx, e.cfg.Protected)
	if err != nil {
		return "", err
	}
	var exclude []string
	for _, p := range protected {
		if isGUID(p.ID) && !slices.Contains(exclude, strings.ToLower(p.ID)) {
			exclude = append(exclude, strings.ToLower(p.ID))
		}
	}
	slices.Sort(exclude)
	raws, err := e.idpList(ctx, c, caPolicies, permCARead)
	if err != nil {
		return "", err
	}
	for _, r := range raws {
		var pol struct {
			ID          string `json:"id"`
			DisplayName string `json:"displayName"`
			State       string `json:"state"`
			Conditions  struct {
				Users struct {
					IncludeUsers []string `json:"includeUsers"`
					ExcludeUsers []string `json:"excludeUsers"`
					ExcludeRoles []string `json:"excludeRoles"`
				} `json:"users"`
				Locations struct {
					IncludeLocations []string `json:"includeLocations"`
				} `json:"locations"`
			} `json:"conditions"`
		}
		if json.Unmarshal(r, &pol) != nil || pol.DisplayName != e.cfg.PolicyName {
			continue
		}
		var raw map[string]any
		_ = json.Unmarshal(r, &raw)
		cond, _ := raw["conditions"].(map[string]any)
		need := false
		incl := pol.Conditions.Locations.IncludeLocations
		for _, id := range locIDs {
			if !slices.Contains(incl, id) {
				incl = append(incl, id)
				need = true
			}
		}
		exU := pol.Conditions.Users.ExcludeUsers
		for _, id := range exclude {
			if !slices.ContainsFunc(exU, func(x string) bool { return strings.EqualFold(x, id) }) {
				exU = append(exU, id)
				need = true
			}
		}
		exR := pol.Conditions.Users.ExcludeRoles
		for _, id := range roleIDs {
			if !slices.Contains(exR, id) {
				exR = append(exR, id)
				need = true
			}
		}
		if need && cond != nil {
			users, _ := cond["users"].(map[string]any)
			if users == nil {
				users = map[string]any{}
			}
			users["excludeUsers"], users["excludeRoles"] = exU, exR
			cond["users"] = users
			locs, _ := cond["locations"].(map[string]any)
			if locs == nil {
				locs = map[string]any{}
			}
			locs["includeLocations"] = incl
			cond["locations"] = locs
			if _, err := e.idpCall(ctx, c, abs.PATCH, seg("identity", "conditionalAccess", "policies", pol.ID), map[string]any{"conditions": cond}); err != nil {
				return "", Classify(err, permCA)
			}
		}
		e.ips.mu.Lock()
		e.ips.policyID, e.ips.policyAt = pol.ID, time.Now()
		e.ips.mu.Unlock()
		return pol.State, nil
	}
	body := map[string]any{
		"displayName": e.cfg.PolicyName,
		"state":       e.cfg.CAPolicyState,
		"conditions": map[string]any{
			"clientAppTypes": []string{"all"},
			"applications":   map[string]any{"includeApplications": []string{"All"}},
			"users":          map[string]any{"includeUsers": []string{"All"}, "excludeUsers": nonNil(exclude), "excludeRoles": nonNil(roleIDs)},
			"locations":      map[string]any{"includeLocations": locIDs},
		},
		"grantControls": map[string]any{"operator": "OR", "builtInControls": []string{"block"}},
	}
	out, err := e.idpCall(ctx, c, abs.POST, caPolicies, body)
	if err != nil {
		return "", Classify(err, permCA)
	}
	var got struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(out, &got)
	e.ips.mu.Lock()
	e.ips.policyID, e.ips.policyAt = got.ID, time.Now()
	e.ips.mu.Unlock()
	return e.cfg.CAPolicyState, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func isGUID(s string) bool { return guidRE.MatchString(s) }

// addIPBlocks registers block_ip and unblock_ip.
func (e *Executor) addIPBlocks(h actions.Handlers) {
	ip := func(block bool) actions.Handler {
		return actions.Handler{
			Execute: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
				return e.changeIP(ctx, req.Target.IP, p.Prefix, block, false)
			},
			Plan: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
				return e.changeIP(ctx, req.Target.IP, p.Prefix, block, true)
			},
		}
	}
	h[actions.BlockIP] = ip(true)
	h[actions.UnblockIP] = ip(false)
}

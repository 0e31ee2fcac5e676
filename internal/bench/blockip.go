package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

// blockIPLatency is the Graph latency of the block-ip scenario.
const blockIPLatency = 50 * time.Millisecond

// caPathPrefix is where the Conditional Access calls go; every one of them
// draws on the 1 request / s tenant budget.
const caPathPrefix = "/v1.0/identity/conditionalAccess/"

// blockFreshRequests is the least a first block in a fresh tenant takes: read
// the named locations, create Responder's location, read the policies, create
// Responder's blocking policy.
const blockFreshRequests = 4

// blockIPFewest is the fewest Conditional Access requests n block_ip requests
// need at worker concurrency c, from first principles: the worker holds at
// most c requests at once, so they arrive in at least ceil(n/c) rounds; the
// first round in a fresh tenant takes blockFreshRequests, each further round
// a read and an update of the named location (the policy already blocks it).
func blockIPFewest(n, c int) int {
	if n <= 0 {
		return 0
	}
	return blockFreshRequests + 2*(ceilDiv(n, max(c, 1))-1)
}

// blockIPBound is the shortest time the Conditional Access budget (Capacity
// requests per Per, Microsoft's 1 / s with a burst of 1, per tenant for every
// app) allows for calls requests: the first Capacity go at once, each further
// one waits its token; the last one's answer then takes one latency.
func blockIPBound(l m365sim.Limit, calls int, latency time.Duration) time.Duration {
	if l.Capacity <= 0 || l.Per <= 0 {
		return latency
	}
	rate := l.Capacity / l.Per.Seconds()
	over := math.Max(0, float64(calls)-l.Capacity)
	return time.Duration(over/rate*float64(time.Second)) + latency
}

// blockIPTarget is the i-th address of the burst: documentation ranges, which
// the block_ip guard accepts and which never carry real traffic.
func blockIPTarget(i int) string {
	if i < 254 {
		return fmt.Sprintf("203.0.113.%d", i+1)
	}
	if i < 508 {
		return fmt.Sprintf("198.51.100.%d", i-253)
	}
	return fmt.Sprintf("2001:db8::%x", i)
}

// runBlockIP blocks N addresses (default 200, a password spray's sources)
// arriving at once, each as its own block_ip request through the action worker
// and the Graph executor, in a tenant where Responder has blocked nothing yet,
// with the emulator's throttling on (Identity Protection and Conditional
// Access: 1 request / s per tenant, 429 without Retry-After past it) and 50 ms
// latency on every Graph call. The executor coalesces the requests in flight
// into rounds (one read, one write per changed location, the policy when
// needed), so the worker's concurrency decides how many rounds 200 take.
func runBlockIP(ctx context.Context, o Options) (Result, error) {
	n := o.N
	if n <= 0 {
		n = 200
	}
	dir, cleanup, err := o.dir()
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	sim, err := throttledTenant(o, blockIPLatency)
	if err != nil {
		return Result{}, err
	}
	defer sim.Close()
	limits := m365sim.DefaultLimits()
	sim.SetLimits(limits)

	ca := limits.IdentityProtectionCA
	budgets := graphexec.NewBudgets(graphexec.BudgetConfig{IdentityProtectionCA: graphexec.Rate{N: ca.Capacity, Per: ca.Per}})
	run, err := startScenario(ctx, o, dir, sim, budgets)
	if err != nil {
		return Result{}, err
	}
	defer run.close()
	st, outs := run.workerStack, run.outs

	// Warm-up outside the timing (consumer, token, TLS connection) with a call
	// that does not touch the Conditional Access budget.
	warm := sim.AddUser(m365sim.User{UserPrincipalName: "blockip-warmup@contoso.com"})
	wreq := &actions.Request{Version: actions.Version, ID: uuid.NewString(), Action: actions.RevokeSessions,
		Target:      actions.Target{User: warm.UserPrincipalName},
		RequestedBy: audit.Actor{Kind: "analyst", Name: "bench"}, Reason: "bench: warm-up", RequestedAt: time.Now().UTC()}
	if _, err := publishAndWait(ctx, st, outs, []*actions.Request{wreq}, time.Minute); err != nil {
		return Result{}, fmt.Errorf("bench: block-ip warm-up: %w", err)
	}
	// The budget's bucket starts full, as Microsoft's does for an idle tenant.
	sim.SetLimits(limits)
	sim.ResetWireLog()

	ips := make([]string, n)
	reqs := make([]*actions.Request, n)
	now := time.Now().UTC()
	for i := range reqs {
		ips[i] = blockIPTarget(i)
		reqs[i] = &actions.Request{Version: actions.Version, ID: uuid.NewString(), Action: actions.BlockIP,
			Target:      actions.Target{IP: ips[i]},
			RequestedBy: audit.Actor{Kind: "analyst", Name: "bench"}, Reason: "bench: password-spray sources",
			RequestedAt: now}
	}
	o.progressf("block-ip: %d addresses at once (throttling on: %.0f Conditional Access request / %s; %s latency)", n, ca.Capacity, ca.Per, blockIPLatency)
	// A generous timeout: one round per address, paced.
	timeout := 2*blockIPBound(ca, blockFreshRequests+2*n, blockIPLatency) + 2*time.Minute
	elapsed, err := publishAndWait(ctx, st, outs, reqs, timeout)
	if err != nil {
		return Result{}, err
	}

	admitted, throttled, reads, other := 0, 0, 0, 0
	for _, w := range sim.WireLog() {
		if !strings.HasPrefix(w.Path, caPathPrefix) {
			if w.Status != 0 && !strings.Contains(w.Path, "/oauth2/") {
				other++
			}
			continue
		}
		if w.Status == 429 {
			throttled++
			continue
		}
		admitted++
		if w.Method == "GET" && strings.HasPrefix(w.Path, caPathPrefix+"namedLocations") {
			reads++
		}
	}
	failed := 0
	outs.mu.Lock()
	for _, r := range reqs {
		if outs.got[r.ID].Outcome != audit.Succeeded {
			failed++
		}
	}
	outs.mu.Unlock()
	ids := make([]string, n)
	for i, r := range reqs {
		ids[i] = r.ID
	}
	audited, err := countSucceeded(ctx, st, actions.BlockIP, ids)
	if err != nil {
		return Result{}, err
	}
	missing, enforced := blockedState(sim, ips)

	conc := workerConcurrency(o.Concurrency)
	fewest := blockIPFewest(n, conc)
	bound := blockIPBound(ca, fewest, blockIPLatency)
	// One round per address (no coalescing): 4 requests for the first, then a
	// read and a write of the named location for each further one.
	onePerIP := blockIPBound(ca, blockFreshRequests+2*(n-1), blockIPLatency)
	res := Result{
		Measured: elapsed.Seconds(), Unit: "s", Bound: bound.Seconds(), N: n, Concurrency: conc,
		BoundNote: fmt.Sprintf("%d requests at worker concurrency %d arrive in at least ceil(%d/%d) = %d rounds: %d Conditional Access requests (4 for the first round in a fresh tenant, 2 for each further one) at %.0f request / %s with a burst of %.0f, + the last one's %s",
			n, conc, n, conc, ceilDiv(n, conc), fewest, ca.Capacity, ca.Per, ca.Capacity, blockIPLatency),
		Goal: Goal{AtMost, 1.10},
		Extra: map[string]any{
			"graph_latency_ms":          ms(blockIPLatency),
			"ca_requests":               admitted,
			"ca_requests_429":           throttled,
			"ca_requests_fewest":        fewest,
			"rounds":                    reads,
			"other_graph_calls":         other,
			"one_round_per_ip_s":        onePerIP.Seconds(),
			"ratio_to_one_round_per_ip": elapsed.Seconds() / onePerIP.Seconds(),
			"blocks_per_s":              float64(n) / elapsed.Seconds(),
		},
	}
	res.AddCheck("every address in Responder's named location", missing == 0,
		fmt.Sprintf("%d of %d addresses missing from the named locations", missing, n))
	res.AddCheck("the policy blocks them", enforced,
		"an enabled policy with the block grant includes every Responder location")
	res.AddCheck("every request succeeded", failed == 0 && audited == n,
		fmt.Sprintf("%d of %d outcomes not succeeded; %d succeeded audit records", failed, n, audited))
	res.AddCheck("no Conditional Access request beyond the fewest", admitted <= fewest,
		fmt.Sprintf("%d admitted requests in %d rounds, fewest %d; %d answered 429 and resent (reported apart)", admitted, reads, fewest, throttled))
	return res, nil
}

// blockedState checks the emulated tenant: how many of ips are in none of
// Responder's named locations, and whether an enabled policy blocks every one
// of those locations.
func blockedState(sim *m365sim.Tenant, ips []string) (missing int, enforced bool) {
	type namedLocation struct {
		Type        string `json:"@odata.type"`
		ID          string `json:"id"`
		DisplayName string `json:"displayName"`
		IPRanges    []struct {
			CIDR string `json:"cidrAddress"`
		} `json:"ipRanges"`
	}
	have := map[string]bool{}
	var locIDs []string
	for _, raw := range sim.NamedLocations() {
		var l namedLocation
		if b, err := json.Marshal(raw); err != nil || json.Unmarshal(b, &l) != nil {
			continue
		}
		if !strings.HasPrefix(l.DisplayName, "Responder blocked IPs") {
			continue
		}
		locIDs = append(locIDs, l.ID)
		for _, r := range l.IPRanges {
			if p, err := netip.ParsePrefix(r.CIDR); err == nil {
				have[p.Masked().String()] = true
			}
		}
	}
	for _, ip := range ips {
		p, err := actions.ParseIPTarget(ip)
		if err != nil || !have[p.String()] {
			missing++
		}
	}
	type policy struct {
		State      string `json:"state"`
		Conditions struct {
			Locations struct {
				IncludeLocations []string `json:"includeLocations"`
			} `json:"locations"`
		} `json:"conditions"`
		GrantControls struct {
			BuiltInControls []string `json:"builtInControls"`
		} `json:"grantControls"`
	}
	for _, raw := range sim.Policies() {
		var p policy
		if b, err := json.Marshal(raw); err != nil || json.Unmarshal(b, &p) != nil {
			continue
		}
		if p.State != "enabled" || !slices.Contains(p.GrantControls.BuiltInControls, "block") || len(locIDs) == 0 {
			continue
		}
		all := true
		for _, id := range locIDs {
			all = all && slices.Contains(p.Conditions.Locations.IncludeLocations, id)
		}
		if all {
			return missing, true
		}
	}
	return missing, false
}

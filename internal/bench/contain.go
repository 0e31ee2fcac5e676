package bench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// containLatency is the Graph latency of the contain scenario.
const containLatency = 50 * time.Millisecond

// containLimits are Microsoft's Entra budgets with the write buckets scaled
// down ten times in both capacity and period: the same sustained rate (20
// writes/s per app and tenant, 60 per tenant) with a tenth of the burst, so that
// the budget binds after 300 writes instead of 3,000 and a run stays short.
func containLimits() m365sim.Limits {
	l := m365sim.DefaultLimits()
	l.EntraWrites = m365sim.Limit{Capacity: l.EntraWrites.Capacity / 10, Per: l.EntraWrites.Per / 10}
	l.EntraTenantWrites = m365sim.Limit{Capacity: l.EntraTenantWrites.Capacity / 10, Per: l.EntraTenantWrites.Per / 10}
	return l
}

// containBound is the shortest time the write budget allows for writes Graph
// writes, plus the unavoidable latency of one user's chain of calls (read,
// disable, revoke).
func containBound(l m365sim.Limits, writes int, latency time.Duration) time.Duration {
	rate := l.EntraWrites.Capacity / l.EntraWrites.Per.Seconds()
	over := math.Max(0, float64(writes)-l.EntraWrites.Capacity)
	return time.Duration(over/rate*float64(time.Second)) + 3*latency
}

// runContain disables and revokes N users (default 250) through the action
// worker, each as a disable_user request whose next step is revoke_sessions, as
// the high-risk-user playbook asks, with the emulator's throttling on and 50 ms
// of latency on every Graph call.
func runContain(ctx context.Context, o Options) (Result, error) {
	n := o.N
	if n <= 0 {
		n = 250
	}
	dir, cleanup, err := o.dir()
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	sim, err := throttledTenant(o, containLatency)
	if err != nil {
		return Result{}, err
	}
	defer sim.Close()
	limits := containLimits()
	users := make([]m365sim.User, n)
	for i := range users {
		users[i] = sim.AddUser(m365sim.User{UserPrincipalName: fmt.Sprintf("contain%05d@contoso.com", i)})
	}

	// The one-at-a-time loop an operator would write: each user's calls in
	// turn, on a sample of users, extrapolated to N.
	loopN := min(n, 10)
	o.progressf("contain: one-at-a-time loop over %d users", loopN)
	perUser, err := oneAtATime(ctx, sim, loopN)
	if err != nil {
		return Result{}, err
	}
	loopEstimate := time.Duration(n) * perUser
	if b := containBound(limits, 2*n, 0); b > loopEstimate {
		loopEstimate = b // the loop cannot beat the budget either
	}

	sim.SetLimits(limits) // full buckets for the engine
	sim.ResetWireLog()
	// The engine paces itself to the budget it was configured with: the same
	// scaled write budget the emulator enforces (as it would Microsoft's).
	budgets := graphexec.NewBudgets(graphexec.BudgetConfig{
		EntraWrites: graphexec.Rate{N: limits.EntraWrites.Capacity, Per: limits.EntraWrites.Per},
	})
	run, err := startScenario(ctx, o, dir, sim, budgets)
	if err != nil {
		return Result{}, err
	}
	defer run.close()
	st, outs := run.workerStack, run.outs
	// A running engine holds a Graph token and warm connections: one request
	// through the worker before the clock starts, then full buckets again.
	warm := sim.AddUser(m365sim.User{UserPrincipalName: "warmup@contoso.com"})
	if err := run.warmUp(ctx, &actions.Request{
		Version: actions.Version, ID: uuid.NewString(), Action: actions.RevokeSessions,
		Target:      actions.Target{User: warm.UserPrincipalName},
		RequestedBy: audit.Actor{Kind: "analyst", Name: "bench"}, Reason: "bench: warm-up", RequestedAt: time.Now().UTC(),
	}); err != nil {
		return Result{}, err
	}
	sim.SetLimits(limits)
	sim.ResetWireLog()

	o.progressf("contain: %d users through the worker (throttling on, %s latency)", n, containLatency)
	start := time.Now()
	now := start.UTC()
	for _, u := range users {
		r := &actions.Request{
			Version: actions.Version, ID: uuid.NewString(), Action: actions.DisableUser,
			Target:      actions.Target{User: u.UserPrincipalName},
			RequestedBy: audit.Actor{Kind: "analyst", Name: "bench"}, Reason: "bench: mass containment",
			RequestedAt: now,
			Next:        []actions.Step{{Action: actions.RevokeSessions, Target: actions.Target{User: u.UserPrincipalName}}},
		}
		if err := actions.Publish(ctx, st.bus.JS, st.tenant, r); err != nil {
			return Result{}, err
		}
	}
	revoked := func(m map[string]actions.Outcome) bool {
		c := 0
		for _, out := range m {
			if out.Action == actions.RevokeSessions && out.Outcome.Final() {
				c++
			}
		}
		return c >= n
	}
	timeout := 2*containBound(limits, 2*n, containLatency) + 2*time.Minute
	if err := outs.waitFor(ctx, timeout, revoked); err != nil {
		return Result{}, err
	}
	elapsed := time.Since(start)

	failed := 0
	outs.mu.Lock()
	for _, out := range outs.got {
		if out.Outcome != audit.Succeeded {
			failed++
		}
	}
	outs.mu.Unlock()
	notContained := 0
	for _, u := range users {
		got, _ := sim.User(u.ID)
		if got.AccountEnabled || got.RevokeCount != 1 {
			notContained++
		}
	}
	writes, throttled := 0, 0
	var firstWrite, lastWrite, firstCall time.Time
	for _, w := range sim.WireLog() {
		if firstCall.IsZero() || w.Time.Before(firstCall) {
			firstCall = w.Time
		}
		if writeTarget(w) == "" {
			continue
		}
		writes++
		if w.Status == 429 {
			throttled++
		}
		if firstWrite.IsZero() || w.Time.Before(firstWrite) {
			firstWrite = w.Time
		}
		if w.Time.After(lastWrite) {
			lastWrite = w.Time
		}
	}
	bound := containBound(limits, 2*n, containLatency)
	return Result{
		Measured: elapsed.Seconds(), Unit: "s", Bound: bound.Seconds(),
		BoundNote: fmt.Sprintf("%d writes at the Entra write budget (%.0f writes / %s burst, %.0f writes/s sustained; Microsoft's 3,000 / 150 s scaled 1/10) + one user's 3 calls x %s",
			2*n, limits.EntraWrites.Capacity, limits.EntraWrites.Per, limits.EntraWrites.Capacity/limits.EntraWrites.Per.Seconds(), containLatency),
		Goal: Goal{AtMost, 1.10},
		Extra: map[string]any{
			"users":                    n,
			"graph_latency_ms":         ms(containLatency),
			"writes_attempted":         writes,
			"writes_429":               throttled,
			"share_429":                share(throttled, writes),
			"one_at_a_time_s":          loopEstimate.Seconds(),
			"one_at_a_time_sample":     loopN,
			"ratio_to_one_at_a_time":   elapsed.Seconds() / loopEstimate.Seconds(),
			"requests_not_succeeded":   failed,
			"users_not_contained_once": notContained,
			"users_per_s":              float64(n) / elapsed.Seconds(),
			"concurrency":              concurrencyOr(o.Concurrency),
			// Where the time went: start to the first write (publishing,
			// first claims), first to last write (the budget), last write
			// to the last outcome (the tail).
			"first_call_s":  firstCall.Sub(start).Seconds(),
			"first_write_s": firstWrite.Sub(start).Seconds(),
			"writes_span_s": lastWrite.Sub(firstWrite).Seconds(),
			"tail_s":        start.Add(elapsed).Sub(lastWrite).Seconds(),
		},
	}, nil
}

func share(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// oneAtATime contains n fresh users with the Graph executor, one call after the
// other, and returns the time per user.
func oneAtATime(ctx context.Context, sim *m365sim.Tenant, n int) (time.Duration, error) {
	graph, _, err := m365.NewGraphClient(credentials(sim))
	if err != nil {
		return 0, err
	}
	ex := graphexec.New(graph, nil)
	// Warm the token cache and connection outside the timing.
	if _, err := ex.Execute(ctx, &actions.Request{Action: actions.RevokeSessions, Target: actions.Target{User: "bob@contoso.com"}}); err != nil {
		return 0, fmt.Errorf("bench: warm-up call: %w", err)
	}
	us := make([]m365sim.User, n)
	for i := range us {
		us[i] = sim.AddUser(m365sim.User{UserPrincipalName: fmt.Sprintf("loop%05d@contoso.com", i)})
	}
	start := time.Now()
	for _, u := range us {
		for _, a := range []actions.Name{actions.DisableUser, actions.RevokeSessions} {
			if _, err := ex.Execute(ctx, &actions.Request{Version: actions.Version, ID: uuid.NewString(), Action: a, Target: actions.Target{User: u.UserPrincipalName}}); err != nil {
				return 0, fmt.Errorf("bench: one-at-a-time %s %s: %w", a, u.UserPrincipalName, err)
			}
		}
	}
	return time.Since(start) / time.Duration(n), nil
}

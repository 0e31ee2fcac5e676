package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
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

// containScale is how far the contain scenario scales Microsoft's Entra write
// budgets down, in both capacity and period.
const containScale = 10

// containLimits are Microsoft's Entra budgets with the write buckets scaled
// down scale times in both capacity and period: the same sustained rate (20
// writes/s per app and tenant, 60 per tenant) with 1/scale of the burst, so
// that the budget binds after 3,000/scale writes and a run stays short
// (scale 10: 300 writes).
func containLimits(scale float64) m365sim.Limits {
	l := m365sim.DefaultLimits()
	l.EntraWrites = m365sim.Limit{Capacity: l.EntraWrites.Capacity / scale, Per: time.Duration(float64(l.EntraWrites.Per) / scale)}
	l.EntraTenantWrites = m365sim.Limit{Capacity: l.EntraTenantWrites.Capacity / scale, Per: time.Duration(float64(l.EntraTenantWrites.Per) / scale)}
	return l
}

// containBurstBound is the shortest time the burst phase can take: the first
// Capacity writes (Capacity/2 users) go without waiting for the budget, so
// only latency binds them: one user's 3 calls in a row, and every user's 3
// calls shared among the worker's conc requests in flight.
func containBurstBound(l m365sim.Limits, users, conc int, latency time.Duration) time.Duration {
	burstUsers := min(users, int(l.EntraWrites.Capacity)/2)
	perSlot := time.Duration(float64(burstUsers*3) / float64(max(conc, 1)) * float64(latency))
	return max(3*latency, perSlot)
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
	if o.N <= 0 {
		o.N = 250
	}
	return contain(ctx, o, containScale, min(o.N, 10))
}

// contain is the contain scenario with the Entra write budgets scaled down
// scale times and a one-at-a-time loop over loopN users for comparison (0:
// none).
func contain(ctx context.Context, o Options, scale float64, loopN int) (Result, error) {
	n := o.N
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
	limits := containLimits(scale)
	users := make([]m365sim.User, n)
	for i := range users {
		users[i] = sim.AddUser(m365sim.User{UserPrincipalName: fmt.Sprintf("contain%05d@contoso.com", i)})
	}

	// The one-at-a-time loop an operator would write: each user's calls in
	// turn, on a sample of users, extrapolated to N.
	var loopEstimate time.Duration
	if loopN > 0 {
		o.progressf("contain: one-at-a-time loop over %d users", loopN)
		perUser, err := oneAtATime(ctx, sim, loopN)
		if err != nil {
			return Result{}, err
		}
		loopEstimate = time.Duration(n) * perUser
		if b := containBound(limits, 2*n, 0); b > loopEstimate {
			loopEstimate = b // the loop cannot beat the budget either
		}
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

	conc := workerConcurrency(o.Concurrency)
	failed, outcomes := 0, 0
	outs.mu.Lock()
	for _, out := range outs.got {
		outcomes++
		if out.Outcome != audit.Succeeded {
			failed++
		}
	}
	outs.mu.Unlock()
	notContained := 0
	upnOf := map[string]string{} // lower-case id or UPN -> lower-case UPN
	for _, u := range users {
		got, _ := sim.User(u.ID)
		if got.AccountEnabled || got.RevokeCount != 1 {
			notContained++
		}
		upn := strings.ToLower(u.UserPrincipalName)
		upnOf[strings.ToLower(u.ID)], upnOf[upn] = upn, upn
	}
	// The wire log: every write the emulator answered, per user and kind.
	disables, revokes := map[string]int{}, map[string]int{}
	writes, throttled, otherErrors := 0, 0, 0
	var firstWrite, lastWrite, firstCall time.Time
	var admitted []time.Time
	for _, w := range sim.WireLog() {
		if firstCall.IsZero() || w.Time.Before(firstCall) {
			firstCall = w.Time
		}
		key := writeTarget(w)
		if key == "" {
			continue
		}
		writes++
		if firstWrite.IsZero() || w.Time.Before(firstWrite) {
			firstWrite = w.Time
		}
		if w.Time.After(lastWrite) {
			lastWrite = w.Time
		}
		switch {
		case w.Status == 429:
			throttled++
			continue
		case w.Status < 200 || w.Status > 299:
			otherErrors++
			continue
		}
		admitted = append(admitted, w.Time)
		upn := upnOf[key]
		switch {
		case w.Method == "PATCH":
			disables[upn]++
		case strings.HasSuffix(strings.ToLower(w.Path), "/revokesigninsessions"):
			revokes[upn]++
		}
	}
	wrong := 0
	for _, u := range users {
		upn := strings.ToLower(u.UserPrincipalName)
		if disables[upn] != 1 || revokes[upn] != 1 {
			wrong++
		}
	}
	// The burst phase: until the write that empties the budget's burst.
	slices.SortFunc(admitted, func(a, b time.Time) int { return a.Compare(b) })
	burstWrites := min(len(admitted), int(limits.EntraWrites.Capacity))
	var burst time.Duration
	if burstWrites > 0 {
		burst = admitted[burstWrites-1].Add(containLatency).Sub(start)
	}
	burstBound := containBurstBound(limits, n, conc, containLatency)

	bound := containBound(limits, 2*n, containLatency)
	res := Result{
		Measured: elapsed.Seconds(), Unit: "s", Bound: bound.Seconds(), N: n, Concurrency: conc,
		BoundNote: fmt.Sprintf("%d writes at the Entra write budget (%.0f writes / %s burst, %.0f writes/s sustained; Microsoft's 3,000 / 150 s scaled 1/%.0f) + one user's 3 calls x %s",
			2*n, limits.EntraWrites.Capacity, limits.EntraWrites.Per, limits.EntraWrites.Capacity/limits.EntraWrites.Per.Seconds(), scale, containLatency),
		Goal: Goal{AtMost, 1.05},
		Extra: map[string]any{
			"graph_latency_ms": ms(containLatency),
			"writes_attempted": writes,
			"writes_429":       throttled,
			"share_429":        share(throttled, writes),
			"users_per_s":      float64(n) / elapsed.Seconds(),
			// The burst phase (the writes the budget's burst admits at once)
			// beside the whole run: there only latency and the engine bind.
			"burst_writes":  burstWrites,
			"burst_s":       burst.Seconds(),
			"burst_bound_s": burstBound.Seconds(),
			"burst_ratio":   burst.Seconds() / burstBound.Seconds(),
			// Where the time went: start to the first write (publishing,
			// first claims), first to last write (the budget), last write
			// to the last outcome (the tail).
			"first_call_s":  firstCall.Sub(start).Seconds(),
			"first_write_s": firstWrite.Sub(start).Seconds(),
			"writes_span_s": lastWrite.Sub(firstWrite).Seconds(),
			"tail_s":        start.Add(elapsed).Sub(lastWrite).Seconds(),
		},
	}
	if loopEstimate > 0 {
		res.Extra["one_at_a_time_s"] = loopEstimate.Seconds()
		res.Extra["one_at_a_time_sample"] = loopN
		res.Extra["ratio_to_one_at_a_time"] = elapsed.Seconds() / loopEstimate.Seconds()
	}
	res.AddCheck("every user disabled and revoked exactly once (tenant state)", notContained == 0,
		fmt.Sprintf("%d of %d users still enabled or not revoked exactly once", notContained, n))
	res.AddCheck("every user disabled and revoked exactly once (wire log)", wrong == 0,
		fmt.Sprintf("%d of %d users without exactly one admitted disable and one admitted revoke; %d writes answered 429 and resent (reported apart)", wrong, n, throttled))
	res.AddCheck("every request succeeded", outcomes == 2*n && failed == 0 && otherErrors == 0,
		fmt.Sprintf("%d outcomes for %d requests, %d not succeeded; %d writes failed other than 429", outcomes, 2*n, failed, otherErrors))
	return res, nil
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

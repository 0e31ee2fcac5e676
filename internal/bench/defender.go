package bench

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/defenderexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/budget"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// The Defender for Endpoint scenarios: `bench isolate` and `bench indicators`.

// defenderLatency is the Defender API latency of both scenarios.
const defenderLatency = 50 * time.Millisecond

// isolateTimeScale shortens Microsoft's per-API budget of 100 calls a minute
// and 1,500 an hour to 100 per 6 s and 1,500 per 6 min, on both sides (the
// emulator's enforcement and the executor's pacing), so that a burst of
// hundreds of isolations is measured in seconds. Every figure of the budget
// scales alike; the ratio to the bound does not depend on it (the 50 ms
// latency weighs a little more than it would at full scale).
const isolateTimeScale = 10

// staticDomains is the verified-domain source of the scenarios (the
// emulator's organisation), so that no Graph call is in the measured path.
type staticDomains []string

func (d staticDomains) VerifiedDomains(context.Context) ([]string, error) { return d, nil }

// defenderStack is embedded NATS, the audit writer and the action worker with
// the Defender executor against the emulator.
type defenderStack struct {
	*scenarioRun
	exec *defenderexec.Executor
}

func startDefenderStack(ctx context.Context, o Options, dir string, sim *m365sim.Tenant, lim defenderexec.Limits, conc int) (*defenderStack, error) {
	log := o.logger()
	creds := credentials(sim)
	cred, err := creds.TokenCredential()
	if err != nil {
		return nil, err
	}
	dx := defenderexec.New(defenderexec.Config{
		HTTP: m365.BearerClient(creds, cred, m365.DefenderScope), BaseURL: creds.DefenderAPIURL(), ClientID: creds.ClientID,
		Budgets: defenderexec.NewBudgets(lim, nil), Logger: log, Domains: staticDomains{"contoso.com"},
		PollInitial: 10 * time.Millisecond,
	})
	b, err := bus.Open(ctx, bus.Config{StoreDir: dir, Port: -1, Logger: log, Name: "bench-engine"})
	if err != nil {
		return nil, err
	}
	kv, err := b.State(ctx)
	if err != nil {
		b.Close()
		return nil, err
	}
	w := actions.NewWorker(actions.WorkerConfig{
		Tenant: creds.TenantID, JS: b.JS, KV: kv, Handlers: dx.Handlers(),
		Audit:       audit.NewWriter(b.JS, audit.WriterOptions{Logger: log}),
		Blast:       noBlastLimits,
		Concurrency: conc,
		RetryBase:   100 * time.Millisecond, RetryMax: 5 * time.Second, MaxAttempts: 10,
		Logger: log,
	})
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	st := &workerStack{bus: b, tenant: creds.TenantID, stop: func() {
		cancel()
		<-done
		b.Close()
	}}
	nc, err := b.Connect(nats.Name("bench-analyst"))
	if err != nil {
		st.stop()
		return nil, err
	}
	outs, err := watchOutcomes(nc, st.tenant)
	if err != nil {
		nc.Close()
		st.stop()
		return nil, err
	}
	return &defenderStack{scenarioRun: &scenarioRun{workerStack: st, nc: nc, outs: outs}, exec: dx}, nil
}

// defenderTenant is the small seeded tenant with throttling on, the given
// Defender budgets and latency on every Defender call.
func defenderTenant(o Options, lim m365sim.DefenderLimits) (*m365sim.Tenant, error) {
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall, Throttling: true, Logger: o.logger()})
	if err != nil {
		return nil, err
	}
	sim.SetDefenderLimits(lim)
	sim.AddFault(m365sim.Fault{Latency: defenderLatency, PathPrefix: "/api/"})
	return sim, nil
}

// budgetTime is how long a budget of Capacity per Per with a full bucket
// takes to admit calls calls: the first Capacity at once, then one per
// Per/Capacity.
func budgetTime(l m365sim.Limit, calls int) time.Duration {
	if l.Capacity <= 0 || l.Per <= 0 {
		return 0
	}
	over := math.Max(0, float64(calls)-l.Capacity)
	return time.Duration(over / (l.Capacity / l.Per.Seconds()) * float64(time.Second))
}

// isolateCallsPerDevice: read the device (guard; the action reuses it), list
// its machine actions, isolate, read the machine action once (final).
const isolateCallsPerDevice = 4

// runIsolate isolates N workstations (default 200) requested at once by one
// playbook, with the Defender budgets on (100 calls a minute per API, scaled
// by isolateTimeScale) and 50 ms latency on every call.
func runIsolate(ctx context.Context, o Options) (Result, error) {
	n := o.N
	if n <= 0 {
		n = 200
	}
	dir, cleanup, err := o.dir()
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	def := m365sim.DefaultDefenderLimits()
	lim := m365sim.DefenderLimits{
		PerMinute: m365sim.Limit{Capacity: def.PerMinute.Capacity, Per: def.PerMinute.Per / isolateTimeScale},
		PerHour:   m365sim.Limit{Capacity: def.PerHour.Capacity, Per: def.PerHour.Per / isolateTimeScale},
		Import:    def.Import,
	}
	sim, err := defenderTenant(o, lim)
	if err != nil {
		return Result{}, err
	}
	defer sim.Close()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = sim.AddMachine(m365sim.Machine{ComputerDNSName: fmt.Sprintf("bench-ws-%04d.contoso.com", i), OSPlatform: "Windows11"}).ID
	}
	conc := workerConcurrency(o.Concurrency)
	run, err := startDefenderStack(ctx, o, dir, sim,
		defenderexec.Limits{PerMinute: budget.Rate{N: lim.PerMinute.Capacity, Per: lim.PerMinute.Per}, PerHour: budget.Rate{N: lim.PerHour.Capacity, Per: lim.PerHour.Per}}, conc)
	if err != nil {
		return Result{}, err
	}
	defer run.close()
	// Warm-up outside the timing (consumer, token, TLS connection) with a
	// device outside the burst; then the budgets start full.
	warm := sim.AddMachine(m365sim.Machine{ComputerDNSName: "bench-warmup.contoso.com", OSPlatform: "Windows11"})
	if err := run.warmUp(ctx, playbookRequest(actions.IsolateDevice, actions.Target{Device: warm.ID}, nil)); err != nil {
		return Result{}, err
	}
	sim.SetDefenderLimits(lim)
	sim.ResetWireLog()

	reqs := make([]*actions.Request, n)
	for i := range reqs {
		reqs[i] = playbookRequest(actions.IsolateDevice, actions.Target{Device: ids[i]}, nil)
	}
	o.progressf("isolate: %d devices by one playbook (budgets on: %.0f calls / %s per API, time scale 1/%d; %s latency)", n, lim.PerMinute.Capacity, lim.PerMinute.Per, isolateTimeScale, defenderLatency)
	bound := budgetTime(lim.PerMinute, n) + isolateCallsPerDevice*defenderLatency
	elapsed, err := publishAndWait(ctx, run.workerStack, run.outs, reqs, 4*bound+2*time.Minute)
	if err != nil {
		return Result{}, err
	}
	calls := map[string]int{}
	throttled := 0
	for _, w := range sim.WireLog() {
		if !strings.HasPrefix(w.Path, "/api/") {
			continue
		}
		if w.Status == 429 {
			throttled++
			continue
		}
		switch {
		case strings.HasSuffix(w.Path, "/isolate"):
			calls["isolate"]++
		case strings.HasPrefix(w.Path, "/api/machineactions/"):
			calls["machineaction_reads"]++
		case w.Path == "/api/machineactions":
			calls["machineaction_lists"]++
		case strings.HasPrefix(w.Path, "/api/machines/"):
			calls["machine_reads"]++
		}
	}
	notIsolated := 0
	for _, id := range ids {
		if m, ok := sim.MachineByName(id); !ok || !m.Isolated {
			notIsolated++
		}
	}
	failed := countNotSucceeded(run.outs, reqs)
	audited, err := countSucceeded(ctx, run.workerStack, actions.IsolateDevice, requestIDs(reqs))
	if err != nil {
		return Result{}, err
	}
	res := Result{
		Measured: elapsed.Seconds(), Unit: "s", Bound: bound.Seconds(), N: n, Concurrency: conc,
		BoundNote: fmt.Sprintf("each device takes one call of each of %d Defender APIs (read the device, list its machine actions, isolate, read the action), each API %.0f calls / %s with a full bucket (Microsoft's 100 a minute scaled 1/%d): %d calls of one API take (%d - %.0f) / rate, + one %s latency per call of the last device",
			isolateCallsPerDevice, lim.PerMinute.Capacity, lim.PerMinute.Per, isolateTimeScale, n, n, lim.PerMinute.Capacity, defenderLatency),
		Goal: Goal{AtMost, 1.10},
		Extra: map[string]any{
			"defender_latency_ms": ms(defenderLatency), "time_scale": isolateTimeScale,
			"calls": calls, "calls_429": throttled, "isolations_per_s": float64(n) / elapsed.Seconds(),
			"unscaled_bound_s": (budgetTime(def.PerMinute, n) + isolateCallsPerDevice*defenderLatency).Seconds(),
		},
	}
	res.AddCheck("every device isolated", notIsolated == 0, fmt.Sprintf("%d of %d devices not isolated", notIsolated, n))
	res.AddCheck("every request succeeded and was audited", failed == 0 && audited == n,
		fmt.Sprintf("%d of %d outcomes not succeeded; %d succeeded audit records", failed, n, audited))
	res.AddCheck("one isolation call per device", calls["isolate"] == n, fmt.Sprintf("%d isolate calls for %d devices", calls["isolate"], n))
	return res, nil
}

// runIndicators requests N indicators (default 2,000: half file hashes, half
// URLs) at once; the executor coalesces them into ceil(N/500) import calls
// paced at 30 a minute (one every 2 s).
func runIndicators(ctx context.Context, o Options) (Result, error) {
	n := o.N
	if n <= 0 {
		n = 2000
	}
	dir, cleanup, err := o.dir()
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	lim := m365sim.DefaultDefenderLimits()
	sim, err := defenderTenant(o, lim)
	if err != nil {
		return Result{}, err
	}
	defer sim.Close()
	// Every request in flight at once: the worker holds at most its
	// concurrency, and an import takes at most 500.
	conc := o.Concurrency
	if conc <= 0 {
		conc = n
	}
	elim := defenderexec.DefaultLimits()
	run, err := startDefenderStack(ctx, o, dir, sim, elim, conc)
	if err != nil {
		return Result{}, err
	}
	defer run.close()
	if err := run.warmUp(ctx, playbookRequest(actions.IsolateDevice, actions.Target{Device: sim.Machines()[0].ID}, nil)); err != nil {
		return Result{}, err
	}
	sim.SetDefenderLimits(lim)
	sim.ResetWireLog()

	reqs := make([]*actions.Request, n)
	for i := range reqs {
		if i%2 == 0 {
			reqs[i] = playbookRequest(actions.BlockFile, actions.Target{File: fmt.Sprintf("%064x", i+1)}, nil)
		} else {
			reqs[i] = playbookRequest(actions.BlockURL, actions.Target{URL: fmt.Sprintf("https://phish-%d.example.net/login", i)}, nil)
		}
	}
	per := min(defenderexec.MaxImport, conc)
	fewest := ceilDiv(n, per)
	pace := time.Duration(float64(elim.Import.Per) / elim.Import.N)
	bound := time.Duration(fewest-1)*pace + 2*defenderLatency
	o.progressf("indicators: %d at once (imports of up to %d, paced one per %s; %s latency)", n, defenderexec.MaxImport, pace, defenderLatency)
	elapsed, err := publishAndWait(ctx, run.workerStack, run.outs, reqs, 4*bound+2*time.Minute)
	if err != nil {
		return Result{}, err
	}
	imports, reads, submits, throttled := 0, 0, 0, 0
	for _, w := range sim.WireLog() {
		switch {
		case w.Status == 429:
			throttled++
		case w.Method == "POST" && w.Path == "/api/indicators/import":
			imports++
		case w.Method == "POST" && w.Path == "/api/indicators":
			submits++
		case w.Method == "GET" && w.Path == "/api/indicators":
			reads++
		}
	}
	have := map[string]bool{}
	titled := 0
	for _, i := range sim.Indicators() {
		have[i.IndicatorValue] = true
		if strings.Contains(i.Title, "request ") && strings.Contains(i.Description, "playbook") {
			titled++
		}
	}
	missing := 0
	for _, r := range reqs {
		v := r.Target.URL
		if r.Target.File != "" {
			v = r.Target.File
		}
		if !have[v] {
			missing++
		}
	}
	failed := countNotSucceeded(run.outs, reqs)
	audited := 0
	for _, a := range []actions.Name{actions.BlockFile, actions.BlockURL} {
		k, err := countSucceeded(ctx, run.workerStack, a, requestIDs(reqs))
		if err != nil {
			return Result{}, err
		}
		audited += k
	}
	res := Result{
		Measured: elapsed.Seconds(), Unit: "s", Bound: bound.Seconds(), N: n, Concurrency: conc,
		BoundNote: fmt.Sprintf("%d indicators in the fewest import calls, ceil(%d/%d) = %d, paced at 30 a minute (one every %s): %d intervals, + the last round's read and import latency (%s each)",
			n, n, per, fewest, pace, fewest-1, defenderLatency),
		Goal: Goal{AtMost, 1.10},
		Extra: map[string]any{
			"defender_latency_ms": ms(defenderLatency), "import_calls": imports, "import_calls_fewest": fewest,
			"indicator_reads": reads, "single_submits": submits, "calls_429": throttled, "rounds": run.exec.Rounds(),
			"indicators_per_s": float64(n) / elapsed.Seconds(),
		},
	}
	res.AddCheck("every indicator in Defender", missing == 0, fmt.Sprintf("%d of %d indicators missing", missing, n))
	res.AddCheck("each names its request and reason", titled == n, fmt.Sprintf("%d of %d indicators with the request in the title and the playbook in the description", titled, n))
	res.AddCheck("every request succeeded and was audited", failed == 0 && audited == n,
		fmt.Sprintf("%d of %d outcomes not succeeded; %d succeeded audit records", failed, n, audited))
	res.AddCheck("the fewest import calls", imports == fewest && submits == 0, fmt.Sprintf("%d import calls (fewest %d), %d single submissions", imports, fewest, submits))
	return res, nil
}

func playbookRequest(a actions.Name, t actions.Target, p map[string]any) *actions.Request {
	return &actions.Request{Version: actions.Version, ID: uuid.NewString(), Action: a, Target: t, Params: p,
		RequestedBy: audit.Actor{Kind: "playbook", Name: "bench-burst"}, Reason: "bench: one playbook burst", RequestedAt: time.Now().UTC()}
}

func requestIDs(reqs []*actions.Request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.ID
	}
	return out
}

func countNotSucceeded(outs *outcomes, reqs []*actions.Request) int {
	outs.mu.Lock()
	defer outs.mu.Unlock()
	n := 0
	for _, r := range reqs {
		if outs.got[r.ID].Outcome != audit.Succeeded {
			n++
		}
	}
	return n
}

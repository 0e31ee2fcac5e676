package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// credentials of the emulator's default application.
func credentials(sim *m365sim.Tenant) m365.Credentials {
	info := sim.Info()
	return m365.Credentials{
		TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
		LoginURL: info.LoginURL, GraphURL: info.GraphURL, ManageURL: info.ManageURL,
		HTTPClient: sim.HTTPClient(),
	}
}

// noBlastLimits switches the worker's blast-radius limits off: a benchmark
// measures the path, not the safety valve (which refuses past 25 disables an
// hour by default).
var noBlastLimits = actions.BlastLimits{Window: time.Hour}

// workerStack is embedded NATS, the audit writer and the action worker with the
// Graph executor against the emulator: the engine's action path without feeds
// and matcher.
type workerStack struct {
	bus    *bus.Bus
	tenant string
	stop   func()
}

// startWorkerStack runs a worker against sim. budgets is the engine's
// client-side pacing, set to the emulator's limits (nil: Microsoft's defaults).
func startWorkerStack(ctx context.Context, o Options, dir string, sim *m365sim.Tenant, budgets *graphexec.Budgets) (*workerStack, error) {
	log := o.logger()
	creds := credentials(sim)
	graph, _, err := m365.NewGraphClient(creds)
	if err != nil {
		return nil, err
	}
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
		Tenant: creds.TenantID, JS: b.JS, KV: bus.TenantState(kv, creds.TenantID),
		Handlers:    graphexec.NewWithConfig(graph, graphexec.Config{Logger: log, Budgets: budgets}).Handlers(),
		Audit:       audit.NewWriter(b.JS, audit.WriterOptions{Logger: log}),
		Blast:       noBlastLimits,
		Concurrency: o.Concurrency,
		RetryBase:   100 * time.Millisecond, RetryMax: 5 * time.Second, MaxAttempts: 10,
		Logger: log,
	})
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	return &workerStack{bus: b, tenant: creds.TenantID, stop: func() {
		cancel()
		<-done
		b.Close()
	}}, nil
}

// outcomes collects final outcomes from the result subjects of a tenant.
type outcomes struct {
	sub *nats.Subscription
	mu  sync.Mutex
	got map[string]actions.Outcome
	at  map[string]time.Time
	ch  chan struct{} // signalled on every new outcome
}

func watchOutcomes(nc *nats.Conn, tenant string) (*outcomes, error) {
	o := &outcomes{got: map[string]actions.Outcome{}, at: map[string]time.Time{}, ch: make(chan struct{}, 1)}
	sub, err := nc.Subscribe("responder."+bus.Token(tenant)+".result.>", func(m *nats.Msg) {
		var out actions.Outcome
		if err := decodeOutcome(m.Data, &out); err != nil {
			return
		}
		o.mu.Lock()
		if _, dup := o.got[out.RequestID]; !dup {
			o.got[out.RequestID] = out
			o.at[out.RequestID] = time.Now()
		}
		o.mu.Unlock()
		select {
		case o.ch <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bench: subscribe to results: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	o.sub = sub
	return o, nc.Flush()
}

func (o *outcomes) close() { _ = o.sub.Unsubscribe() }

// waitFor waits until pred holds over the outcomes, or the deadline.
func (o *outcomes) waitFor(ctx context.Context, timeout time.Duration, pred func(map[string]actions.Outcome) bool) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		o.mu.Lock()
		ok := pred(o.got)
		o.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-o.ch:
		case <-t.C:
			return errors.New("bench: timed out waiting for outcomes")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// writeTarget returns the user key (UPN or id, lower case) a Graph write on
// /users/{key}… names, or "" for other calls and reads.
func writeTarget(w m365sim.WireEntry) string {
	if w.Method == "GET" || strings.HasSuffix(w.Path, "/$batch") {
		return ""
	}
	p := strings.TrimPrefix(w.Path, "/v1.0")
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(segs) < 2 || !strings.EqualFold(segs[0], "users") {
		return ""
	}
	k, err := url.PathUnescape(segs[1])
	if err != nil {
		return ""
	}
	return strings.ToLower(k)
}

// scenarioRun is a worker stack with an analyst's connection watching the
// outcomes, as the purge, block-ip and contain scenarios use it.
type scenarioRun struct {
	*workerStack
	nc   *nats.Conn
	outs *outcomes
}

// startScenario starts a worker stack against sim and an outcome watcher.
func startScenario(ctx context.Context, o Options, dir string, sim *m365sim.Tenant, budgets *graphexec.Budgets) (*scenarioRun, error) {
	st, err := startWorkerStack(ctx, o, dir, sim, budgets)
	if err != nil {
		return nil, err
	}
	nc, err := st.bus.Connect(nats.Name("bench-analyst"))
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
	return &scenarioRun{workerStack: st, nc: nc, outs: outs}, nil
}

func (r *scenarioRun) close() {
	r.outs.close()
	r.nc.Close()
	r.stop()
}

// warmUp runs req through the worker before the clock starts (consumer,
// Graph token, TLS connection: a running engine has them) and forgets its
// outcome.
func (r *scenarioRun) warmUp(ctx context.Context, req *actions.Request) error {
	if _, err := publishAndWait(ctx, r.workerStack, r.outs, []*actions.Request{req}, time.Minute); err != nil {
		return fmt.Errorf("bench: warm-up: %w", err)
	}
	r.outs.mu.Lock()
	delete(r.outs.got, req.ID)
	delete(r.outs.at, req.ID)
	r.outs.mu.Unlock()
	return nil
}

// publishAndWait publishes reqs and waits until each has a final outcome; it
// returns the time from the first publish to the last outcome.
func publishAndWait(ctx context.Context, st *workerStack, outs *outcomes, reqs []*actions.Request, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for _, r := range reqs {
		if err := actions.Publish(ctx, st.bus.JS, st.tenant, r); err != nil {
			return 0, err
		}
	}
	done := func(m map[string]actions.Outcome) bool {
		for _, r := range reqs {
			if out, ok := m[r.ID]; !ok || !out.Outcome.Final() {
				return false
			}
		}
		return true
	}
	if err := outs.waitFor(ctx, timeout, done); err != nil {
		return 0, err
	}
	last := start
	outs.mu.Lock()
	for _, r := range reqs {
		if at := outs.at[r.ID]; at.After(last) {
			last = at
		}
	}
	outs.mu.Unlock()
	return last.Sub(start), nil
}

// throttledTenant is the small seeded tenant with Microsoft's throttling on
// and latency added to every call, as the budget scenarios measure it.
func throttledTenant(o Options, latency time.Duration) (*m365sim.Tenant, error) {
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall, Throttling: true, Logger: o.logger()})
	if err != nil {
		return nil, err
	}
	sim.AddFault(m365sim.Fault{Latency: latency})
	return sim, nil
}

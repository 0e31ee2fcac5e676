package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// benchTenant is the tenant id of the scenarios that need no emulator.
const benchTenant = "00000000-0000-4000-8000-00000000be0c"

// busBound is the goal of the bus scenario: 2,000 requests per second on two
// cores, a hundred times Microsoft's sustained Entra write quota (3,000 writes /
// 150 s = 20 writes/s per app and tenant).
const busBound = 2000

// busProcs is the GOMAXPROCS the bus scenario runs with.
const busProcs = 2

// runBus measures action request → acknowledged result throughput with the real
// worker, audit writer and KV over the embedded NATS server, and a Graph
// executor that returns at once. N is the number of measured requests (default
// 20,000), after a warm-up of N/10.
func runBus(ctx context.Context, o Options) (Result, error) {
	n := o.N
	if n <= 0 {
		n = 20000
	}
	// The goal is set for two cores: pin the scheduler to two, whatever this
	// machine has, and give the setting back afterwards.
	prev := runtime.GOMAXPROCS(busProcs)
	defer runtime.GOMAXPROCS(prev)
	dir, cleanup, err := o.dir()
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	log := o.logger()
	// The bus is authenticated as in production: the client below is an
	// analyst with an analyst's permissions (its own inbox prefix and result
	// subject, no JetStream API), not the engine.
	analystKey, err := nkeys.CreateUser()
	if err != nil {
		return Result{}, fmt.Errorf("bench: analyst key: %w", err)
	}
	analystPub, _ := analystKey.PublicKey()
	b, err := bus.Open(ctx, bus.Config{StoreDir: dir, Port: -1, Logger: log, Name: "bench-bus",
		Tenant: benchTenant, Identities: []bus.Identity{{PublicKey: analystPub, Analyst: true}}})
	if err != nil {
		return Result{}, err
	}
	defer b.Close()
	kv, err := b.State(ctx)
	if err != nil {
		return Result{}, err
	}
	// Audit records are signed and the chain's head kept, as the engine does.
	auditKey, err := nkeys.CreateUser()
	if err != nil {
		return Result{}, fmt.Errorf("bench: audit key: %w", err)
	}
	head := audit.NewHeadKeeper(audit.HeadKeeperConfig{Path: audit.HeadPath(dir), KV: kv, Signer: auditKey, Logger: log})
	var executed atomic.Int64
	noop := actions.Uniform(func(context.Context, *actions.Request, actions.Params) (actions.Result, error) {
		executed.Add(1)
		return actions.Result{Detail: "no-op"}, nil
	})
	w := actions.NewWorker(actions.WorkerConfig{
		Tenant: benchTenant, JS: b.JS, KV: bus.TenantState(kv, benchTenant), Handlers: noop,
		Audit:       audit.NewWriter(b.JS, audit.WriterOptions{Logger: log, Signer: auditKey, Head: head}),
		Blast:       noBlastLimits,
		Concurrency: o.Concurrency, Logger: log,
	})
	runCtx, stop := context.WithCancel(ctx)
	werr, herr := make(chan error, 1), make(chan error, 1)
	go func() { werr <- w.Run(runCtx) }()
	go func() { herr <- head.Run(runCtx) }()
	defer func() {
		stop()
		<-werr
		<-herr
	}()

	// A second connection plays the analysts, as in production.
	copts, err := bus.ClientAuth{Key: analystKey}.Options()
	if err != nil {
		return Result{}, err
	}
	nc, err := nats.Connect(b.ClientURL(), append(copts, nats.Name("bench-client"))...)
	if err != nil {
		return Result{}, fmt.Errorf("bench: client connection: %w", err)
	}
	defer nc.Close()
	c := &busClient{nc: nc, key: analystPub}
	if err := c.start(); err != nil {
		return Result{}, err
	}
	defer c.stop()

	warm := max(n/10, 100)
	o.progressf("bus: warm-up with %d requests", warm)
	if _, err := c.round(ctx, warm); err != nil {
		return Result{}, fmt.Errorf("bench: warm-up: %w", err)
	}
	o.progressf("bus: measuring %d requests (worker concurrency %d)", n, concurrencyOr(o.Concurrency))
	st, err := c.round(ctx, n)
	if err != nil {
		return Result{}, err
	}
	// Nothing may stay behind: every message acked and removed from the work queue.
	left, err := drained(ctx, b.JS)
	if err != nil {
		return Result{}, err
	}
	rps := float64(n) / st.elapsed.Seconds()
	conc := concurrencyOr(o.Concurrency)
	res := Result{
		Measured: rps, Unit: "requests/s", Bound: busBound, N: n, Concurrency: conc,
		BoundNote: "2,000 requests/s on 2 cores = 100 x Microsoft's sustained Entra write quota (3,000 writes / 150 s)",
		Goal:      Goal{AtLeast, 1},
		Extra: map[string]any{
			"elapsed_s":  st.elapsed.Seconds(),
			"p50_ms":     ms(st.p50),
			"p99_ms":     ms(st.p99),
			"gomaxprocs": runtime.GOMAXPROCS(0),
			"executed":   executed.Load(),
		},
	}
	res.AddCheck("nothing left in the stream", left == 0,
		fmt.Sprintf("%d messages left in %s after every outcome", left, bus.StreamActions))
	res.AddCheck("every request succeeded", st.bad == 0 && st.outcomes == n,
		fmt.Sprintf("%d outcomes for %d requests, %d not succeeded", st.outcomes, n, st.bad))
	res.AddCheck("every request executed once", executed.Load() == int64(warm+n),
		fmt.Sprintf("%d executions for %d requests (warm-up included)", executed.Load(), warm+n))
	return res, nil
}

func concurrencyOr(c int) int {
	if c <= 0 {
		return 128 // the worker's default (actions.WorkerConfig)
	}
	return c
}

// busClient publishes requests and collects their outcomes from the result
// subjects.
type busClient struct {
	key string // the analyst's public key: requester and result subject
	nc  *nats.Conn
	js  jetstream.JetStream
	sub *nats.Subscription

	mu      sync.Mutex
	pending map[string]int // request id -> index in the current round
	done    []time.Time
	left    int
	allDone chan struct{}
	bad     []string
}

func (c *busClient) start() error {
	js, err := jetstream.New(c.nc, jetstream.WithPublishAsyncMaxPending(512))
	if err != nil {
		return err
	}
	c.js = js
	sub, err := c.nc.Subscribe(bus.ResultsFilterFor(benchTenant, c.key), c.onResult)
	if err != nil {
		return fmt.Errorf("bench: subscribe to results: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	c.sub = sub
	return c.nc.Flush()
}

func (c *busClient) stop() { _ = c.sub.Unsubscribe() }

func (c *busClient) onResult(m *nats.Msg) {
	var out actions.Outcome
	if err := json.Unmarshal(m.Data, &out); err != nil {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.pending[out.RequestID]
	if !ok || !c.done[i].IsZero() {
		return
	}
	c.done[i] = now
	if out.Outcome != audit.Succeeded {
		c.bad = append(c.bad, out.RequestID+": "+string(out.Outcome)+" "+out.Detail)
	}
	c.left--
	if c.left == 0 {
		close(c.allDone)
	}
}

type roundStats struct {
	elapsed       time.Duration
	p50, p99      time.Duration
	outcomes, bad int
}

// round publishes n requests as fast as the server acknowledges them and waits
// for every outcome.
func (c *busClient) round(ctx context.Context, n int) (roundStats, error) {
	reqs := make([][]byte, n)
	ids := make([]string, n)
	pending := make(map[string]int, n)
	now := time.Now().UTC()
	for i := range n {
		r := actions.Request{
			Version: actions.Version, ID: uuid.NewString(), Action: actions.DisableUser,
			Target:      actions.Target{User: fmt.Sprintf("user%06d@bench.example", i)},
			RequestedBy: audit.Actor{Kind: "analyst", Name: "bench", KeyID: c.key}, Reason: "bench", RequestedAt: now,
		}
		b, err := json.Marshal(r)
		if err != nil {
			return roundStats{}, err
		}
		reqs[i], ids[i], pending[r.ID] = b, r.ID, i
	}
	sent := make([]time.Time, n)
	c.mu.Lock()
	c.pending, c.done, c.left, c.allDone, c.bad = pending, make([]time.Time, n), n, make(chan struct{}), nil
	allDone := c.allDone
	c.mu.Unlock()

	subj := bus.ActionSubject(benchTenant, string(actions.DisableUser))
	start := time.Now()
	for i := range n {
		sent[i] = time.Now()
		if _, err := c.js.PublishAsync(subj, reqs[i], jetstream.WithMsgID(ids[i])); err != nil {
			return roundStats{}, fmt.Errorf("bench: publish: %w", err)
		}
	}
	select {
	case <-c.js.PublishAsyncComplete():
	case <-ctx.Done():
		return roundStats{}, ctx.Err()
	}
	wait := time.NewTimer(time.Duration(n)*time.Millisecond + 60*time.Second)
	defer wait.Stop()
	select {
	case <-allDone:
	case <-wait.C:
		c.mu.Lock()
		left := c.left
		c.mu.Unlock()
		return roundStats{}, fmt.Errorf("bench: %d of %d requests got no outcome", left, n)
	case <-ctx.Done():
		return roundStats{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	last := start
	lat := make([]time.Duration, n)
	for i, d := range c.done {
		if d.After(last) {
			last = d
		}
		lat[i] = d.Sub(sent[i])
	}
	slices.Sort(lat)
	return roundStats{elapsed: last.Sub(start), p50: percentile(lat, 50), p99: percentile(lat, 99), outcomes: n - c.left, bad: len(c.bad)}, nil
}

// drained waits (bounded) until the ACTIONS work queue is empty and reports
// what is left.
func drained(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := js.Stream(ctx, bus.StreamActions)
		if err != nil {
			return 0, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0, err
		}
		if info.State.Msgs == 0 || time.Now().After(deadline) {
			return info.State.Msgs, nil
		}
		select {
		case <-ctx.Done():
			return info.State.Msgs, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

package defenderexec_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/defenderexec"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// newDefender builds the executor against sim as the engine does: a token for
// the Defender audience from the app's credential, over TLS.
func newDefender(t testing.TB, sim *m365sim.Tenant, cfg defenderexec.Config) (*defenderexec.Executor, *graphexec.Executor) {
	t.Helper()
	info := sim.Info()
	creds := m365.Credentials{TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
		LoginURL: info.LoginURL, GraphURL: info.GraphURL, HTTPClient: sim.HTTPClient(), GraphMaxRetries: -1}
	client, cred, err := m365.NewGraphClient(creds)
	if err != nil {
		t.Fatal(err)
	}
	gx := graphexec.NewWithConfig(client, graphexec.Config{Logger: slog.New(slog.DiscardHandler)})
	cfg.HTTP = m365.BearerClient(creds, cred, m365.DefenderScope)
	cfg.BaseURL = creds.DefenderAPIURL()
	cfg.ClientID = info.ClientID
	if cfg.Domains == nil {
		cfg.Domains = gx
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInitial == 0 {
		cfg.PollInitial = time.Millisecond
	}
	if cfg.CoalesceWindow == 0 {
		cfg.CoalesceWindow = 5 * time.Millisecond
	}
	return defenderexec.New(cfg), gx
}

func newSim(t testing.TB, opts m365sim.Options) *m365sim.Tenant {
	t.Helper()
	if opts.Seed == 0 {
		opts.Seed = m365sim.SeedSmall
	}
	sim, err := m365sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// harness is the worker over an embedded bus with the Defender executor
// against the emulator: the engine's action path.
type harness struct {
	t      *testing.T
	sim    *m365sim.Tenant
	exec   *defenderexec.Executor
	b      *bus.Bus
	kv     jetstream.KeyValue
	tenant string
	gate   *holdGate
}

type hopts struct {
	exec   func(*defenderexec.Config)
	worker func(*actions.WorkerConfig)
	gate   bool
}

func newHarness(t *testing.T, o hopts) *harness {
	t.Helper()
	sim := newSim(t, m365sim.Options{})
	cfg := defenderexec.Config{}
	if o.exec != nil {
		o.exec(&cfg)
	}
	dx, gx := newDefender(t, sim, cfg)
	log := slog.New(slog.DiscardHandler)
	b, err := bus.Open(context.Background(), bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, sim: sim, exec: dx, b: b, kv: kv, tenant: sim.Info().TenantID}
	wcfg := actions.WorkerConfig{
		Tenant: h.tenant, JS: b.JS, KV: kv, Handlers: defenderexec.Merge(gx.Handlers(), dx.Handlers()), Directory: gx, Trusted: gx, Domains: gx,
		Audit:     audit.NewWriter(b.JS, audit.WriterOptions{Logger: log}),
		RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, MaxAttempts: 4,
		Logger: log,
	}
	if o.gate {
		h.gate = &holdGate{}
		wcfg.Gate = h.gate
	}
	if o.worker != nil {
		o.worker(&wcfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w := actions.NewWorker(wcfg)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		b.Close()
	})
	return h
}

// holdGate admits every request and holds those the worker says need a
// human decision, recording why.
type holdGate struct {
	mu   sync.Mutex
	held []actions.HoldFacts
}

func (g *holdGate) Admit(context.Context, *actions.Request, actions.Delivery) (bool, string, error) {
	return false, "", nil
}

func (g *holdGate) Hold(_ context.Context, _ *actions.Request, _ actions.Delivery, f actions.HoldFacts) (bool, string, error) {
	if f.Approval == "" && f.OverLimit == "" && !f.Protected {
		return false, "", nil
	}
	g.mu.Lock()
	g.held = append(g.held, f)
	g.mu.Unlock()
	return true, f.Approval, nil
}

func (g *holdGate) Authorize(context.Context, audit.Actor, actions.Name) (string, error) {
	return "", nil
}

func request(action actions.Name, target actions.Target, params map[string]any) *actions.Request {
	return &actions.Request{Version: actions.Version, ID: uuid.NewString(), Action: action, Target: target, Params: params,
		RequestedBy: audit.Actor{Kind: "analyst", Name: "tester"}, Reason: "test reason", RequestedAt: time.Now().UTC()}
}

func byPlaybook(r *actions.Request) *actions.Request {
	r.RequestedBy = audit.Actor{Kind: "playbook", Name: "ransomware-on-device"}
	r.Reason = "playbook ransomware-on-device"
	return r
}

func anyResult(tenant, requestID string) string {
	return "responder." + bus.Token(tenant) + ".result.*." + bus.Token(requestID)
}

func (h *harness) do(req *actions.Request) (actions.Outcome, audit.Record) {
	h.t.Helper()
	wait := h.expect(req.ID)
	data, _ := json.Marshal(req)
	if _, err := h.b.JS.Publish(context.Background(), bus.ActionSubject(h.tenant, string(req.Action)), data, jetstream.WithMsgID(req.ID)); err != nil {
		h.t.Fatal(err)
	}
	return wait()
}

func (h *harness) expect(requestID string) func() (actions.Outcome, audit.Record) {
	h.t.Helper()
	sub, err := h.b.NC.SubscribeSync(anyResult(h.tenant, requestID))
	if err != nil {
		h.t.Fatal(err)
	}
	return func() (actions.Outcome, audit.Record) {
		h.t.Helper()
		defer sub.Unsubscribe()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			h.t.Fatalf("no outcome for request %s: %v", requestID, err)
		}
		var o actions.Outcome
		if err := json.Unmarshal(msg.Data, &o); err != nil {
			h.t.Fatal(err)
		}
		rec, err := audit.Get(ctx, h.b.JS, o.AuditID)
		if err != nil {
			h.t.Fatalf("audit record %s: %v", o.AuditID, err)
		}
		return o, rec
	}
}

func want(t *testing.T, o actions.Outcome, outcome audit.Outcome, detail string) {
	t.Helper()
	if o.Outcome != outcome || !strings.Contains(o.Detail, detail) {
		t.Fatalf("%s: %s %q (code %s), want %s mentioning %q", o.Action, o.Outcome, o.Detail, o.ErrorCode, outcome, detail)
	}
}

func wireCount(sim *m365sim.Tenant, method, pathContains string) int {
	n := 0
	for _, w := range sim.WireLog() {
		if w.Method == method && strings.Contains(w.Path, pathContains) && w.Status != 0 && w.Status != 429 {
			n++
		}
	}
	return n
}

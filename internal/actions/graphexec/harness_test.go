package graphexec_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

func newSim(t testing.TB) *m365sim.Tenant {
	t.Helper()
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

func newExecutor(t testing.TB, sim *m365sim.Tenant, cfg graphexec.Config) *graphexec.Executor {
	t.Helper()
	info := sim.Info()
	creds := m365.Credentials{
		TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
		LoginURL: info.LoginURL, GraphURL: info.GraphURL, ExchangeURL: info.ExchangeURL, HTTPClient: sim.HTTPClient(),
		GraphMaxRetries: -1, // the engine retries: each fault class reaches the worker
	}
	client, cred, err := m365.NewGraphClient(creds)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Exchange == nil && cfg.TenantID == "" {
		cfg.Exchange = m365.BearerClient(creds, cred, creds.ExchangeScope())
		cfg.ExchangeURL, cfg.TenantID = creds.ExchangeAdminURL(), info.TenantID
	}
	return graphexec.NewWithConfig(client, cfg)
}

// harness runs a worker over an embedded bus against the emulator.
type harness struct {
	t      *testing.T
	sim    *m365sim.Tenant
	exec   *graphexec.Executor
	b      *bus.Bus
	kv     jetstream.KeyValue
	tenant string
	now    func() time.Time
}

type hopts struct {
	worker func(*actions.WorkerConfig)
	exec   func(*graphexec.Config)
	// setup prepares the emulated tenant before the executor is built (for
	// settings naming objects the test creates, such as a group's id).
	setup func(*m365sim.Tenant, *graphexec.Config)
}

func newHarness(t *testing.T, o hopts) *harness {
	t.Helper()
	sim := newSim(t)
	ecfg := graphexec.Config{Protected: actions.Protected{Users: []string{"breakglass@contoso.com"}}}
	if o.setup != nil {
		o.setup(sim, &ecfg)
	}
	if o.exec != nil {
		o.exec(&ecfg)
	}
	ex := newExecutor(t, sim, ecfg)
	log := slog.New(slog.DiscardHandler)
	b, err := bus.Open(context.Background(), bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, sim: sim, exec: ex, b: b, kv: kv, tenant: sim.Info().TenantID, now: time.Now}
	wcfg := actions.WorkerConfig{
		Tenant: h.tenant, JS: b.JS, KV: kv, Handlers: ex.Handlers(), Directory: ex, Trusted: ex, Domains: ex,
		Audit:     audit.NewWriter(b.JS, audit.WriterOptions{Logger: log}),
		Protected: ecfg.Protected,
		RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, MaxAttempts: 4,
		Logger: log,
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

func request(action actions.Name, target actions.Target, params map[string]any) *actions.Request {
	r := &actions.Request{Version: actions.Version, ID: uuid.NewString(), Action: action, Target: target, Params: params,
		RequestedBy: audit.Actor{Kind: "analyst", Name: "tester"}, Reason: "test", RequestedAt: time.Now().UTC()}
	if action == actions.ResetPassword {
		// An analyst's reset names a key to seal the password to.
		ck, _ := nkeys.CreateCurveKeys()
		r.SealTo, _ = ck.PublicKey()
	}
	return r
}

// anyResult matches the outcome of one request whoever asked (the harness
// has the engine's access).
func anyResult(tenant, requestID string) string {
	return "responder." + bus.Token(tenant) + ".result.*." + bus.Token(requestID)
}

// do publishes req and waits for its outcome and final audit record.
func (h *harness) do(req *actions.Request) (actions.Outcome, audit.Record) {
	h.t.Helper()
	return h.doRaw(req, req.ID)
}

// doRaw publishes req with a given message id (a different one simulates a
// redelivery of the same request).
func (h *harness) doRaw(req *actions.Request, msgID string) (actions.Outcome, audit.Record) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := h.b.NC.SubscribeSync(anyResult(h.tenant, req.ID))
	if err != nil {
		h.t.Fatal(err)
	}
	defer sub.Unsubscribe()
	data, _ := json.Marshal(req)
	if _, err := h.b.JS.Publish(ctx, bus.ActionSubject(h.tenant, string(req.Action)), data, jetstream.WithMsgID(msgID)); err != nil {
		h.t.Fatal(err)
	}
	msg, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		h.t.Fatalf("no outcome for %s %s: %v", req.Action, req.ID, err)
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

// expect subscribes to the outcome of a request someone else will publish (an
// undo's inverse, an expiry's unblock); the returned func waits for it.
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

func (h *harness) records() []audit.Record {
	h.t.Helper()
	var out []audit.Record
	if err := audit.List(context.Background(), h.b.JS, audit.Filter{}, func(r audit.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func wireCount(sim *m365sim.Tenant, method, pathContains string) int {
	n := 0
	for _, w := range sim.WireLog() {
		if w.Method == method && strings.Contains(strings.ToLower(w.Path), strings.ToLower(pathContains)) && w.Status != 0 {
			n++
		}
	}
	return n
}

func want(t *testing.T, o actions.Outcome, outcome audit.Outcome, detail string) {
	t.Helper()
	if o.Outcome != outcome || !strings.Contains(o.Detail, detail) {
		t.Fatalf("%s: %s %q (code %s), want %s mentioning %q", o.Action, o.Outcome, o.Detail, o.ErrorCode, outcome, detail)
	}
}

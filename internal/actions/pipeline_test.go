package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// These tests run every stage of the worker and every verdict without NATS
// or the emulator: the worker's narrow roles (Delivery, StateStore, Recorder,
// Gate, PublishFunc, NotifyFunc) are given in-memory implementations here.
// The end-to-end tests (graphexec, engine, reliability) run the same worker
// on a real embedded NATS server against the emulated tenant.

// memDelivery is a Delivery that remembers how it was settled.
type memDelivery struct {
	data     []byte
	header   nats.Header
	seq      uint64
	attempts int
	settled  []string
	delay    time.Duration
}

func (d *memDelivery) Data() []byte        { return d.data }
func (d *memDelivery) Header() nats.Header { return d.header }
func (d *memDelivery) Subject() string     { return "responder.t.action.x" }
func (d *memDelivery) Sequence() uint64    { return d.seq }
func (d *memDelivery) Attempts() int       { return d.attempts }
func (d *memDelivery) Received() time.Time { return time.Time{} }
func (d *memDelivery) Ack() error          { d.settled = append(d.settled, "ack"); return nil }
func (d *memDelivery) Term() error         { d.settled = append(d.settled, "term"); return nil }
func (d *memDelivery) InProgress() error   { return nil }
func (d *memDelivery) NakWithDelay(t time.Duration) error {
	d.settled = append(d.settled, "nak")
	d.delay = t
	return nil
}

// memKV is a StateStore in memory, with revisions, and a switch that makes
// every call fail (an unavailable bucket).
type memKV struct {
	mu   sync.Mutex
	m    map[string][]byte
	rev  map[string]uint64
	n    uint64
	down bool
}

type memEntry struct {
	key string
	val []byte
	rev uint64
}

func (e memEntry) Bucket() string                  { return "mem" }
func (e memEntry) Key() string                     { return e.key }
func (e memEntry) Value() []byte                   { return e.val }
func (e memEntry) Revision() uint64                { return e.rev }
func (e memEntry) Created() time.Time              { return time.Time{} }
func (e memEntry) Delta() uint64                   { return 0 }
func (e memEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

var errDown = errors.New("bucket unavailable")

func newMemKV() *memKV { return &memKV{m: map[string][]byte{}, rev: map[string]uint64{}} }

func (k *memKV) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		return nil, errDown
	}
	v, ok := k.m[key]
	if !ok {
		return nil, jetstream.ErrKeyNotFound
	}
	return memEntry{key, v, k.rev[key]}, nil
}

func (k *memKV) put(key string, v []byte) uint64 {
	k.n++
	k.m[key], k.rev[key] = v, k.n
	return k.n
}

func (k *memKV) Create(_ context.Context, key string, v []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		return 0, errDown
	}
	if _, ok := k.m[key]; ok {
		return 0, jetstream.ErrKeyExists
	}
	return k.put(key, v), nil
}

func (k *memKV) Put(_ context.Context, key string, v []byte) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		return 0, errDown
	}
	return k.put(key, v), nil
}

func (k *memKV) Update(_ context.Context, key string, v []byte, rev uint64) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		return 0, errDown
	}
	if k.rev[key] != rev {
		return 0, jetstream.ErrKeyExists
	}
	return k.put(key, v), nil
}

func (k *memKV) state(t *testing.T, id string) *state {
	t.Helper()
	b, ok := k.m[bus.RequestStateKey(id)]
	if !ok {
		return nil
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// memAudit records appended records; fail makes the next appends fail.
type memAudit struct {
	recs []audit.Record
	fail bool
}

func (a *memAudit) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	if a.fail {
		return audit.Record{}, errors.New("audit stream unavailable")
	}
	a.recs = append(a.recs, r)
	return r, nil
}

func (a *memAudit) outcomes() []audit.Outcome {
	var out []audit.Outcome
	for _, r := range a.recs {
		out = append(out, r.Outcome)
	}
	return out
}

func (a *memAudit) last() audit.Record {
	if len(a.recs) == 0 {
		return audit.Record{}
	}
	return a.recs[len(a.recs)-1]
}

// memGate is a Gate with fixed answers.
type memGate struct {
	released bool
	reject   string
	admitErr error
	hold     bool
	holdErr  error
	deny     map[Name]string // Authorize's answers
	holds    int
}

func (g *memGate) Admit(context.Context, *Request, Delivery) (bool, string, error) {
	return g.released, g.reject, g.admitErr
}

func (g *memGate) Hold(context.Context, *Request, Delivery, HoldFacts) (bool, string, error) {
	g.holds++
	return g.hold, "step requires approval", g.holdErr
}

func (g *memGate) Authorize(_ context.Context, _ audit.Actor, a Name) (string, error) {
	return g.deny[a], nil
}

// rig is one worker over in-memory roles.
type rig struct {
	w         *Worker
	kv        *memKV
	audit     *memAudit
	published []*Request
	notices   []Outcome
	calls     map[Name]int
	execErr   error
	probeDone bool
	protected []Identity
}

type rigOpt func(*WorkerConfig, *rig)

func newRig(t *testing.T, opts ...rigOpt) *rig {
	t.Helper()
	r := &rig{kv: newMemKV(), audit: &memAudit{}, calls: map[Name]int{}}
	h := Uniform(func(_ context.Context, req *Request, _ Params) (Result, error) {
		r.calls[req.Action]++
		if r.execErr != nil {
			return Result{}, r.execErr
		}
		res := Result{Detail: "did " + string(req.Action)}
		if req.Action == DisableUser {
			res.Undo = &Step{Action: EnableUser, Target: req.Target}
		}
		if req.Action == ResetPassword {
			res.Secret = "S3cret-pw"
		}
		return res, nil
	})
	rs := h[RevokeSessions]
	rs.Probe = func(context.Context, *Request, Params, time.Time) (bool, error) { return r.probeDone, nil }
	h[RevokeSessions] = rs
	pm := h[PurgeMail]
	pm.Plan = func(_ context.Context, req *Request, _ Params) (Result, error) {
		return Result{Detail: "delete 3 messages"}, nil
	}
	pm.Warn = func(*Request, Params) string { return "cannot be undone" }
	h[PurgeMail] = pm
	cfg := WorkerConfig{
		Tenant: "t", KV: r.kv, Handlers: h, Audit: r.audit,
		Blast:   BlastLimits{Window: time.Hour},
		Publish: func(_ context.Context, q *Request) error { r.published = append(r.published, q); return nil },
		Notify:  func(_ audit.Actor, o Outcome) { r.notices = append(r.notices, o) },
		Logger:  slog.New(slog.DiscardHandler),
		Now:     func() time.Time { return time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC) },
	}
	for _, o := range opts {
		o(&cfg, r)
	}
	r.w = NewWorker(cfg)
	return r
}

func withGate(g Gate) rigOpt { return func(c *WorkerConfig, _ *rig) { c.Gate = g } }

func request(action Name, target Target, mut ...func(*Request)) *Request {
	req := &Request{
		Version: Version, ID: uuid.NewString(), Action: action, Target: target,
		RequestedBy: audit.Actor{Kind: "analyst", Name: "alice", KeyID: "UKEY"},
		Reason:      "test", RequestedAt: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC),
	}
	for _, m := range mut {
		m(req)
	}
	return req
}

func delivery(t *testing.T, req *Request) *memDelivery {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return &memDelivery{data: b, header: nats.Header{}, seq: 7, attempts: 1}
}

func (r *rig) handle(d *memDelivery) { r.w.Handle(context.Background(), d) }

func settledAs(t *testing.T, d *memDelivery, want string) {
	t.Helper()
	if len(d.settled) != 1 || d.settled[0] != want {
		t.Fatalf("settled %v, want exactly [%s]", d.settled, want)
	}
}

func TestStageDecodeRejectsAndDeadLetters(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"not json", `{"version":1,`, "malformed request"},
		{"unknown field", `{"version":1,"bogus":true}`, "unknown field"},
		{"unknown action", fmt.Sprintf(`{"version":1,"id":%q,"action":"format_disk","requested_by":{"kind":"analyst","name":"a"},"reason":"x"}`, uuid.NewString()), "unknown action"},
		{"bad target", fmt.Sprintf(`{"version":1,"id":%q,"action":"disable_user","target":{"user":"not a user"},"requested_by":{"kind":"analyst","name":"a"},"reason":"x"}`, uuid.NewString()), "is not a UPN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			d := &memDelivery{data: []byte(c.body), attempts: 1, seq: 3}
			r.handle(d)
			settledAs(t, d, "term")
			if got := r.audit.outcomes(); len(got) != 1 || got[0] != audit.Rejected {
				t.Fatalf("records %v, want one rejected", got)
			}
			rec := r.audit.last()
			if !strings.Contains(rec.Detail, c.want) {
				t.Errorf("detail %q does not say %q", rec.Detail, c.want)
			}
			var dl map[string]string
			if err := json.Unmarshal(rec.Before, &dl); err != nil || dl["data"] != c.body {
				t.Errorf("dead letter %s does not keep the message", rec.Before)
			}
			if len(r.calls) != 0 {
				t.Errorf("a rejected message acted: %v", r.calls)
			}
		})
	}
}

func TestDeadLetterIsBounded(t *testing.T) {
	r := newRig(t)
	d := &memDelivery{data: []byte(strings.Repeat("x", 100_000)), attempts: 1}
	r.handle(d)
	settledAs(t, d, "term")
	if n := len(r.audit.last().Before); n > MaxDeadLetter+200 {
		t.Errorf("dead letter keeps %d bytes", n)
	}
}

func TestStageAdmit(t *testing.T) {
	t.Run("rejected sender is dead-lettered, identity marked unverified", func(t *testing.T) {
		r := newRig(t, withGate(&memGate{reject: "bad_signature: nope"}))
		d := delivery(t, request(DisableUser, Target{User: "bob@contoso.com"}))
		r.handle(d)
		settledAs(t, d, "term")
		rec := r.audit.last()
		if rec.Outcome != audit.Rejected || !strings.Contains(rec.Detail, "bad_signature") || !strings.Contains(rec.Detail, "could not be verified") {
			t.Fatalf("record %+v", rec)
		}
		if r.calls[DisableUser] != 0 || r.kv.state(t, "x") != nil {
			t.Error("a rejected request acted or claimed")
		}
		if len(r.notices) != 1 || r.notices[0].Outcome != audit.Rejected {
			t.Errorf("notices %v", r.notices)
		}
	})
	t.Run("authentication unavailable retries", func(t *testing.T) {
		r := newRig(t, withGate(&memGate{admitErr: errors.New("kv down")}))
		d := delivery(t, request(DisableUser, Target{User: "bob@contoso.com"}))
		r.handle(d)
		settledAs(t, d, "nak")
		if d.delay != time.Second || len(r.audit.recs) != 0 {
			t.Errorf("delay %s, records %v", d.delay, r.audit.outcomes())
		}
	})
}

func TestStageClaimActsOnceAndCompletesFinished(t *testing.T) {
	r := newRig(t)
	req := request(DisableUser, Target{User: "bob@contoso.com"})
	d := delivery(t, req)
	r.handle(d)
	settledAs(t, d, "ack")
	if got := r.audit.outcomes(); fmt.Sprint(got) != "[accepted succeeded]" {
		t.Fatalf("records %v", got)
	}
	st := r.kv.state(t, req.ID)
	if st == nil || !st.Done || st.Undo == nil || st.Undo.Action != EnableUser {
		t.Fatalf("state %+v", st)
	}
	// A redelivery completes from the stored result: no second call.
	d2 := delivery(t, req)
	d2.attempts = 2
	r.handle(d2)
	settledAs(t, d2, "ack")
	if r.calls[DisableUser] != 1 {
		t.Errorf("acted %d times", r.calls[DisableUser])
	}
	if len(r.notices) != 2 || r.notices[1].Outcome != audit.Succeeded {
		t.Errorf("notices %v", r.notices)
	}
}

func TestStageClaimRetriesWhenStateUnavailable(t *testing.T) {
	r := newRig(t)
	r.kv.down = true
	d := delivery(t, request(DisableUser, Target{User: "bob@contoso.com"}))
	r.handle(d)
	settledAs(t, d, "nak")
	if len(r.audit.recs) != 0 || len(r.calls) != 0 {
		t.Error("acted or recorded without idempotency state")
	}
}

func TestStageClaimRecordsWarning(t *testing.T) {
	r := newRig(t)
	d := delivery(t, request(PurgeMail, Target{MessageID: "<a@b>"}, func(q *Request) { q.Params = map[string]any{"all_mailboxes": true} }))
	r.handle(d)
	if !strings.Contains(r.audit.recs[0].Detail, "WARNING: cannot be undone") {
		t.Errorf("accepted record %q has no warning", r.audit.recs[0].Detail)
	}
}

func TestStageGuard(t *testing.T) {
	protect := func(c *WorkerConfig, _ *rig) {
		c.Protected = Protected{Users: []string{"ceo@contoso.com"}, Roles: []string{}}
	}
	cases := []struct {
		name    string
		req     *Request
		want    audit.Outcome
		acts    bool
		contain string
	}{
		{"playbook on protected", request(DisableUser, Target{User: "CEO@contoso.com"}, func(q *Request) {
			q.RequestedBy = audit.Actor{Kind: "playbook", Name: "p"}
		}), audit.Refused, false, "protected identity"},
		{"analyst without override", request(DisableUser, Target{User: "ceo@contoso.com"}), audit.Refused, false, "may override"},
		{"analyst with override", request(DisableUser, Target{User: "ceo@contoso.com"}, func(q *Request) { q.OverrideProtected = true }), audit.Succeeded, true, "analyst override"},
		{"unprotected", request(DisableUser, Target{User: "bob@contoso.com"}), audit.Succeeded, true, "did disable_user"},
		{"ip too broad", request(BlockIP, Target{IP: "203.0.0.0/8"}), audit.Refused, false, "broader"},
		{"private ip", request(BlockIP, Target{IP: "10.1.2.3"}), audit.Refused, false, "private or reserved"},
		{"ip fine", request(BlockIP, Target{IP: "203.0.113.9"}), audit.Succeeded, true, "did block_ip"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, protect)
			d := delivery(t, c.req)
			r.handle(d)
			settledAs(t, d, "ack")
			rec := r.audit.last()
			if rec.Outcome != c.want || !strings.Contains(rec.Detail, c.contain) {
				t.Fatalf("record %s %q, want %s containing %q", rec.Outcome, rec.Detail, c.want, c.contain)
			}
			if acted := r.calls[c.req.Action] > 0; acted != c.acts {
				t.Errorf("acted %t, want %t", acted, c.acts)
			}
		})
	}
}

type failingDirectory struct{}

func (failingDirectory) ProtectedIdentities(context.Context, Protected) ([]Identity, error) {
	return nil, &Error{Class: Transient, Status: 503, Code: "ServiceUnavailable"}
}

func TestStageGuardFailsClosed(t *testing.T) {
	r := newRig(t, func(c *WorkerConfig, _ *rig) { c.Directory = failingDirectory{}; c.MaxAttempts = 2 })
	req := request(DisableUser, Target{User: "bob@contoso.com"})
	d := delivery(t, req)
	r.handle(d)
	settledAs(t, d, "nak") // attempts remain
	d2 := delivery(t, req)
	d2.attempts = 2
	r.handle(d2)
	settledAs(t, d2, "ack")
	if rec := r.audit.last(); rec.Outcome != audit.Failed || rec.ErrorCode != "ServiceUnavailable" {
		t.Fatalf("record %+v", rec)
	}
	if r.calls[DisableUser] != 0 {
		t.Error("acted without knowing who is protected")
	}
}

func TestStageDryRun(t *testing.T) {
	r := newRig(t)
	d := delivery(t, request(PurgeMail, Target{MessageID: "<a@b>"}, func(q *Request) {
		q.DryRun = true
		q.Params = map[string]any{"all_mailboxes": true}
	}))
	r.handle(d)
	settledAs(t, d, "ack")
	rec := r.audit.last()
	if rec.Outcome != audit.DryRun || !rec.DryRun || !strings.Contains(rec.Detail, "would delete 3 messages") {
		t.Fatalf("record %+v", rec)
	}
	if r.calls[PurgeMail] != 0 {
		t.Error("a dry run acted")
	}
	// Engine-wide dry run, without a plan: the catalogue's description.
	r = newRig(t, func(c *WorkerConfig, _ *rig) { c.DryRun = true })
	d = delivery(t, request(DisableUser, Target{User: "bob@contoso.com"}))
	r.handle(d)
	if rec := r.audit.last(); rec.Outcome != audit.DryRun || !strings.Contains(rec.Detail, "dry run (engine): would block sign-in") || r.calls[DisableUser] != 0 {
		t.Fatalf("record %+v calls %v", rec, r.calls)
	}
}

func TestStageLimit(t *testing.T) {
	limits := func(c *WorkerConfig, _ *rig) {
		c.Blast = BlastLimits{PerAction: map[Name]int{DisableUser: 1}, Window: time.Hour}
	}
	t.Run("refused past the limit without a gate", func(t *testing.T) {
		r := newRig(t, limits)
		r.handle(delivery(t, request(DisableUser, Target{User: "a@contoso.com"})))
		d := delivery(t, request(DisableUser, Target{User: "b@contoso.com"}))
		r.handle(d)
		settledAs(t, d, "ack")
		if rec := r.audit.last(); rec.Outcome != audit.Refused || !strings.Contains(rec.Detail, "blast radius") {
			t.Fatalf("record %+v", rec)
		}
		if r.calls[DisableUser] != 1 {
			t.Errorf("acted %d times", r.calls[DisableUser])
		}
	})
	t.Run("a redelivery is not counted twice", func(t *testing.T) {
		r := newRig(t, limits)
		req := request(DisableUser, Target{User: "a@contoso.com"})
		r.execErr = &Error{Class: Transient, Status: 503}
		r.handle(delivery(t, req))
		r.execErr = nil
		d := delivery(t, req)
		d.attempts = 2
		r.handle(d)
		if rec := r.audit.last(); rec.Outcome != audit.Succeeded {
			t.Fatalf("record %+v", rec)
		}
	})
	t.Run("counter unavailable retries", func(t *testing.T) {
		r := newRig(t, limits)
		req := request(DisableUser, Target{User: "a@contoso.com"})
		// Claim works, then the bucket fails at the counter.
		d := delivery(t, req)
		r.w.pipeline = append([]stage{}, r.w.pipeline...)
		for i, s := range r.w.pipeline {
			if s.name == "limit" {
				inner := s.run
				r.w.pipeline[i].run = func(ctx context.Context, j *job) verdict {
					r.kv.down = true
					defer func() { r.kv.down = false }()
					return inner(ctx, j)
				}
			}
		}
		r.handle(d)
		settledAs(t, d, "nak")
		if r.calls[DisableUser] != 0 {
			t.Error("acted without its count")
		}
	})
}

func TestStageHold(t *testing.T) {
	g := &memGate{hold: true}
	r := newRig(t, withGate(g))
	req := request(DisableUser, Target{User: "a@contoso.com"})
	d := delivery(t, req)
	r.handle(d)
	settledAs(t, d, "ack")
	if got := fmt.Sprint(r.audit.outcomes()); got != "[accepted pending_approval]" {
		t.Fatalf("records %s", got)
	}
	if st := r.kv.state(t, req.ID); st == nil || st.Done {
		t.Fatalf("a held request must stay claimed, not done: %+v", st)
	}
	// Released: no second hold, no second accepted record, it acts.
	g.released, g.hold = true, false
	d2 := delivery(t, req)
	r.handle(d2)
	settledAs(t, d2, "ack")
	if got := fmt.Sprint(r.audit.outcomes()); got != "[accepted pending_approval succeeded]" || g.holds != 1 {
		t.Fatalf("records %s, holds %d", got, g.holds)
	}
	// Approval store unavailable: retry.
	r = newRig(t, withGate(&memGate{holdErr: errors.New("down")}))
	d3 := delivery(t, request(DisableUser, Target{User: "a@contoso.com"}))
	r.handle(d3)
	settledAs(t, d3, "nak")
}

func TestStageProbe(t *testing.T) {
	r := newRig(t)
	req := request(RevokeSessions, Target{User: "a@contoso.com"})
	// An interrupted attempt: claimed and marked executing, never finished.
	mark, _ := json.Marshal(state{Claimed: time.Now(), Executing: time.Now()})
	r.kv.m[bus.RequestStateKey(req.ID)] = mark
	r.probeDone = true
	d := delivery(t, req)
	d.attempts = 2
	r.handle(d)
	settledAs(t, d, "ack")
	if rec := r.audit.last(); rec.Outcome != audit.Succeeded || !strings.Contains(rec.Detail, "not repeated") {
		t.Fatalf("record %+v", rec)
	}
	if r.calls[RevokeSessions] != 0 {
		t.Error("revoked again although the effect was in place")
	}
	// Not in place: marked executing, then sent.
	r = newRig(t)
	req = request(RevokeSessions, Target{User: "a@contoso.com"})
	r.handle(delivery(t, req))
	if r.calls[RevokeSessions] != 1 {
		t.Errorf("revoke sent %d times", r.calls[RevokeSessions])
	}
}

func TestStageExecuteVerdicts(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		attempts int
		settled  string
		outcome  audit.Outcome
		code     string
	}{
		{"throttled retries", &Error{Class: Throttled, Status: 429, RetryAfter: 3 * time.Second}, 1, "nak", "", ""},
		{"transient retries", &Error{Class: Transient, Status: 503}, 1, "nak", "", ""},
		{"permanent fails at once", &Error{Class: Permanent, Status: 403, Code: "Authorization_RequestDenied", RequestID: "rid"}, 1, "ack", audit.Failed, "Authorization_RequestDenied"},
		{"transient out of attempts fails", &Error{Class: Transient, Status: 503, Code: "ServiceUnavailable"}, 5, "ack", audit.Failed, "ServiceUnavailable"},
		{"transport error has a code", &Error{Class: Transient}, 5, "ack", audit.Failed, "transport_error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			r.execErr = c.err
			d := delivery(t, request(DisableUser, Target{User: "a@contoso.com"}))
			d.attempts = c.attempts
			r.handle(d)
			settledAs(t, d, c.settled)
			if c.settled == "nak" {
				if d.delay <= 0 {
					t.Error("retry without a delay")
				}
				var e *Error
				if errors.As(c.err, &e) && e.RetryAfter > 0 && d.delay < e.RetryAfter {
					t.Errorf("delay %s shorter than Retry-After %s", d.delay, e.RetryAfter)
				}
				return
			}
			rec := r.audit.last()
			if rec.Outcome != c.outcome || rec.ErrorCode != c.code || rec.Attempts != c.attempts {
				t.Fatalf("record %+v", rec)
			}
		})
	}
}

func TestStageExecuteSecretOnlyToAnalyst(t *testing.T) {
	r := newRig(t)
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	d := delivery(t, request(ResetPassword, Target{User: "a@contoso.com"}, func(q *Request) { q.SealTo = pub }))
	r.handle(d)
	if len(r.notices) != 1 {
		t.Fatalf("notices %+v", r.notices)
	}
	if pw, err := OpenSecret(r.notices[0], kp); err != nil || pw != "S3cret-pw" {
		t.Fatalf("the requester cannot open the password: %q %v", pw, err)
	}
	if strings.Contains(string(r.notices[0].Sealed), "S3cret-pw") {
		t.Fatal("the password is in the clear on the result subject")
	}
	other, _ := nkeys.CreateCurveKeys()
	if _, err := OpenSecret(r.notices[0], other); err == nil {
		t.Fatal("another key opens the sealed password")
	}
	for _, rec := range r.audit.recs {
		if strings.Contains(fmt.Sprintf("%+v", rec), "S3cret-pw") {
			t.Fatal("the password reached the audit trail")
		}
	}
	for k, v := range r.kv.m {
		if strings.Contains(string(v), "S3cret-pw") {
			t.Fatalf("the password reached KV key %s", k)
		}
	}
	r = newRig(t)
	r.handle(delivery(t, request(ResetPassword, Target{User: "a@contoso.com"}, func(q *Request) {
		q.RequestedBy = audit.Actor{Kind: "playbook", Name: "leaked"}
	})))
	if len(r.notices) != 1 || r.notices[0].Sealed != nil || !strings.Contains(r.audit.last().Detail, "discarded unseen") {
		t.Fatalf("playbook reset: notices %+v record %q", r.notices, r.audit.last().Detail)
	}
	// Released after approval: discarded too (the requester's one-time key is
	// gone with the act that waited).
	r = newRig(t, withGate(&memGate{released: true}))
	r.handle(delivery(t, request(ResetPassword, Target{User: "a@contoso.com"}, func(q *Request) { q.SealTo = pub })))
	if len(r.notices) != 1 || r.notices[0].Sealed != nil || !strings.Contains(r.audit.last().Detail, "waited for approval") {
		t.Fatalf("approved reset: notices %+v record %q", r.notices, r.audit.last().Detail)
	}
	// An analyst's reset without a key to seal to is rejected before acting.
	r = newRig(t)
	d = delivery(t, request(ResetPassword, Target{User: "a@contoso.com"}))
	r.handle(d)
	settledAs(t, d, "term")
	if r.calls[ResetPassword] != 0 || !strings.Contains(r.audit.last().Detail, "needs seal_to") {
		t.Fatalf("record %q calls %v", r.audit.last().Detail, r.calls)
	}
}

func TestSettleNaksWhenTheFinalRecordCannotBeStored(t *testing.T) {
	r := newRig(t)
	// A request whose final record cannot be appended: nak, and the
	// redelivery finishes without acting again.
	req2 := request(DisableUser, Target{User: "b@contoso.com"})
	d := delivery(t, req2)
	calls := 0
	r.w.handlers[DisableUser] = Handler{Execute: func(context.Context, *Request, Params) (Result, error) {
		calls++
		r.audit.fail = true // the next append (the final record) fails
		return Result{Detail: "disabled"}, nil
	}}
	r.handle(d)
	settledAs(t, d, "nak")
	r.audit.fail = false
	d2 := delivery(t, req2)
	d2.attempts = 2
	r.handle(d2)
	settledAs(t, d2, "ack")
	if calls != 1 {
		t.Fatalf("acted %d times", calls)
	}
	if rec := r.audit.last(); rec.Outcome != audit.Succeeded || rec.RequestID != req2.ID {
		t.Fatalf("record %+v", rec)
	}
}

func TestSettleNextStepAfterSuccessNotAfterRefusal(t *testing.T) {
	r := newRig(t, func(c *WorkerConfig, _ *rig) {
		c.Protected = Protected{Users: []string{"ceo@contoso.com"}, Roles: []string{}}
	})
	next := []Step{{Action: RevokeSessions, Target: Target{User: "a@contoso.com"}}}
	r.handle(delivery(t, request(DisableUser, Target{User: "a@contoso.com"}, func(q *Request) { q.Next = next })))
	if len(r.published) != 1 || r.published[0].Action != RevokeSessions || r.published[0].ID != bus.NextStepID(r.audit.last().RequestID) {
		t.Fatalf("published %+v", r.published)
	}
	r.published = nil
	r.handle(delivery(t, request(DisableUser, Target{User: "ceo@contoso.com"}, func(q *Request) { q.Next = next })))
	if len(r.published) != 0 {
		t.Fatalf("a refused step continued: %+v", r.published)
	}
}

func TestUndoStage(t *testing.T) {
	g := &memGate{deny: map[Name]string{}}
	r := newRig(t, withGate(g))
	orig := request(DisableUser, Target{User: "a@contoso.com"})
	r.handle(delivery(t, orig))
	undo := request(Undo, Target{RequestID: orig.ID})
	d := delivery(t, undo)
	r.handle(d)
	settledAs(t, d, "ack")
	if len(r.published) != 1 || r.published[0].Action != EnableUser || r.published[0].Params["undo_of"] != orig.ID {
		t.Fatalf("published %+v", r.published)
	}
	// An analyst who may not run the inverse cannot undo into it.
	g.deny[EnableUser] = "bob may not request enable_user"
	r.published = nil
	d = delivery(t, request(Undo, Target{RequestID: orig.ID}))
	r.handle(d)
	if rec := r.audit.last(); rec.Outcome != audit.Refused || !strings.Contains(rec.Detail, "may not request enable_user") || len(r.published) != 0 {
		t.Fatalf("record %+v published %v", rec, r.published)
	}
	// Irreversible and unknown requests are refused with the reason.
	rev := request(RevokeSessions, Target{User: "a@contoso.com"})
	r.handle(delivery(t, rev))
	r.handle(delivery(t, request(Undo, Target{RequestID: rev.ID})))
	if rec := r.audit.last(); rec.Outcome != audit.Refused || !strings.Contains(rec.Detail, "irreversible") {
		t.Fatalf("record %+v", rec)
	}
	r.handle(delivery(t, request(Undo, Target{RequestID: uuid.NewString()})))
	if rec := r.audit.last(); rec.Outcome != audit.Refused || !strings.Contains(rec.Detail, "unknown") {
		t.Fatalf("record %+v", rec)
	}
}

// An analyst cannot push rule JSON or a forwarding address of their own
// through the restore actions: they run only as the stored inverse.
func TestInverseOnlyActionsNeedTheirSnapshot(t *testing.T) {
	r := newRig(t)
	own := map[string]any{"rules": []any{map[string]any{"displayName": "evil", "actions": map[string]any{"forwardTo": []any{"x@evil.example"}}}}}
	cases := []struct {
		name   string
		params map[string]any
		want   string
	}{
		{"no undo_of", own, "params.undo_of is missing"},
		{"unknown snapshot", withUndo(own, uuid.NewString()), "has no stored snapshot"},
	}
	// A real snapshot: a delete whose stored inverse restores one rule.
	snap := request(DeleteForwardRules, Target{User: "a@contoso.com"})
	good := map[string]any{"rules": []any{map[string]any{"displayName": "fwd", "actions": map[string]any{"forwardTo": []any{"y@partner.example"}}}}}
	st, _ := json.Marshal(state{Done: true, Final: &audit.Record{Action: string(DeleteForwardRules), Outcome: audit.Succeeded},
		Undo: &Step{Action: RestoreForwardRules, Target: snap.Target, Params: good}})
	r.kv.m[bus.RequestStateKey(snap.ID)] = st
	cases = append(cases, struct {
		name   string
		params map[string]any
		want   string
	}{"another payload", withUndo(own, snap.ID), "differs from the snapshot"})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := delivery(t, request(RestoreForwardRules, Target{User: "a@contoso.com"}, func(q *Request) { q.Params = c.params }))
			r.handle(d)
			settledAs(t, d, "term")
			if rec := r.audit.last(); rec.Outcome != audit.Rejected || !strings.Contains(rec.Detail, c.want) {
				t.Fatalf("record %s %q", rec.Outcome, rec.Detail)
			}
			if r.calls[RestoreForwardRules] != 0 {
				t.Fatal("restored an analyst's own payload")
			}
		})
	}
	d := delivery(t, request(RestoreForwardRules, Target{User: "a@contoso.com"}, func(q *Request) { q.Params = withUndo(good, snap.ID) }))
	r.handle(d)
	settledAs(t, d, "ack")
	if r.calls[RestoreForwardRules] != 1 {
		t.Fatal("the stored inverse did not run")
	}
}

func withUndo(p map[string]any, id string) map[string]any {
	out := map[string]any{"undo_of": id}
	for k, v := range p {
		out[k] = v
	}
	return out
}

func TestHandlersMissing(t *testing.T) {
	h := Uniform(func(context.Context, *Request, Params) (Result, error) { return Result{}, nil })
	if m := h.Missing(); len(m) != 0 {
		t.Fatalf("uniform handlers miss %v", m)
	}
	rs := h[RevokeSessions]
	rs.Probe = nil
	h[RevokeSessions] = rs
	delete(h, BlockIP)
	if got := fmt.Sprint(h.Missing()); got != "[block_ip revoke_sessions]" {
		t.Fatalf("missing %s", got)
	}
}

type trusted []netip.Prefix

func (t trusted) TrustedRanges(context.Context) ([]netip.Prefix, error) { return t, nil }

// A spray from the company's own egress must not lock the company out.
func TestStageGuardNeverBlocksTrustedOrListedRanges(t *testing.T) {
	r := newRig(t, func(c *WorkerConfig, _ *rig) {
		c.IP.NeverBlock = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
		c.Trusted = trusted{netip.MustParsePrefix("203.0.113.0/25")}
	})
	for ip, want := range map[string]string{
		"198.51.100.7":     "never-block list",
		"203.0.113.0/24":   "trusted named location",
		"203.0.113.10":     "trusted named location",
		"203.0.113.200/32": "",
	} {
		r.calls = map[Name]int{}
		r.handle(delivery(t, request(BlockIP, Target{IP: ip})))
		rec := r.audit.last()
		if want == "" {
			if rec.Outcome != audit.Succeeded || r.calls[BlockIP] != 1 {
				t.Errorf("%s: %s %q", ip, rec.Outcome, rec.Detail)
			}
			continue
		}
		if rec.Outcome != audit.Refused || !strings.Contains(rec.Detail, want) || r.calls[BlockIP] != 0 {
			t.Errorf("%s: %s %q, calls %d; want refused naming %q", ip, rec.Outcome, rec.Detail, r.calls[BlockIP], want)
		}
	}
}

// A request signed for one tenant is refused by another tenant's engine.
func TestStageAdmitRefusesAnotherTenantsRequest(t *testing.T) {
	r := newRig(t)
	d := delivery(t, request(DisableUser, Target{User: "a@contoso.com"}, func(q *Request) { q.Tenant = "other-tenant" }))
	r.handle(d)
	settledAs(t, d, "term")
	if rec := r.audit.last(); rec.Outcome != audit.Rejected || !strings.Contains(rec.Detail, "signed for tenant") || r.calls[DisableUser] != 0 {
		t.Fatalf("record %+v calls %v", rec, r.calls)
	}
	d = delivery(t, request(DisableUser, Target{User: "a@contoso.com"}, func(q *Request) { q.Tenant = "t" }))
	r.handle(d)
	settledAs(t, d, "ack")
	if r.calls[DisableUser] != 1 {
		t.Fatal("a request naming this tenant did not run")
	}
}

type resolver map[string]string

func (r resolver) ResolveUser(_ context.Context, s string) (string, string, error) {
	if u, ok := r[s]; ok {
		return u, "", nil
	}
	return "", "", &Error{Class: Permanent, Status: 404, Code: "UnresolvedIdentity", Message: "no mailbox is named " + s}
}

// A mailbox named in Exchange's path form is resolved to its owner before the
// guards: a protected owner is refused under any of its names, and an
// identity that names nobody is an audited failure naming it.
func TestStageResolveMailboxIdentities(t *testing.T) {
	path := "NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/megan.bowen"
	ceo := "NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/ceo"
	r := newRig(t, func(c *WorkerConfig, _ *rig) {
		c.Resolver = resolver{path: "megan.bowen@contoso.com", ceo: "ceo@contoso.com"}
		c.Protected = Protected{Users: []string{"ceo@contoso.com"}, Roles: []string{}}
	})
	pb := func(q *Request) { q.RequestedBy = audit.Actor{Kind: "playbook", Name: "external-forwarding-rule"} }
	var target string
	r.w.handlers[DeleteForwardRules] = Handler{Execute: func(_ context.Context, q *Request, _ Params) (Result, error) {
		target = q.Target.User
		return Result{Detail: "deleted"}, nil
	}}
	r.handle(delivery(t, request(DeleteForwardRules, Target{User: path}, pb)))
	if rec := r.audit.last(); rec.Outcome != audit.Succeeded || target != "megan.bowen@contoso.com" || !strings.Contains(rec.Detail, "resolved to megan.bowen@contoso.com") {
		t.Fatalf("record %s %q, handler saw %q", rec.Outcome, rec.Detail, target)
	}
	target = ""
	r.handle(delivery(t, request(DeleteForwardRules, Target{User: ceo}, pb)))
	if rec := r.audit.last(); rec.Outcome != audit.Refused || !strings.Contains(rec.Detail, "protected identity") || target != "" {
		t.Fatalf("protected owner under another name: %s %q", rec.Outcome, rec.Detail)
	}
	r.handle(delivery(t, request(DeleteForwardRules, Target{User: "Nobody Known"}, pb)))
	if rec := r.audit.last(); rec.Outcome != audit.Failed || rec.ErrorCode != "UnresolvedIdentity" || !strings.Contains(rec.Detail, "Nobody Known") || target != "" {
		t.Fatalf("unresolvable: %s %q %s", rec.Outcome, rec.Detail, rec.ErrorCode)
	}
	// Only mailbox actions take identity forms; wildcards never.
	for _, bad := range []*Request{request(DisableUser, Target{User: path}), request(DeleteForwardRules, Target{User: "*"})} {
		d := delivery(t, bad)
		r.handle(d)
		settledAs(t, d, "term")
	}
}

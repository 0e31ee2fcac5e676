package approval

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

const tenant = "contoso"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openBus(t *testing.T, dir string) *bus.Bus {
	t.Helper()
	b, err := bus.Open(ctxT(t), bus.Config{StoreDir: dir, Port: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func stateKV(t *testing.T, b *bus.Bus) jetstream.KeyValue {
	t.Helper()
	kv, err := b.State(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

type person struct {
	analyst.Analyst
	kp nkeys.KeyPair
}

func newPerson(t *testing.T, name string, mayApprove bool) person {
	kp, err := analyst.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return person{analyst.Analyst{Name: name, PublicKey: pub, Role: analyst.RoleAnalyst, Actions: []string{"*"}, MayApprove: mayApprove}, kp}
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func pendingFor(requester person, required int, created time.Time) Pending {
	id := uuid.NewString()
	return Pending{
		RequestID: id, Action: "disable_user", Target: map[string]string{"user": "carol@contoso.com"},
		Requester: requester.Actor(), Reason: "test", Why: []string{"action disable_user requires approval"},
		Required: required, CreatedAt: created, ExpiresAt: created.Add(time.Hour),
		Message: []byte(`{"id":"` + id + `"}`), Header: map[string][]string{"Responder-Signature": {"x"}},
	}
}

func TestRulesNeed(t *testing.T) {
	r := Rules{Actions: map[string]int{"purge_mail": 2, "disable_user": 1}}
	req := func(a actions.Name, kind string, override bool) *actions.Request {
		return &actions.Request{Action: a, RequestedBy: audit.Actor{Kind: kind}, OverrideProtected: override}
	}
	cases := []struct {
		name string
		req  *actions.Request
		f    Facts
		want int
		why  int
	}{
		{"nothing", req("revoke_sessions", "analyst", false), Facts{}, 0, 0},
		{"action kind", req("disable_user", "playbook", false), Facts{}, 1, 1},
		{"two approvers", req("purge_mail", "analyst", false), Facts{}, 2, 1},
		{"step", req("revoke_sessions", "playbook", false), Facts{StepApprovals: 1}, 1, 1},
		{"limit", req("revoke_sessions", "playbook", false), Facts{OverLimit: "5 an hour"}, 1, 1},
		{"override", req("revoke_sessions", "analyst", true), Facts{Protected: true}, 1, 1},
		{"playbook never overrides", req("revoke_sessions", "playbook", true), Facts{Protected: true}, 0, 0},
		{"largest wins", req("disable_user", "playbook", false), Facts{StepApprovals: 5, OverLimit: "x"}, 2, 3},
	}
	for _, c := range cases {
		got := r.Need(c.req, c.f)
		if got.Required != c.want || len(got.Why) != c.why {
			t.Errorf("%s: %+v", c.name, got)
		}
	}
}

func TestFourEyes(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := ctxT(t)
	clk := &clock{t: time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)}
	s := NewStore(stateKV(t, b), StoreOptions{Now: clk.Now})
	alice, bob, carol, viewer := newPerson(t, "alice", true), newPerson(t, "bob", true), newPerson(t, "carol", true), newPerson(t, "dave", false)

	p := pendingFor(alice, 2, clk.Now())
	if err := s.Submit(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.Submit(ctx, p); !errors.Is(err, ErrExists) {
		t.Fatalf("resubmit: %v", err)
	}
	// The requester, even under another key, cannot approve.
	other := alice
	other.PublicKey = bob.PublicKey + "x"
	if _, err := s.Approve(ctx, p.RequestID, other.Analyst); !errors.Is(err, ErrOwnRequest) {
		t.Fatalf("own request: %v", err)
	}
	if _, err := s.Approve(ctx, p.RequestID, viewer.Analyst); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("viewer: %v", err)
	}
	d, err := s.Approve(ctx, p.RequestID, bob.Analyst)
	if err != nil || d.Complete || d.Pending.State != StatePending {
		t.Fatalf("first approval: %+v %v", d, err)
	}
	// The same approver twice does not make two.
	if _, err := s.Approve(ctx, p.RequestID, bob.Analyst); !errors.Is(err, ErrAlreadyVote) {
		t.Fatalf("second vote by bob: %v", err)
	}
	d, err = s.Approve(ctx, p.RequestID, carol.Analyst)
	if err != nil || !d.Complete || d.Pending.State != StateApproved || len(d.Pending.Approvals) != 2 {
		t.Fatalf("second approval: %+v %v", d, err)
	}
	if _, err := s.Deny(ctx, p.RequestID, bob.Analyst, "late"); !errors.Is(err, ErrNotPending) {
		t.Fatalf("deny after approval: %v", err)
	}
	// Released once; a redelivery of the released message is fine; a copy is not.
	if _, err := s.Release(ctx, p.RequestID, []byte("other"), 5); !errors.Is(err, ErrMismatch) {
		t.Fatalf("release other body: %v", err)
	}
	if _, err := s.Release(ctx, p.RequestID, p.Message, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, p.RequestID, p.Message, 5); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if _, err := s.Release(ctx, p.RequestID, p.Message, 6); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second copy: %v", err)
	}
}

func TestConcurrentApproversBothCount(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := ctxT(t)
	kv := stateKV(t, b)
	alice := newPerson(t, "alice", true)
	p := pendingFor(alice, 2, time.Now())
	if err := NewStore(kv, StoreOptions{}).Submit(ctx, p); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]Decision, 2)
	errs := make([]error, 2)
	for i, name := range []string{"bob", "carol"} {
		who := newPerson(t, name, true)
		wg.Go(func() { results[i], errs[i] = NewStore(kv, StoreOptions{}).Approve(ctx, p.RequestID, who.Analyst) })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || results[0].Complete == results[1].Complete {
		t.Fatalf("%v %v %+v %+v", errs[0], errs[1], results[0].Complete, results[1].Complete)
	}
}

// memRecorder collects audit records.
type memRecorder struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (m *memRecorder) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range m.recs {
		if r.ID != "" && x.ID == r.ID {
			return x, nil // the stream's dedupe
		}
	}
	m.recs = append(m.recs, r)
	return r, nil
}

func (m *memRecorder) outcomes() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.recs {
		out = append(out, string(r.Outcome)+":"+r.Actor.Name)
	}
	return out
}

type harness struct {
	svc      *Service
	store    *Store
	rec      *memRecorder
	released chan Pending
	nc       *nats.Conn
	dir      *analyst.Directory
}

func newHarness(t *testing.T, b *bus.Bus, clk *clock, people ...person) *harness {
	t.Helper()
	ctx := ctxT(t)
	seen, err := analyst.EnsureReplayBucket(ctx, b.JS, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var entries []analyst.Analyst
	for _, p := range people {
		entries = append(entries, p.Analyst)
	}
	dir, err := analyst.NewDirectory(entries...)
	if err != nil {
		t.Fatal(err)
	}
	v, err := analyst.NewVerifier(analyst.VerifierConfig{Directory: func() *analyst.Directory { return dir }, Seen: seen, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{store: NewStore(stateKV(t, b), StoreOptions{Now: clk.Now}), rec: &memRecorder{}, released: make(chan Pending, 8), nc: b.NC, dir: dir}
	h.svc, err = NewService(ServiceConfig{
		Tenant: tenant, Conn: b.NC, Store: h.store, Verifier: v, Audit: h.rec, Now: clk.Now,
		Release: func(ctx context.Context, p Pending) error { h.released <- p; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// command signs and handles a command in-process (the NATS path is covered by
// TestServiceOverNATS).
func (h *harness) command(t *testing.T, who person, c Command, at time.Time) Reply {
	t.Helper()
	c.Version, c.ID, c.At = CommandVersion, uuid.NewString(), at
	c.By = who.Actor()
	body, _ := json.Marshal(c)
	hdr, err := analyst.SignBody(body, who.kp)
	if err != nil {
		t.Fatal(err)
	}
	return h.svc.Handle(ctxT(t), body, hdr)
}

func TestApprovalSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Now().UTC()}
	alice, bob, carol := newPerson(t, "alice", true), newPerson(t, "bob", true), newPerson(t, "carol", true)
	p := pendingFor(alice, 2, clk.Now())

	b := openBus(t, dir)
	h := newHarness(t, b, clk, alice, bob, carol)
	if err := h.store.Submit(ctxT(t), p); err != nil {
		t.Fatal(err)
	}
	if rep := h.command(t, bob, Command{Op: OpApprove, RequestID: p.RequestID}, clk.Now()); !rep.OK || rep.Complete {
		t.Fatalf("bob: %+v", rep)
	}
	b.Close() // the engine stops

	b = openBus(t, dir) // and starts again on the same data directory
	defer b.Close()
	h = newHarness(t, b, clk, alice, bob, carol)
	list := h.command(t, carol, Command{Op: OpList}, clk.Now())
	if !list.OK || len(list.Pending) != 1 || len(list.Pending[0].Approvals) != 1 || list.Pending[0].Message != nil {
		t.Fatalf("list after restart: %+v", list)
	}
	if rep := h.command(t, alice, Command{Op: OpApprove, RequestID: p.RequestID}, clk.Now()); rep.OK || !strings.Contains(rep.Error, "own request") {
		t.Fatalf("alice approving her own: %+v", rep)
	}
	rep := h.command(t, carol, Command{Op: OpApprove, RequestID: p.RequestID}, clk.Now())
	if !rep.OK || !rep.Complete {
		t.Fatalf("carol: %+v", rep)
	}
	got := <-h.released
	if got.RequestID != p.RequestID || string(got.Message) != string(p.Message) {
		t.Fatalf("released %+v", got)
	}
	want := []string{"rejected:alice", "approved:carol"}
	if strings.Join(h.rec.outcomes(), ",") != strings.Join(want, ",") {
		t.Fatalf("audit %v, want %v", h.rec.outcomes(), want)
	}
}

func TestExpiry(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := ctxT(t)
	clk := &clock{t: time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)}
	alice, bob := newPerson(t, "alice", true), newPerson(t, "bob", true)
	h := newHarness(t, b, clk, alice, bob)
	p := pendingFor(alice, 1, clk.Now())
	if err := h.store.Submit(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Sweep(ctx); err != nil || len(h.rec.outcomes()) != 0 {
		t.Fatalf("early sweep: %v %v", err, h.rec.outcomes())
	}
	clk.Add(time.Hour)
	if _, err := h.store.Approve(ctx, p.RequestID, bob.Analyst); !errors.Is(err, ErrExpired) {
		t.Fatalf("approve after expiry: %v", err)
	}
	if err := h.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Sweep(ctx); err != nil { // a second sweep (or process) audits nothing new
		t.Fatal(err)
	}
	if got := h.rec.outcomes(); len(got) != 1 || got[0] != "expired:approval" {
		t.Fatalf("audit %v", got)
	}
	if e, _ := h.store.Get(ctx, p.RequestID); e.State != StateExpired || !e.Announced {
		t.Fatalf("entry %+v", e)
	}
	if rep := h.command(t, bob, Command{Op: OpApprove, RequestID: p.RequestID}, clk.Now()); rep.OK {
		t.Fatalf("approved an expired request: %+v", rep)
	}
	// Past retention the entry goes.
	clk.Add(8 * 24 * time.Hour)
	if err := h.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.Get(ctx, p.RequestID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after retention: %v", err)
	}
}

func TestDenyAndRejectedCommands(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := ctxT(t)
	clk := &clock{t: time.Now().UTC()}
	alice, bob := newPerson(t, "alice", true), newPerson(t, "bob", true)
	stranger := newPerson(t, "mallory", true)
	h := newHarness(t, b, clk, alice, bob)
	p := pendingFor(alice, 1, clk.Now())
	if err := h.store.Submit(ctx, p); err != nil {
		t.Fatal(err)
	}
	if rep := h.command(t, stranger, Command{Op: OpApprove, RequestID: p.RequestID}, clk.Now()); rep.Rejected != analyst.UnknownKey {
		t.Fatalf("stranger: %+v", rep)
	}
	if rep := h.command(t, bob, Command{Op: OpApprove, RequestID: p.RequestID}, clk.Now().Add(-time.Hour)); rep.Rejected != analyst.Replayed {
		t.Fatalf("stale command: %+v", rep)
	}
	if rep := h.command(t, bob, Command{Op: OpDeny, RequestID: p.RequestID}, clk.Now()); rep.OK {
		t.Fatalf("deny without reason: %+v", rep)
	}
	if rep := h.command(t, bob, Command{Op: OpDeny, RequestID: p.RequestID, Reason: "not this user"}, clk.Now()); !rep.OK || rep.Entry.State != StateDenied {
		t.Fatalf("deny: %+v", rep)
	}
	want := "rejected:mallory,rejected:bob,denied:bob"
	if got := strings.Join(h.rec.outcomes(), ","); got != want {
		t.Fatalf("audit %s, want %s", got, want)
	}
}

func TestServiceOverNATS(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	clk := &clock{t: time.Now().UTC()}
	alice, bob := newPerson(t, "alice", true), newPerson(t, "bob", true)
	h := newHarness(t, b, clk, alice, bob)
	p := pendingFor(alice, 1, clk.Now())
	if err := h.store.Submit(ctxT(t), p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	go func() { done <- h.svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Run subscribes asynchronously: Send until someone answers.
	var rep Reply
	for {
		var err error
		rep, err = Send(ctxT(t), b.NC, tenant, Command{Op: OpApprove, RequestID: p.RequestID, By: audit.Actor{Name: "bob"}}, bob.kp)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "no engine") {
			t.Fatal(err)
		}
		if err := b.NC.FlushWithContext(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if !rep.OK || !rep.Complete {
		t.Fatalf("%+v", rep)
	}
	if got := <-h.released; got.RequestID != p.RequestID {
		t.Fatal(got.RequestID)
	}
}

func TestRepublishAndRelease(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := ctxT(t)
	alice, bob := newPerson(t, "alice", true), newPerson(t, "bob", true)
	s := NewStore(stateKV(t, b), StoreOptions{})
	p := pendingFor(alice, 1, time.Now())
	if err := s.Submit(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Approve(ctx, p.RequestID, bob.Analyst); err != nil {
		t.Fatal(err)
	}
	release := RepublishFunc(b.JS, tenant)
	for range 2 { // repeated releases store one copy
		if err := release(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	st, err := b.JS.Stream(ctx, bus.StreamActions)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, bus.ActionSubject(tenant, p.Action))
	if err != nil {
		t.Fatal(err)
	}
	if st.CachedInfo().State.Msgs != 1 || m.Header.Get(HeaderApproval) != p.RequestID || m.Header.Get("Responder-Signature") != "x" {
		t.Fatalf("stored %d, headers %v", st.CachedInfo().State.Msgs, m.Header)
	}
	if _, err := s.Release(ctx, p.RequestID, m.Data, m.Sequence); err != nil {
		t.Fatal(err)
	}
}

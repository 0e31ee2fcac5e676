package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/auditquery"
	"github.com/responder-sec/responder/internal/bus"
)

// authKeys are the people of the analysts file these tests write.
type authKeys struct {
	alice nkeys.KeyPair // analyst allowed only revoke_sessions
	carol nkeys.KeyPair // reviewer
	file  string
}

func newAuthKeys(t *testing.T) *authKeys {
	t.Helper()
	k := &authKeys{file: filepath.Join(t.TempDir(), "analysts.yaml")}
	var err error
	if k.alice, err = analyst.NewKey(); err != nil {
		t.Fatal(err)
	}
	if k.carol, err = analyst.NewKey(); err != nil {
		t.Fatal(err)
	}
	k.write(t, true)
	return k
}

// write writes the analysts file, with or without alice.
func (k *authKeys) write(t *testing.T, withAlice bool) {
	t.Helper()
	s := "version: 1\n"
	if withAlice {
		s += "analysts:\n  - name: alice\n    public_key: " + pubKey(t, k.alice) + "\n    actions: [revoke_sessions]\n"
	}
	s += "reviewers:\n  - name: carol\n    public_key: " + pubKey(t, k.carol) + "\n"
	if err := os.WriteFile(k.file, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func pubKey(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dial connects to the engine's embedded server as kp; closed is closed
// when the server drops the connection.
func dial(t *testing.T, h *harness, kp nkeys.KeyPair) (nc *nats.Conn, errs chan error, closed chan struct{}, err error) {
	t.Helper()
	opts, err := bus.ClientAuth{Key: kp}.Options()
	if err != nil {
		t.Fatal(err)
	}
	errs, closed = make(chan error, 16), make(chan struct{})
	nc, err = nats.Connect(h.eng.Bus().ClientURL(), append(opts, nats.MaxReconnects(0),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, errs, closed, err
}

func (h *harness) streamMsgs(name string) uint64 {
	h.t.Helper()
	s, err := h.eng.Bus().JS.Stream(context.Background(), name)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Msgs
}

// TestAttacksOfAnAnalystAndAReviewer: an analyst allowed only revoke_sessions
// and a reviewer try what the trust model forbids, over their own
// authenticated connections; what reaches the engine is rejected and audited,
// what does not is refused by the server and changes nothing.
func TestAttacksOfAnAnalystAndAReviewer(t *testing.T) {
	k := newAuthKeys(t)
	h := newHarness(t)
	h.startWith(func(c *Config) { c.AnalystsFile = k.file; c.PlaybookWatch = -1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tenant := h.eng.Tenant()

	if nc, err := nats.Connect(h.eng.Bus().ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("anonymous connection accepted")
	}
	admin, err := analyst.LoadDefaultKey(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := dial(t, h, admin); err == nil {
		t.Fatal("the local administrator key connected although the analysts file does not list it")
	}

	a, aerrs, _, err := dial(t, h, k.alice)
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	ajs, _ := jetstream.New(a)

	// Beyond her rights: reaches the engine, rejected and audited, nothing done.
	req := &actions.Request{Version: actions.Version, ID: uuid.NewString(), Action: actions.DisableUser,
		Target: actions.Target{User: "bob@contoso.com"}, RequestedBy: audit.Actor{Kind: "analyst", Name: "alice"},
		Reason: "attack", RequestedAt: time.Now().UTC()}
	if err := analyst.Publish(ctx, ajs, tenant, req, k.alice); err != nil {
		t.Fatalf("alice's publish: %v", err)
	}
	rec := h.waitFinal(func(r audit.Record) bool { return r.RequestID == req.ID })
	if rec.Outcome != audit.Rejected || !strings.Contains(rec.Detail, "unauthorised") {
		t.Fatalf("alice's disable_user: %s %q", rec.Outcome, rec.Detail)
	}
	if u, _ := h.sim.User("bob@contoso.com"); !u.AccountEnabled {
		t.Fatal("bob was disabled")
	}

	// Subscriptions to what is not hers: refused by the server.
	for _, subj := range []string{"_INBOX.>", "responder.*.result.>", bus.ResultsFilterFor(tenant, pubKey(t, admin)), "$KV.>", "responder.*.audit.>"} {
		if _, err := a.SubscribeSync(subj); err != nil {
			continue
		}
		waitViolation(t, aerrs, subj)
	}
	// Forged events, audit records, KV approvals: refused, nothing stored.
	events, auditN := h.streamMsgs(bus.StreamEvents), h.streamMsgs(bus.StreamAudit)
	for _, subj := range []string{bus.EventSubject(tenant, "risk_detection", "forged"), bus.AuditSubject(tenant, "succeeded", "disable_user"),
		"$KV." + bus.BucketState + ".approval.forged", "$KV." + bus.BucketState + "." + bus.TenantPrefix(tenant) + bus.ApprovalKey("forged"),
		"$JS.API.STREAM.INFO." + bus.StreamAudit} {
		_ = a.Publish(subj, []byte(`{"forged":true}`))
		waitViolation(t, aerrs, subj)
	}
	if h.streamMsgs(bus.StreamEvents) != events || h.streamMsgs(bus.StreamAudit) != auditN {
		t.Fatal("a refused publish was stored")
	}
	kv, _ := h.eng.Bus().State(ctx)
	if _, err := kv.Get(ctx, "approval.forged"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("forged KV entry: %v", err)
	}
	if _, err := bus.TenantState(kv, tenant).Get(ctx, bus.ApprovalKey("forged")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("forged KV entry in the tenant's namespace: %v", err)
	}

	// The reviewer reads the trail through the engine and cannot act.
	c, cerrs, _, err := dial(t, h, k.carol)
	if err != nil {
		t.Fatalf("carol: %v", err)
	}
	q := auditquery.Client{NC: c, Tenant: tenant, Key: k.carol, Name: "carol"}
	var found bool
	if _, _, err := q.List(ctx, auditquery.Filter{RequestID: req.ID}, func(it auditquery.Item) error {
		found = found || strings.Contains(string(it.Data), req.ID)
		return nil
	}); err != nil || !found {
		t.Fatalf("reviewer's query: found %v, %v", found, err)
	}
	actionsN := h.streamMsgs(bus.StreamActions)
	subj := bus.ActionSubject(tenant, string(actions.RevokeSessions))
	_ = c.Publish(subj, []byte(`{}`))
	waitViolation(t, cerrs, subj)
	if h.streamMsgs(bus.StreamActions) != actionsN {
		t.Fatal("the reviewer's request was stored")
	}
}

// TestAuditQueryPagesAndRefusals: pages cover the trail in order; a query
// signed by a key the directory does not hold, and a replayed one, are
// refused and audited as rejected.
func TestAuditQueryPagesAndRefusals(t *testing.T) {
	k := newAuthKeys(t)
	h := newHarness(t)
	h.startWith(func(c *Config) { c.AnalystsFile = k.file; c.PlaybookWatch = -1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tenant := h.eng.Tenant()
	// Some records: three rejected requests.
	for range 3 {
		req := analystRequest(actions.DisableUser, "bob@contoso.com")
		h.publishSigned(req) // the local admin is not in the file: unknown key
		h.waitFinal(func(r audit.Record) bool { return r.RequestID == req.ID })
	}
	c, _, _, err := dial(t, h, k.carol)
	if err != nil {
		t.Fatal(err)
	}
	carol := auditquery.Client{NC: c, Tenant: tenant, Key: k.carol, Name: "carol"}
	var seqs []uint64
	after := uint64(0)
	for {
		rep, err := carol.Do(ctx, auditquery.Query{Op: auditquery.OpList, AfterSeq: after, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range rep.Items {
			seqs = append(seqs, it.Seq)
		}
		if !rep.More {
			break
		}
		after = rep.NextSeq
	}
	if len(seqs) < 3 {
		t.Fatalf("pages returned %v", seqs)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("pages skipped or repeated: %v", seqs)
		}
	}

	// A key nobody listed, over a connection that can reach the subject (the
	// engine's: on an external cluster a stranger could have one).
	stranger, _ := analyst.NewKey()
	sq := auditquery.Client{NC: h.eng.Bus().NC, Tenant: tenant, Key: stranger, Name: "mallory"}
	rep, err := sq.Do(ctx, auditquery.Query{Op: auditquery.OpList})
	if err == nil || rep.Rejected != analyst.UnknownKey || len(rep.Items) != 0 {
		t.Fatalf("stranger's query: %v %+v", err, rep)
	}
	h.waitRecord(func(r audit.Record) bool {
		return r.Action == auditquery.ActionName && r.Outcome == audit.Rejected && r.Actor.Name == "mallory" &&
			strings.Contains(r.Detail, "unknown_key") && strings.Contains(r.Detail, "not verified")
	})
	// A replayed query (same id) is refused and audited too.
	id := uuid.NewString()
	if _, err := carol.Do(ctx, auditquery.Query{ID: id, Op: auditquery.OpList, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	if rep, err := carol.Do(ctx, auditquery.Query{ID: id, Op: auditquery.OpList, Limit: 1}); err == nil || rep.Rejected != analyst.Replayed {
		t.Fatalf("replayed query: %v %+v", err, rep)
	}
	h.waitRecord(func(r audit.Record) bool {
		return r.Action == auditquery.ActionName && r.Outcome == audit.Rejected && strings.Contains(r.Detail, "replayed")
	})
}

// TestAnalystsFileReloadRevokesAKeyAtOnce: removing a key from the analysts
// file, with the engine running, disconnects its holder, refuses its next
// connection and its signatures.
func TestAnalystsFileReloadRevokesAKeyAtOnce(t *testing.T) {
	k := newAuthKeys(t)
	h := newHarness(t)
	h.startWith(func(c *Config) { c.AnalystsFile = k.file; c.PlaybookWatch = 20 * time.Millisecond })
	tenant := h.eng.Tenant()
	_, _, closed, err := dial(t, h, k.alice)
	if err != nil {
		t.Fatalf("alice before the change: %v", err)
	}
	k.write(t, false) // the watcher sees the new content
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("alice's connection outlived the removal of her key")
	}
	if _, _, _, err := dial(t, h, k.alice); err == nil {
		t.Fatal("alice connected after her key was removed")
	}
	if _, ok := h.eng.Directory().Lookup(pubKey(t, k.alice)); ok {
		t.Fatal("alice still in the directory")
	}
	// Her signature no longer counts, whoever carries it to the bus.
	req := &actions.Request{Version: actions.Version, ID: uuid.NewString(), Action: actions.RevokeSessions,
		Target: actions.Target{User: "bob@contoso.com"}, RequestedBy: audit.Actor{Kind: "analyst", Name: "alice"},
		Reason: "after revocation", RequestedAt: time.Now().UTC()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := analyst.Publish(ctx, h.eng.Bus().JS, tenant, req, k.alice); err != nil {
		t.Fatal(err)
	}
	rec := h.waitFinal(func(r audit.Record) bool { return r.RequestID == req.ID })
	if rec.Outcome != audit.Rejected || !strings.Contains(rec.Detail, "unknown_key") {
		t.Fatalf("revoked key's request: %s %q", rec.Outcome, rec.Detail)
	}
	// An invalid file is refused and the last good directory stays.
	if err := os.WriteFile(k.file, []byte("version: 1\nanalysts: [{name: x}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.ReloadAnalysts(); err == nil {
		t.Fatal("an invalid analysts file was accepted")
	}
	if _, ok := h.eng.Directory().Lookup(pubKey(t, k.carol)); !ok {
		t.Fatal("the last good directory was dropped")
	}
	if _, _, _, err := dial(t, h, k.carol); err != nil {
		t.Fatalf("carol after a refused reload: %v", err)
	}
}

func waitViolation(t *testing.T, errs chan error, subject string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return
			}
		case <-timeout:
			t.Fatalf("no permission violation for %q", subject)
		}
	}
}

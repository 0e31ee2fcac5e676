package engine

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

type memRecorder struct{ recs []audit.Record }

func (m *memRecorder) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	m.recs = append(m.recs, r)
	return r, nil
}

// Someone who can publish requests pre-publishes the id the engine will
// derive for a playbook step. The engine must notice the duplicate ack, audit
// it as an attack and still get its own request through under a fresh id;
// its own repeated publish of the same request stays a quiet duplicate.
func TestEngineNoticesAPrePublishedDerivedID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kv, err := b.TenantState(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	engineKP, _ := nkeys.CreateUser()
	enginePub, _ := engineKP.PublicKey()
	rec := &memRecorder{}
	s := &signer{js: b.JS, kv: kv, tenant: "t1", kp: engineKP, audit: rec, log: slog.New(slog.DiscardHandler),
		isEngine: func(k string) bool { return k == enginePub }}

	derived := bus.PlaybookRequestID("event-1", "high-risk-user")
	req := &actions.Request{Version: actions.Version, ID: derived, Action: actions.DisableUser,
		Target: actions.Target{User: "bob@contoso.com"}, RequestedBy: audit.Actor{Kind: "playbook", Name: "high-risk-user"},
		RequestedAt: time.Now().UTC()}

	// The attacker: an analyst key, publishing first with the derived id.
	attacker, _ := nkeys.CreateUser()
	forged := *req
	forged.Target = actions.Target{User: "ceo@contoso.com"}
	if err := analyst.Publish(ctx, b.JS, "t1", &forged, attacker); err != nil {
		t.Fatal(err)
	}
	if err := s.publish(ctx, req); err != nil {
		t.Fatal(err)
	}
	if len(rec.recs) != 1 || rec.recs[0].Outcome != audit.Rejected || !strings.Contains(rec.recs[0].Detail, "id collision") {
		t.Fatalf("audit %+v", rec.recs)
	}
	fresh := bus.DerivedID(derived, "collision")
	if !strings.Contains(rec.recs[0].Detail, fresh) {
		t.Errorf("the record does not name the re-issued id: %q", rec.recs[0].Detail)
	}
	st, err := b.JS.Stream(ctx, bus.StreamActions)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want the forged one and the engine's re-issued one", info.State.Msgs)
	}
	last, err := st.GetLastMsgForSubject(ctx, bus.ActionSubject("t1", string(actions.DisableUser)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := actions.Decode(last.Data)
	if err != nil || got.ID != fresh || got.Target.User != "bob@contoso.com" || last.Header.Get(analyst.HeaderKey) != enginePub {
		t.Fatalf("re-issued %+v (%v), signer %q", got, err, last.Header.Get(analyst.HeaderKey))
	}

	// The engine's own repeat (a re-handled event): a quiet duplicate.
	again := *req
	again.ID = uuid.NewString()
	if err := s.publish(ctx, &again); err != nil {
		t.Fatal(err)
	}
	if err := s.publish(ctx, &again); err != nil {
		t.Fatal(err)
	}
	if len(rec.recs) != 1 {
		t.Fatalf("the engine's own duplicate was audited as an attack: %+v", rec.recs[1:])
	}
}

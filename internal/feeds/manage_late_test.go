package feeds

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/m365sim"
)

// TestManagementLateContentAndResubscribe: content that Microsoft lists late
// (contentCreated before the poller's cursor) is found by the overlap
// re-listing, a stopped subscription is started again, and a large generated
// blob is stored record for record; each record is stored once.
func TestManagementLateContentAndResubscribe(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	in := e.tn.Info()
	ctx := context.Background()
	cfg := e.manageConfig()
	cfg.ContentTypes = []string{"Audit.Exchange"}
	cfg.CheckpointEvery = 100
	e.subscribed(t, "Audit.Exchange") // started by an earlier run, before the content
	e.clock.Advance(10 * time.Minute)
	now := e.clock.Now()
	want := map[string]bool{}
	rec := func(n int) json.RawMessage {
		id := fmt.Sprintf("1a7e0000-0000-4000-8000-%012d", n)
		want[id] = true
		return auditRecord(in.TenantID, id, now, "Set-Mailbox")
	}
	if _, err := e.tn.AddAuditRecords("Audit.Exchange", []json.RawMessage{rec(1), rec(2)}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Second)
	p := NewManagementPoller(cfg) // one poller: it believes it is subscribed
	if err := p.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}

	// Created before the cursor, listed only now: within the overlap (10 min).
	late := e.clock.Now().Add(-5 * time.Minute)
	if _, err := e.tn.AddLateAuditRecords("Audit.Exchange", []json.RawMessage{rec(3)}, late, e.clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	const generated = 2500
	if _, err := e.tn.AddGeneratedAuditBlob("Audit.Exchange", generated, func(dst []byte, i int) []byte {
		return append(dst, auditRecord(in.TenantID, fmt.Sprintf("9e0e0000-0000-4000-8000-%012d", i), now, "MailItemsAccessed")...)
	}); err != nil {
		t.Fatal(err)
	}
	for i := range generated {
		want[fmt.Sprintf("9e0e0000-0000-4000-8000-%012d", i)] = true
	}
	if err := e.tn.StopSubscription("Audit.Exchange"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(15 * time.Minute) // Microsoft refuses starts less than 15 minutes apart
	if err := p.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, w := range e.tn.WireLog() {
		if w.Status == 400 && strings.HasSuffix(w.Path, "/subscriptions/content") {
			refused++
		}
	}
	if refused == 0 {
		t.Error("the listing was never refused: the stopped subscription was not exercised")
	}
	got := eventIDs(t, e.bus.JS)
	for id := range want {
		if got[id] != 1 {
			t.Errorf("record %s stored %d times", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("EVENTS holds %d events, want %d", len(got), len(want))
	}
}

package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

type gapRecords struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (g *gapRecords) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.recs = append(g.recs, r)
	return r, nil
}

func startsOf(e *env, ct string) int {
	n := 0
	for _, w := range e.tn.WireLog() {
		if w.Method == "POST" && strings.HasSuffix(w.Path, "/subscriptions/start") && strings.Contains(w.Query, ct) {
			n++
		}
	}
	return n
}

// The poller lists the subscriptions and starts only what is not enabled; a
// start refused as too frequent (403, code "429", "retry again after 14m 56s")
// waits as told while the other content type keeps running; AF20023 from a
// subscription just started is retried with backoff past MaxAttempts until it
// clears; content created while the subscription was stopped is gone and the
// window is reported in the status and the audit trail, with its start and end.
func TestManagementStartThrottledAndSettling(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	in := e.tn.Info()
	ctx := context.Background()
	manageCall(t, e, "POST", "subscriptions/start?contentType=Audit.General&PublisherIdentifier="+in.TenantID)
	e.tn.SetStartSettle(5) // the next start's first five listings answer AF20023
	gaps := &gapRecords{}
	cfg := e.manageConfig()
	cfg.ContentTypes = []string{"Audit.Exchange", "Audit.General"}
	cfg.MaxAttempts = 3
	cfg.Audit = gaps
	rec := func(id string) []json.RawMessage {
		return []json.RawMessage{auditRecord(in.TenantID, id, e.clock.Now(), "Set-Mailbox")}
	}

	e.clock.Advance(time.Second)
	if err := NewManagementPoller(cfg).PollOnce(ctx); err != nil {
		t.Fatalf("first poll (settling past MaxAttempts): %v", err)
	}
	if n := startsOf(e, "Audit.General"); n != 1 {
		t.Fatalf("the enabled Audit.General was started again (%d starts)", n)
	}
	if n := startsOf(e, "Audit.Exchange"); n != 1 {
		t.Fatalf("Audit.Exchange started %d times", n)
	}
	if len(gaps.recs) != 1 || gaps.recs[0].Target["content_type"] != "Audit.Exchange" {
		t.Fatalf("gap records after the first start: %+v", gaps.recs)
	}

	// Someone stops Audit.Exchange a minute later; records made meanwhile
	// are gone. The restart is refused for 14 minutes; Audit.General runs on.
	e.clock.Advance(time.Minute)
	if err := e.tn.StopSubscription("Audit.Exchange"); err != nil {
		t.Fatal(err)
	}
	stoppedAt := e.clock.Now()
	if _, err := e.tn.AddAuditRecords("Audit.Exchange", rec("5t0p0000-0000-4000-8000-000000000001")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tn.AddAuditRecords("Audit.General", rec("6e0e0000-0000-4000-8000-000000000001")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	p := NewManagementPoller(cfg) // a restarted process
	err := p.PollOnce(ctx)
	if !errors.Is(err, ErrStartThrottled) {
		t.Fatalf("restart within 15 minutes: %v", err)
	}
	if got := eventIDs(t, e.bus.JS); got["6e0e0000-0000-4000-8000-000000000001"] != 1 {
		t.Fatalf("Audit.General stalled behind Audit.Exchange's throttled start: %v", got)
	}
	starts := startsOf(e, "Audit.Exchange")
	e.clock.Advance(5 * time.Minute)
	if err := p.PollOnce(ctx); !errors.Is(err, ErrStartThrottled) {
		t.Fatalf("before the wait is over: %v", err)
	}
	if n := startsOf(e, "Audit.Exchange"); n != starts {
		t.Fatalf("started again before Microsoft's wait was over (%d starts, was %d)", n, starts)
	}
	e.clock.Advance(10 * time.Minute)
	restartedAt := e.clock.Now() // the restart happens within this poll
	if err := p.PollOnce(ctx); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
	if _, err := e.tn.AddAuditRecords("Audit.Exchange", rec("a7e00000-0000-4000-8000-000000000001")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	if err := p.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := eventIDs(t, e.bus.JS)
	if got["a7e00000-0000-4000-8000-000000000001"] != 1 || got["5t0p0000-0000-4000-8000-000000000001"] != 0 {
		t.Fatalf("EVENTS: %v", got)
	}
	// The window of possible loss covers the stopped period, in the audit
	// trail and in the status.
	if len(gaps.recs) != 2 {
		t.Fatalf("gap records: %+v", gaps.recs)
	}
	g := gaps.recs[1]
	from, _ := time.Parse(time.RFC3339, g.Target["from"])
	to, _ := time.Parse(time.RFC3339, g.Target["to"])
	if from.After(stoppedAt) || to.Before(restartedAt.Truncate(time.Second)) || g.Outcome != audit.Failed || !strings.Contains(g.Detail, "possible loss") {
		t.Fatalf("gap %+v does not cover the stop (%v) to the restart (%v)", g, stoppedAt, restartedAt)
	}
	lines, err := Status(ctx, e.kv, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := WriteStatus(&out, lines, false); err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if l.ContentType == "Audit.Exchange" && (len(l.Gaps) != 2 || !l.Gaps[1].From.Truncate(time.Second).Equal(from) || !l.Gaps[1].To.Truncate(time.Second).Equal(to)) {
			t.Fatalf("status gaps %+v", l.Gaps)
		}
	}
	if !strings.Contains(out.String(), "possible loss") || !strings.Contains(out.String(), to.Format(time.RFC3339)) {
		t.Fatalf("feeds status does not show the window:\n%s", out.String())
	}
}

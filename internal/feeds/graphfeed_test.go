package feeds

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

func (e *env) graphConfig(t *testing.T) GraphFeedConfig {
	t.Helper()
	gc, _, err := m365.NewGraphClient(e.creds)
	if err != nil {
		t.Fatal(err)
	}
	return GraphFeedConfig{Tenant: e.tn.Info().TenantID, Graph: gc, JS: e.bus.JS, KV: e.kv, Logger: quiet, Now: e.clock.Now,
		Budget: NewTenantBudget(100, time.Second)}
}

// Sign-ins arrive late and out of order; each is stored once, re-polls of the
// overlap publish nothing, and a restarted poller (fresh memory) only hits the
// stream's deduplication.
func TestSignInsLateAndOutOfOrder(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	cfg := e.graphConfig(t)
	cfg.Window = 20 * time.Minute
	cfg.Lookback = 4 * time.Hour
	ctx := context.Background()
	now := e.clock.Now()
	var ids []string
	for i, ago := range []time.Duration{50 * time.Minute, 3 * time.Hour, 10 * time.Minute, 2 * time.Minute} {
		s := e.tn.InjectSignIn(m365sim.SignIn{UserPrincipalName: "alice@contoso.com", IPAddress: "203.0.113.7", ErrorCode: []int{0, 50126}[i%2],
			CreatedDateTime: now.Add(-ago)})
		ids = append(ids, s.ID)
	}
	e.clock.Advance(time.Second)
	p := NewSignInPoller(cfg)
	n, err := p.Poll(ctx)
	if err != nil || n != 4 {
		t.Fatalf("first poll: %d, %v", n, err)
	}
	// A sign-in created 15 minutes ago shows up only now (late), one 1 h ago
	// is beyond the overlap and is not expected to be seen.
	late := e.tn.InjectSignIn(m365sim.SignIn{UserPrincipalName: "bob@contoso.com", IPAddress: "198.51.100.9", CreatedDateTime: now.Add(-15 * time.Minute)})
	ids = append(ids, late.ID)
	e.clock.Advance(time.Minute)
	if n, err := p.Poll(ctx); err != nil || n != 1 {
		t.Fatalf("second poll: %d, %v (want only the late sign-in)", n, err)
	}
	// A new process re-reads the overlap; the stream deduplicates.
	p2 := NewSignInPoller(cfg)
	if n, err := p2.Poll(ctx); err != nil || n != 0 {
		t.Fatalf("restarted poll: %d, %v", n, err)
	}
	got := eventIDs(t, e.bus.JS)
	if len(got) != len(ids) {
		t.Fatalf("EVENTS holds %d, want %d: %v", len(got), len(ids), got)
	}
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("sign-in %s stored %d times", id, got[id])
		}
	}
	// Every request asked for a bounded createdDateTime window.
	for _, w := range e.tn.WireLog() {
		if strings.Contains(w.Path, "auditLogs/signIns") && !strings.Contains(w.Query, "createdDateTime%20ge%20") {
			t.Errorf("sign-in request without a createdDateTime filter: %s", w.Query)
		}
	}
}

// A tenant without the licence gets one clear error naming it; the poller keeps
// running and resumes when the licence is there.
func TestSignInsWithoutLicence(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	e.tn.SetPremium(false)
	cfg := e.graphConfig(t)
	p := NewSignInPoller(cfg)
	_, err := p.Poll(context.Background())
	if !errors.Is(err, ErrNoLicence) || !strings.Contains(err.Error(), "Entra ID P1") {
		t.Fatalf("err = %v", err)
	}
	lines, err := Status(context.Background(), e.kv, nil)
	if err != nil || len(lines) != 1 || !strings.Contains(lines[0].LastError, "Entra ID P1") || lines[0].Feed != FeedSignIns {
		t.Fatalf("status %+v, %v", lines, err)
	}
	e.tn.SetPremium(true)
	if _, err := p.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines, _ = Status(context.Background(), e.kv, nil)
	if lines[0].LastError != "" || lines[0].LastSuccess.IsZero() {
		t.Fatalf("status after licence: %+v", lines[0])
	}
}

// A risky user whose risk rises later is a new event; a risk detection whose
// state changes is too. Requests respect the shared 1 rps budget (the emulator
// enforces it: any 429 would be counted).
func TestRiskFeedsSeeStateChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("paces against the emulator's real-time budget; runs in the full suite")
	}
	e := newEnv(t, m365sim.Options{Throttling: true})
	cfg := e.graphConfig(t)
	cfg.Budget = NewTenantBudget(1, 120*time.Millisecond) // inside the emulator's 1 per 100 ms
	lim := m365sim.DefaultLimits()
	lim.IdentityProtectionCA = m365sim.Limit{Capacity: 1, Per: 100 * time.Millisecond}
	e.tn.SetLimits(lim)
	ctx := context.Background()
	now := e.clock.Now()
	e.tn.InjectRiskDetection(m365sim.RiskDetection{UserPrincipalName: "alice@contoso.com", RiskLevel: "low", LastUpdatedDateTime: now.Add(-time.Minute)})
	e.clock.Advance(time.Second)
	counters := &Counters{}
	cfg.Observer = counters
	users := NewRiskyUserPoller(cfg)
	dets := NewRiskPoller(RiskConfig{Tenant: cfg.Tenant, Graph: cfg.Graph, JS: cfg.JS, KV: cfg.KV, Budget: cfg.Budget, Logger: quiet, Now: cfg.Now, Observer: counters})
	if n, err := users.Poll(ctx); err != nil || n != 1 {
		t.Fatalf("risky users: %d, %v", n, err)
	}
	if n, err := dets.Poll(ctx); err != nil || n != 1 {
		t.Fatalf("risk detections: %d, %v", n, err)
	}
	// The risk rises: a new detection, and the risky user's state changes.
	e.tn.InjectRiskDetection(m365sim.RiskDetection{UserPrincipalName: "alice@contoso.com", RiskLevel: "high", LastUpdatedDateTime: e.clock.Now()})
	e.clock.Advance(time.Second)
	if n, err := users.Poll(ctx); err != nil || n != 1 {
		t.Fatalf("risky users after rise: %d, %v", n, err)
	}
	if n, err := dets.Poll(ctx); err != nil || n != 1 {
		t.Fatalf("risk detections after rise: %d, %v", n, err)
	}
	if n, err := users.Poll(ctx); err != nil || n != 0 {
		t.Fatalf("risky users re-poll: %d, %v", n, err)
	}
	got := eventIDs(t, e.bus.JS)
	if len(got) != 4 {
		t.Fatalf("EVENTS: %v", got)
	}
	for _, w := range e.tn.WireLog() {
		if w.Status == 429 {
			t.Errorf("over the Identity Protection budget: %s %s", w.Method, w.Path)
		}
	}
	if counters.Events.Load() != 4 || counters.Pages.Load() < 5 {
		t.Errorf("counters: events %d pages %d", counters.Events.Load(), counters.Pages.Load())
	}
}

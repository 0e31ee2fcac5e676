package graphexec_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// TestCAThrottleResentWithinBudget: a 429 on a Conditional Access call is
// resent by the executor after waiting for the tenant budget, with the SDK's
// own retries on as in production. The SDK's retry used to resend outside the
// budget, so the next call of the round came too early and was refused in turn
// (a cascade of 429s, each costing a backoff); now the injected 429 is the only
// one and the block succeeds.
func TestCAThrottleResentWithinBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("paces against the emulator's real-time budget; runs in the full suite")
	}
	const per = 300 * time.Millisecond
	sim := newSim(t)
	lim := m365sim.DefaultLimits()
	lim.IdentityProtectionCA = m365sim.Limit{Capacity: 1, Per: per}
	sim.SetLimits(lim)
	sim.SetThrottling(true)
	sim.AddFault(m365sim.Fault{Method: "POST", PathPrefix: "/v1.0/identity/conditionalAccess/namedLocations", Status: 429, Count: 1})

	info := sim.Info()
	client, _, err := m365.NewGraphClient(m365.Credentials{
		TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
		LoginURL: info.LoginURL, GraphURL: info.GraphURL, HTTPClient: sim.HTTPClient(),
	}) // the SDK's default retries
	if err != nil {
		t.Fatal(err)
	}
	ex := graphexec.NewWithConfig(client, graphexec.Config{Logger: slog.New(slog.DiscardHandler),
		Budgets: graphexec.NewBudgets(graphexec.BudgetConfig{IdentityProtectionCA: graphexec.Rate{N: 1, Per: per}})})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := ex.Execute(ctx, request(actions.BlockIP, actions.Target{IP: "203.0.113.7"}, nil)); err != nil {
		t.Fatal(err)
	}
	throttled, sent := 0, 0
	for _, w := range sim.WireLog() {
		if !strings.HasPrefix(w.Path, "/v1.0/identity/conditionalAccess/") {
			continue
		}
		sent++
		if w.Status == 429 {
			throttled++
		}
	}
	// Read locations, create (429, resent), read policies, create policy.
	if throttled != 1 || sent != 5 {
		t.Errorf("%d Conditional Access requests, %d answered 429; want 5 and only the injected one", sent, throttled)
	}
	if locs := sim.NamedLocations(); len(locs) != 1 || len(sim.Policies()) != 1 {
		t.Errorf("%d named locations, %d policies after the block", len(locs), len(sim.Policies()))
	}
}

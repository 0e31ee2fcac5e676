package graphexec

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// TestBlockIPLateArrivalsJoinTheWrite: requests that arrive while a round
// waits for the budget's token of its first write join that write, so a burst
// that reaches the executor in two waves still takes the 4 Conditional Access
// requests of one round in a fresh tenant (read and create the location, read
// and create the policy), not 4 + 2. The budget is a gate the test holds:
// the second token asked for is the first write's.
func TestBlockIPLateArrivalsJoinTheWrite(t *testing.T) {
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	info := sim.Info()
	client, _, err := m365.NewGraphClient(m365.Credentials{
		TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
		LoginURL: info.LoginURL, GraphURL: info.GraphURL, HTTPClient: sim.HTTPClient(), GraphMaxRetries: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	var tokens atomic.Int32
	writeToken := make(chan struct{})
	release := make(chan struct{})
	gate := func(ctx context.Context) error {
		if tokens.Add(1) == 2 {
			close(writeToken)
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	e := NewWithConfig(client, Config{Logger: slog.New(slog.DiscardHandler), Budgets: NewBudgets(BudgetConfig{SharedIdentityProtectionCA: gate})})
	queued := make(chan struct{}, 16)
	e.ips.queued = queued
	block := e.Handlers()[actions.BlockIP].Execute

	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([]error, 10)
	run := func(i int) {
		defer wg.Done()
		ip := fmt.Sprintf("203.0.113.%d", i+1)
		pfx := netip.MustParsePrefix(ip + "/32")
		_, results[i] = block(ctx, &actions.Request{Action: actions.BlockIP, Target: actions.Target{IP: ip}}, actions.Params{Prefix: pfx})
	}
	for i := range 5 { // first wave
		wg.Add(1)
		go run(i)
	}
	<-writeToken // the round has read the locations and waits to write
	for i := 5; i < 10; i++ {
		wg.Add(1)
		go run(i)
	}
	for range 10 { // both waves queued
		<-queued
	}
	close(release)
	wg.Wait()
	for i, err := range results {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	var ca []string
	for _, w := range sim.WireLog() {
		if strings.Contains(w.Path, "/identity/conditionalAccess/") {
			ca = append(ca, w.Method+" "+w.Path[strings.LastIndex(w.Path, "/"):])
		}
	}
	if len(ca) != 4 {
		t.Errorf("%d Conditional Access requests, want 4 (one round): %v", len(ca), ca)
	}
	ranges := 0
	for _, raw := range sim.NamedLocations() {
		if l, ok := raw["ipRanges"].([]any); ok && strings.HasPrefix(raw["displayName"].(string), "Responder blocked IPs") {
			ranges += len(l)
		}
	}
	if ranges != 10 {
		t.Errorf("%d ranges in Responder's named locations, want 10", ranges)
	}
}

package graphexec_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/m365sim"
)

// The benchmarks run the executor (budgets, $batch, coalescing) against the
// emulator with its throttling budgets on and 50 ms latency, and report the
// elapsed time against the bound the budget sets:
//
//	go test ./internal/actions/graphexec -run '^$' -bench . -benchtime 1x

func count429(sim *m365sim.Tenant) int {
	n := 0
	for _, w := range sim.WireLog() {
		if w.Status == 429 {
			n++
		}
	}
	return n
}

// BenchmarkContain1000Users disables and revokes 1,000 users. The Entra write
// quota is scaled to 200 writes per second with a burst of 200 (Microsoft's is
// 3,000 per 150 s: 20/s with a burst of 3,000, which 2,000 writes never
// exhaust), so the quota binds: bound = (2,000 − 200) / 200 per s = 9 s.
func BenchmarkContain1000Users(b *testing.B) {
	const users, burst, rate = 1000, 200.0, 200.0
	for b.Loop() {
		sim := newSim(b)
		lim := m365sim.DefaultLimits()
		lim.EntraWrites = m365sim.Limit{Capacity: burst, Per: time.Second}
		sim.SetLimits(lim)
		sim.SetThrottling(true)
		var upns []string
		for i := 0; i < users; i++ {
			u := sim.AddUser(m365sim.User{UserPrincipalName: fmt.Sprintf("user%04d@contoso.com", i)})
			upns = append(upns, u.UserPrincipalName)
		}
		sim.AddFault(m365sim.Fault{PathPrefix: "/v1.0/$batch", Latency: 50 * time.Millisecond})
		budgets := graphexec.NewBudgets(graphexec.BudgetConfig{EntraWrites: graphexec.Rate{N: burst, Per: time.Second}})
		ex := newExecutor(b, sim, graphexec.Config{Budgets: budgets})
		ctx := context.Background()
		work := make(chan string)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		start := time.Now()
		for w := 0; w < 200; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for u := range work {
					for _, a := range []actions.Name{actions.DisableUser, actions.RevokeSessions} {
						if _, err := ex.Execute(ctx, request(a, user(u), nil)); err != nil {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
						}
					}
				}
			}()
		}
		for _, u := range upns {
			work <- u
		}
		close(work)
		wg.Wait()
		el := time.Since(start)
		if len(errs) > 0 {
			b.Fatalf("%d failures, first %v", len(errs), errs[0])
		}
		for _, u := range sim.Users()[4:] {
			if u.AccountEnabled || u.RevokeCount != 1 {
				b.Fatalf("%s enabled=%t revokes=%d", u.UserPrincipalName, u.AccountEnabled, u.RevokeCount)
			}
		}
		bound := time.Duration((2*users - burst) / rate * float64(time.Second))
		b.ReportMetric(el.Seconds(), "s/contain")
		b.ReportMetric(bound.Seconds(), "s-bound")
		b.ReportMetric(el.Seconds()/bound.Seconds(), "ratio")
		b.ReportMetric(float64(count429(sim)), "429s")
		batches := 0
		for _, w := range sim.WireLog() {
			if w.Path == "/v1.0/$batch" {
				batches++
			}
		}
		b.ReportMetric(float64(batches), "batches")
	}
}

// BenchmarkPurgeOneMailbox hard-deletes 200 messages in one mailbox: never more
// than 4 requests in flight (Outlook's per-mailbox concurrency).
func BenchmarkPurgeOneMailbox(b *testing.B) {
	for b.Loop() {
		sim := newSim(b)
		sim.SetThrottling(true)
		const phish = "<bench@evil.example>"
		for i := 0; i < 200; i++ {
			if _, err := sim.AddMessage("alice@contoso.com", m365sim.Message{InternetMessageID: phish, Subject: "x", FromAddress: "a@evil.example"}); err != nil {
				b.Fatal(err)
			}
		}
		sim.AddFault(m365sim.Fault{PathPrefix: "/v1.0/users/", Latency: 50 * time.Millisecond})
		ex := newExecutor(b, sim, graphexec.Config{})
		start := time.Now()
		res, err := ex.Execute(context.Background(), request(actions.PurgeMail, actions.Target{MessageID: phish}, map[string]any{"mailboxes": "alice@contoso.com", "hard": true}))
		el := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		_ = res
		inflight := sim.MaxInFlight("alice@contoso.com")
		if inflight > 4 {
			b.Fatalf("%d requests in flight", inflight)
		}
		b.ReportMetric(el.Seconds(), "s/purge200")
		b.ReportMetric(float64(inflight), "max-in-flight")
		b.ReportMetric(float64(count429(sim)), "429s")
		b.ReportMetric((200.0/4*0.05 + 0.1), "s-bound") // 200 deletes, 4 at a time, 50 ms each, plus 2 list pages
	}
}

// BenchmarkBlock200IPs blocks 200 addresses arriving at once. Conditional
// Access allows 1 request per second; the first block needs 4 requests (read
// the locations, create one, read the policies, create the policy), so the
// bound is 3 s after the first request.
func BenchmarkBlock200IPs(b *testing.B) {
	for b.Loop() {
		sim := newSim(b)
		sim.SetThrottling(true)
		sim.AddFault(m365sim.Fault{PathPrefix: "/v1.0/identity/", Latency: 50 * time.Millisecond})
		ex := newExecutor(b, sim, graphexec.Config{Protected: actions.Protected{Users: []string{"breakglass@contoso.com"}}})
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		start := time.Now()
		for i := 0; i < 200; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ip := fmt.Sprintf("203.0.113.%d", i)
				if _, err := ex.Execute(context.Background(), request(actions.BlockIP, actions.Target{IP: ip}, nil)); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		ca := 0
		for _, w := range sim.WireLog() {
			if len(w.Path) > 14 && w.Path[:14] == "/v1.0/identity" {
				ca++
			}
		}
		bound := 3 * time.Second
		b.ReportMetric(el.Seconds(), "s/200blocks")
		b.ReportMetric(bound.Seconds(), "s-bound")
		b.ReportMetric(el.Seconds()/bound.Seconds(), "ratio")
		b.ReportMetric(float64(ca), "CA-requests")
		b.ReportMetric(float64(count429(sim)), "429s")
	}
}

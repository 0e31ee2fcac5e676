package bench

import (
	"context"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/m365sim"
)

func TestPurgeBound(t *testing.T) {
	l := m365sim.DefaultLimits()
	const lat = 50 * time.Millisecond
	cases := []struct {
		boxes, msgs int
		want        time.Duration
	}{
		{1, 200, (2 + 50) * lat},     // 2 pages, 50 rounds of 4
		{8, 200, (2 + 50) * lat},     // mailboxes in parallel
		{9, 200, 2 * (2 + 50) * lat}, // 8 at a time
		{1, 1, 2 * lat},              // 1 page, 1 delete
		{1, 0, 1 * lat},              // the search only
	}
	for _, c := range cases {
		if got := purgeBound(l, c.boxes, c.msgs, lat); got != c.want {
			t.Errorf("purgeBound(%d mailboxes, %d messages) = %s, want %s", c.boxes, c.msgs, got, c.want)
		}
	}
	// Past 10,000 calls in a mailbox the request budget binds: 20,000 messages
	// = 200 pages + 20,000 deletes, 10,200 past the burst at 10,000 / 600 s.
	if got, want := purgeBound(l, 1, 20000, time.Millisecond), 612*time.Second; got != want {
		t.Errorf("rate-bound purge: %s, want %s", got, want)
	}
}

func TestBlockIPBound(t *testing.T) {
	ca := m365sim.DefaultLimits().IdentityProtectionCA
	if got, want := blockIPBound(ca, 6, 50*time.Millisecond), 5050*time.Millisecond; got != want {
		t.Errorf("6 requests at 1/s: %s, want %s", got, want)
	}
	if got, want := blockIPBound(ca, 1, 50*time.Millisecond), 50*time.Millisecond; got != want {
		t.Errorf("1 request: %s, want %s", got, want)
	}
	seen := map[string]bool{}
	for i := 0; i < 600; i++ {
		ip := blockIPTarget(i)
		if seen[ip] {
			t.Fatalf("address %d repeats %s", i, ip)
		}
		seen[ip] = true
	}
}

// TestPurgeScenarioSmall runs the purge scenario end to end on a small N:
// every seeded message is permanently deleted, no mailbox ever saw more than
// its 4 requests in flight, and the audit trail holds the successes.
func TestPurgeScenarioSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end scenario")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := Run(ctx, Scenarios(), "purge", Options{N: 24, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Measured <= 0 || res.Bound <= 0 {
		t.Fatalf("purge result: %+v", res)
	}
	assertChecks(t, res, 7)
	for _, boxes := range []string{"1", "8"} {
		k := "mailboxes_" + boxes + "_"
		if got := res.Extra[k+"max_in_flight_per_mailbox"].(int); got < 1 || got > 4 {
			t.Errorf("%s mailbox(es): %d requests in flight on one mailbox", boxes, got)
		}
		// 24 messages: one search page and 24 deletes per mailbox, nothing more.
		n := map[string]int{"1": 1, "8": 8}[boxes]
		if got := res.Extra[k+"outlook_calls"].(int); got != n*(1+24) {
			t.Errorf("%s mailbox(es): %d Outlook calls, want %d", boxes, got, n*25)
		}
	}
	// The warm-up and the two timed requests.
	if res.Extra["audit_succeeded"] != 3 || res.Extra["purge_requests"] != 3 {
		t.Errorf("audit: %v succeeded records of %v requests", res.Extra["audit_succeeded"], res.Extra["purge_requests"])
	}
}

// TestBlockIPScenarioSmall runs the block-ip scenario end to end on a small
// N: every address ends up in Responder's named location, an enabled policy
// blocks it, every request succeeded in the audit trail, and the executor kept
// to the Conditional Access budget.
func TestBlockIPScenarioSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end scenario")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := Run(ctx, Scenarios(), "block-ip", Options{N: 6, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// Every address in Responder's named location, the policy blocks them,
	// every request succeeded, no request beyond the fewest (4: one round).
	assertChecks(t, res, 4)
	if res.N != 6 || res.Concurrency != 128 || res.Bound != blockIPBound(m365sim.DefaultLimits().IdentityProtectionCA, 4, blockIPLatency).Seconds() {
		t.Errorf("n %d, concurrency %d, bound %.2f s", res.N, res.Concurrency, res.Bound)
	}
	calls := res.Extra["ca_requests"].(int)
	// The engine paces itself: the requests it made cannot have been answered
	// faster than the budget admits them.
	if res.Measured < blockIPBound(m365sim.DefaultLimits().IdentityProtectionCA, calls, blockIPLatency).Seconds()-0.05 {
		t.Errorf("%.2f s for %d requests at 1/s: faster than the budget allows", res.Measured, calls)
	}
}

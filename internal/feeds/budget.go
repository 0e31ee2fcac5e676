package feeds

import (
	"context"
	"time"

	"github.com/responder-sec/responder/internal/budget"
)

// Priority orders the callers of a TenantBudget.
type Priority = budget.Priority

const (
	// PriorityPoll is a feed poll: it takes a token only when one is free now and
	// no action is waiting.
	PriorityPoll = budget.Poll
	// PriorityAction is a containment action (Conditional Access, risky user
	// confirmation): it reserves the next token ahead of every poll.
	PriorityAction = budget.Action
)

// TenantBudget paces the callers of one of Microsoft's per-tenant request
// budgets: Identity Protection and Conditional Access share 1 request per
// second per tenant (all apps), sign-in reports allow 5 per 10 seconds, the
// Management Activity API 2,000 a minute. It is the one token bucket
// (budget.Bucket): actions outrank polls, a poll waits while an action is
// waiting. It is safe for concurrent use.
type TenantBudget = budget.Bucket

// NewTenantBudget allows n requests per period, with a burst of n.
func NewTenantBudget(n int, per time.Duration) *TenantBudget {
	return budget.New(budget.Rate{N: float64(n), Per: per}, 0)
}

// NewIdentityProtectionBudget is Microsoft's 1 request per second per tenant for
// Identity Protection and Conditional Access, kept 10% inside the limit so that
// network jitter does not bunch two requests into one of Microsoft's seconds;
// share one value between the risk pollers and the action workers of a tenant.
func NewIdentityProtectionBudget() *TenantBudget { return NewTenantBudget(1, 1100*time.Millisecond) }

// NewReportsBudget is the sign-in reports limit, 5 requests per 10 seconds per
// app and tenant, kept 10% inside.
func NewReportsBudget() *TenantBudget { return NewTenantBudget(5, 11*time.Second) }

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backoff is the delay before attempt n (1-based) of a retried request: base
// doubling up to max, or the server's Retry-After when it is longer.
func backoff(n int, base, maxDelay, retryAfter time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	if retryAfter > d {
		d = retryAfter
	}
	return d
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

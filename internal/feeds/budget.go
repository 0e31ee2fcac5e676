package feeds

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Priority orders the callers of a TenantBudget.
type Priority int

const (
	// PriorityPoll is a feed poll: it takes a token only when one is free now and
	// no action is waiting.
	PriorityPoll Priority = iota
	// PriorityAction is a containment action (Conditional Access, risky user
	// confirmation): it reserves the next token ahead of every poll.
	PriorityAction
)

// TenantBudget is a token bucket for one of Microsoft's per-tenant request
// budgets: Identity Protection and Conditional Access share 1 request per second
// per tenant (all apps), sign-in reports allow 5 per 10 seconds, the Management
// Activity API 2,000 a minute. Actions outrank polls: a poll waits while an action
// is waiting, so polls yield to pending actions. It is safe for concurrent use.
type TenantBudget struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	tokens  float64 // may go negative: reserved by waiting actions
	last    time.Time
	actions int           // actions waiting for their reserved token
	wake    chan struct{} // closed when the waiting actions drop to zero
	now     func() time.Time
}

// NewTenantBudget allows n requests per period, with a burst of n.
func NewTenantBudget(n int, per time.Duration) *TenantBudget {
	if n <= 0 {
		n = 1
	}
	if per <= 0 {
		per = time.Second
	}
	return &TenantBudget{rate: float64(n) / per.Seconds(), burst: float64(n), tokens: float64(n), now: time.Now, wake: make(chan struct{})}
}

// NewIdentityProtectionBudget is Microsoft's 1 request per second per tenant for
// Identity Protection and Conditional Access, kept 10% inside the limit so that
// network jitter does not bunch two requests into one of Microsoft's seconds;
// share one value between the risk pollers and the action workers of a tenant.
func NewIdentityProtectionBudget() *TenantBudget { return NewTenantBudget(1, 1100*time.Millisecond) }

// NewReportsBudget is the sign-in reports limit, 5 requests per 10 seconds per
// app and tenant, kept 10% inside.
func NewReportsBudget() *TenantBudget { return NewTenantBudget(5, 11*time.Second) }

func (b *TenantBudget) refillLocked(now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(b.burst, b.tokens+el*b.rate)
	}
	if now.After(b.last) {
		b.last = now
	}
}

// Wait blocks until the caller may send one request, or ctx ends.
func (b *TenantBudget) Wait(ctx context.Context, p Priority) error {
	if p == PriorityAction {
		return b.waitAction(ctx)
	}
	for {
		b.mu.Lock()
		now := b.now()
		b.refillLocked(now)
		if b.actions == 0 && b.tokens >= 1 {
			b.tokens--
			b.mu.Unlock()
			return nil
		}
		var d time.Duration
		if b.tokens < 1 {
			d = time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
		}
		wake := b.wake
		busy := b.actions > 0
		b.mu.Unlock()
		if busy {
			// Wait for the actions to go, then look again.
			select {
			case <-ctx.Done():
				return fmt.Errorf("feeds: wait for request budget: %w", ctx.Err())
			case <-wake:
			}
			continue
		}
		if err := sleepCtx(ctx, d); err != nil {
			return fmt.Errorf("feeds: wait for request budget: %w", err)
		}
	}
}

func (b *TenantBudget) waitAction(ctx context.Context) error {
	b.mu.Lock()
	now := b.now()
	b.refillLocked(now)
	b.tokens-- // reserve, possibly into debt
	var d time.Duration
	if b.tokens < 0 {
		d = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.actions++
	b.mu.Unlock()
	err := sleepCtx(ctx, d)
	b.mu.Lock()
	b.actions--
	if err != nil {
		b.tokens++ // give the reservation back
	}
	if b.actions == 0 {
		close(b.wake)
		b.wake = make(chan struct{})
	}
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("feeds: wait for request budget: %w", err)
	}
	return nil
}

// Throttled tells the budget that Microsoft answered "too many requests": no
// poll is let through for d (actions still queue in order behind it).
func (b *TenantBudget) Throttled(d time.Duration) {
	if d <= 0 {
		return
	}
	b.mu.Lock()
	b.refillLocked(b.now())
	b.tokens = min(b.tokens, 0) - d.Seconds()*b.rate
	b.mu.Unlock()
}

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

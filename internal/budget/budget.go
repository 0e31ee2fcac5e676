// Package budget is Responder's one token bucket: the pacing of every caller
// against one of Microsoft's request budgets (Entra writes and resource units,
// Identity Protection and Conditional Access at 1 request per second per
// tenant, sign-in reports, the Management Activity API). The emulator's own
// throttle (internal/m365sim) is the Microsoft side and stays apart.
//
// A Bucket hands out reservations in arrival order: an action takes its tokens
// at once (the balance may go negative) and waits until the balance it left
// behind is paid back, so actions are served first come, first served; a poll
// takes a token only when one is free now and no action is waiting, so polls
// yield to pending actions. A Bucket is safe for concurrent use and owns no
// goroutine; its clock is injectable.
package budget

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/responder-sec/responder/internal/clock"
)

// Rate is N requests (or resource units) per Per, with a burst of N.
type Rate struct {
	N   float64
	Per time.Duration
}

// Priority orders the callers of a Bucket.
type Priority int

const (
	// Poll takes a token only when one is free now and no action is waiting.
	Poll Priority = iota
	// Action reserves the next tokens ahead of every poll.
	Action
)

// Bucket is a token bucket for one budget.
type Bucket struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	tokens  float64 // may go negative: reserved by waiting actions
	last    time.Time
	actions int           // actions waiting for their reserved tokens
	wake    chan struct{} // closed when the waiting actions drop to zero
	clock   clock.Clock
}

// New paces at r (a burst of r.N), slowed by the margin fraction (0.05 paces
// 5% under the budget, leaving room for network jitter). A zero or negative
// rate is one request per second.
func New(r Rate, margin float64) *Bucket { return NewWithClock(r, margin, nil) }

// NewWithClock is New with an injected clock (nil: the real one).
func NewWithClock(r Rate, margin float64, c clock.Clock) *Bucket {
	if r.N <= 0 {
		r.N = 1
	}
	if r.Per <= 0 {
		r.Per = time.Second
	}
	c = clock.Or(c)
	return &Bucket{rate: r.N / r.Per.Seconds() * (1 - margin), burst: r.N, tokens: r.N, last: c.Now(), clock: c, wake: make(chan struct{})}
}

func (b *Bucket) refillLocked(now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(b.burst, b.tokens+el*b.rate)
	}
	if now.After(b.last) {
		b.last = now
	}
}

// Wait blocks until the caller may send one request, or ctx ends.
func (b *Bucket) Wait(ctx context.Context, p Priority) error {
	if p == Action {
		return b.WaitN(ctx, 1)
	}
	for {
		b.mu.Lock()
		b.refillLocked(b.clock.Now())
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
				return fmt.Errorf("budget: wait: %w", ctx.Err())
			case <-wake:
			}
			continue
		}
		if err := b.sleep(ctx, d); err != nil {
			return fmt.Errorf("budget: wait: %w", err)
		}
	}
}

// WaitN reserves n tokens at action priority and blocks until they are paid
// for, or ctx ends (then the reservation is given back).
func (b *Bucket) WaitN(ctx context.Context, n float64) error {
	b.mu.Lock()
	b.refillLocked(b.clock.Now())
	b.tokens -= n // reserve, possibly into debt
	if b.tokens >= 0 {
		b.mu.Unlock()
		return nil
	}
	d := time.Duration(-b.tokens / b.rate * float64(time.Second))
	b.actions++
	b.mu.Unlock()
	err := b.sleep(ctx, d)
	b.mu.Lock()
	b.actions--
	if err != nil {
		b.tokens += n // give the reservation back
	}
	if b.actions == 0 {
		close(b.wake)
		b.wake = make(chan struct{})
	}
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("budget: wait: %w", err)
	}
	return nil
}

// Throttled tells the bucket that Microsoft answered "too many requests": no
// poll is let through for d (actions still queue in order behind it).
func (b *Bucket) Throttled(d time.Duration) {
	if d <= 0 {
		return
	}
	b.mu.Lock()
	b.refillLocked(b.clock.Now())
	b.tokens = min(b.tokens, 0) - d.Seconds()*b.rate
	b.mu.Unlock()
}

// sleep waits d on the bucket's clock or until ctx ends.
func (b *Bucket) sleep(ctx context.Context, d time.Duration) error {
	return clock.Sleep(ctx, b.clock, d)
}

package budget

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/clock/clocktest"
)

func newFakeClock() *clocktest.Fake {
	return clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

// TestActionsGoBeforePolls: an action that arrives while a poll waits goes
// first; the poll waits for the next token after it.
func TestActionsGoBeforePolls(t *testing.T) {
	clk := newFakeClock()
	b := NewWithClock(Rate{N: 1, Per: 50 * time.Millisecond}, 0, clk)
	ctx := context.Background()
	if err := b.Wait(ctx, Poll); err != nil { // takes the only token
		t.Fatal(err)
	}
	pollDone := make(chan error, 1)
	go func() { pollDone <- b.Wait(ctx, Poll) }()
	if d := <-clk.Armed; d != 50*time.Millisecond { // the poll waits for the next token
		t.Fatalf("poll waits %s", d)
	}
	actionDone := make(chan error, 1)
	go func() { actionDone <- b.Wait(ctx, Action) }()
	if d := <-clk.Armed; d != 50*time.Millisecond { // the action reserved that token
		t.Fatalf("action waits %s", d)
	}
	clk.Advance(50 * time.Millisecond)
	if err := <-actionDone; err != nil {
		t.Fatal(err)
	}
	// The poll found the token taken and waits again, for the one after.
	if d := <-clk.Armed; d != 50*time.Millisecond {
		t.Fatalf("poll waits again %s", d)
	}
	select {
	case err := <-pollDone:
		t.Fatalf("the poll went through with the action's token (err %v)", err)
	default:
	}
	clk.Advance(50 * time.Millisecond)
	if err := <-pollDone; err != nil {
		t.Fatal(err)
	}
}

// TestReservationsInArrivalOrder: WaitN callers are paced one after the other
// at the rate (slowed by the margin), and a cancelled wait gives its tokens
// back.
func TestReservationsInArrivalOrder(t *testing.T) {
	clk := newFakeClock()
	b := NewWithClock(Rate{N: 10, Per: time.Second}, 0.5, clk) // 5 tokens/s after the burst of 10
	ctx := context.Background()
	if err := b.WaitN(ctx, 10); err != nil { // the burst, at once
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.WaitN(ctx, 5) }()
	if d := <-clk.Armed; d != time.Second {
		t.Fatalf("5 tokens at 5/s wait %s, want 1s", d)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() { cancelled <- b.WaitN(cctx, 5) }()
	if d := <-clk.Armed; d != 2*time.Second { // behind the first reservation
		t.Fatalf("second reservation waits %s, want 2s", d)
	}
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	clk.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The cancelled reservation was given back: the balance is 0, so one more
	// token takes 200ms, not 1.2s.
	go func() { done <- b.WaitN(ctx, 1) }()
	if d := <-clk.Armed; d != 200*time.Millisecond {
		t.Fatalf("after the cancelled reservation a token waits %s, want 200ms", d)
	}
	clk.Advance(200 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestThrottledHoldsPolls: after Microsoft's 429 no poll goes through for the
// Retry-After.
func TestThrottledHoldsPolls(t *testing.T) {
	clk := newFakeClock()
	b := NewWithClock(Rate{N: 5, Per: time.Second}, 0, clk)
	b.Throttled(3 * time.Second)
	done := make(chan error, 1)
	go func() { done <- b.Wait(context.Background(), Poll) }()
	if d := <-clk.Armed; d != 3*time.Second+200*time.Millisecond {
		t.Fatalf("poll after a 3s throttle waits %s", d)
	}
	clk.Advance(3*time.Second + 200*time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Package clock is the time a part of Responder sees when a test must be able
// to move it: Now and a timer. Parts take a Clock (nil = Real) so that their
// tests synchronise on the timers they arm (clocktest.Fake) instead of on
// wall-clock windows.
package clock

import (
	"context"
	"time"
)

// Clock is the current time and a timer.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed, and a
	// function that stops the timer.
	After(d time.Duration) (<-chan time.Time, func() bool)
}

// Real is the system clock.
type Real struct{}

// Now is time.Now.
func (Real) Now() time.Time { return time.Now() }

// After is a time.Timer.
func (Real) After(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// Or returns c, or Real when c is nil.
func Or(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}

// Sleep waits d on c or until ctx ends (ctx's error). d <= 0 returns at once
// (ctx's error, if it already ended).
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	ch, stop := c.After(d)
	defer stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
		return nil
	}
}

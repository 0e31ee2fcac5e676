// Package clocktest is a clock.Clock for tests: it moves only when told, and
// reports every timer armed, so a test waits for the goroutine under test to
// block on its clock (an event) instead of sleeping.
package clocktest

import (
	"sync"
	"time"
)

// Fake is a manual clock. The zero value is not usable; use New.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []timer
	// Armed receives the duration of every timer armed (buffered; a test that
	// does not read it must not arm more than its capacity).
	Armed chan time.Duration
}

type timer struct {
	at      time.Time
	c       chan time.Time
	stopped *bool
}

// New returns a fake clock at start.
func New(start time.Time) *Fake {
	return &Fake{now: start, Armed: make(chan time.Duration, 1024)}
}

// Now is the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After arms a timer that fires when the clock is advanced past d from now.
func (f *Fake) After(d time.Duration) (<-chan time.Time, func() bool) {
	f.mu.Lock()
	c := make(chan time.Time, 1)
	stopped := new(bool)
	if d <= 0 {
		c <- f.now
	} else {
		f.timers = append(f.timers, timer{at: f.now.Add(d), c: c, stopped: stopped})
	}
	f.mu.Unlock()
	f.Armed <- d
	return c, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		was := !*stopped
		*stopped = true
		return was
	}
}

// WaitArmed waits until n more timers are armed and returns their durations.
func (f *Fake) WaitArmed(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = <-f.Armed
	}
	return out
}

// Advance moves the clock by d and fires every timer due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.timers[:0]
	for _, t := range f.timers {
		switch {
		case *t.stopped:
		case !t.at.After(f.now):
			t.c <- f.now
		default:
			kept = append(kept, t)
		}
	}
	f.timers = kept
}

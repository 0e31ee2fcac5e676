package m365sim

import "time"

// preciseTail is the end of an injected latency that is waited on a
// high-resolution timer (waitPrecise) instead of a time.Timer.
//
// Go's runtime waits for timers in whole milliseconds when it has nothing
// else to do: netpoll passes epoll_wait a timeout of delay/1e6 ms, and 1 ms
// for anything shorter (runtime/netpoll_epoll.go, go1.26), so a 50 ms
// time.Timer in an otherwise idle emulator fires up to a millisecond late.
// Measured in the purge benchmark (bench purge, 50 ms on every Graph call):
// 0.75 ms late on average, i.e. the emulator answered after 50.75 ms, not the
// 50 ms the scenario's bound is computed with, and the difference was charged
// to the engine. With the last preciseTail waited on a timerfd the wake-up is
// 0.1-0.2 ms after the deadline and never before it.
const preciseTail = 2 * time.Millisecond

// waitLatency waits d (an injected latency) and reports true, or false when
// cancel (may be nil) or the tenant's end comes first. The bulk of d is
// waited on a time.Timer and can be cut short; the last preciseTail is
// waited precisely and is not (a closing tenant waits at most that long for
// the handler).
func (t *Tenant) waitLatency(cancel <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	deadline := time.Now().Add(d)
	if bulk := d - preciseTail; bulk > 0 {
		tm := time.NewTimer(bulk)
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-cancel:
			return false
		case <-t.done:
			return false
		}
	}
	waitPrecise(time.Until(deadline))
	return true
}

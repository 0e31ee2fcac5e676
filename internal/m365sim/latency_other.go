//go:build !linux

package m365sim

import "time"

// waitPrecise waits d. Only Linux has the timerfd path (latency_linux.go);
// elsewhere the runtime's timer precision applies.
func waitPrecise(d time.Duration) { time.Sleep(d) }

package m365sim

import (
	"slices"
	"testing"
	"time"
)

// TestWaitLatencyNeverEarly: an injected latency is waited in full, both the
// part on the runtime's timer and the precise tail, for latencies shorter and
// longer than the tail; the lateness is logged (the median is what the
// purge benchmark's bound feels).
func TestWaitLatencyNeverEarly(t *testing.T) {
	tn := &Tenant{done: make(chan struct{})}
	for _, d := range []time.Duration{500 * time.Microsecond, preciseTail, 7*time.Millisecond + 300*time.Microsecond} {
		late := make([]time.Duration, 0, 15)
		for range 15 {
			start := time.Now()
			if !tn.waitLatency(nil, d) {
				t.Fatalf("waitLatency(%s) reported cancelled with nothing cancelled", d)
			}
			got := time.Since(start)
			if got < d {
				t.Fatalf("waitLatency(%s) returned after %s: early", d, got)
			}
			late = append(late, got-d)
		}
		slices.Sort(late)
		t.Logf("latency %s: median %s late, max %s", d, late[len(late)/2], late[len(late)-1])
	}
	if !tn.waitLatency(nil, 0) || !tn.waitLatency(nil, -time.Second) {
		t.Fatal("no latency must not count as cancelled")
	}
}

// TestWaitLatencyCancelled: a client that goes away, or a tenant that
// closes, ends the wait before the latency is over and says so.
func TestWaitLatencyCancelled(t *testing.T) {
	gone := make(chan struct{})
	close(gone)
	tn := &Tenant{done: make(chan struct{})}
	start := time.Now()
	if tn.waitLatency(gone, time.Hour) {
		t.Fatal("waitLatency with the client gone reported a full wait")
	}
	closed := &Tenant{done: make(chan struct{})}
	close(closed.done)
	if closed.waitLatency(nil, time.Hour) {
		t.Fatal("waitLatency on a closed tenant reported a full wait")
	}
	if el := time.Since(start); el > time.Minute {
		t.Fatalf("cancelled waits took %s", el)
	}
}

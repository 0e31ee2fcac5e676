package bench

import (
	"context"
	"testing"
	"time"
)

// The Defender scenarios at a small size: every correctness check passes
// (the goals are the benchmarks' own, on a quiet machine).
func TestIsolateScenarioSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end scenario")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := Run(ctx, Scenarios(), "isolate", Options{N: 12, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	assertChecks(t, res, 3)
	if calls := res.Extra["calls"].(map[string]int); calls["isolate"] != 12 || calls["machine_reads"] != 12 {
		t.Errorf("calls %v", calls)
	}
}

func TestIndicatorsScenarioSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end scenario")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := Run(ctx, Scenarios(), "indicators", Options{N: 40, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// 40 at once: one import call (fewest ceil(40/500) = 1).
	assertChecks(t, res, 4)
	if res.Extra["import_calls"].(int) != 1 || res.Bound != (2*defenderLatency).Seconds() {
		t.Errorf("imports %v, bound %.2f", res.Extra["import_calls"], res.Bound)
	}
}

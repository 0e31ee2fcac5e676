package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"
)

func TestGoal(t *testing.T) {
	cases := []struct {
		g     Goal
		ratio float64
		met   bool
		str   string
	}{
		{Goal{AtMost, 1.10}, 1.05, true, "<= 1.10"},
		{Goal{AtMost, 1.10}, 1.10, true, "<= 1.10"},
		{Goal{AtMost, 1.10}, 1.11, false, "<= 1.10"},
		{Goal{AtLeast, 1}, 0.99, false, ">= 1.00"},
		{Goal{AtLeast, 1}, 3, true, ">= 1.00"},
		{Goal{AtLeast, 1}, math.Inf(1), false, ">= 1.00"},
		{Goal{AtMost, 1}, math.NaN(), false, "<= 1.00"},
	}
	for _, c := range cases {
		if got := c.g.Met(c.ratio); got != c.met {
			t.Errorf("%s met by %v = %t, want %t", c.g, c.ratio, got, c.met)
		}
		if c.g.String() != c.str {
			t.Errorf("goal string %q, want %q", c.g.String(), c.str)
		}
	}
}

func TestResultJSONIsOneFlatObject(t *testing.T) {
	r := Result{Scenario: "bus", Measured: 2500, Unit: "requests/s", Bound: 2000, Goal: Goal{AtLeast, 1},
		N: 300, Concurrency: 128, Extra: map[string]any{"p99_ms": 12.5}}
	r.AddCheck("nothing left in the stream", true, "0 left")
	r.Complete()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"scenario": "bus", "measured": 2500.0, "unit": "requests/s", "bound": 2000.0,
		"ratio": 1.25, "goal": ">= 1.00", "met": true, "p99_ms": 12.5, "n": 300.0, "concurrency": 128.0}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (%s)", k, m[k], v, b)
		}
	}
	checks, _ := m["checks"].([]any)
	if len(checks) != 1 || checks[0].(map[string]any)["name"] != "nothing left in the stream" || checks[0].(map[string]any)["ok"] != true {
		t.Errorf("checks = %v (%s)", m["checks"], b)
	}
	r.Extra["met"] = false
	if _, err := json.Marshal(r); err == nil {
		t.Error("an extra key shadowing a result field was accepted")
	}
}

// TestMetNeedsGoalAndChecks: a result is met only when the goal is met and it
// has checks, every one passed.
func TestMetNeedsGoalAndChecks(t *testing.T) {
	cases := []struct {
		name     string
		measured float64
		checks   []bool
		met      bool
	}{
		{"goal met, checks pass", 1.0, []bool{true, true}, true},
		{"goal met, no checks", 1.0, nil, false},
		{"goal met, one check fails", 1.0, []bool{true, false}, false},
		{"goal missed, checks pass", 1.2, []bool{true}, false},
	}
	for _, c := range cases {
		r := Result{Measured: c.measured, Bound: 1, Goal: Goal{AtMost, 1.05}}
		for i, ok := range c.checks {
			r.AddCheck(fmt.Sprint("check ", i), ok, "")
		}
		r.Complete()
		if r.Met != c.met {
			t.Errorf("%s: met = %t, want %t", c.name, r.Met, c.met)
		}
	}
}

func TestRegistry(t *testing.T) {
	m := Scenarios()
	for _, name := range []string{"bus", "latency", "contain", "purge", "block-ip", "ingest", "match"} {
		s, ok := m[name]
		if !ok || s.Run == nil || s.Description == "" || s.Owner == "" {
			t.Errorf("scenario %q missing or incomplete: %+v", name, s)
		}
	}
	if _, err := Run(context.Background(), m, "nope", Options{}); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown scenario: %v", err)
	}
}

// TestIngestScenarioSmall runs the ingest scenario on 20,000 records: both blob
// sizes store every record once (checked) and report their figures.
func TestIngestScenarioSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("measures peak memory, which the race detector inflates; runs in the full suite")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	res, err := Run(ctx, Scenarios(), "ingest", Options{N: 20000, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Measured <= 0 || res.Bound <= 0 || res.Unit != "events/s" || res.Goal != (Goal{AtLeast, 0.5}) {
		t.Errorf("ingest result: %+v", res)
	}
	for _, k := range []string{"blob_2000_events_per_s", "blob_20000_events_per_s", "blob_2000_baseline_per_s", "blob_20000_ratio"} {
		if v, ok := res.Extra[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v", k, res.Extra[k])
		}
	}
	if res.Extra["records"] != 20000 || res.Extra["peak_mb"].(float64) <= 0 || res.N != 20000 {
		t.Errorf("ingest extras: n %d, %v", res.N, res.Extra)
	}
	assertChecks(t, res, 4)
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if percentile(d, 50) != 50 || percentile(d, 99) != 99 || percentile(d, 100) != 100 || percentile(d[:1], 99) != 1 {
		t.Error("nearest-rank percentiles are off")
	}
}

// TestBusScenarioSmall runs the bus scenario end to end on a small N: every
// request gets its outcome and nothing is left in the work queue.
func TestBusScenarioSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	procs := runtime.GOMAXPROCS(0)
	res, err := Run(ctx, Scenarios(), "bus", Options{N: 300, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Measured <= 0 || res.N != 300 || res.Concurrency != 128 || res.Extra["gomaxprocs"] != busProcs {
		t.Errorf("bus result: %+v", res)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS left at %d, was %d", got, procs)
	}
	assertChecks(t, res, 3)
}

// assertChecks fails unless res has at least min checks and every one passed.
func assertChecks(t *testing.T, res Result, min int) {
	t.Helper()
	if len(res.Checks) < min {
		t.Errorf("%s: %d checks, want at least %d", res.Scenario, len(res.Checks), min)
	}
	for _, c := range res.Checks {
		if !c.OK {
			t.Errorf("%s: check %q failed: %s", res.Scenario, c.Name, c.Detail)
		}
	}
}

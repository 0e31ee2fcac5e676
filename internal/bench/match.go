package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/responder-sec/responder/internal/bench/matchbench"
)

// fixturesDir finds the public fixtures folder (../shared/fixtures/public beside
// the checkout), looking up from the working directory.
func fixturesDir() (string, error) {
	if d := os.Getenv("RESPONDER_FIXTURES"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		for _, c := range []string{filepath.Join(d, "shared", "fixtures", "public"), filepath.Join(d, "..", "shared", "fixtures", "public")} {
			if st, err := os.Stat(c); err == nil && st.IsDir() {
				return c, nil
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("bench: the public fixtures (../shared/fixtures/public) are not here; set RESPONDER_FIXTURES")
		}
	}
}

// Goals of the match scenario, on one core.
const (
	matchOnlyGoal   = 1_000_000 // events/s, each event matched once right after decoding
	decodeMatchGoal = 100_000   // events/s, from the envelope with its raw record
)

// runMatch measures the matcher on one core with a hundred distinct Sigma
// rules (the 25 public ones and variants with other values) and the shipped
// playbooks, stateful ones counting: the headline is each event matched once
// right after its decoding (goal 1,000,000 events per second of CPU time),
// decode plus match is a check (goal 100,000). Every case must run its N
// events, and the matches on a sample must equal each playbook's evaluated
// on its own (the compiled matcher against the rules' reference evaluation
// is the differential test's and FuzzSigma's job: the reference lives in
// the tests).
func runMatch(ctx context.Context, o Options) (Result, error) {
	fx, err := fixturesDir()
	if err != nil {
		return Result{}, err
	}
	events := o.N
	if events <= 0 {
		events = 100000
	}
	o.progressf("match: %d events cloned from %s, one core", events, fx)
	br, err := matchbench.Run(ctx, matchbench.Options{FixturesDir: fx, PlaybookDir: "playbooks", Events: events, Rules: 100, OneCore: true})
	if err != nil {
		return Result{}, err
	}
	res := Result{Scenario: "match", Unit: "events/s", Bound: matchOnlyGoal, N: events, Concurrency: 1,
		BoundNote: "issue goal: 100 distinct Sigma rules and the shipped playbooks, each event matched once right after decoding, one core (GOMAXPROCS 1), per second of the process's CPU time (the wall-clock figures are beside it)",
		Goal:      Goal{AtLeast, 1},
		Extra:     map[string]any{"events": br.Events, "source_records": br.SourceRecords, "gomaxprocs": br.GoMaxProcs, "peak_heap_bytes": br.PeakHeapBytes}}
	headline := false
	for _, c := range br.Cases {
		p := c.Name + "_"
		res.Extra[p+"rules"] = c.Rules
		res.Extra[p+"distinct_rules"] = c.DistinctRules
		res.Extra[p+"fired"] = c.Fired
		res.Extra[p+"match_only"] = c.MatchOnly
		res.Extra[p+"decode_match"] = c.DecodeMatch
		res.Extra[p+"normalize_decode_match"] = c.NormalizeMatch
		res.Extra[p+"match_only_per_cpu_second"] = c.MatchOnlyCPU
		res.Extra[p+"decode_match_per_cpu_second"] = c.DecodeMatchCPU
		ran := c.Ran[0] == events && c.Ran[1] == events && c.Ran[2] == events
		res.AddCheck(c.Name+": every phase ran N events", ran, fmt.Sprintf("match only %d, decode+match %d, normalise+decode+match %d of %d", c.Ran[0], c.Ran[1], c.Ran[2], events))
		detail := fmt.Sprintf("%d sampled events equal", c.Sampled)
		if c.Mismatch != "" {
			detail = c.Mismatch
		}
		res.AddCheck(c.Name+": matches equal each playbook evaluated on its own", c.Mismatch == "" && c.Sampled > 0, detail)
		if c.Name != matchbench.Headline {
			continue
		}
		headline = true
		// One core's work: the process's CPU time with GOMAXPROCS 1 (the
		// collector's share included), which other processes on a shared
		// machine do not inflate as they do the wall clock; the wall clock
		// where CPU time is not measured.
		mo, dm := c.MatchOnlyCPU, c.DecodeMatchCPU
		if mo == 0 || dm == 0 {
			mo, dm = c.MatchOnly, c.DecodeMatch
		}
		res.Measured = mo
		res.AddCheck("distinct rules", c.DistinctRules == c.Rules && c.Rules >= 100, fmt.Sprintf("%d rules, %d distinct", c.Rules, c.DistinctRules))
		res.AddCheck("decode+match at least 100,000 events/s", dm >= decodeMatchGoal, fmt.Sprintf("%.0f events per CPU second (%.0f per wall-clock second)", dm, c.DecodeMatch))
	}
	res.AddCheck("headline case ran", headline, matchbench.Headline)
	res.Complete()
	return res, nil
}

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/responder-sec/responder/internal/playbook"
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

// runMatch measures the matcher with ~100 Sigma rules (the 25 shared rules four
// times over) on one core: match only, against the goal of 1,000,000
// events per second; decode plus match and the other cases are extra figures.
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
	br, err := playbook.BenchMatch(ctx, playbook.BenchOptions{FixturesDir: fx, PlaybookDir: "playbooks", Events: events, SigmaCopies: 4, OneCore: true})
	if err != nil {
		return Result{}, err
	}
	res := Result{Scenario: "match", Unit: "events/s", Bound: 1_000_000, BoundNote: "issue goal: ~100 Sigma rules, match only, one core",
		Goal: Goal{AtLeast, 1}, Extra: map[string]any{"events": br.Events, "peak_heap_bytes": br.PeakHeapBytes}}
	for _, c := range br.Cases {
		res.Extra[c.Name+"_rules"] = c.Rules
		res.Extra[c.Name+"_match_only"] = c.MatchOnly
		res.Extra[c.Name+"_decode_match"] = c.DecodeMatch
		if c.Rules >= 90 && res.Measured == 0 {
			res.Measured = c.MatchOnly
		}
	}
	res.Complete()
	return res, nil
}

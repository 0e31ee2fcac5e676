package playbook_test

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/responder-sec/responder/internal/bench/matchbench"
	"github.com/responder-sec/responder/internal/playbook"
)

const (
	fixturesDir = "../../../shared/fixtures/public"
	shippedDir  = "../../playbooks"
)

var testDomains = []string{"contoso.com", "contoso.onmicrosoft.com"}

// corpus is the benchmark's corpus of n events.
func corpus(t testing.TB) *matchbench.Corpus {
	t.Helper()
	recs, err := matchbench.PublicRecords(fixturesDir)
	if err != nil {
		t.Fatalf("public fixtures (../shared/fixtures/public beside the checkout): %v", err)
	}
	gen := matchbench.NewCorpus(recs)
	if gen == nil {
		t.Fatal("no record normalises")
	}
	return gen
}

// distinctSet loads n distinct Sigma rules (the public ones and variants),
// one playbook each, with the shipped playbooks: the benchmark's headline set.
func distinctSet(t testing.TB, n int, withShipped bool) *playbook.Set {
	t.Helper()
	rules, err := matchbench.DistinctRules(filepath.Join(fixturesDir, "sigma"), n)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	shipped := ""
	if withShipped {
		shipped = shippedDir
	}
	if err := matchbench.WriteRuleSet(dir, rules, shipped); err != nil {
		t.Fatal(err)
	}
	set, err := playbook.LoadDir(dir, playbook.LoadOptions{VerifiedDomains: testDomains, BaseDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return set.WithAllEnabled()
}

// TestDifferentialMatch: the optimised matcher (index, compiled program,
// per-event memo, Match construction) returns exactly what the reference
// evaluation returns (every unit in order, no index, each Sigma rule on its
// parsed tree, the plain Match construction), for every event of the
// benchmark corpus (100,000 events; 20,000 with -short), with the shipped
// playbooks (stateful, with a counter each), the public Sigma rules, a
// hundred distinct rules with the shipped playbooks (the benchmark's
// headline), and the public rules four times over. Match (pooled context,
// lazy decoding), MatchDecoded (decoded ahead) and HitsDecoded then
// RenderDecoded (the match-only benchmark) are all checked.
func TestDifferentialMatch(t *testing.T) {
	gen := corpus(t)
	public, _, err := playbook.LoadSigmaDir(filepath.Join(fixturesDir, "sigma"))
	if err != nil || len(public) == 0 {
		t.Fatal("no sigma rules", err)
	}
	shipped, err := playbook.LoadDir(shippedDir, playbook.LoadOptions{VerifiedDomains: testDomains})
	if err != nil {
		t.Fatal(err)
	}
	n := 100000
	if testing.Short() {
		n = 20000
	}
	sets := []struct {
		name string
		set  *playbook.Set
	}{
		{"playbooks", shipped.WithAllEnabled()},
		{"sigma", playbook.SigmaSet(public, 1)},
		{"sigma100+playbooks", distinctSet(t, 100, true)},
		{"sigma x4", playbook.SigmaSet(public, 4)},
	}
	ctx := context.Background()
	for _, ns := range sets {
		t.Run(ns.name, func(t *testing.T) {
			set := ns.set
			var optC, refC, decC, hitC playbook.Counter
			if set.Stateful() {
				optC, refC, decC, hitC = playbook.NewMemCounter(), playbook.NewMemCounter(), playbook.NewMemCounter(), playbook.NewMemCounter()
			}
			fired, matches := 0, 0
			var d playbook.Decoded
			var hits []playbook.Hit
			var hitErr error
			for i := 0; i < n; i++ {
				env := gen.At(i)
				want, wantErr := set.MatchReference(ctx, &env, refC)
				var got []playbook.Match
				var gotErr error
				if optC != nil {
					got, gotErr = set.MatchStateful(ctx, &env, optC)
				} else {
					got, gotErr = set.Match(&env)
				}
				if !sameMatches(got, gotErr, want, wantErr) {
					t.Fatalf("event %d (%s %q): Match\n got %s\nwant %s", i, env.Source, env.Kind, showMatches(got, gotErr), showMatches(want, wantErr))
				}
				set.Decode(&env, &d)
				dec, decErr := set.MatchDecoded(ctx, &d, decC)
				d.Release()
				if !sameMatches(dec, decErr, want, wantErr) {
					t.Fatalf("event %d (%s %q): match-only\n got %s\nwant %s", i, env.Source, env.Kind, showMatches(dec, decErr), showMatches(want, wantErr))
				}
				// the hits alone (the match-only benchmark), then their Matches
				set.Decode(&env, &d)
				hits, hitErr = set.HitsDecoded(ctx, &d, hitC, hits[:0])
				lazy, renderErr := set.RenderDecoded(&d, hits)
				d.Release()
				if renderErr != nil || !sameMatches(lazy, hitErr, want, wantErr) || len(hits) != len(want) {
					t.Fatalf("event %d (%s %q): hits then render (render error %v)\n got %s\nwant %s", i, env.Source, env.Kind, renderErr, showMatches(lazy, hitErr), showMatches(want, wantErr))
				}
				for k := range hits {
					if hits[k].Playbook() != want[k].Playbook {
						t.Fatalf("event %d: hit %d is %s, want %s", i, k, hits[k].Playbook(), want[k].Playbook)
					}
				}
				if len(want) > 0 {
					fired++
				}
				matches += len(want)
			}
			if ns.name != "playbooks" && fired == 0 {
				t.Error("nothing fired: the comparison proves little")
			}
			t.Logf("%d events, %d fired, %d matches, all equal", n, fired, matches)
		})
	}
}

func sameMatches(got []playbook.Match, gotErr error, want []playbook.Match, wantErr error) bool {
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		return false
	}
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !reflect.DeepEqual(normMatch(got[i]), normMatch(want[i])) {
			return false
		}
	}
	return true
}

// normMatch: nil and empty slices are the same result.
func normMatch(m playbook.Match) playbook.Match {
	if len(m.Steps) == 0 {
		m.Steps = nil
	}
	if len(m.Approval) == 0 {
		m.Approval = nil
	}
	return m
}

func showMatches(ms []playbook.Match, err error) string {
	s := fmt.Sprintf("err=%v", err)
	for _, m := range ms {
		s += fmt.Sprintf("\n  %s: %s steps=%+v key=%q", m.Playbook, m.Reason, m.Steps, m.SuppressionKey)
	}
	return s
}

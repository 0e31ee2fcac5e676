package matchbench

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

const (
	fixturesDir = "../../../../shared/fixtures/public"
	shippedDir  = "../../../playbooks"
)

// TestDistinctRules: the generated rules are distinct, load, and start with
// the public ones.
func TestDistinctRules(t *testing.T) {
	rules, err := DistinctRules(filepath.Join(fixturesDir, "sigma"), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 100 {
		t.Fatalf("%d rules", len(rules))
	}
	seen := map[string]bool{}
	public := 0
	for _, r := range rules {
		if seen[r.Key] {
			t.Errorf("%s: not distinct", r.Name)
		}
		seen[r.Key] = true
		if r.Variant == 0 {
			public++
		}
	}
	if public != 25 {
		t.Errorf("%d public rules, want the 25 shared ones", public)
	}
}

// TestRun: the harness runs every case on a small corpus, every phase ran
// every event, and the sample check passed.
func TestRun(t *testing.T) {
	res, err := Run(context.Background(), Options{FixturesDir: fixturesDir, PlaybookDir: shippedDir,
		VerifiedDomains: []string{"contoso.com"}, Events: 3000, OneCore: true, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 3000 || len(res.Cases) != 3 || res.PeakHeapBytes == 0 || res.GoMaxProcs != 1 {
		t.Fatalf("%+v", res)
	}
	for _, c := range res.Cases {
		if c.MatchOnly <= 0 || c.DecodeMatch <= 0 || c.NormalizeMatch <= 0 {
			t.Errorf("%+v", c)
		}
		if c.Ran != [3]int{3000, 3000, 3000} || c.Sampled == 0 || c.Mismatch != "" {
			t.Errorf("%s: ran %v, sampled %d, mismatch %q", c.Name, c.Ran, c.Sampled, c.Mismatch)
		}
		if c.Name != "playbooks" && c.Fired == 0 {
			t.Errorf("%s: nothing fired over the public records", c.Name)
		}
		if c.DistinctRules != c.Rules {
			t.Errorf("%s: %d rules, %d distinct", c.Name, c.Rules, c.DistinctRules)
		}
	}
	shipped, err := filepath.Glob(filepath.Join(shippedDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if h := res.Cases[2]; h.Name != Headline || h.Rules != 100+len(shipped) || !h.Stateful {
		t.Errorf("headline %+v, want 100 distinct Sigma rules and the %d shipped playbooks", h, len(shipped))
	}
	t.Logf("%+v", res)
}

// TestCorpusAt: an event's raw record is the source record with its id,
// user and address replaced one after the other, as bytes.ReplaceAll does.
func TestCorpusAt(t *testing.T) {
	recs, err := PublicRecords(fixturesDir)
	if err != nil {
		t.Fatal(err)
	}
	gen := NewCorpus(recs)
	for _, i := range []int{0, 1, gen.Len() - 1, gen.Len(), 3*gen.Len() + 7, 997*gen.Len() + 5, 250*251*gen.Len() + 3} {
		b := gen.base[i%gen.Len()]
		env := gen.At(i)
		want := b.Raw
		if b.ID != "" {
			want = bytes.ReplaceAll(want, []byte(b.ID), []byte(env.ID))
		}
		if b.User != "" && env.User != b.User {
			want = bytes.ReplaceAll(want, []byte(b.User), []byte(env.User))
		}
		if b.IP != "" && env.IP != b.IP {
			want = bytes.ReplaceAll(want, []byte(b.IP), []byte(env.IP))
		}
		if !bytes.Equal(env.Raw, want) {
			t.Errorf("event %d: raw\n%s\nwant\n%s", i, env.Raw, want)
		}
		if i >= gen.Len() && (env.ID == b.ID || (b.User != "" && env.User == b.User)) {
			t.Errorf("event %d: id %q user %q not changed", i, env.ID, env.User)
		}
	}
}

package playbook

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/responder-sec/responder/internal/event"
)

func benchSetup(b *testing.B, copies int) (*Set, []event.Envelope) {
	b.Helper()
	dir := fixturesDir
	recs, err := PublicRecords(dir)
	if err != nil {
		b.Skip(err)
	}
	rules, _, err := LoadSigmaDir(filepath.Join(dir, "sigma"))
	if err != nil || len(rules) == 0 {
		b.Skip("no sigma rules", err)
	}
	return SigmaSet(rules, copies), BenchCorpus(recs, 20000)
}

// BenchmarkDecodeMatchSigma100: envelope with raw bytes to matches, ~100 rules.
func BenchmarkDecodeMatchSigma100(b *testing.B) {
	set, corpus := benchSetup(b, 4)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = set.Match(&corpus[i%len(corpus)])
	}
}

// BenchmarkMatchOnlySigma100: pre-decoded events, ~100 rules.
func BenchmarkMatchOnlySigma100(b *testing.B) {
	set, corpus := benchSetup(b, 4)
	ctxs := make([]*evalCtx, len(corpus))
	for i := range corpus {
		ctxs[i] = newEvalCtx(set, &corpus[i])
		ctxs[i].decodeAll()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = set.matchCtx(context.Background(), ctxs[i%len(ctxs)], nil)
	}
}

// BenchmarkNormalizeMatchSigma100: raw Microsoft record to matches.
func BenchmarkNormalizeMatchSigma100(b *testing.B) {
	set, corpus := benchSetup(b, 4)
	raws := make([]json.RawMessage, len(corpus))
	for i := range corpus {
		raws[i] = corpus[i].Raw
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		env, err := event.Normalize("", raws[i%len(raws)])
		if err == nil {
			_, _ = set.Match(&env)
		}
	}
}

// TestBenchMatch: the library behind `responder bench match` runs (on a small
// corpus) and reports every case.
func TestBenchMatch(t *testing.T) {
	dir := fixtures(t)
	res, err := BenchMatch(context.Background(), BenchOptions{FixturesDir: dir, PlaybookDir: shippedDir, VerifiedDomains: testDomains, Events: 3000, OneCore: true})
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
		if c.Name != "playbooks" && c.Fired == 0 {
			t.Errorf("%s: nothing fired over the public records", c.Name)
		}
	}
	t.Logf("%+v", res)
}

package playbook

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/responder-sec/responder/internal/event"
)

func benchSetup(b *testing.B, copies int) (*Set, *corpusGen) {
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
	gen := newCorpusGen(recs)
	if gen == nil {
		b.Skip("no records")
	}
	return SigmaSet(rules, copies), gen
}

// benchStream runs the corpus through the benchmark in batches of
// benchBatch events: prepare (outside the clock) fills the batch from
// events i.. of the corpus (which is generated as it goes, 100,000 events
// before it wraps round), then run is timed. Memory stays flat.
func benchStream(b *testing.B, gen *corpusGen, prepare func(batch []event.Envelope), run func(batch []event.Envelope)) {
	const corpus = 100000
	batch := make([]event.Envelope, benchBatch)
	b.ReportAllocs()
	b.ResetTimer()
	next := 0
	for done := 0; done < b.N; {
		n := min(benchBatch, b.N-done)
		b.StopTimer()
		for i := 0; i < n; i++ {
			batch[i] = gen.at(next)
			next = (next + 1) % corpus
		}
		if prepare != nil {
			prepare(batch[:n])
		}
		b.StartTimer()
		run(batch[:n])
		done += n
	}
}

// BenchmarkDecodeMatchSigma100: envelope with raw bytes to matches, ~100 rules.
func BenchmarkDecodeMatchSigma100(b *testing.B) {
	set, gen := benchSetup(b, 4)
	benchStream(b, gen, nil, func(batch []event.Envelope) {
		for i := range batch {
			_, _ = set.Match(&batch[i])
		}
	})
}

// BenchmarkMatchOnlySigma100: events decoded (every top-level member)
// outside the clock, batch by batch; matching only, ~100 rules.
func BenchmarkMatchOnlySigma100(b *testing.B) {
	set, gen := benchSetup(b, 4)
	ctxs := make([]*evalCtx, benchBatch)
	for i := range ctxs {
		ctxs[i] = &evalCtx{}
	}
	ctx := context.Background()
	benchStream(b, gen, func(batch []event.Envelope) {
		for i := range batch {
			ctxs[i].reset(set, &batch[i])
			ctxs[i].decodeAll()
		}
	}, func(batch []event.Envelope) {
		for i := range batch {
			_, _ = set.matchCtx(ctx, ctxs[i], nil)
		}
	})
}

// BenchmarkNormalizeMatchSigma100: raw Microsoft record to matches.
func BenchmarkNormalizeMatchSigma100(b *testing.B) {
	set, gen := benchSetup(b, 4)
	benchStream(b, gen, nil, func(batch []event.Envelope) {
		for i := range batch {
			env, err := event.Normalize("", batch[i].Raw)
			if err == nil {
				_, _ = set.Match(&env)
			}
		}
	})
}

// TestMatchAllocs: matching a decoded event allocates nothing but the
// result: no allocation when nothing fires, one (the []Match) when
// detection-only playbooks fire (their reasons are cached).
func TestMatchAllocs(t *testing.T) {
	dir := fixtures(t)
	recs, err := PublicRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	rules, _, err := LoadSigmaDir(filepath.Join(dir, "sigma"))
	if err != nil {
		t.Fatal(err)
	}
	set := SigmaSet(rules, 4)
	gen := newCorpusGen(recs)
	ctx := context.Background()
	quiet, firing := 0, 0
	for i := 0; i < len(gen.base); i++ {
		env := gen.at(i)
		c := newEvalCtx(set, &env)
		c.decodeAll()
		ms, _ := set.matchCtx(ctx, c, nil)
		_, _ = set.matchCtx(ctx, c, nil) // warm the context's buffers and caches
		allocs := testing.AllocsPerRun(20, func() { _, _ = set.matchCtx(ctx, c, nil) })
		want := 0.0
		if len(ms) > 0 {
			want = 1
			firing++
		} else {
			quiet++
		}
		if allocs > want {
			t.Errorf("record %d (%s %q, %d matches): %.1f allocations per match, want %.0f", i, env.Source, env.Kind, len(ms), allocs, want)
		}
	}
	if quiet == 0 || firing == 0 {
		t.Fatalf("quiet %d, firing %d: both kinds of event needed", quiet, firing)
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

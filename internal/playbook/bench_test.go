package playbook_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/responder-sec/responder/internal/bench/matchbench"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/playbook"
)

// The matcher's Go benchmarks, on the headline set of `responder bench
// match` (a hundred distinct Sigma rules with the shipped playbooks):
//
//	go test ./internal/playbook -run '^$' -bench . -cpu 1

// benchStream runs the corpus through the benchmark in batches of 64
// events: prepare (outside the clock) fills the batch from events i.. of
// the corpus, then run is timed. Memory stays flat.
func benchStream(b *testing.B, gen *matchbench.Corpus, prepare func(batch []event.Envelope), run func(batch []event.Envelope)) {
	const corpusSize, batchSize = 100000, 64
	batch := make([]event.Envelope, batchSize)
	b.ReportAllocs()
	b.ResetTimer()
	next := 0
	for done := 0; done < b.N; {
		n := min(batchSize, b.N-done)
		b.StopTimer()
		for i := 0; i < n; i++ {
			batch[i] = gen.At(next)
			next = (next + 1) % corpusSize
		}
		if prepare != nil {
			prepare(batch[:n])
		}
		b.StartTimer()
		run(batch[:n])
		done += n
	}
}

// BenchmarkDecodeMatch: envelope with raw bytes to matches.
func BenchmarkDecodeMatch(b *testing.B) {
	gen, set := corpus(b), distinctSet(b, 100, true)
	counter := playbook.NewMemCounter()
	ctx := context.Background()
	benchStream(b, gen, nil, func(batch []event.Envelope) {
		for i := range batch {
			_, _ = set.MatchStateful(ctx, &batch[i], counter)
		}
	})
}

// BenchmarkMatchOnly: events decoded outside the clock, batch by batch,
// each matched once (the playbooks that fire: HitsDecoded, as `responder
// bench match` measures it).
func BenchmarkMatchOnly(b *testing.B) {
	gen, set := corpus(b), distinctSet(b, 100, true)
	counter := playbook.NewMemCounter()
	ds := make([]playbook.Decoded, 64)
	var hits []playbook.Hit
	ctx := context.Background()
	benchStream(b, gen, func(batch []event.Envelope) {
		for i := range batch {
			set.Decode(&batch[i], &ds[i])
		}
	}, func(batch []event.Envelope) {
		for i := range batch {
			hits, _ = set.HitsDecoded(ctx, &ds[i], counter, hits[:0])
		}
	})
}

// BenchmarkMatchDecoded: the same, each hit's Match built (MatchDecoded).
func BenchmarkMatchDecoded(b *testing.B) {
	gen, set := corpus(b), distinctSet(b, 100, true)
	counter := playbook.NewMemCounter()
	ds := make([]playbook.Decoded, 64)
	ctx := context.Background()
	benchStream(b, gen, func(batch []event.Envelope) {
		for i := range batch {
			set.Decode(&batch[i], &ds[i])
		}
	}, func(batch []event.Envelope) {
		for i := range batch {
			_, _ = set.MatchDecoded(ctx, &ds[i], counter)
		}
	})
}

// BenchmarkNormalizeMatch: raw Microsoft record to matches.
func BenchmarkNormalizeMatch(b *testing.B) {
	gen, set := corpus(b), distinctSet(b, 100, true)
	counter := playbook.NewMemCounter()
	ctx := context.Background()
	benchStream(b, gen, nil, func(batch []event.Envelope) {
		for i := range batch {
			env, err := event.Normalize("", batch[i].Raw)
			if err == nil {
				_, _ = set.MatchStateful(ctx, &env, counter)
			}
		}
	})
}

// TestMatchAllocs: matching a decoded event allocates nothing but the
// result: no allocation when nothing fires, one (the []Match) when
// detection-only playbooks fire (their reasons are cached); and, with the
// hundred distinct rules of the benchmark, none when nothing fires.
func TestMatchAllocs(t *testing.T) {
	gen := corpus(t)
	rules, _, err := playbook.LoadSigmaDir(filepath.Join(fixturesDir, "sigma"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		set  *playbook.Set
	}{
		{"sigma x4", playbook.SigmaSet(rules, 4)},
		{"sigma100", distinctSet(t, 100, false)},
	} {
		quiet, firing := 0, 0
		var d playbook.Decoded
		for i := 0; i < gen.Len(); i++ {
			env := gen.At(i)
			tc.set.Decode(&env, &d)
			ms, err := tc.set.MatchDecoded(ctx, &d, nil)
			_, _ = tc.set.MatchDecoded(ctx, &d, nil) // warm the buffers and caches
			allocs := testing.AllocsPerRun(20, func() { _, _ = tc.set.MatchDecoded(ctx, &d, nil) })
			if len(ms) > 0 {
				firing++
				if tc.name == "sigma x4" && allocs > 1 {
					t.Errorf("%s: record %d (%s %q, %d matches): %.1f allocations per match, want 1", tc.name, i, env.Source, env.Kind, len(ms), allocs)
				}
				continue
			}
			if err != nil {
				continue // the error is built when a playbook cannot fire
			}
			quiet++
			if allocs > 0 {
				t.Errorf("%s: record %d (%s %q, no match): %.1f allocations per match, want 0", tc.name, i, env.Source, env.Kind, allocs)
			}
		}
		d.Release()
		if quiet == 0 || firing == 0 {
			t.Fatalf("%s: quiet %d, firing %d: both kinds of event needed", tc.name, quiet, firing)
		}
	}
}

package playbook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/event"
)

// BenchOptions configures BenchMatch.
type BenchOptions struct {
	// FixturesDir is the public fixtures folder; its records are read at run
	// time and cloned (new ids, users and addresses) into the corpus.
	FixturesDir string
	// SigmaDir holds the Sigma rules; default FixturesDir/sigma.
	SigmaDir string
	// PlaybookDir, when set, adds a case with the playbooks there.
	PlaybookDir     string
	VerifiedDomains []string
	// Events in the corpus; default 100000.
	Events int
	// SigmaCopies: the rules are also loaded this many times over (default 4:
	// 25 rules become 100) for a second Sigma case.
	SigmaCopies int
	// OneCore sets GOMAXPROCS to 1 for the run (and restores it).
	OneCore bool
}

// BenchResult is what `responder bench match` prints.
type BenchResult struct {
	Events        int         `json:"events"`
	SourceRecords int         `json:"source_records"`
	GoMaxProcs    int         `json:"gomaxprocs"`
	Cases         []BenchCase `json:"cases"`
	// PeakHeapBytes is the largest heap in use seen during the run (sampled
	// after each phase).
	PeakHeapBytes uint64 `json:"peak_heap_bytes"`
}

// BenchCase is one rule set over the corpus, on one goroutine.
type BenchCase struct {
	Name  string `json:"name"`
	Rules int    `json:"rules"`
	// Fired is how many events fired at least one playbook.
	Fired int `json:"fired"`
	// MatchOnly: events already decoded (every top-level member of the raw
	// record), matching only: a ring of benchRing decoded events, matched
	// in turn, refilled from the corpus every benchRefill matches (decoding
	// and the collection it causes are outside the clock).
	MatchOnly float64 `json:"match_only_events_per_second"`
	// MatchOnlyFresh: each event matched once, right after its batch of
	// benchBatch events was decoded (outside the clock); the collector's
	// work for the decoding's garbage runs concurrently and is in the
	// figure. A lower bound for matching alone.
	MatchOnlyFresh float64 `json:"match_only_fresh_events_per_second"`
	// DecodeMatch: from the envelope with its raw bytes (as the engine
	// receives it) to matches: lazy decoding of what the rules read, plus matching.
	DecodeMatch float64 `json:"decode_match_events_per_second"`
	// NormalizeMatch: from the raw Microsoft record: event.Normalize, then
	// decode and match.
	NormalizeMatch float64 `json:"normalize_decode_match_events_per_second"`
	// The same per second of the benchmark thread's CPU time (Linux): what
	// one core does when other processes compete for it.
	MatchOnlyCPU      float64 `json:"match_only_events_per_cpu_second,omitempty"`
	MatchOnlyFreshCPU float64 `json:"match_only_fresh_events_per_cpu_second,omitempty"`
	DecodeMatchCPU    float64 `json:"decode_match_events_per_cpu_second,omitempty"`
	NormalizeMatchCPU float64 `json:"normalize_decode_match_events_per_cpu_second,omitempty"`
}

// benchBatch is how many events the benchmark holds at a time: they are
// generated (and, for match only, decoded) outside the clock, then run
// through the measured phase. Memory stays flat whatever the corpus size,
// and a batch of decoded events (about 1 MB) stays in the CPU's cache, as an
// event does between decoding and matching in the engine; a fully decoded
// corpus of 100,000 events (the old method) made every match a cache miss.
const benchBatch = 64

// benchRing and benchRefill: the match-only ring holds benchRing decoded
// events (about 4 MB) and is refilled every benchRefill matches.
const (
	benchRing   = 256
	benchRefill = 4096
)

// phaseTimer adds up the time of the measured phases of a case: wall time,
// and the CPU time of the benchmark thread (which the caller locks).
type phaseTimer struct {
	wall, cpu time.Duration
	cpuOK     bool
}

func (t *phaseTimer) run(f func()) {
	c0 := threadCPU()
	start := time.Now()
	f()
	t.wall += time.Since(start)
	c1 := threadCPU()
	if c0 > 0 && c1 >= c0 {
		t.cpu += c1 - c0
		t.cpuOK = true
	}
}

func (t *phaseTimer) rates(n int) (wall, cpu float64) {
	if t.wall > 0 {
		wall = float64(n) / t.wall.Seconds()
	}
	if t.cpuOK && t.cpu > 0 {
		cpu = float64(n) / t.cpu.Seconds()
	}
	return wall, cpu
}

// BenchMatch measures the matcher: events per second over a corpus derived
// from the public records, with the shipped playbooks and with the Sigma
// rules (once, and SigmaCopies times over), match only, decode plus match,
// and normalise plus decode plus match, on one goroutine; and peak heap.
//
// The corpus is streamed: events are generated in batches of benchBatch
// (for match only, also decoded: every top-level member of the raw record)
// outside the clock, and only the measured phase is timed. Peak heap is
// sampled after every batch, when the most is held.
func BenchMatch(ctx context.Context, opts BenchOptions) (BenchResult, error) {
	var res BenchResult
	if opts.OneCore {
		prev := runtime.GOMAXPROCS(1)
		defer runtime.GOMAXPROCS(prev)
	}
	res.GoMaxProcs = runtime.GOMAXPROCS(0)
	if opts.Events <= 0 {
		opts.Events = 100000
	}
	if opts.SigmaCopies <= 0 {
		opts.SigmaCopies = 4
	}
	if opts.SigmaDir == "" {
		opts.SigmaDir = filepath.Join(opts.FixturesDir, "sigma")
	}
	peak := uint64(0)
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	recs, err := PublicRecords(opts.FixturesDir)
	if err != nil {
		return res, err
	}
	res.SourceRecords = len(recs)
	gen := newCorpusGen(recs)
	if gen == nil {
		return res, errors.New("playbook: bench: no record of the fixtures normalises")
	}
	res.Events = opts.Events
	sample()

	type namedSet struct {
		name  string
		set   *Set
		rules int
	}
	var sets []namedSet
	if opts.PlaybookDir != "" {
		s, err := LoadDir(opts.PlaybookDir, LoadOptions{VerifiedDomains: opts.VerifiedDomains})
		if err != nil {
			return res, err
		}
		s = s.WithAllEnabled()
		sets = append(sets, namedSet{"playbooks", s, len(s.playbooks)})
	}
	rules, _, err := LoadSigmaDir(opts.SigmaDir)
	if err != nil {
		return res, err
	}
	if len(rules) > 0 {
		sets = append(sets, namedSet{"sigma", SigmaSet(rules, 1), len(rules)})
		if opts.SigmaCopies > 1 {
			sets = append(sets, namedSet{fmt.Sprintf("sigma x%d", opts.SigmaCopies), SigmaSet(rules, opts.SigmaCopies), len(rules) * opts.SigmaCopies})
		}
	}
	// The batch: envelopes, and evalCtxs reused from batch to batch.
	batch := make([]event.Envelope, benchBatch)
	ctxs := make([]*evalCtx, max(benchBatch, benchRing))
	for i := range ctxs {
		ctxs[i] = &evalCtx{}
	}
	// each fills the batch with events [from, from+n) and runs f on it.
	each := func(f func(n int) error) error {
		for from := 0; from < opts.Events; from += benchBatch {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(benchBatch, opts.Events-from)
			for i := 0; i < n; i++ {
				batch[i] = gen.at(from + i)
			}
			if err := f(n); err != nil {
				return err
			}
		}
		clear(batch)
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, ns := range sets {
		bc := BenchCase{Name: ns.name, Rules: ns.rules}
		// decode + match
		var dm phaseTimer
		runtime.GC()
		err := each(func(n int) error {
			dm.run(func() {
				for i := 0; i < n; i++ {
					ms, _ := ns.set.Match(&batch[i])
					if len(ms) > 0 {
						bc.Fired++
					}
				}
			})
			return nil
		})
		if err != nil {
			return res, err
		}
		bc.DecodeMatch, bc.DecodeMatchCPU = dm.rates(opts.Events)
		// match only: a ring of decoded events, refilled from the corpus
		var mo phaseTimer
		ring := ctxs[:min(benchRing, len(ctxs))]
		ringEnv := make([]event.Envelope, len(ring))
		for done, next := 0, 0; done < opts.Events; {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			for i := range ring {
				ringEnv[i] = gen.at(next % opts.Events)
				next++
				ring[i].reset(ns.set, &ringEnv[i])
				ring[i].decodeAll()
			}
			sample()
			runtime.GC()
			n := min(benchRefill, opts.Events-done)
			mo.run(func() {
				for i := 0; i < n; i++ {
					_, _ = ns.set.matchCtx(ctx, ring[i%len(ring)], nil)
				}
			})
			done += n
		}
		for i := range ring {
			ring[i].reset(nil, nil)
		}
		clear(ringEnv)
		bc.MatchOnly, bc.MatchOnlyCPU = mo.rates(opts.Events)
		// match only, fresh events: each batch decoded, then matched once
		var mf phaseTimer
		runtime.GC()
		err = each(func(n int) error {
			for i := 0; i < n; i++ {
				ctxs[i].reset(ns.set, &batch[i])
				ctxs[i].decodeAll()
			}
			sample()
			mf.run(func() {
				for i := 0; i < n; i++ {
					_, _ = ns.set.matchCtx(ctx, ctxs[i], nil)
				}
			})
			return nil
		})
		for i := range ctxs {
			ctxs[i].reset(nil, nil)
		}
		if err != nil {
			return res, err
		}
		bc.MatchOnlyFresh, bc.MatchOnlyFreshCPU = mf.rates(opts.Events)
		// normalise + decode + match
		var nm phaseTimer
		runtime.GC()
		err = each(func(n int) error {
			nm.run(func() {
				for i := 0; i < n; i++ {
					env, err := event.Normalize("", batch[i].Raw)
					if err != nil {
						continue
					}
					_, _ = ns.set.Match(&env)
				}
			})
			return nil
		})
		if err != nil {
			return res, err
		}
		bc.NormalizeMatch, bc.NormalizeMatchCPU = nm.rates(opts.Events)
		sample()
		res.Cases = append(res.Cases, bc)
	}
	res.PeakHeapBytes = peak
	return res, nil
}

// decodeAll decodes every top-level member (for match-only measurements).
func (c *evalCtx) decodeAll() {
	c.scan()
	for i := range c.members {
		_, _ = c.member(string(c.members[i].key))
	}
}

// SigmaSet builds a set with one detection-only playbook (no steps) per rule,
// copies times over: for benchmarks and `playbook test` of bare rules.
func SigmaSet(rules []*SigmaRule, copies int) *Set {
	s := &Set{verified: map[string]bool{}}
	for k := 0; k < copies; k++ {
		for i, r := range rules {
			s.playbooks = append(s.playbooks, &Playbook{
				Name:    fmt.Sprintf("sigma-%d-%d", k, i),
				Enabled: true,
				File:    r.File,
				Line:    r.Line,
				Trigger: Trigger{Source: r.Source, Sigma: []*SigmaRule{r}},
			})
		}
	}
	s.buildIndex()
	return s
}

// PublicRecords reads every record of the public fixtures under dir that
// event.Normalize recognises (SEKOIA files unwrapped, lists and NDJSON
// split), as raw JSON.
func PublicRecords(dir string) ([]json.RawMessage, error) {
	if dir == "" {
		return nil, errors.New("playbook: no fixtures directory")
	}
	var out []json.RawMessage
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".log")) {
			return err
		}
		data, err := readBounded(path)
		if err != nil {
			return err
		}
		if strings.Contains(path, "sekoia") {
			var f struct {
				Input struct{ Message string } `json:"input"`
			}
			if json.Unmarshal(data, &f) == nil && f.Input.Message != "" {
				data = []byte(f.Input.Message)
			}
		}
		rs := newRecordStream(bytes.NewReader(data))
		_ = rs.each(func(raw json.RawMessage) error {
			if _, err := event.Normalize("", raw); err == nil {
				out = append(out, bytes.Clone(raw))
			}
			return nil
		}, path)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("playbook: fixtures: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("playbook: no records under %s", dir)
	}
	return out, nil
}

// BenchCorpus clones records into n envelopes, each copy with its own id,
// user and address (replaced in the raw record too).
func BenchCorpus(recs []json.RawMessage, n int) []event.Envelope {
	g := newCorpusGen(recs)
	if g == nil {
		return nil
	}
	out := make([]event.Envelope, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, g.at(i))
	}
	return out
}

// corpusGen generates the benchmark corpus one event at a time: event i is
// the same as BenchCorpus(recs, n)[i] for any n > i.
type corpusGen struct {
	base []event.Envelope
}

func newCorpusGen(recs []json.RawMessage) *corpusGen {
	g := &corpusGen{}
	for _, r := range recs {
		if env, err := event.Normalize("", r); err == nil {
			g.base = append(g.base, env)
		}
	}
	if len(g.base) == 0 {
		return nil
	}
	return g
}

func (g *corpusGen) at(i int) event.Envelope {
	b := g.base[i%len(g.base)]
	copyN := i / len(g.base)
	env := b
	raw := b.Raw
	if b.ID != "" {
		id := fmt.Sprintf("%s-%d", b.ID, copyN)
		raw = bytes.ReplaceAll(raw, []byte(b.ID), []byte(id))
		env.ID = id
	}
	if b.User != "" && copyN > 0 {
		local, domain, _ := strings.Cut(b.User, "@")
		u := fmt.Sprintf("%s%d@%s", local, copyN%997, domain)
		raw = bytes.ReplaceAll(raw, []byte(b.User), []byte(u))
		env.User = u
	}
	if b.IP != "" && copyN > 0 && !strings.Contains(b.IP, ":") {
		if parts := strings.Split(b.IP, "."); len(parts) == 4 {
			ip := fmt.Sprintf("%s.%s.%d.%d", parts[0], parts[1], (copyN/250)%250, copyN%250+1)
			raw = bytes.ReplaceAll(raw, []byte(b.IP), []byte(ip))
			env.IP = ip
		}
	}
	env.Raw = raw
	return env
}

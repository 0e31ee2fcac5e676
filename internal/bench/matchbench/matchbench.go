// Package matchbench is the harness behind `responder bench match`: it
// measures the playbook matcher (internal/playbook) on one core over a corpus
// derived from the public records, with the shipped playbooks, the public
// Sigma rules, and a hundred distinct Sigma rules (the public ones and
// variants with other values) together with the shipped playbooks, stateful
// ones counting with their counter. It checks what it measured: every case
// ran every event, and the set's matches equal those of each playbook
// evaluated on its own (no index, no sharing between rules) on a sample.
//
// It is benchmark code and never part of the engine.
package matchbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/playbook"
)

// Options configures Run.
type Options struct {
	// FixturesDir is the public fixtures folder; its records are read at run
	// time and cloned (new ids, users and addresses) into the corpus.
	FixturesDir string
	// SigmaDir holds the Sigma rules; default FixturesDir/sigma.
	SigmaDir string
	// PlaybookDir holds the shipped playbooks (required).
	PlaybookDir     string
	VerifiedDomains []string
	// Events in the corpus; default 100000.
	Events int
	// Rules is the number of distinct Sigma rules of the headline case
	// (default 100).
	Rules int
	// SampleEvery: every SampleEvery-th event is checked against the
	// unshared evaluation (default 25).
	SampleEvery int
	// OneCore sets GOMAXPROCS to 1 for the run (and restores it).
	OneCore bool
	// TempDir is where the generated rule set is written ("" = the system's).
	TempDir string
}

// Result is what Run measured.
type Result struct {
	Events        int    `json:"events"`
	SourceRecords int    `json:"source_records"`
	GoMaxProcs    int    `json:"gomaxprocs"`
	Cases         []Case `json:"cases"`
	// PeakHeapBytes is the largest heap in use seen during the run (sampled
	// after each batch).
	PeakHeapBytes uint64 `json:"peak_heap_bytes"`
}

// Headline is the case the goal applies to.
const Headline = "sigma100+playbooks"

// Case is one playbook set over the corpus, on one goroutine.
type Case struct {
	Name string `json:"name"`
	// Rules is the number of triggers the set evaluates (a Sigma rule, or a
	// playbook's own trigger); DistinctRules how many of them differ.
	Rules         int `json:"rules"`
	DistinctRules int `json:"distinct_rules"`
	// Stateful: the set has threshold playbooks, matched with a counter.
	Stateful bool `json:"stateful"`
	// Fired is how many events fired at least one playbook (decode+match).
	Fired int `json:"fired"`
	// Ran is how many events each phase matched (each must be Events).
	Ran [3]int `json:"ran"`
	// MatchOnly: each event matched once right after its batch of
	// batchSize events was decoded (decoding outside the clock): cold
	// events, as the engine sees them, the collector's work for the
	// decoding's garbage in the figure.
	MatchOnly float64 `json:"match_only_events_per_second"`
	// DecodeMatch: from the envelope with its raw bytes (as the engine
	// receives it) to matches: lazy decoding of what the rules read, plus
	// matching.
	DecodeMatch float64 `json:"decode_match_events_per_second"`
	// NormalizeMatch: from the raw Microsoft record: event.Normalize, then
	// decode and match.
	NormalizeMatch float64 `json:"normalize_decode_match_events_per_second"`
	// The same per second of the process's CPU time (Linux): what one core
	// does when other processes compete for it.
	MatchOnlyCPU      float64 `json:"match_only_events_per_cpu_second,omitempty"`
	DecodeMatchCPU    float64 `json:"decode_match_events_per_cpu_second,omitempty"`
	NormalizeMatchCPU float64 `json:"normalize_decode_match_events_per_cpu_second,omitempty"`
	// Sampled events compared with the unshared evaluation, and the first
	// difference ("" when none).
	Sampled  int    `json:"sampled"`
	Mismatch string `json:"mismatch,omitempty"`
}

// batchSize is how many events the benchmark holds at a time: they are
// generated (and, for match only, decoded) outside the clock, then run
// through the measured phase. Memory stays flat whatever the corpus size,
// and a batch of decoded events stays in the CPU's cache, as an event does
// between decoding and matching in the engine.
const batchSize = 64

// phaseTimer adds up the time of the measured phases of a case: wall time
// and process CPU time.
type phaseTimer struct {
	wall, cpu time.Duration
	cpuOK     bool
}

func (t *phaseTimer) run(f func()) {
	c0 := processCPU()
	start := time.Now()
	f()
	t.wall += time.Since(start)
	c1 := processCPU()
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

type benchSet struct {
	name     string
	set      *playbook.Set
	rules    int
	distinct int
	// singles: each playbook in a set of its own, for the sample check.
	singles []*playbook.Set
}

// Run measures the matcher. The corpus is streamed: events are generated in
// batches outside the clock, and only the measured phase is timed.
func Run(ctx context.Context, opts Options) (Result, error) {
	var res Result
	if opts.OneCore {
		prev := runtime.GOMAXPROCS(1)
		defer runtime.GOMAXPROCS(prev)
	}
	res.GoMaxProcs = runtime.GOMAXPROCS(0)
	if opts.Events <= 0 {
		opts.Events = 100000
	}
	if opts.Rules <= 0 {
		opts.Rules = 100
	}
	if opts.SampleEvery <= 0 {
		opts.SampleEvery = 25
	}
	if opts.SigmaDir == "" {
		opts.SigmaDir = filepath.Join(opts.FixturesDir, "sigma")
	}
	if opts.PlaybookDir == "" {
		return res, errors.New("matchbench: no playbook directory")
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
	gen := NewCorpus(recs)
	if gen == nil {
		return res, errors.New("matchbench: no record of the fixtures normalises")
	}
	res.Events = opts.Events
	sets, cleanup, err := buildSets(opts)
	if err != nil {
		return res, err
	}
	defer cleanup()
	sample()

	batch := make([]event.Envelope, batchSize)
	// The batch's raw records are written into buffers kept from batch to
	// batch: generating the corpus makes no garbage, so the collector's
	// work in a measured phase is what matching (or decoding) made.
	raws := make([][]byte, batchSize)
	decoded := make([]playbook.Decoded, batchSize)
	// each fills the batch with events [from, from+n) and runs f on it.
	each := func(f func(from, n int)) error {
		for from := 0; from < opts.Events; from += batchSize {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(batchSize, opts.Events-from)
			for i := 0; i < n; i++ {
				batch[i], raws[i] = gen.AtBuf(from+i, raws[i])
			}
			f(from, n)
		}
		clear(batch)
		return nil
	}
	for _, bs := range sets {
		set := bs.set
		c := Case{Name: bs.name, Rules: bs.rules, DistinctRules: bs.distinct, Stateful: set.Stateful()}
		newCounter := func() playbook.Counter {
			if set.Stateful() {
				return playbook.NewMemCounter()
			}
			return nil
		}
		// match only: each batch decoded outside the clock, then each
		// event matched once: the playbooks that fire (HitsDecoded), their
		// Matches built after the clock (RenderDecoded) for the sampled
		// events, kept for the check, whose hit set is every Match's.
		var mo phaseTimer
		counter := newCounter()
		kept := map[int][]playbook.Match{}
		hits := make([][]playbook.Hit, batchSize)
		renderErr, firedMO := "", 0
		runtime.GC()
		err := each(func(from, n int) {
			for i := 0; i < n; i++ {
				set.Decode(&batch[i], &decoded[i])
			}
			sample()
			mo.run(func() {
				for i := 0; i < n; i++ {
					hits[i], _ = set.HitsDecoded(ctx, &decoded[i], counter, hits[i][:0])
					if len(hits[i]) > 0 {
						firedMO++
					}
					c.Ran[0]++
				}
			})
			for i := 0; i < n; i++ {
				if (from+i)%opts.SampleEvery == 0 {
					ms, err := set.RenderDecoded(&decoded[i], hits[i])
					if err != nil && renderErr == "" {
						renderErr = fmt.Sprintf("event %d: %v", from+i, err)
					}
					kept[from+i] = ms
				}
				decoded[i].Release()
			}
		})
		if err != nil {
			return res, err
		}
		c.MatchOnly, c.MatchOnlyCPU = mo.rates(opts.Events)
		// decode + match
		var dm phaseTimer
		counter = newCounter()
		runtime.GC()
		err = each(func(_, n int) {
			dm.run(func() {
				for i := 0; i < n; i++ {
					ms, _ := set.MatchStateful(ctx, &batch[i], counter)
					if len(ms) > 0 {
						c.Fired++
					}
					c.Ran[1]++
				}
			})
		})
		if err != nil {
			return res, err
		}
		c.DecodeMatch, c.DecodeMatchCPU = dm.rates(opts.Events)
		// normalise + decode + match
		var nm phaseTimer
		counter = newCounter()
		runtime.GC()
		err = each(func(_, n int) {
			nm.run(func() {
				for i := 0; i < n; i++ {
					env, err := event.Normalize("", batch[i].Raw)
					c.Ran[2]++
					if err != nil {
						continue
					}
					_, _ = set.MatchStateful(ctx, &env, counter)
				}
			})
		})
		if err != nil {
			return res, err
		}
		c.NormalizeMatch, c.NormalizeMatchCPU = nm.rates(opts.Events)
		sample()
		c.Sampled, c.Mismatch = checkSample(gen, bs, kept)
		switch {
		case c.Mismatch != "":
		case renderErr != "":
			c.Mismatch = "building a hit's match: " + renderErr
		case firedMO != c.Fired:
			c.Mismatch = fmt.Sprintf("match only fired on %d events, decode+match on %d", firedMO, c.Fired)
		}
		res.Cases = append(res.Cases, c)
	}
	res.PeakHeapBytes = peak
	return res, nil
}

// checkSample compares the matches the measured phase returned for the
// sampled events with those of each playbook evaluated in a set of its own
// (no index shared between rules, no memo shared between rules), in the
// set's order. Threshold matches depend on the events before them and are
// left out of both sides.
func checkSample(gen *Corpus, bs benchSet, kept map[int][]playbook.Match) (int, string) {
	idx := make([]int, 0, len(kept))
	for i := range kept {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		env := gen.At(i)
		var want []playbook.Match
		for _, s := range bs.singles {
			ms, _ := s.Match(&env)
			want = append(want, ms...)
		}
		// the set's order: playbooks by name
		slices.SortStableFunc(want, func(a, b playbook.Match) int { return strings.Compare(a.Playbook, b.Playbook) })
		var got []playbook.Match
		for _, m := range kept[i] {
			if m.Threshold == nil {
				got = append(got, m)
			}
		}
		if !sameMatches(got, want) {
			return len(idx), fmt.Sprintf("event %d (%s %q): got %s, want %s", i, env.Source, env.Kind, names(got), names(want))
		}
	}
	return len(idx), ""
}

func sameMatches(a, b []playbook.Match) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if len(x.Steps) == 0 {
			x.Steps, x.Approval = nil, nil
		}
		if len(y.Steps) == 0 {
			y.Steps, y.Approval = nil, nil
		}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func names(ms []playbook.Match) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Playbook)
	}
	return out
}

// buildSets loads the cases' sets: the shipped playbooks; the public Sigma
// rules, one playbook each; and the headline, opts.Rules distinct rules one
// playbook each, with the shipped playbooks.
func buildSets(opts Options) ([]benchSet, func(), error) {
	tmp, err := os.MkdirTemp(opts.TempDir, "responder-matchbench-")
	if err != nil {
		return nil, nil, fmt.Errorf("matchbench: %w", err)
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	fail := func(err error) ([]benchSet, func(), error) {
		cleanup()
		return nil, nil, err
	}
	lo := playbook.LoadOptions{VerifiedDomains: opts.VerifiedDomains}
	load := func(dir string) (benchSet, error) {
		lo := lo
		lo.BaseDir = dir
		s, err := playbook.LoadDir(dir, lo)
		if err != nil {
			return benchSet{}, err
		}
		s = s.WithAllEnabled()
		bs := benchSet{set: s}
		seen := map[string]bool{}
		for _, p := range s.Playbooks() {
			keys, err := triggerKeys(p)
			if err != nil {
				return benchSet{}, err
			}
			for _, key := range keys {
				bs.rules++
				if !seen[key] {
					seen[key] = true
					bs.distinct++
				}
			}
		}
		// Each file in a set of its own, for the sample check.
		files, err := filepath.Glob(filepath.Join(dir, "*.y*ml"))
		if err != nil {
			return benchSet{}, err
		}
		for _, f := range files {
			data, err := readBounded(f)
			if err != nil {
				return benchSet{}, err
			}
			single, err := playbook.Load(f, data, lo)
			if err != nil {
				return benchSet{}, err
			}
			bs.singles = append(bs.singles, single.WithAllEnabled())
		}
		return bs, nil
	}
	all, err := DistinctRules(opts.SigmaDir, opts.Rules)
	if err != nil {
		return fail(err)
	}
	public := 0
	for _, r := range all {
		if r.Variant == 0 {
			public++
		}
	}
	var sets []benchSet
	shipped, err := load(opts.PlaybookDir)
	if err != nil {
		return fail(err)
	}
	shipped.name = "playbooks"
	sets = append(sets, shipped)
	pubDir := filepath.Join(tmp, "public")
	if err := WriteRuleSet(pubDir, all[:public], ""); err != nil {
		return fail(err)
	}
	pub, err := load(pubDir)
	if err != nil {
		return fail(err)
	}
	pub.name = "sigma"
	sets = append(sets, pub)
	headDir := filepath.Join(tmp, "headline")
	if err := WriteRuleSet(headDir, all, opts.PlaybookDir); err != nil {
		return fail(err)
	}
	head, err := load(headDir)
	if err != nil {
		return fail(err)
	}
	head.name = Headline
	sets = append(sets, head)
	return sets, cleanup, nil
}

// triggerKeys returns a key per trigger of p (one per Sigma rule, or its own
// trigger): equal keys are the same rule.
func triggerKeys(p *playbook.Playbook) ([]string, error) {
	t := p.Trigger
	if len(t.Sigma) == 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "%s|%q", t.Source, t.Kinds)
		for _, c := range t.Conditions {
			b.WriteString("|" + c.String())
		}
		if th := t.Threshold; th != nil {
			fmt.Fprintf(&b, "|threshold %d %q %q %s", th.Count, th.By, th.Distinct, th.Window)
			if th.Then != nil {
				fmt.Fprintf(&b, " then %s %q", th.Then.Source, th.Then.Kinds)
				for _, c := range th.Then.Conditions {
					b.WriteString("|" + c.String())
				}
			}
		}
		return []string{b.String()}, nil
	}
	var out []string
	for _, r := range t.Sigma {
		data, err := readBounded(r.File)
		if err != nil {
			return nil, err
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("matchbench: %s: %w", r.File, err)
		}
		key, err := detectionKey(&doc)
		if err != nil {
			return nil, fmt.Errorf("matchbench: %s: %w", r.File, err)
		}
		out = append(out, "sigma|"+key)
	}
	return out, nil
}

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
	// record), matching only.
	MatchOnly float64 `json:"match_only_events_per_second"`
	// DecodeMatch: from the envelope with its raw bytes (as the engine
	// receives it) to matches: lazy decoding of what the rules read, plus matching.
	DecodeMatch float64 `json:"decode_match_events_per_second"`
	// NormalizeMatch: from the raw Microsoft record: event.Normalize, then
	// decode and match.
	NormalizeMatch float64 `json:"normalize_decode_match_events_per_second"`
	// The same per second of the benchmark thread's CPU time (Linux): what
	// one core does when other processes compete for it.
	MatchOnlyCPU      float64 `json:"match_only_events_per_cpu_second,omitempty"`
	DecodeMatchCPU    float64 `json:"decode_match_events_per_cpu_second,omitempty"`
	NormalizeMatchCPU float64 `json:"normalize_decode_match_events_per_cpu_second,omitempty"`
}

// timed runs f on a locked OS thread and returns events per wall second and
// per second of that thread's CPU time.
func timed(n int, f func()) (wall, cpu float64) {
	runtime.GC()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0 := threadCPU()
	start := time.Now()
	f()
	el := time.Since(start)
	c1 := threadCPU()
	wall = float64(n) / el.Seconds()
	if d := c1 - c0; d > 0 && c0 > 0 {
		cpu = float64(n) / d.Seconds()
	}
	return wall, cpu
}

// BenchMatch measures the matcher: events per second over a corpus derived
// from the public records, with the shipped playbooks and with the Sigma
// rules (once, and SigmaCopies times over), match only, decode plus match,
// and normalise plus decode plus match, on one goroutine; and peak heap.
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
	corpus := BenchCorpus(recs, opts.Events)
	res.Events = len(corpus)
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
	raws := make([][]byte, len(corpus))
	for i := range corpus {
		raws[i] = corpus[i].Raw
	}
	for _, ns := range sets {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		bc := BenchCase{Name: ns.name, Rules: ns.rules}
		// decode + match
		bc.DecodeMatch, bc.DecodeMatchCPU = timed(len(corpus), func() {
			for i := range corpus {
				ms, _ := ns.set.Match(&corpus[i])
				if len(ms) > 0 {
					bc.Fired++
				}
			}
		})
		sample()
		// match only: decode everything first
		ctxs := make([]*evalCtx, len(corpus))
		for i := range corpus {
			c := newEvalCtx(ns.set, &corpus[i])
			c.decodeAll()
			ctxs[i] = c
		}
		sample()
		bc.MatchOnly, bc.MatchOnlyCPU = timed(len(corpus), func() {
			for _, c := range ctxs {
				_, _ = ns.set.matchCtx(ctx, c, nil)
			}
		})
		ctxs = nil
		// normalise + decode + match
		bc.NormalizeMatch, bc.NormalizeMatchCPU = timed(len(corpus), func() {
			for _, raw := range raws {
				env, err := event.Normalize("", raw)
				if err != nil {
					continue
				}
				_, _ = ns.set.Match(&env)
			}
		})
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
		rs := &recordStream{dec: json.NewDecoder(bytes.NewReader(data))}
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
	base := make([]event.Envelope, 0, len(recs))
	for _, r := range recs {
		if env, err := event.Normalize("", r); err == nil {
			base = append(base, env)
		}
	}
	if len(base) == 0 {
		return nil
	}
	out := make([]event.Envelope, 0, n)
	for i := 0; len(out) < n; i++ {
		b := base[i%len(base)]
		copyN := i / len(base)
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
		out = append(out, env)
	}
	return out
}

package playbooktest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/bench/matchbench"
	"github.com/responder-sec/responder/internal/playbook"
	"github.com/responder-sec/responder/internal/playbooktest"
)

const (
	benchFixtures = "../../../shared/fixtures/public"
	benchShipped  = "../../playbooks"
)

// ndjsonGen is an io.Reader of n NDJSON records made as they are read:
// every other record a record derived from the public fixtures (ids and users
// varied by matchbench.Corpus), the others Graph sign-ins of many users from many
// addresses in time order (denials, wrong passwords, successes), which keep
// the shipped threshold playbooks (MFA fatigue, password spray) counting.
type ndjsonGen struct {
	gen  *matchbench.Corpus
	n, i int
	buf  bytes.Buffer
	t0   time.Time
}

func (g *ndjsonGen) Read(p []byte) (int, error) {
	for g.buf.Len() < len(p) && g.i < g.n {
		if g.i%2 == 0 {
			if err := json.Compact(&g.buf, g.gen.At(g.i/2).Raw); err != nil {
				return 0, err
			}
		} else {
			j := g.i / 2
			code := [...]int{0, 500121, 50126, 50126, 500121}[j%5]
			at := g.t0.Add(time.Duration(j) * 50 * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z")
			fmt.Fprintf(&g.buf, `{"id":"%08x-1111-4000-8000-%012x","createdDateTime":%q,"userPrincipalName":"u%d@contoso.com","userId":"%08x-2222-4000-8000-000000000000","appDisplayName":"Office 365 Exchange Online","ipAddress":"203.0.%d.%d","clientAppUsed":"Browser","status":{"errorCode":%d,"failureReason":"x"},"location":{"city":"Redmond","countryOrRegion":"US"}}`,
				j, j, at, j%20000, j%20000, (j/7)%250, j%250, code)
		}
		g.buf.WriteByte('\n')
		g.i++
	}
	if g.buf.Len() == 0 {
		return 0, io.EOF
	}
	return g.buf.Read(p)
}

// countingWriter counts the lines written.
type countingWriter struct{ lines atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.lines.Add(int64(bytes.Count(p, []byte{'\n'})))
	return len(p), nil
}

// heapPeak samples the live heap until stop is closed and returns the peak.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// BenchmarkRunNDJSON streams NDJSON records through Run (what
// `responder playbook test --json` does) with the shipped playbooks, output
// discarded, and reports records per second and the peak live heap, for
// 100,000 and 1,000,000 records: flat memory means the two peaks are about
// the same. Run with:
//
//	go test ./internal/playbooktest -run '^$' -bench RunNDJSON -benchtime 1x
//
// PLAYBOOK_BENCH_RECORDS sets a single size instead.
func BenchmarkRunNDJSON(b *testing.B) {
	recs, err := matchbench.PublicRecords(benchFixtures)
	if err != nil || len(recs) == 0 {
		b.Fatal("public fixtures not found at", benchFixtures, err)
	}
	gen := matchbench.NewCorpus(recs)
	set, err := playbook.LoadDir(benchShipped, playbook.LoadOptions{VerifiedDomains: []string{"contoso.com", "contoso.onmicrosoft.com"}, BaseDir: benchShipped})
	if err != nil {
		b.Fatal(err)
	}
	set = set.WithAllEnabled()
	sizes := []int{100_000, 1_000_000}
	if s := os.Getenv("PLAYBOOK_BENCH_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("PLAYBOOK_BENCH_RECORDS=%q", s)
		}
		sizes = []int{n}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			for range b.N {
				in := &ndjsonGen{gen: gen, n: n, t0: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
				out := &countingWriter{}
				runtime.GC()
				stop := make(chan struct{})
				peak := heapPeak(stop)
				start := time.Now()
				err := playbooktest.Run(context.Background(), set, in, "gen.ndjson", out, true)
				el := time.Since(start)
				close(stop)
				p := <-peak
				if err != nil {
					b.Fatal(err)
				}
				if got := out.lines.Load(); got != int64(n) {
					b.Fatalf("%d result lines for %d records", got, n)
				}
				b.ReportMetric(float64(n)/el.Seconds(), "records/s")
				b.ReportMetric(float64(p)/(1<<20), "peak_heap_MB")
			}
		})
	}
}

package bench

import (
	"context"
	"fmt"

	"github.com/responder-sec/responder/internal/bench/ingest"
)

// ingestBlobSizes are the blob sizes the ingest scenario runs: Microsoft's
// blobs hold from a few records to tens of thousands.
var ingestBlobSizes = [...]int{2000, 20000}

// ingestPeakBoundMB is the bound on the poller's memory.
const ingestPeakBoundMB = 200

// ingestConcurrency is the poller's blobs fetched at once
// (feeds.ManagementConfig's default).
const ingestConcurrency = 4

// runIngest measures the Management Activity poller (ingest.Run): N records
// (default 1,000,000) read from the emulated tenant's Management Activity API
// over TLS with Microsoft's budget on (scaled as contain scales the Entra
// budget), once in blobs of 2,000 and once of 20,000, each against a plain
// JetStream async publish of as many envelope-sized payloads on the same
// server in the same run. Measured is the events per second of the run with
// the lower ratio, bound its baseline; the goal is at least half. NATS and
// the tenant run in a child process when this executable serves one
// (ingest.ServeChild), so that the poller's memory is its own. Checks: every
// record published and stored once, and the poller's peak memory under
// 200 MB, in both runs.
func runIngest(ctx context.Context, o Options) (Result, error) {
	n := o.N
	if n <= 0 {
		n = 1_000_000
	}
	res := Result{Unit: "events/s", Goal: Goal{AtLeast, 0.5}, N: n, Concurrency: ingestConcurrency,
		BoundNote: "plain JetStream async publish of as many envelope-sized payloads, same server, same run",
		Extra:     map[string]any{"records": n}}
	worst := -1.0
	peak := 0.0
	lim := ingest.ManageLimits().ManagementActivity
	res.Extra["manage_budget"] = fmt.Sprintf("%.0f requests / %s (Microsoft's 2,000 / min scaled 1/10)", lim.Capacity, lim.Per)
	for _, per := range ingestBlobSizes {
		r, err := ingest.Run(ctx, ingest.Options{Records: n, PerBlob: per, Dir: o.Dir, Concurrency: ingestConcurrency, Progress: o.Progress, Logger: o.logger()})
		if err != nil {
			return Result{}, fmt.Errorf("bench: ingest, blobs of %d: %w", per, err)
		}
		k := fmt.Sprintf("blob_%d_", per)
		res.Extra[k+"events_per_s"] = r.EventsPerSec
		res.Extra[k+"baseline_per_s"] = r.BaselinePerSec
		res.Extra[k+"ratio"] = r.Ratio
		res.Extra[k+"peak_rss_mb"] = r.PeakRSSMB
		res.Extra[k+"peak_heap_mb"] = r.PeakHeapMB
		res.Extra[k+"child_peak_rss_mb"] = r.ChildPeakRSSMB
		res.Extra[k+"requests"] = r.Requests
		res.Extra[k+"requests_throttled"] = r.Throttled
		res.Extra[k+"poller_cpu_us_per_event"] = r.PollerCPUMicros
		res.Extra["where"] = r.Where
		res.AddCheck(fmt.Sprintf("blobs of %d: every record published once", per),
			r.Published == int64(n) && r.StoredEvents == uint64(n),
			fmt.Sprintf("%d records, %d published, %d in EVENTS (Nats-Msg-Id = record Id)", n, r.Published, r.StoredEvents))
		mem, what := r.PeakRSSMB, "peak RSS"
		if mem == 0 { // no /proc: the sampled heap
			mem, what = r.PeakHeapMB, "peak Go heap (no /proc)"
		}
		res.AddCheck(fmt.Sprintf("blobs of %d: poller peak memory under %d MB", per, ingestPeakBoundMB),
			mem > 0 && mem < ingestPeakBoundMB, fmt.Sprintf("%s %.0f MB (%s)", what, mem, r.Where))
		peak = max(peak, mem)
		if worst < 0 || r.Ratio < worst {
			worst = r.Ratio
			res.Measured, res.Bound = r.EventsPerSec, r.BaselinePerSec
		}
	}
	res.Extra["peak_mb"] = peak
	return res, nil
}

package bench

import (
	"context"
	"fmt"

	"github.com/responder-sec/responder/internal/feeds"
)

// ingestBlobSizes are the blob sizes the ingest scenario runs: Microsoft's
// blobs hold from a few records to tens of thousands.
var ingestBlobSizes = [...]int{2000, 20000}

// ingestPeakBoundMB is the bound on the poller's memory.
const ingestPeakBoundMB = 200

// runIngest measures the Management Activity poller (feeds.BenchIngest): N
// records (default 1,000,000), once in blobs of 2,000 and once of 20,000,
// each against a plain JetStream async publish of as many envelope-sized
// payloads on the same server in the same run. Measured is the events per
// second of the run with the lower ratio, bound its baseline; the goal is at
// least half. The poller's peak memory (bound 200 MB whatever the blob size)
// is reported in the extra figures, with NATS in a child process when this
// executable serves one (feeds.ServeBenchChild), so that the server's memory
// is counted apart.
func runIngest(ctx context.Context, o Options) (Result, error) {
	n := o.N
	if n <= 0 {
		n = 1_000_000
	}
	res := Result{Unit: "events/s", Goal: Goal{AtLeast, 0.5},
		BoundNote: "plain JetStream async publish of as many envelope-sized payloads, same server, same run",
		Extra:     map[string]any{"records": n}}
	worst := -1.0
	peak := 0.0
	for _, per := range ingestBlobSizes {
		r, err := feeds.BenchIngest(ctx, feeds.IngestBenchOptions{Records: n, PerBlob: per, Dir: o.Dir, Progress: o.Progress, Logger: o.logger()})
		if err != nil {
			return Result{}, fmt.Errorf("bench: ingest, blobs of %d: %w", per, err)
		}
		k := fmt.Sprintf("blob_%d_", per)
		res.Extra[k+"events_per_s"] = r.EventsPerSec
		res.Extra[k+"baseline_per_s"] = r.BaselinePerSec
		res.Extra[k+"ratio"] = r.Ratio
		res.Extra[k+"peak_rss_mb"] = r.PeakRSSMB
		res.Extra[k+"peak_heap_mb"] = r.PeakHeapMB
		res.Extra[k+"nats_peak_rss_mb"] = r.NATSPeakRSSMB
		res.Extra["nats"] = r.NATS
		mem := r.PeakRSSMB
		if mem == 0 { // no /proc: the sampled heap
			mem = r.PeakHeapMB
		}
		peak = max(peak, mem)
		if worst < 0 || r.Ratio < worst {
			worst = r.Ratio
			res.Measured, res.Bound = r.EventsPerSec, r.BaselinePerSec
		}
	}
	res.Extra["peak_mb"] = peak
	res.Extra["peak_mb_bound"] = float64(ingestPeakBoundMB)
	res.Extra["peak_mb_met"] = peak < ingestPeakBoundMB
	res.Complete()
	return res, nil
}

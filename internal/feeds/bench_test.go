package feeds

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
)

// TestMain lets BenchIngest start this test binary again as its NATS server.
func TestMain(m *testing.M) {
	if served, code := ServeBenchChild(); served {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// BenchmarkManagementIngest ingests 1,000,000 Management Activity records
// (blobs of 2,000 and of 20,000) into EVENTS through the whole poller (HTTP,
// stream decoding, normalising, publishing with Nats-Msg-Id, checkpoints), and
// compares it with a plain JetStream async publish of same-sized payloads in
// the same run, NATS running in a child process (BenchIngest). Run with:
//
//	go test ./internal/feeds/ -run '^$' -bench ManagementIngest -benchtime 1x
//
// FEEDS_BENCH_RECORDS shortens the run (profiling); FEEDS_BENCH_NATS=embedded
// keeps the server in this process.
func BenchmarkManagementIngest(b *testing.B) {
	total := 1_000_000
	if s := os.Getenv("FEEDS_BENCH_RECORDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			total = n
		}
	}
	for _, perBlob := range []int{2000, 20000} {
		b.Run(fmt.Sprintf("blob=%d", perBlob), func(b *testing.B) {
			for range b.N {
				res, err := BenchIngest(context.Background(), IngestBenchOptions{
					Records: total, PerBlob: perBlob, Dir: b.TempDir(), NATS: os.Getenv("FEEDS_BENCH_NATS"), Logger: quiet,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res.EventsPerSec, "events/s")
				b.ReportMetric(res.BaselinePerSec, "baseline_events/s")
				b.ReportMetric(res.Ratio, "ratio")
				b.ReportMetric(res.PeakRSSMB, "peak_rss_MB")
				b.ReportMetric(res.PeakHeapMB, "peak_heap_MB")
				b.ReportMetric(res.NATSPeakRSSMB, "nats_peak_rss_MB")
				b.Logf("blob=%d: %.0f events/s vs plain async publish %.0f/s (ratio %.2f); poller process peak RSS %.0f MB, heap %.0f MB; NATS (%s) peak RSS %.0f MB",
					perBlob, res.EventsPerSec, res.BaselinePerSec, res.Ratio, res.PeakRSSMB, res.PeakHeapMB, res.NATS, res.NATSPeakRSSMB)
			}
		})
	}
}

// TestBenchIngestSmall runs the benchmark end to end on a few records: every
// record is stored once, with NATS in a child process.
func TestBenchIngestSmall(t *testing.T) {
	res, err := BenchIngest(context.Background(), IngestBenchOptions{Records: 3001, PerBlob: 1000, Dir: t.TempDir(), NATS: "child", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if res.StoredEvents != 3001 || res.Blobs != 4 || res.EventsPerSec <= 0 || res.BaselinePerSec <= 0 || res.NATS != "child process" {
		t.Errorf("result: %+v", res)
	}
	if res.NATSPeakRSSMB <= 0 && fileExists("/proc/self/status") {
		t.Errorf("no NATS peak RSS: %+v", res)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
)

// TestMain lets Run start this test binary again as its child.
func TestMain(m *testing.M) {
	if served, code := ServeChild(); served {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

var quiet = slog.New(slog.DiscardHandler)

// BenchmarkManagementIngest ingests 1,000,000 Management Activity records
// (blobs of 2,000 and of 20,000) from the emulated tenant over TLS into
// EVENTS through the whole poller, against a plain JetStream async publish of
// same-sized payloads in the same run, NATS and the tenant running in a child
// process (Run). Run with:
//
//	go test ./internal/bench/ingest/ -run '^$' -bench ManagementIngest -benchtime 1x
//
// INGEST_BENCH_RECORDS shortens the run (profiling); INGEST_BENCH_WHERE=embedded
// keeps the server and the tenant in this process.
func BenchmarkManagementIngest(b *testing.B) {
	total := 1_000_000
	if s := os.Getenv("INGEST_BENCH_RECORDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			total = n
		}
	}
	for _, perBlob := range []int{2000, 20000} {
		b.Run(fmt.Sprintf("blob=%d", perBlob), func(b *testing.B) {
			for range b.N {
				res, err := Run(context.Background(), Options{
					Records: total, PerBlob: perBlob, Dir: b.TempDir(), Where: os.Getenv("INGEST_BENCH_WHERE"), Logger: quiet,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res.EventsPerSec, "events/s")
				b.ReportMetric(res.BaselinePerSec, "baseline_events/s")
				b.ReportMetric(res.Ratio, "ratio")
				b.ReportMetric(res.PeakRSSMB, "peak_rss_MB")
				b.ReportMetric(res.PeakHeapMB, "peak_heap_MB")
				b.ReportMetric(res.ChildPeakRSSMB, "child_peak_rss_MB")
			}
		})
	}
}

// TestRunSmall runs the harness end to end on a few records, the tenant and
// NATS in a child process, the budget on: every record is published and
// stored once, and the figures are filled.
func TestRunSmall(t *testing.T) {
	res, err := Run(context.Background(), Options{Records: 3001, PerBlob: 1000, Dir: t.TempDir(), Where: "child", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 3001 || res.StoredEvents != 3001 || res.Blobs != 4 || res.EventsPerSec <= 0 || res.BaselinePerSec <= 0 || res.Where != "child process" {
		t.Errorf("result: %+v", res)
	}
	if res.Requests < int64(res.Blobs) {
		t.Errorf("%d requests for %d blobs", res.Requests, res.Blobs)
	}
	if res.ChildPeakRSSMB <= 0 && fileExists("/proc/self/status") {
		t.Errorf("no child peak RSS: %+v", res)
	}
}

// TestRunEmbeddedBudgetBinds runs with the tenant in this process and more
// blobs than the scaled budget's burst: the poller paces itself, so no
// request is refused, and every record still arrives once.
func TestRunEmbeddedBudgetBinds(t *testing.T) {
	if testing.Short() {
		t.Skip("paces ~60 requests past the burst: about 2 s")
	}
	burst := int(ManageLimits().ManagementActivity.Capacity)
	blobs := burst + 60
	res, err := Run(context.Background(), Options{Records: blobs * 5, PerBlob: 5, Dir: t.TempDir(), Where: "embedded", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != int64(blobs*5) || res.StoredEvents != uint64(blobs*5) {
		t.Errorf("published %d, stored %d of %d", res.Published, res.StoredEvents, blobs*5)
	}
	if res.Throttled != 0 {
		t.Errorf("%d requests throttled: the poller did not keep to the budget", res.Throttled)
	}
}

// TestParseSize: a child started with a malformed size fails
// instead of serving an empty tenant.
func TestParseSize(t *testing.T) {
	for _, s := range []string{"", "10", "a,b", "0,5", "5,0", "-1,2"} {
		if _, _, err := parseSize(s); err == nil {
			t.Errorf("parseSize(%q) accepted", s)
		}
	}
	if r, p, err := parseSize("3001,1000"); err != nil || r != 3001 || p != 1000 {
		t.Errorf("parseSize: %d %d %v", r, p, err)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

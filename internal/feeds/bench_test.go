package feeds

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

// synthManage is a Management Activity API that generates its blobs while
// streaming them, so that the benchmark measures the poller's memory, not the
// emulator's (m365sim keeps every record in memory).
type synthManage struct {
	tenant  string
	blobs   int
	perBlob int
	created time.Time
	base    string
}

func synthID(blob, i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", blob, i) }

func (s *synthManage) record(w *bufio.Writer, blob, i int) {
	fmt.Fprintf(w, `{"CreationTime":"%s","Id":"%s","Operation":"MailItemsAccessed","OrganizationId":"%s","RecordType":50,"ResultStatus":"Succeeded","UserKey":"10032002F222981B","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"185.73.124.135:19823","UserId":"alice@contoso.com","ClientInfoString":"Client=OWA;Mozilla/5.0 (Windows NT 10.0; Win64; x64)","ExternalAccess":false,"LogonType":0,"MailboxOwnerUPN":"alice@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"Folders":[{"FolderItems":[{"InternetMessageId":"<m%d.%d@contoso.com>","SizeInBytes":51234}],"Path":"\\Inbox"}]}`,
		s.created.Format("2006-01-02T15:04:05"), synthID(blob, i), s.tenant, blob, i)
}

func (s *synthManage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	switch {
	case strings.HasSuffix(p, "/subscriptions/start"):
		fmt.Fprint(w, `{"contentType":"Audit.Exchange","status":"enabled","webhook":null}`)
	case strings.HasSuffix(p, "/subscriptions/content"):
		if r.URL.Query().Get("contentType") != "Audit.Exchange" {
			fmt.Fprint(w, `[]`)
			return
		}
		bw := bufio.NewWriter(w)
		bw.WriteByte('[')
		for i := 0; i < s.blobs; i++ {
			if i > 0 {
				bw.WriteByte(',')
			}
			c := s.created.Add(time.Duration(i) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
			fmt.Fprintf(bw, `{"contentType":"Audit.Exchange","contentId":"b%d","contentUri":"%s/api/v1.0/%s/activity/feed/audit/%d","contentCreated":"%s","contentExpiration":"2099-01-01T00:00:00.000Z"}`,
				i, s.base, s.tenant, i, c)
		}
		bw.WriteByte(']')
		_ = bw.Flush()
	case strings.Contains(p, "/activity/feed/audit/"):
		n, err := strconv.Atoi(p[strings.LastIndexByte(p, '/')+1:])
		if err != nil {
			http.NotFound(w, r)
			return
		}
		bw := bufio.NewWriterSize(w, 64<<10)
		bw.WriteByte('[')
		for i := 0; i < s.perBlob; i++ {
			if i > 0 {
				bw.WriteByte(',')
			}
			s.record(bw, n, i)
		}
		bw.WriteByte(']')
		_ = bw.Flush()
	default:
		http.NotFound(w, r)
	}
}

// peakHeap samples the heap until stop is closed and returns the peak in use.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
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

// BenchmarkManagementIngest ingests 1,000,000 Management Activity records
// (blobs of 2,000 and of 20,000) into EVENTS through the whole poller (HTTP,
// stream decoding, normalising, publishing with Nats-Msg-Id, checkpoints), and
// compares it with a plain JetStream async publish of same-sized payloads in
// the same run. Run with:
//
//	go test ./internal/feeds/ -run '^$' -bench ManagementIngest -benchtime 1x
func BenchmarkManagementIngest(b *testing.B) {
	total := 1_000_000
	if s := os.Getenv("FEEDS_BENCH_RECORDS"); s != "" { // shorter runs while profiling
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			total = n
		}
	}
	for _, perBlob := range []int{2000, 20000} {
		b.Run(fmt.Sprintf("blob=%d", perBlob), func(b *testing.B) {
			for range b.N {
				benchIngest(b, total, perBlob)
			}
		})
	}
}

func benchIngest(b *testing.B, total, perBlob int) {
	ctx := context.Background()
	bs, err := bus.Open(ctx, bus.Config{StoreDir: b.TempDir(), Port: -1, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close()
	kv, err := bs.State(ctx)
	if err != nil {
		b.Fatal(err)
	}
	tenant := "8f3c2a51-6a0e-4f6b-9d2e-2b7c41d0c0de"
	syn := &synthManage{tenant: tenant, blobs: total / perBlob, perBlob: perBlob, created: time.Now().UTC().Add(-time.Hour)}
	srv := httptest.NewServer(syn)
	defer srv.Close()
	syn.base = srv.URL

	// Baseline: plain async publishes of envelope-sized payloads.
	var sample strings.Builder
	w := bufio.NewWriter(&sample)
	syn.record(w, 0, 0)
	_ = w.Flush()
	payload := []byte(`{"id":"` + synthID(0, 0) + `","source":"audit","kind":"MailItemsAccessed","time":"2024-01-01T00:00:00Z","tenant_id":"` + tenant + `","user":"alice@contoso.com","ip":"185.73.124.135","raw":` + sample.String() + `}`)
	subj := bus.EventSubject(tenant, "audit", "MailItemsAccessed")
	runtime.GC()
	start := time.Now()
	for i := range total {
		for {
			_, err := bs.JS.PublishAsync(subj, payload, jetstream.WithMsgID("base-"+strconv.Itoa(i)))
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				continue // the client's window (4,000) is full: wait and go on
			}
			if err != nil {
				b.Fatal(err)
			}
			break
		}
	}
	select {
	case <-bs.JS.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("baseline acks never came")
	}
	base := float64(total) / time.Since(start).Seconds()

	// The poller.
	runtime.GC()
	stop := make(chan struct{})
	peak := peakHeap(stop)
	var published atomic.Int64
	counters := &Counters{}
	cfg := ManagementConfig{
		Tenant: tenant, HTTP: srv.Client(), BaseURL: srv.URL + "/api/v1.0", JS: bs.JS, KV: kv,
		ContentTypes: []string{"Audit.Exchange"}, RequestsPerMinute: 60000, Logger: quiet, Observer: counters,
	}
	start = time.Now()
	if err := NewManagementPoller(cfg).PollOnce(ctx); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	close(stop)
	peakMB := float64(<-peak) / (1 << 20)
	published.Store(counters.Events.Load())
	if published.Load() != int64(total) {
		b.Fatalf("published %d of %d", published.Load(), total)
	}
	rate := float64(total) / el.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(base, "baseline_events/s")
	b.ReportMetric(rate/base, "ratio")
	b.ReportMetric(peakMB, "peak_heap_MB")
	b.Logf("blob=%d: %.0f events/s vs plain async publish %.0f/s (ratio %.2f), peak heap in use %.0f MB (process: poller, NATS server, HTTP server)",
		perBlob, rate, base, rate/base, peakMB)
}

package feeds

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
)

// IngestBenchOptions configure BenchIngest. Zero values take the defaults.
type IngestBenchOptions struct {
	// Records to ingest (default 1,000,000), in blobs of PerBlob (default
	// 2,000; the last blob holds the rest).
	Records, PerBlob int
	// Dir holds the NATS store ("" = a temporary directory); the run's store is
	// removed afterwards.
	Dir string
	// NATS is where the server runs: "child" (a child process: this executable
	// started again, which must call ServeBenchChild first thing), "embedded"
	// (in this process, so that its memory counts as the poller's), or "" for
	// the child when this executable serves it and embedded otherwise.
	NATS string
	// Poller settings (0 = ManagementConfig's defaults).
	Concurrency, MaxInFlight, CheckpointEvery int
	// Progress receives a line per phase (nil = none).
	Progress io.Writer
	Logger   *slog.Logger
}

// IngestBenchResult is one run of BenchIngest.
type IngestBenchResult struct {
	Records, PerBlob, Blobs int
	// EventsPerSec: records through the whole poller (HTTP, streamed decoding,
	// normalising, publishing with Nats-Msg-Id, checkpoints) per second.
	EventsPerSec float64
	// BaselinePerSec: plain JetStream async publishes of the same number of
	// envelope-sized payloads (distinct message ids) into a fresh EVENTS stream
	// on the same server, in the same run.
	BaselinePerSec float64
	Ratio          float64 // EventsPerSec / BaselinePerSec
	Elapsed        time.Duration
	// PeakRSSMB is the peak resident set of this (the poller's) process during
	// the poller run (Linux VmHWM after a reset; 0 where unavailable).
	// PeakHeapMB is the peak Go heap in use, sampled every 25 ms. With NATS
	// "embedded" both include the server.
	PeakRSSMB, PeakHeapMB float64
	// NATSPeakRSSMB is the NATS child's peak resident set over the whole run
	// (baseline included); 0 when embedded.
	NATSPeakRSSMB float64
	// CPU time per event (µs, user + system) of this process and of the NATS
	// child, during the baseline and during the poller run: steadier than the
	// rates on a busy machine. 0 where unavailable.
	BaselineCPUMicros, BaselineNATSCPUMicros, PollerCPUMicros, PollerNATSCPUMicros float64
	// NATS says where the server ran, and why when it fell back.
	NATS string
	// StoredEvents is the number of messages in EVENTS after the poller run.
	StoredEvents uint64
}

const (
	benchChildEnv   = "RESPONDER_BENCH_NATS_CHILD"
	benchChildHello = "responder-bench-nats "
)

// ServeBenchChild makes this process the NATS server of a BenchIngest run
// when its environment says so (BenchIngest starts its own executable with
// it), and otherwise returns false at once. Call it first in main (and in the
// TestMain of a test binary that runs BenchIngest); when served is true, exit
// with code. The server stops when its standard input closes, that is when
// the benchmark ends or dies.
func ServeBenchChild() (served bool, code int) {
	dir := os.Getenv(benchChildEnv)
	if dir == "" {
		return false, 0
	}
	b, err := bus.Open(context.Background(), bus.Config{StoreDir: dir, Port: -1, Logger: slog.New(slog.DiscardHandler), Name: "bench-nats-child"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench NATS child:", err)
		return true, 1
	}
	defer b.Close()
	fmt.Fprintf(os.Stdout, "%s%s\n", benchChildHello, b.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return true, 0
}

// natsChild is a NATS server in a child process.
type natsChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
	done  chan struct{} // closed when the stdout reader is finished
}

// startNATSChild starts this executable as a NATS server on dir. Arguments
// make a test binary that does not serve it run nothing, and the responder
// binary without the hook refuse them.
func startNATSChild(ctx context.Context, dir string) (*natsChild, error) {
	if os.Getenv(benchChildEnv) != "" {
		return nil, errors.New("already a benchmark child")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &limitWriter{w: &stderr, n: 4096}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &natsChild{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	hello := make(chan string, 1)
	go func() {
		defer close(c.done)
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		hello <- strings.TrimRight(line, "\r\n")
		_, _ = io.Copy(io.Discard, r)
	}()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case line := <-hello:
		if u, ok := strings.CutPrefix(line, benchChildHello); ok {
			c.url = u
			return c, nil
		}
		c.stop()
		return nil, fmt.Errorf("%s does not serve a NATS child (it said %q, %s)", filepath.Base(exe), line, strings.TrimSpace(stderr.String()))
	case <-t.C:
		c.stop()
		return nil, errors.New("the NATS child did not start within 30 s")
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

// cpu is the child's CPU time so far (0 without a child).
func (c *natsChild) cpu() time.Duration {
	if c == nil {
		return 0
	}
	return processCPU(strconv.Itoa(c.cmd.Process.Pid))
}

// processCPU is the user + system time of a process ("self" or a pid) from
// /proc, 0 where unavailable.
func processCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces), from field 3 on:
	// utime and stime are fields 14 and 15, in clock ticks (100 a second on Linux).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(u+st) * 10 * time.Millisecond
}

func perEvent(d time.Duration, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}

// peakRSSMB is the child's VmHWM.
func (c *natsChild) peakRSSMB() float64 { return vmHWM(strconv.Itoa(c.cmd.Process.Pid)) }

// stop closes the child's input and waits for it to exit (killing it after
// 20 s).
func (c *natsChild) stop() {
	_ = c.stdin.Close()
	exited := make(chan struct{})
	go func() {
		_ = c.cmd.Wait()
		close(exited)
	}()
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-exited
	}
	<-c.done
}

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.n -= k
		_, _ = l.w.Write(p[:k])
	}
	return len(p), nil
}

// vmHWM reads the peak resident set of a process ("self" or a pid) in MB, 0
// when /proc does not say.
func vmHWM(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err == nil {
					return kb / 1024
				}
			}
		}
	}
	return 0
}

// resetPeakRSS starts a new peak resident set measurement for this process
// (Linux: clear_refs 5); false where it cannot.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// BenchIngest measures the Management Activity poller: it ingests
// o.Records synthetic audit records, served in blobs of o.PerBlob by a
// loopback Management API that generates them while streaming, through the
// whole poller into EVENTS, and compares its rate with plain JetStream async
// publishes of envelope-sized payloads on the same server in the same run.
// The baseline and the poller each start with an empty EVENTS stream, so that
// neither pays for the other's duplicate-window ids.
func BenchIngest(ctx context.Context, o IngestBenchOptions) (IngestBenchResult, error) {
	if o.Records <= 0 {
		o.Records = 1_000_000
	}
	if o.PerBlob <= 0 {
		o.PerBlob = 2000
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	progress := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	res := IngestBenchResult{Records: o.Records, PerBlob: o.PerBlob, Blobs: (o.Records + o.PerBlob - 1) / o.PerBlob}

	parent := o.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "responder-ingest-")
	if err != nil {
		return res, fmt.Errorf("feeds: bench ingest: %w", err)
	}
	defer os.RemoveAll(dir)

	var (
		b     *bus.Bus
		child *natsChild
	)
	switch o.NATS {
	case "", "child":
		child, err = startNATSChild(ctx, dir)
		if err != nil {
			if o.NATS == "child" {
				return res, fmt.Errorf("feeds: bench ingest: NATS child: %w", err)
			}
			res.NATS = "embedded in the poller's process (no child: " + err.Error() + ")"
			break
		}
		defer child.stop()
		res.NATS = "child process"
		b, err = bus.Open(ctx, bus.Config{URL: child.url, Logger: log, Name: "bench-ingest"})
	case "embedded":
		res.NATS = "embedded in the poller's process"
	default:
		return res, fmt.Errorf("feeds: bench ingest: NATS %q: want child or embedded", o.NATS)
	}
	if child == nil {
		b, err = bus.Open(ctx, bus.Config{StoreDir: dir, Port: -1, Logger: log, Name: "bench-ingest"})
	}
	if err != nil {
		return res, fmt.Errorf("feeds: bench ingest: %w", err)
	}
	defer b.Close()
	kv, err := b.State(ctx)
	if err != nil {
		return res, err
	}
	progress("ingest: %d records in %d blobs of %d; NATS %s", o.Records, res.Blobs, o.PerBlob, res.NATS)

	const tenant = "8f3c2a51-6a0e-4f6b-9d2e-2b7c41d0c0de"
	syn := newSynthManage(tenant, o.Records, o.PerBlob, time.Now().UTC().Add(-30*time.Minute))
	srv := httptest.NewServer(syn)
	defer srv.Close()
	syn.setBaseURL(srv.URL)

	// Baseline: plain async publishes of the envelope of a synthetic record.
	env, err := event.NormalizeAs(event.SourceAudit, tenant, syn.record(nil, 0, 0))
	if err != nil {
		return res, fmt.Errorf("feeds: bench ingest: the synthetic record does not normalise: %w", err)
	}
	payload, err := encodeEnvelope(env)
	if err != nil {
		return res, err
	}
	subj := bus.EventSubject(tenant, string(env.Source), env.Kind)
	progress("ingest: baseline, %d plain async publishes of %d bytes", o.Records, len(payload))
	runtime.GC()
	cpu0, ncpu0 := processCPU("self"), child.cpu()
	start := time.Now()
	id := make([]byte, 0, 32)
	for i := range o.Records {
		id = strconv.AppendInt(append(id[:0], "base-"...), int64(i), 10)
		for {
			_, err := b.JS.PublishAsync(subj, payload, jetstream.WithMsgID(string(id)))
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				continue // the client's window is full; it has waited a little
			}
			if err != nil {
				return res, fmt.Errorf("feeds: bench ingest: baseline publish: %w", err)
			}
			break
		}
	}
	select {
	case <-b.JS.PublishAsyncComplete():
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.BaselinePerSec = float64(o.Records) / time.Since(start).Seconds()
	res.BaselineCPUMicros = perEvent(processCPU("self")-cpu0, o.Records)
	res.BaselineNATSCPUMicros = perEvent(child.cpu()-ncpu0, o.Records)
	if n, err := streamMsgs(ctx, b.JS); err != nil || n != uint64(o.Records) {
		return res, fmt.Errorf("feeds: bench ingest: baseline stored %d of %d (%v)", n, o.Records, err)
	}
	// A fresh EVENTS for the poller.
	if err := b.JS.DeleteStream(ctx, bus.StreamEvents); err != nil {
		return res, fmt.Errorf("feeds: bench ingest: %w", err)
	}
	if err := bus.Ensure(ctx, b.JS, bus.Config{}); err != nil {
		return res, err
	}

	progress("ingest: poller")
	counters := &Counters{}
	cfg := ManagementConfig{
		Tenant: tenant, HTTP: srv.Client(), BaseURL: srv.URL + "/api/v1.0", JS: b.JS, KV: kv,
		ContentTypes: []string{"Audit.Exchange"}, RequestsPerMinute: 1_000_000, Lookback: time.Hour,
		Concurrency: o.Concurrency, MaxInFlight: o.MaxInFlight, CheckpointEvery: o.CheckpointEvery,
		Logger: log, Observer: counters,
	}
	runtime.GC()
	debug.FreeOSMemory()
	rssOK := resetPeakRSS()
	stopSampling := make(chan struct{})
	peakHeap := sampleHeap(stopSampling)
	cpu0, ncpu0 = processCPU("self"), child.cpu()
	start = time.Now()
	err = NewManagementPoller(cfg).PollOnce(ctx)
	res.Elapsed = time.Since(start)
	res.PollerCPUMicros = perEvent(processCPU("self")-cpu0, o.Records)
	res.PollerNATSCPUMicros = perEvent(child.cpu()-ncpu0, o.Records)
	close(stopSampling)
	res.PeakHeapMB = float64(<-peakHeap) / (1 << 20)
	if rssOK {
		res.PeakRSSMB = vmHWM("self")
	}
	if err != nil {
		return res, fmt.Errorf("feeds: bench ingest: poller: %w", err)
	}
	if got := counters.Events.Load(); got != int64(o.Records) {
		return res, fmt.Errorf("feeds: bench ingest: the poller published %d of %d", got, o.Records)
	}
	if res.StoredEvents, err = streamMsgs(ctx, b.JS); err != nil {
		return res, err
	}
	if res.StoredEvents != uint64(o.Records) {
		return res, fmt.Errorf("feeds: bench ingest: EVENTS holds %d of %d", res.StoredEvents, o.Records)
	}
	res.EventsPerSec = float64(o.Records) / res.Elapsed.Seconds()
	res.Ratio = res.EventsPerSec / res.BaselinePerSec
	if child != nil {
		res.NATSPeakRSSMB = child.peakRSSMB()
	}
	progress("ingest: %.0f events/s against %.0f/s plain publish (ratio %.2f); poller peak RSS %.0f MB, heap %.0f MB; NATS peak RSS %.0f MB; CPU µs/event poller %.1f + NATS %.1f, baseline client %.1f + NATS %.1f",
		res.EventsPerSec, res.BaselinePerSec, res.Ratio, res.PeakRSSMB, res.PeakHeapMB, res.NATSPeakRSSMB,
		res.PollerCPUMicros, res.PollerNATSCPUMicros, res.BaselineCPUMicros, res.BaselineNATSCPUMicros)
	return res, nil
}

func streamMsgs(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	s, err := js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		return 0, fmt.Errorf("feeds: bench ingest: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("feeds: bench ingest: %w", err)
	}
	return info.State.Msgs, nil
}

// sampleHeap samples the heap in use until stop is closed and sends the peak.
func sampleHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		t := time.NewTicker(25 * time.Millisecond)
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

// synthManage is a Management Activity API (one content type,
// Audit.Exchange) that generates its blobs while streaming them, so that a
// benchmark measures the poller's memory, not the emulator's. Content is
// listed by contentCreated within the requested window.
type synthManage struct {
	tenant           string
	records, perBlob int
	created          time.Time
	mu               sync.Mutex
	base             string
	head, mid, tail  []byte // the record around its Id and message number
}

// newSynthManage serves records records in blobs of perBlob, created from
// created on (one millisecond apart).
func newSynthManage(tenant string, records, perBlob int, created time.Time) *synthManage {
	s := &synthManage{tenant: tenant, records: records, perBlob: max(perBlob, 1), created: created.UTC()}
	s.head = []byte(`{"CreationTime":"` + created.UTC().Format("2006-01-02T15:04:05") + `","Id":"`)
	s.mid = []byte(`","Operation":"MailItemsAccessed","OrganizationId":"` + tenant + `","RecordType":50,"ResultStatus":"Succeeded","UserKey":"10032002F222981B","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"185.73.124.135:19823","UserId":"alice@contoso.com","ClientInfoString":"Client=OWA;Mozilla/5.0 (Windows NT 10.0; Win64; x64)","ExternalAccess":false,"LogonType":0,"MailboxOwnerUPN":"alice@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"Folders":[{"FolderItems":[{"InternetMessageId":"<m`)
	s.tail = []byte(`@contoso.com>","SizeInBytes":51234}],"Path":"\\Inbox"}]}`)
	return s
}

// setBaseURL sets where the content URIs point (the server's URL).
func (s *synthManage) setBaseURL(u string) {
	s.mu.Lock()
	s.base = u
	s.mu.Unlock()
}

// blobs is the number of content blobs.
func (s *synthManage) blobs() int { return (s.records + s.perBlob - 1) / s.perBlob }

// synthRecordID is the Id of record i of blob b.
func synthRecordID(b, i int) string { return string(appendSynthID(nil, b, i)) }

func appendHex(dst []byte, v uint64, width int) []byte {
	const hex = "0123456789abcdef"
	for k := width - 1; k >= 0; k-- {
		dst = append(dst, hex[(v>>(4*uint(k)))&0xf])
	}
	return dst
}

func appendSynthID(dst []byte, b, i int) []byte {
	dst = appendHex(dst, uint64(b), 8)
	dst = append(dst, "-0000-4000-8000-"...)
	return appendHex(dst, uint64(i), 12)
}

// record appends record i of blob b to dst.
func (s *synthManage) record(dst []byte, b, i int) []byte {
	dst = append(dst, s.head...)
	dst = appendSynthID(dst, b, i)
	dst = append(dst, s.mid...)
	dst = strconv.AppendInt(dst, int64(b), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(i), 10)
	return append(dst, s.tail...)
}

func (s *synthManage) blobCreated(b int) time.Time {
	return s.created.Add(time.Duration(b) * time.Millisecond)
}

// ServeHTTP implements the three calls the poller makes.
func (s *synthManage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	switch {
	case strings.HasSuffix(p, "/subscriptions/start"):
		fmt.Fprint(w, `{"contentType":"Audit.Exchange","status":"enabled","webhook":null}`)
	case strings.HasSuffix(p, "/subscriptions/content"):
		s.list(w, r)
	case strings.Contains(p, "/activity/feed/audit/"):
		n, err := strconv.Atoi(p[strings.LastIndexByte(p, '/')+1:])
		if err != nil || n < 0 || n >= s.blobs() {
			http.NotFound(w, r)
			return
		}
		count := min(s.perBlob, s.records-n*s.perBlob)
		bw := bufio.NewWriterSize(w, 64<<10)
		buf := make([]byte, 0, 1024)
		_ = bw.WriteByte('[')
		for i := range count {
			if i > 0 {
				_ = bw.WriteByte(',')
			}
			buf = s.record(buf[:0], n, i)
			if _, err := bw.Write(buf); err != nil {
				return
			}
		}
		_ = bw.WriteByte(']')
		_ = bw.Flush()
	default:
		http.NotFound(w, r)
	}
}

func (s *synthManage) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("contentType") != "Audit.Exchange" {
		fmt.Fprint(w, `[]`)
		return
	}
	from, err1 := time.Parse("2006-01-02T15:04:05", q.Get("startTime"))
	to, err2 := time.Parse("2006-01-02T15:04:05", q.Get("endTime"))
	if err1 != nil || err2 != nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"code":"AF20055","message":"startTime and endTime are required"}}`)
		return
	}
	s.mu.Lock()
	base := s.base
	s.mu.Unlock()
	bw := bufio.NewWriter(w)
	_ = bw.WriteByte('[')
	first := true
	for i := range s.blobs() {
		c := s.blobCreated(i)
		if c.Before(from) || !c.Before(to) {
			continue
		}
		if !first {
			_ = bw.WriteByte(',')
		}
		first = false
		fmt.Fprintf(bw, `{"contentType":"Audit.Exchange","contentId":"b%d","contentUri":"%s/api/v1.0/%s/activity/feed/audit/%d","contentCreated":"%s","contentExpiration":"2099-01-01T00:00:00.000Z"}`,
			i, base, s.tenant, i, c.Format("2006-01-02T15:04:05.000Z"))
	}
	_ = bw.WriteByte(']')
	_ = bw.Flush()
}

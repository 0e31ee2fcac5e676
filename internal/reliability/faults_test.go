package reliability

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// faultClass is one kind of Graph failure the emulator injects.
type faultClass struct {
	name  string
	fault m365sim.Fault
}

var faultClasses = []faultClass{
	{"429 with Retry-After", m365sim.Fault{Status: 429, Code: "TooManyRequests", Message: "Please retry again later.", RetryAfter: "1"}},
	{"429 without Retry-After", m365sim.Fault{Status: 429, Code: "TooManyRequests", Message: "Too many requests."}},
	{"503", m365sim.Fault{Status: 503, Code: "serviceNotAvailable", Message: "Service unavailable."}},
	{"connection reset", m365sim.Fault{Reset: true}},
	{"latency spike", m365sim.Fault{Latency: 1500 * time.Millisecond}},
}

// faultyTransport makes about rate of the Graph calls through it fail: for a
// chosen call it installs a one-shot emulator fault on exactly that method and
// path just before sending, so the failure is Microsoft-shaped and in the wire
// log. The token endpoint is left alone (its expiry is tested separately).
type faultyTransport struct {
	base http.RoundTripper
	sim  *m365sim.Tenant
	rate float64

	mu       sync.Mutex
	rng      *rand.Rand
	injected map[string]int
	calls    atomic.Int64
}

func (f *faultyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	path := r.URL.EscapedPath()
	if strings.HasPrefix(path, "/v1.0/") {
		f.calls.Add(1)
		f.mu.Lock()
		var fc *faultClass
		if f.rng.Float64() < f.rate {
			fc = &faultClasses[f.rng.IntN(len(faultClasses))]
			f.injected[fc.name]++
		}
		f.mu.Unlock()
		if fc != nil {
			fault := fc.fault
			fault.Method, fault.PathPrefix, fault.Count = r.Method, path, 1
			f.sim.AddFault(fault)
		}
	}
	return f.base.RoundTrip(r)
}

// TestGraphFaults: the same kind of run with about 10% of Graph calls failing
// (429 with and without Retry-After, 503, connection resets, latency spikes)
// and every token revoked in the middle of the run. Every request ends
// succeeded, or failed with Microsoft's code after a bounded number of
// attempts; none hangs; nothing happens twice; the chain verifies.
func TestGraphFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("Graph faults run: about 30 seconds")
	}
	const (
		requests    = 2000
		maxAttempts = 5
	)
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))

	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	hc := sim.HTTPClient()
	ft := &faultyTransport{base: hc.Transport, sim: sim, rate: 0.10, rng: rand.New(rand.NewPCG(seed, 11)), injected: map[string]int{}}
	hc.Transport = ft
	info := sim.Info()
	creds := m365.Credentials{TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
		LoginURL: info.LoginURL, GraphURL: info.GraphURL, ManageURL: info.ManageURL, HTTPClient: hc}
	graph, _, err := m365.NewGraphClient(creds)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	kv, err := b.TenantState(ctx, info.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	w := actions.NewWorker(actions.WorkerConfig{
		Tenant: info.TenantID, JS: b.JS, KV: kv,
		Handlers:  graphexec.New(graph, slog.New(slog.DiscardHandler)).Handlers(),
		Audit:     audit.NewWriter(b.JS, audit.WriterOptions{}),
		Blast:     actions.BlastLimits{Window: time.Hour}, // measure the retry path, not the safety valve
		RetryBase: 50 * time.Millisecond, RetryMax: 2 * time.Second, MaxAttempts: maxAttempts,
		Logger: slog.New(slog.DiscardHandler),
	})
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})

	wl := newWorkload(sim, requests, rng)
	half := len(wl.reqs) / 2
	first := &workload{reqs: wl.reqs[:half], users: wl.users}
	second := &workload{reqs: wl.reqs[half:], users: wl.users}
	if err := first.publish(ctx, b.JS, info.TenantID, 2000, rng); err != nil {
		t.Fatal(err)
	}
	// A token expiring mid-run: every issued token is revoked while requests
	// are in flight.
	sim.ExpireTokens()
	if err := second.publish(ctx, b.JS, info.TenantID, 2000, rng); err != nil {
		t.Fatal(err)
	}
	if _, err := waitAllFinal(ctx, b.JS, wl); err != nil {
		t.Fatal(err)
	}
	ft.mu.Lock()
	t.Logf("Graph calls %d; faults injected %v", ft.calls.Load(), ft.injected)
	ft.mu.Unlock()

	recs := allRecords(t, b.JS)
	final := checkExactlyOnce(t, recs, wl)
	t.Logf("outcomes: %s", outcomeCounts(final))
	// A request may fail only with the code of a transient fault it kept
	// meeting, after the bounded attempts.
	transientCodes := map[string]bool{"TooManyRequests": true, "serviceNotAvailable": true, "transport_error": true, "timeout": true, "GatewayTimeout": true}
	failed, gzipDefect := 0, 0
	codes := map[string]int{}
	for id, r := range final {
		switch r.Outcome {
		case audit.Succeeded:
		case audit.Failed:
			failed++
			codes[r.ErrorCode+": "+r.Detail]++
			switch {
			case knownRetryGzip && r.ErrorCode == "BadRequest" && strings.Contains(r.Detail, "could not be decompressed"):
				gzipDefect++
			case !transientCodes[r.ErrorCode] || r.Attempts > maxAttempts:
				t.Errorf("request %s failed with code %q after %d attempts (bound %d): %s", id, r.ErrorCode, r.Attempts, maxAttempts, r.Detail)
			}
		default:
			t.Errorf("request %s ended %s: %s", id, r.Outcome, r.Detail)
		}
	}
	for c, n := range codes {
		t.Logf("failed %dx: %s", n, c)
	}
	if gzipDefect > 0 {
		t.Logf("KNOWN DEFECT: %d requests failed permanently after the SDK retried a request with a gzip header and a plain body", gzipDefect)
	}
	if failed-gzipDefect > len(wl.reqs)/50 {
		t.Errorf("%d of %d requests failed: retries do not absorb 10%% of transient faults", failed-gzipDefect, len(wl.reqs))
	}
	sim.ClearFaults()
	checkEffects(t, sim, wl, final)
	checkChain(t, b.JS)
	checkDrained(t, b.JS, info.TenantID)
}

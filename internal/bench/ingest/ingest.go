// Package ingest is the harness of `responder bench ingest`: it measures the
// Management Activity poller (internal/feeds) reading the emulated tenant's
// Management Activity API over TLS, with Microsoft's throttling on, into
// EVENTS, against a plain JetStream async publish on the same server in the
// same run. It lives apart from internal/feeds so that the product carries no
// benchmark code.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/feeds"
	"github.com/responder-sec/responder/internal/m365"
)

// Options configure Run. Zero values take the defaults.
type Options struct {
	// Records to ingest (default 1,000,000), in blobs of PerBlob (default
	// 2,000; the last blob holds the rest).
	Records, PerBlob int
	// Dir holds the NATS store ("" = a temporary directory); the run's store is
	// removed afterwards.
	Dir string
	// Where is where the NATS server and the emulated tenant run: "child" (a
	// child process: this executable started again, which must call
	// ServeChild first thing), "embedded" (in this process, so that their
	// memory counts as the poller's), or "" for the child when this
	// executable serves it and embedded otherwise.
	Where string
	// Poller settings (0 = feeds.ManagementConfig's defaults).
	Concurrency, MaxInFlight, CheckpointEvery int
	// Progress receives a line per phase (nil = none).
	Progress io.Writer
	Logger   *slog.Logger
}

// Result is one run.
type Result struct {
	Records, PerBlob, Blobs int
	// EventsPerSec: records through the whole poller (HTTPS, streamed
	// decoding, normalising, publishing with Nats-Msg-Id, checkpoints) per
	// second.
	EventsPerSec float64
	// BaselinePerSec: plain JetStream async publishes of the same number of
	// envelope-sized payloads (distinct message ids) into a fresh EVENTS stream
	// on the same server, in the same run.
	BaselinePerSec float64
	Ratio          float64 // EventsPerSec / BaselinePerSec
	Elapsed        time.Duration
	// PeakRSSMB is the peak resident set of this (the poller's) process during
	// the poller run (Linux VmHWM after a reset; 0 where unavailable).
	// PeakHeapMB is the peak Go heap in use, sampled every 25 ms. Embedded,
	// both include the NATS server and the emulator.
	PeakRSSMB, PeakHeapMB float64
	// ChildPeakRSSMB is the child's (NATS server and emulator) peak resident
	// set over the whole run (baseline included); 0 when embedded.
	ChildPeakRSSMB float64
	// CPU time per event (µs, user + system) of this process and of the
	// child, during the baseline and during the poller run: steadier than the
	// rates on a busy machine. 0 where unavailable.
	BaselineCPUMicros, BaselineChildCPUMicros, PollerCPUMicros, PollerChildCPUMicros float64
	// Where says where the server and the tenant ran, and why when it fell
	// back.
	Where string
	// Published is what the poller reported published; StoredEvents the
	// messages in EVENTS after the poller run (each record's Id is its
	// Nats-Msg-Id, so a record published twice is stored once).
	Published    int64
	StoredEvents uint64
	// Requests are the poller's Management Activity requests (listing pages
	// and blobs); Throttled those answered AF429 and resent.
	Requests, Throttled int64
}

// Run ingests o.Records records, served in blobs of o.PerBlob by the emulated
// tenant's Management Activity API over TLS (budgets scaled by ManageLimits,
// blobs generated on every read), through the whole poller into EVENTS, and
// compares its rate with plain JetStream async publishes of envelope-sized
// payloads on the same server in the same run. The baseline and the poller
// each start with an empty EVENTS stream, so that neither pays for the
// other's duplicate-window ids.
func Run(ctx context.Context, o Options) (Result, error) {
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
	res := Result{Records: o.Records, PerBlob: o.PerBlob, Blobs: (o.Records + o.PerBlob - 1) / o.PerBlob}

	parent := o.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "responder-ingest-")
	if err != nil {
		return res, fmt.Errorf("ingest: %w", err)
	}
	defer os.RemoveAll(dir)

	var (
		b     *bus.Bus
		ch    *child
		creds m365.Credentials
	)
	switch o.Where {
	case "", "child":
		ch, err = startChild(ctx, dir, o.Records, o.PerBlob)
		if err != nil {
			if o.Where == "child" {
				return res, fmt.Errorf("ingest: child: %w", err)
			}
			res.Where = "embedded in the poller's process (no child: " + err.Error() + ")"
			break
		}
		defer ch.stop()
		res.Where = "child process"
		if creds, err = ch.credentials(); err != nil {
			return res, err
		}
		auth, aerr := ch.auth()
		if aerr != nil {
			return res, aerr
		}
		b, err = bus.Open(ctx, bus.Config{URL: ch.hello.NATSURL, Auth: auth, Logger: log, Name: "bench-ingest"})
	case "embedded":
		res.Where = "embedded in the poller's process"
	default:
		return res, fmt.Errorf("ingest: where %q: want child or embedded", o.Where)
	}
	if ch == nil {
		sim, serr := newTenant(o.Records, o.PerBlob, log)
		if serr != nil {
			return res, serr
		}
		defer sim.Close()
		creds = simCredentials(sim.Info(), sim.HTTPClient())
		b, err = bus.Open(ctx, bus.Config{StoreDir: dir, Port: -1, Logger: log, Name: "bench-ingest"})
	}
	if err != nil {
		return res, fmt.Errorf("ingest: %w", err)
	}
	defer b.Close()
	kv, err := b.State(ctx)
	if err != nil {
		return res, err
	}
	progress("ingest: %d records in %d blobs of %d; NATS and tenant %s", o.Records, res.Blobs, o.PerBlob, res.Where)

	// Baseline: plain async publishes of the envelope of one of the records.
	tenant := creds.TenantID
	env, err := event.NormalizeAs(event.SourceAudit, tenant, newSynth(tenant, time.Now()).record(nil, 0, 0))
	if err != nil {
		return res, fmt.Errorf("ingest: the synthetic record does not normalise: %w", err)
	}
	payload, err := json.Marshal(env)
	if err != nil {
		return res, err
	}
	subj := bus.EventSubject(tenant, string(env.Source), env.Kind)
	progress("ingest: baseline, %d plain async publishes of %d bytes", o.Records, len(payload))
	runtime.GC()
	cpu0, ccpu0 := processCPU("self"), ch.cpu()
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
				return res, fmt.Errorf("ingest: baseline publish: %w", err)
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
	res.BaselineChildCPUMicros = perEvent(ch.cpu()-ccpu0, o.Records)
	if n, err := streamMsgs(ctx, b.JS); err != nil || n != uint64(o.Records) {
		return res, fmt.Errorf("ingest: baseline stored %d of %d (%v)", n, o.Records, err)
	}
	// A fresh EVENTS for the poller.
	if err := b.JS.DeleteStream(ctx, bus.StreamEvents); err != nil {
		return res, fmt.Errorf("ingest: %w", err)
	}
	if err := bus.Ensure(ctx, b.JS, bus.Config{}); err != nil {
		return res, err
	}

	progress("ingest: poller")
	cred, err := creds.TokenCredential()
	if err != nil {
		return res, err
	}
	lim := ManageLimits().ManagementActivity
	counters := &feeds.Counters{}
	poller := feeds.NewManagementPoller(feeds.ManagementConfig{
		Tenant: tenant, HTTP: m365.BearerClient(creds, cred, creds.ManageScope()), BaseURL: creds.ManageURL,
		JS: b.JS, KV: bus.TenantState(kv, tenant), ContentTypes: []string{contentType},
		// The poller paces itself to the budget the tenant enforces, 5%
		// inside it as graphexec paces Conditional Access: a client exactly at
		// the limit meets the odd AF429 from timing jitter alone.
		Budget:   feeds.NewTenantBudget(int(lim.Capacity), lim.Per*105/100),
		Lookback: time.Hour, Concurrency: o.Concurrency, MaxInFlight: o.MaxInFlight, CheckpointEvery: o.CheckpointEvery,
		Logger: log, Observer: counters,
	})
	// A running poller holds a token and a warm connection: fetch the token
	// before the clock starts.
	if err := warmToken(ctx, creds, cred); err != nil {
		return res, err
	}
	runtime.GC()
	debug.FreeOSMemory()
	rssOK := resetPeakRSS()
	stopSampling := make(chan struct{})
	peakHeap := sampleHeap(stopSampling)
	cpu0, ccpu0 = processCPU("self"), ch.cpu()
	start = time.Now()
	err = poller.PollOnce(ctx)
	res.Elapsed = time.Since(start)
	res.PollerCPUMicros = perEvent(processCPU("self")-cpu0, o.Records)
	res.PollerChildCPUMicros = perEvent(ch.cpu()-ccpu0, o.Records)
	close(stopSampling)
	res.PeakHeapMB = float64(<-peakHeap) / (1 << 20)
	if rssOK {
		res.PeakRSSMB = vmHWM("self")
	}
	if err != nil {
		return res, fmt.Errorf("ingest: poller: %w", err)
	}
	res.Published = counters.Events.Load()
	res.Requests = counters.Pages.Load() + counters.Blobs.Load()
	res.Throttled = counters.Throttles.Load()
	if res.StoredEvents, err = streamMsgs(ctx, b.JS); err != nil {
		return res, err
	}
	res.EventsPerSec = float64(o.Records) / res.Elapsed.Seconds()
	res.Ratio = res.EventsPerSec / res.BaselinePerSec
	if ch != nil {
		res.ChildPeakRSSMB = ch.peakRSSMB()
	}
	progress("ingest: %.0f events/s against %.0f/s plain publish (ratio %.2f); published %d, stored %d; %d requests, %d throttled; poller peak RSS %.0f MB, heap %.0f MB; child peak RSS %.0f MB; CPU µs/event poller %.1f + child %.1f, baseline client %.1f + child %.1f",
		res.EventsPerSec, res.BaselinePerSec, res.Ratio, res.Published, res.StoredEvents, res.Requests, res.Throttled,
		res.PeakRSSMB, res.PeakHeapMB, res.ChildPeakRSSMB,
		res.PollerCPUMicros, res.PollerChildCPUMicros, res.BaselineCPUMicros, res.BaselineChildCPUMicros)
	return res, nil
}

// warmToken fetches the Management API token, which the credential caches
// for the poller's requests.
func warmToken(ctx context.Context, creds m365.Credentials, cred azcore.TokenCredential) error {
	if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{creds.ManageScope()}}); err != nil {
		return fmt.Errorf("ingest: token: %w", err)
	}
	return nil
}

func streamMsgs(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	s, err := js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		return 0, fmt.Errorf("ingest: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("ingest: %w", err)
	}
	return info.State.Msgs, nil
}

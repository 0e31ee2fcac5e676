package feeds

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/m365sim"
)

// TestManagementCrashExactlyOnce kills the poller (cancels its context) at
// random points, many of them in the middle of a blob, and restarts it each time
// as a new process would (new poller, state only in KV), with the emulator
// injecting throttling, 5xx and dropped connections, a disabled subscription and
// paged listings. At the end EVENTS holds every record exactly once.
func TestManagementCrashExactlyOnce(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	in := e.tn.Info()
	e.tn.SetContentPageSize(4)
	// Microsoft's own budget, tight: restarted pollers (with a fresh budget)
	// run into it and get AF429.
	lim := m365sim.DefaultLimits()
	lim.ManagementActivity = m365sim.Limit{Capacity: 120, Per: time.Second}
	e.tn.SetLimits(lim)
	e.tn.SetThrottling(true)

	rng := rand.New(rand.NewPCG(1, 2))
	cts := []string{"Audit.Exchange", "Audit.AzureActiveDirectory", "Audit.SharePoint"}
	// Subscribed by an earlier run an hour before the content (Microsoft lists
	// nothing from before a start).
	e.subscribed(t, cts...)
	e.clock.Advance(time.Hour + time.Minute)
	want := map[string]bool{}
	now := e.clock.Now()
	for b := 0; b < 45; b++ {
		ct := cts[b%len(cts)]
		n := 40 + rng.IntN(160)
		recs := make([]json.RawMessage, 0, n+1)
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%08x-0000-4000-8000-%012x", b, i)
			want[id] = true
			recs = append(recs, auditRecord(in.TenantID, id, now.Add(-time.Duration(rng.IntN(3600))*time.Second), "Set-Mailbox"))
		}
		if b%10 == 3 { // a record that cannot be normalised: skipped, not retried forever
			recs = append(recs, json.RawMessage(`{"Operation":"Broken","RecordType":1}`))
		}
		if _, err := e.tn.AddAuditRecords(ct, recs); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d records in 45 blobs", len(want))
	e.clock.Advance(2 * time.Second) // the blobs are listable

	blobPath := "/api/v1.0/" + in.TenantID + "/activity/feed/audit/"
	listPath := "/api/v1.0/" + in.TenantID + "/activity/feed/subscriptions/content"
	e.tn.AddFault(m365sim.Fault{PathPrefix: blobPath, Status: 500, Count: 6})
	e.tn.AddFault(m365sim.Fault{PathPrefix: blobPath, Status: 403, Code: "AF429", Message: "Too many requests. Method=GetBlob, PublisherId=x", Count: 6})
	e.tn.AddFault(m365sim.Fault{PathPrefix: blobPath, Reset: true, Count: 4})
	e.tn.AddFault(m365sim.Fault{PathPrefix: listPath, Status: 503, Count: 3})
	e.tn.AddFault(m365sim.Fault{PathPrefix: listPath, Reset: true, Count: 2})

	var published, lastRun atomic.Int64
	var kills int
	var midBlob atomic.Int64
	completed := false
	for run := 0; run < 300 && !completed; run++ {
		ctx, cancel := context.WithCancel(context.Background())
		cfg := e.manageConfig()
		cfg.ContentTypes = cts
		cfg.RequestsPerMinute = 120 * 60
		cfg.Concurrency = 3
		cfg.MaxInFlight = 16
		cfg.CheckpointEvery = 25
		lastRun.Store(0)
		cfg.OnPublished = func(event.Envelope) { published.Add(1); lastRun.Add(1) }
		var killed atomic.Bool
		mode := run % 3
		if run > 120 {
			mode = 3 // let it finish eventually
		}
		killAt := int64(1 + rng.IntN(400))
		var count atomic.Int64
		switch mode {
		case 0, 1: // mid-blob, after a random number of records
			cfg.AfterRecord = func(_, _ string, n int) {
				if count.Add(1) == killAt {
					killed.Store(true)
					if n > 1 {
						midBlob.Add(1)
					}
					cancel()
				}
			}
		case 2: // at a random instant: during listings, fetches, acks or checkpoint writes
			tm := time.AfterFunc(time.Duration(rng.IntN(40_000))*time.Microsecond, func() { killed.Store(true); cancel() })
			defer tm.Stop()
		}
		if run == 2 {
			// Someone disables a subscription: the poller starts it again
			// (15 minutes after the first start: Microsoft refuses starts
			// closer together, see TestManagementStartThrottledAndSettling).
			e.clock.Advance(15 * time.Minute)
			manageCall(t, e, "POST", "subscriptions/stop?contentType=Audit.SharePoint&PublisherIdentifier="+in.TenantID)
		}
		err := NewManagementPoller(cfg).PollOnce(ctx)
		cancel()
		if killed.Load() {
			kills++
			continue
		}
		if err != nil {
			t.Logf("run %d: %v", run, err)
			continue
		}
		completed = true
	}
	if !completed {
		t.Fatal("the poller never completed a poll")
	}
	t.Logf("%d kills (%d mid-blob)", kills, midBlob.Load())
	if kills < 20 || midBlob.Load() < 5 {
		t.Fatalf("too few kills to prove anything: %d (%d mid-blob)", kills, midBlob.Load())
	}

	got := eventIDs(t, e.bus.JS)
	for id, n := range got {
		if n != 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
		if !want[id] {
			t.Errorf("unexpected event %s", id)
		}
	}
	for id := range want {
		if got[id] == 0 {
			t.Errorf("record %s lost", id)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("EVENTS holds %d events, want %d", len(got), len(want))
	}
	// OnPublished hears of an event when its acknowledgement is read: one stored
	// just before a kill is not told again when re-sent (a duplicate).
	if p := int(published.Load()); p == 0 || p > len(want) {
		t.Errorf("OnPublished told %d new events, want 1..%d", p, len(want))
	}

	// Every call carried PublisherIdentifier, and listings respected the window rules.
	throttled := 0
	for _, w := range e.tn.WireLog() {
		if !strings.HasPrefix(w.Path, "/api/") {
			continue
		}
		q, _ := url.ParseQuery(w.Query)
		if q.Get("PublisherIdentifier") != in.TenantID {
			t.Errorf("%s %s?%s without PublisherIdentifier", w.Method, w.Path, w.Query)
		}
		if w.Status == 403 {
			throttled++
		}
		if strings.HasSuffix(w.Path, "/subscriptions/content") && q.Get("nextPage") == "" {
			s, err1 := time.Parse("2006-01-02T15:04:05", q.Get("startTime"))
			en, err2 := time.Parse("2006-01-02T15:04:05", q.Get("endTime"))
			if err1 != nil || err2 != nil || !s.Before(en) || en.Sub(s) > 24*time.Hour {
				t.Errorf("bad listing window %s", w.Query)
			}
		}
	}
	t.Logf("%d throttled (AF429) answers handled", throttled)

	lines, err := Status(context.Background(), e.kv, nil)
	if err != nil {
		t.Fatal(err)
	}
	var events int64
	for _, l := range lines {
		if l.Feed != FeedManagementActivity || l.LastSuccess.IsZero() {
			continue
		}
		events += l.Events
	}
	// Best effort: a killed process may not have written its counts (the
	// status is written at most every 2 s and the clock here stands still), so
	// the count may be short by what killed processes stored, but it is never
	// more than what is stored, and it holds everything the process that
	// finished stored (it writes its status when a poll succeeds). Which runs
	// get killed before storing anything depends on timing, so the lower bound
	// is what that last run told OnPublished.
	if least := lastRun.Load(); events < least || events > int64(len(want)) {
		t.Errorf("status counts %d events, want %d..%d: %+v", events, least, len(want), lines)
	}
}

package feeds

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/m365sim"
)

// Actions outrank polls: an action that arrives while a poll waits goes first.
func TestTenantBudgetActionsFirst(t *testing.T) {
	b := NewTenantBudget(1, 50*time.Millisecond)
	ctx := context.Background()
	if err := b.Wait(ctx, PriorityPoll); err != nil { // takes the only token
		t.Fatal(err)
	}
	order := make(chan string, 2)
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		if err := b.Wait(ctx, PriorityPoll); err == nil {
			order <- "poll"
		}
	}()
	if err := b.Wait(ctx, PriorityAction); err != nil {
		t.Fatal(err)
	}
	order <- "action"
	<-pollDone
	if first := <-order; first != "action" {
		t.Fatalf("first through the budget: %s", first)
	}
	// A cancelled wait returns the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Wait(cctx, PriorityPoll); err == nil {
		t.Fatal("cancelled wait succeeded")
	}
}

// One holder at a time; a successor takes over when the holder stops (release)
// and when it dies without releasing (stale revision after the TTL).
func TestLeaseTakeover(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	ctx := context.Background()
	running := make(chan string, 4)
	work := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			running <- name
			<-ctx.Done()
			return nil
		}
	}
	actx, acancel := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	go func() { aDone <- RunWithLease(actx, e.kv, "feeds.t1", "a", 300*time.Millisecond, work("a")) }()
	if got := <-running; got != "a" {
		t.Fatalf("first holder %s", got)
	}
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	bDone := make(chan error, 1)
	go func() { bDone <- RunWithLease(bctx, e.kv, "feeds.t1", "b", 300*time.Millisecond, work("b")) }()
	select {
	case got := <-running:
		t.Fatalf("%s runs while a holds the lease", got)
	case <-time.After(500 * time.Millisecond): // a renews meanwhile
	}
	acancel()
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-running:
		if got != "b" {
			t.Fatalf("successor %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b never took over")
	}
	bcancel()
	<-bDone

	// A holder that died: its record stays and is never renewed.
	if _, err := e.kv.Put(ctx, "lease.feeds=2Et2", []byte(`{"holder":"dead"}`)); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	cDone := make(chan error, 1)
	start := time.Now()
	go func() { cDone <- RunWithLease(cctx, e.kv, "feeds.t2", "c", 200*time.Millisecond, work("c")) }()
	select {
	case <-running:
		if el := time.Since(start); el < 200*time.Millisecond {
			t.Fatalf("took a live-looking lease after %s", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("c never took over from the dead holder")
	}
	ccancel()
	<-cDone
}

// A checkpoint older than Microsoft's 7 days resumes inside the edge; windows
// are at most 24 h; Backfill reads only what the live poller never read, and a
// second backfill reads nothing.
func TestManagementWindowsAndBackfill(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	in := e.tn.Info()
	ctx := context.Background()
	ct := "Audit.General"
	add := func(id string) {
		if _, err := e.tn.AddAuditRecords(ct, []json.RawMessage{auditRecord(in.TenantID, id, e.clock.Now(), "Op")}); err != nil {
			t.Fatal(err)
		}
	}
	add("00000000-0000-4000-8000-00000000000a") // 50 h before the live poller starts
	e.clock.Advance(50 * time.Hour)
	add("00000000-0000-4000-8000-00000000000b")
	e.clock.Advance(time.Second)

	cfg := e.manageConfig()
	cfg.ContentTypes = []string{ct}
	cfg.Lookback = 2 * time.Hour
	if err := NewManagementPoller(cfg).PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := eventIDs(t, e.bus.JS); len(got) != 1 || got["00000000-0000-4000-8000-00000000000b"] != 1 {
		t.Fatalf("live poll: %v", got)
	}
	var out bytes.Buffer
	if err := Backfill(ctx, cfg, 72*time.Hour, &out); err != nil {
		t.Fatal(err)
	}
	if got := eventIDs(t, e.bus.JS); len(got) != 2 || got["00000000-0000-4000-8000-00000000000a"] != 1 || got["00000000-0000-4000-8000-00000000000b"] != 1 {
		t.Fatalf("after backfill: %v\n%s", got, out.String())
	}
	out.Reset()
	if err := Backfill(ctx, cfg, 72*time.Hour, &out); err != nil || !strings.Contains(out.String(), "nothing to do") {
		t.Fatalf("second backfill: %v\n%s", err, out.String())
	}
	if err := Backfill(ctx, cfg, 8*24*time.Hour, &out); err == nil {
		t.Fatal("backfill beyond 7 days accepted")
	}

	// Nine days later the checkpoint is beyond Microsoft's retention.
	e.clock.Advance(9 * 24 * time.Hour)
	add("00000000-0000-4000-8000-00000000000c")
	e.clock.Advance(time.Second)
	e.tn.ResetWireLog()
	if err := NewManagementPoller(cfg).PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := eventIDs(t, e.bus.JS); len(got) != 3 {
		t.Fatalf("after 9 days: %v", got)
	}
	now := e.clock.Now()
	windows := 0
	for _, w := range e.tn.WireLog() {
		q, _ := url.ParseQuery(w.Query)
		if !strings.HasSuffix(w.Path, "/subscriptions/content") {
			continue
		}
		windows++
		s, _ := time.Parse("2006-01-02T15:04:05", q.Get("startTime"))
		en, _ := time.Parse("2006-01-02T15:04:05", q.Get("endTime"))
		if w.Status != 200 || s.Before(now.Add(-7*24*time.Hour)) || en.Sub(s) > 24*time.Hour {
			t.Errorf("window %s .. %s answered %d", s, en, w.Status)
		}
	}
	if windows < 7 {
		t.Errorf("%d listing windows for ~7 days", windows)
	}

	// Status, as `responder feeds status --json` prints it.
	lines, err := Status(ctx, e.kv, e.clock.Now)
	if err != nil || len(lines) != 1 {
		t.Fatalf("status: %v %v", lines, err)
	}
	var buf bytes.Buffer
	if err := WriteStatus(&buf, lines, true); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"feed", "content_type", "cursor", "last_success", "lag_seconds", "events", "last_error"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status JSON lacks %s: %s", k, buf.String())
		}
	}
	if m["feed"] != FeedManagementActivity || m["content_type"] != ct || m["lag_seconds"].(float64) > 5 {
		t.Errorf("status %s", buf.String())
	}
	buf.Reset()
	if err := WriteStatus(&buf, lines, false); err != nil || !strings.Contains(buf.String(), "Audit.General") {
		t.Fatalf("table: %v\n%s", err, buf.String())
	}
}

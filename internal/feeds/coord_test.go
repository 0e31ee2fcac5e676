package feeds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/clock/clocktest"
	"github.com/responder-sec/responder/internal/m365sim"
)

// One holder at a time; a successor takes over when the holder stops (release)
// and when it dies without releasing (stale revision after the TTL). Time is
// a fake clock: each step waits for the contenders to arm their timers (an
// event), then moves the clock.
func TestLeaseTakeover(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	clk := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	running := make(chan string, 4)
	work := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			running <- name
			<-ctx.Done()
			return nil
		}
	}
	lease := func(name, holder string) *Lease {
		return &Lease{KV: e.kv, Name: name, Holder: holder, TTL: ttl, Clock: clk}
	}
	idle := func(step string) {
		t.Helper()
		select {
		case got := <-running:
			t.Fatalf("%s: %s runs", step, got)
		default:
		}
	}
	actx, acancel := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	go func() { aDone <- lease("feeds.t1", "a").Run(actx, work("a")) }()
	if got := <-running; got != "a" {
		t.Fatalf("first holder %s", got)
	}
	clk.WaitArmed(1) // a's renewal timer
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	bDone := make(chan error, 1)
	go func() { bDone <- lease("feeds.t1", "b").Run(bctx, work("b")) }()
	clk.WaitArmed(1) // b found the lease held and waits
	// Five renewal periods, well past the TTL: a renews each time, so b,
	// which looks every period, never sees the same revision for a TTL.
	for i := range 5 {
		clk.Advance(ttl / 3)
		clk.WaitArmed(2) // a renewed and b looked, and both wait again
		idle(fmt.Sprintf("period %d while a renews", i))
	}
	acancel()
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	// a released the lease: b takes it at its next look, not after a TTL.
	clk.Advance(ttl / 3)
	if got := <-running; got != "b" {
		t.Fatalf("successor %s", got)
	}
	clk.WaitArmed(1) // b's renewal timer
	bcancel()
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}

	// A holder that died: its record stays and is never renewed.
	if _, err := e.kv.Put(ctx, bus.LeaseKey("feeds.t2"), []byte(`{"holder":"dead"}`)); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	cDone := make(chan error, 1)
	go func() { cDone <- lease("feeds.t2", "c").Run(cctx, work("c")) }()
	clk.WaitArmed(1) // c saw the record and waits
	// Up to the TTL the record is live: c looks every TTL/3 and stays out.
	for i := range 3 {
		clk.Advance(ttl / 3)
		clk.WaitArmed(1)
		idle(fmt.Sprintf("%d/3 of the TTL after the holder died", i+1))
	}
	// Past the TTL the unchanged revision is stale: c takes over.
	clk.Advance(ttl / 3)
	if got := <-running; got != "c" {
		t.Fatalf("successor of the dead holder %s", got)
	}
	ccancel()
	if err := <-cDone; err != nil {
		t.Fatal(err)
	}
}

// A checkpoint older than Microsoft's 7 days resumes inside the edge; windows
// are at most 24 h; Backfill reads only what the live poller never read, and a
// second backfill reads nothing.
func TestManagementWindowsAndBackfill(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	in := e.tn.Info()
	ctx := context.Background()
	ct := "Audit.General"
	e.subscribed(t, ct) // 50 h before the live poller: Backfill reads what Microsoft still holds
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

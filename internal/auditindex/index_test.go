package auditindex

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

const tenant = "contoso"

// openBus starts an embedded NATS server whose AUDIT stream starts shortly
// before the end of the first index bucket, so that a few hundred records
// span two buckets.
func openBus(t *testing.T, firstSeq uint64) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("bus.Open: %v", err)
	}
	t.Cleanup(b.Close)
	s, err := b.JS.Stream(ctx, bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if err := b.JS.DeleteStream(ctx, bus.StreamAudit); err != nil {
		t.Fatal(err)
	}
	cfg.FirstSeq = firstSeq
	if _, err := b.JS.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	return b
}

// clock advances a minute per record from a fixed start.
func clock() func() time.Time {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time { at = at.Add(time.Minute); return at }
}

// record i: 7 targets, 3 actors of two kinds, 4 actions, a request per 3 records.
func record(i int) audit.Record {
	actors := []audit.Actor{{Kind: "playbook", Name: "high-risk-user"}, {Kind: "analyst", Name: "Bob"}, {Kind: "playbook", Name: "password-spray"}}
	actions := []string{"disable_user", "revoke_sessions", "block_ip", "reset_password"}
	outcomes := []audit.Outcome{audit.Accepted, audit.Succeeded, audit.Failed}
	r := audit.Record{
		TenantID:  tenant,
		RequestID: fmt.Sprintf("req-%d", i/3),
		Action:    actions[i%4],
		Target:    map[string]string{"user": fmt.Sprintf("User%d@Contoso.com", i%7)},
		Actor:     actors[i%3],
		Outcome:   outcomes[i%3],
	}
	if i%5 == 0 {
		r.Target["ip"] = "203.0.113.9"
	}
	if r.Actor.Kind == "playbook" {
		r.Playbook = r.Actor.Name
	}
	return r
}

type rig struct {
	b       *bus.Bus
	w       *audit.Writer
	flushed chan uint64
	stop    context.CancelFunc
	done    chan struct{} // closed when the indexer returned err
	err     error
}

func (g *rig) append(t *testing.T, ctx context.Context, from, to int) uint64 {
	t.Helper()
	var last uint64
	for i := from; i < to; i++ {
		rec, err := g.w.Append(ctx, record(i))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		last = rec.Seq
	}
	return last
}

// startIndexer runs an Indexer until the test ends or g.stop.
func (g *rig) startIndexer(t *testing.T) {
	ix, err := NewIndexer(IndexerConfig{Tenant: tenant, JS: g.b.JS, FlushEvery: 64, MaxWait: 50 * time.Millisecond,
		Flushed: func(m uint64) {
			select {
			case g.flushed <- m:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	g.stop, g.done = cancel, done
	go func() { g.err = ix.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitMark waits until the index covers seq.
func (g *rig) waitMark(t *testing.T, ctx context.Context, seq uint64) {
	t.Helper()
	for {
		select {
		case m := <-g.flushed:
			if m >= seq {
				return
			}
		case <-g.done:
			t.Fatalf("indexer stopped before seq %d: %v", seq, g.err)
		case <-ctx.Done():
			t.Fatalf("index never reached seq %d", seq)
		}
	}
}

// want lists, by brute force over the whole stream, the seqs f selects.
func want(t *testing.T, ctx context.Context, js jetstream.JetStream, f audit.Filter, newest bool) []uint64 {
	t.Helper()
	var seqs []uint64
	f.TenantID = tenant
	if err := audit.List(ctx, js, f, func(r audit.Record) error { seqs = append(seqs, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if newest {
		slices.Reverse(seqs)
	}
	return seqs
}

// pages reads every page of f and returns the seqs in order.
func pages(t *testing.T, ctx context.Context, r *Reader, f audit.Filter, newest bool, limit int) []uint64 {
	t.Helper()
	var seqs []uint64
	q := Query{Filter: f, Newest: newest, Limit: limit}
	for range 1000 {
		p, err := r.Page(ctx, q)
		if err != nil {
			t.Fatalf("page %+v: %v", q, err)
		}
		if len(p.Items) > limit {
			t.Fatalf("page of %d items over the limit %d", len(p.Items), limit)
		}
		for _, it := range p.Items {
			var rec audit.Record
			if err := json.Unmarshal(it.Data, &rec); err != nil || rec.Seq != it.Seq {
				t.Fatalf("item at seq %d is not the record stored there: %v", it.Seq, err)
			}
			seqs = append(seqs, it.Seq)
		}
		if !p.More {
			return seqs
		}
		if q.Cursor == p.Next && q.Cursor != 0 {
			t.Fatalf("cursor did not move from %d", q.Cursor)
		}
		q.Cursor = p.Next
	}
	t.Fatal("paging never ended")
	return nil
}

func filters() []audit.Filter {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return []audit.Filter{
		{},
		{Target: "user3@contoso.com"},
		{Target: "USER3@CONTOSO.COM"},
		{Target: "user=user4@contoso.com"},
		{Target: "203.0.113.9"},
		{Actor: "bob"},
		{Actor: "playbook"},
		{Actor: "playbook:password-spray"},
		{Action: "block_ip"},
		{RequestID: "req-40"},
		{Outcome: "failed", Playbook: "high-risk-user"},
		{Action: "disable_user", Target: "user1@contoso.com"},
		{Since: t0.Add(100 * time.Minute), Until: t0.Add(150 * time.Minute)},
		{Actor: "bob", Since: t0.Add(200 * time.Minute)},
		{Target: "nobody@contoso.com"},
		{Action: "block_ip", Actor: "bob", Target: "user2@contoso.com"},
	}
}

// TestPagesHoldExactlyTheMatchingRecords: every filter, paged newest first and
// oldest first in small pages, returns exactly what a scan of the whole stream
// selects, across two index buckets and with an unindexed tail.
func TestPagesHoldExactlyTheMatchingRecords(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	b := openBus(t, BucketSize-150)
	g := &rig{b: b, w: audit.NewWriter(b.JS, audit.WriterOptions{Now: clock()}), flushed: make(chan uint64, 1)}
	g.startIndexer(t)
	last := g.append(t, ctx, 0, 300)
	g.waitMark(t, ctx, last)
	g.stop()
	<-g.done
	// The tail: records the index has not seen.
	g.append(t, ctx, 300, 340)

	r := NewReader(b.NC, b.JS, tenant)
	for _, f := range filters() {
		for _, newest := range []bool{true, false} {
			exp := want(t, ctx, b.JS, f, newest)
			for _, limit := range []int{7, 1000} {
				got := pages(t, ctx, r, f, newest, limit)
				if !slices.Equal(got, exp) {
					t.Errorf("filter %+v newest=%v limit %d:\n got %v\nwant %v", f, newest, limit, got, exp)
				}
			}
		}
	}
	p, err := r.Page(ctx, Query{Filter: audit.Filter{RequestID: "req-40"}, Newest: true})
	if err != nil {
		t.Fatal(err)
	}
	// Through the index a page reads only what it returns; the 40 records
	// of the unindexed tail are read directly.
	if p.Mark != last || p.Examined > 40 {
		t.Errorf("request page: mark %d (want %d), examined %d records it did not return (want at most the tail's 40)", p.Mark, last, p.Examined)
	}
}

// TestIndexResumesAfterRestart: a restarted indexer goes on from its mark.
func TestIndexResumesAfterRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	b := openBus(t, 1)
	g := &rig{b: b, w: audit.NewWriter(b.JS, audit.WriterOptions{Now: clock()}), flushed: make(chan uint64, 1)}
	g.startIndexer(t)
	g.waitMark(t, ctx, g.append(t, ctx, 0, 50))
	g.stop()
	<-g.done
	last := g.append(t, ctx, 50, 90)
	g.startIndexer(t)
	g.waitMark(t, ctx, last)
	r := NewReader(b.NC, b.JS, tenant)
	f := audit.Filter{Actor: "bob"}
	if got, exp := pages(t, ctx, r, f, true, 5), want(t, ctx, b.JS, f, true); !slices.Equal(got, exp) {
		t.Errorf("after restart: got %v want %v", got, exp)
	}
}

// TestForgedChunkCannotAddARecord: a chunk naming records that do not match
// (someone with engine rights writing the index) adds nothing to a page.
func TestForgedChunkCannotAddARecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	b := openBus(t, 1)
	g := &rig{b: b, w: audit.NewWriter(b.JS, audit.WriterOptions{Now: clock()}), flushed: make(chan uint64, 1)}
	g.startIndexer(t)
	last := g.append(t, ctx, 0, 30)
	g.waitMark(t, ctx, last)
	var all []entry
	for s := uint64(1); s <= last; s++ {
		all = append(all, entry{seq: s, sec: 0})
	}
	subj := bus.AuditIndexChunkSubject(tenant, DimRequest, Key(DimRequest, "req-2"), 0)
	if _, err := b.JS.Publish(ctx, subj, encodeChunk(all)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Publish(ctx, subj, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	r := NewReader(b.NC, b.JS, tenant)
	f := audit.Filter{RequestID: "req-2"}
	if got, exp := pages(t, ctx, r, f, true, 10), want(t, ctx, b.JS, f, true); !slices.Equal(got, exp) || len(exp) != 3 {
		t.Errorf("forged chunk: got %v want %v", got, exp)
	}
}

func TestChunkRoundTrip(t *testing.T) {
	es := []entry{{1, -5}, {2, 1700000000}, {90000, 1700000000}, {1 << 40, 1600000000}}
	got, err := decodeChunk(encodeChunk(es), nil)
	if err != nil || !slices.Equal(got, es) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {chunkVersion}, {9, 1, 1, 1}, {chunkVersion, 200, 1}, {chunkVersion, 2, 1}} {
		if _, err := decodeChunk(bad, nil); err == nil {
			t.Errorf("decodeChunk(%v) accepted", bad)
		}
	}
}

package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

func TestAppendBuildsAVerifiableChain(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	clock := fixedClock()
	w := NewWriter(b.JS, WriterOptions{Now: clock, Logger: quiet})

	const n = 40
	recs := appendN(t, ctx, w, n)
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Errorf("record %d: seq %d, want %d", i, r.Seq, i+1)
		}
		if u, err := uuid.Parse(r.ID); err != nil || u.Version() != 4 {
			t.Errorf("record %d: id %q is not a v4 uuid (%v)", i, r.ID, err)
		}
		if r.Time.Location() != time.UTC || r.Time.IsZero() {
			t.Errorf("record %d: time %v, want a UTC time from the clock", i, r.Time)
		}
		want := ""
		if i > 0 {
			want = recs[i-1].Hash
		}
		if r.PrevHash != want {
			t.Errorf("record %d: prev_hash %q, want %q", i, r.PrevHash, want)
		}
		if h, _ := r.ComputeHash(); h != r.Hash {
			t.Errorf("record %d: hash %s, content hashes to %s", i, r.Hash, h)
		}
	}

	// The stored records are the returned ones, at their stream sequences.
	s, err := b.JS.Stream(ctx, bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		m, err := s.GetMsg(ctx, recs[i].Seq)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(recs[i])
		if string(m.Data) != string(want) {
			t.Errorf("seq %d stored as\n%s\nreturned as\n%s", recs[i].Seq, m.Data, want)
		}
		if wantSubj := bus.AuditSubject("contoso", "succeeded", "disable_user"); m.Subject != wantSubj {
			t.Errorf("subject %s, want %s", m.Subject, wantSubj)
		}
		if m.Header.Get(jetstream.MsgIDHeader) != recs[i].ID {
			t.Errorf("Nats-Msg-Id %q, want the record id %q", m.Header.Get(jetstream.MsgIDHeader), recs[i].ID)
		}
	}

	res, err := Verify(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Records != n || res.FirstSeq != 1 || res.LastSeq != n || res.LastHash != recs[n-1].Hash {
		t.Fatalf("Verify = %+v, want OK over %d records ending in %s", res, n, recs[n-1].Hash)
	}
}

func TestAppendKeepsCallerFieldsAndRoundTrips(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	w := NewWriter(b.JS, WriterOptions{Logger: quiet})

	paris := time.FixedZone("CET", 3600)
	in := Record{
		ID:              "7d0f5a8e-0000-4000-8000-000000000001",
		Time:            time.Date(2025, 6, 1, 10, 0, 0, 123456789, paris),
		TenantID:        "contoso.onmicrosoft.com", // dots become '_' in the subject
		RequestID:       "req-1",
		Action:          "delete_inbox_rule",
		Target:          map[string]string{"user": "Alice@Contoso.com", "rule_id": "AQAAAJ5dZqA="},
		Actor:           Actor{Kind: "analyst", Name: "bob@contoso.com", KeyID: "k1"},
		Outcome:         Succeeded,
		Detail:          "rule <forward> & \x1b[31mred\x1b[0m \xff invalid utf-8",
		Before:          json.RawMessage(`{ "name" : "fwd",  "forwardTo": ["x@evil.example"] }`),
		After:           json.RawMessage(`null`),
		Attempts:        2,
		GraphRequestIDs: []string{"g-1", "g-2"},
		Seq:             99, PrevHash: "bogus", Hash: "bogus", // overwritten
	}
	got, err := w.Append(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != in.ID || got.Seq != 1 || got.PrevHash != "" || got.Hash == "bogus" {
		t.Errorf("got id %s seq %d prev %q hash %q", got.ID, got.Seq, got.PrevHash, got.Hash)
	}
	if !got.Time.Equal(in.Time) || got.Time.Location() != time.UTC {
		t.Errorf("time %v, want %v in UTC", got.Time, in.Time)
	}
	if string(got.Before) != `{"name":"fwd","forwardTo":["x@evil.example"]}` {
		t.Errorf("before stored as %s, want the compact form", got.Before)
	}
	gotByID, err := Get(ctx, b.JS, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(got)
	c, _ := json.Marshal(gotByID)
	if string(a) != string(c) {
		t.Errorf("Append returned\n%s\nGet returned\n%s", a, c)
	}
	if res, err := Verify(ctx, b.JS); err != nil || !res.OK {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

func TestAppendRefusesIncompleteRecords(t *testing.T) {
	w := NewWriter(nil, WriterOptions{}) // never reaches the bus
	for _, r := range []Record{
		{Outcome: Succeeded},
		{TenantID: "contoso"},
	} {
		if _, err := w.Append(t.Context(), r); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("Append(%+v) = %v, want ErrInvalidRecord", r, err)
		}
	}
}

func TestAppendHonoursContext(t *testing.T) {
	b := openBus(t)
	w := NewWriter(b.JS, WriterOptions{Logger: quiet})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := w.Append(ctx, sample(0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context = %v, want context.Canceled", err)
	}
	// A call waiting for another append's turn gives up with its context too.
	w.sem <- struct{}{}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel2()
	_, err := w.Append(ctx2, sample(1))
	<-w.sem
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append waiting for its turn = %v, want context.DeadlineExceeded", err)
	}
}

// Two writers on two connections, each with its own tail cache: the second append
// of the first writer must lose the race (its cached tail is stale), reload and
// retry.
func TestAppendRetriesOnConflictWithAnotherWriter(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	jsA := &countingJS{JetStream: b.JS}
	wA := NewWriter(jsA, WriterOptions{Logger: quiet})
	wB := NewWriter(connect(t, b), WriterOptions{Logger: quiet})

	a1, err := wA.Append(ctx, sample(1))
	if err != nil {
		t.Fatal(err)
	}
	b1, err := wB.Append(ctx, sample(2))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := wA.Append(ctx, sample(3))
	if err != nil {
		t.Fatal(err)
	}
	if got := jsA.count(); got != 3 {
		t.Errorf("writer A published %d times, want 3 (one refused as stale, then retried)", got)
	}
	if a1.Seq != 1 || b1.Seq != 2 || a2.Seq != 3 || b1.PrevHash != a1.Hash || a2.PrevHash != b1.Hash {
		t.Errorf("chain: %d<-%d<-%d, links %t %t", a1.Seq, b1.Seq, a2.Seq, b1.PrevHash == a1.Hash, a2.PrevHash == b1.Hash)
	}
	if res, err := Verify(ctx, b.JS); err != nil || !res.OK || res.Records != 3 {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

func TestConcurrentWritersShareOneChain(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	conns := []*countingJS{{JetStream: connect(t, b)}, {JetStream: connect(t, b)}}
	writers := []*Writer{
		NewWriter(conns[0], WriterOptions{Logger: quiet}),
		NewWriter(conns[1], WriterOptions{Logger: quiet}),
	}
	const perWriterGoroutines, perGoroutine = 4, 25
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ids  = map[string]bool{}
		errs []error
	)
	for wi, w := range writers {
		for g := range perWriterGoroutines {
			wg.Go(func() {
				for i := range perGoroutine {
					r := sample(i)
					r.Detail = fmt.Sprintf("writer %d goroutine %d record %d", wi, g, i)
					got, err := w.Append(ctx, r)
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else {
						ids[got.ID] = true
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d appends failed, first: %v", len(errs), errs[0])
	}
	const want = 2 * perWriterGoroutines * perGoroutine
	res, err := Verify(ctx, b.JS)
	if err != nil || !res.OK || res.Records != want {
		t.Fatalf("Verify = %+v, %v; want OK over %d records", res, err, want)
	}
	seen := map[string]int{}
	for _, r := range all(t, ctx, b.JS) {
		seen[r.ID]++
	}
	if len(seen) != want {
		t.Errorf("%d distinct records stored, want %d", len(seen), want)
	}
	for id := range ids {
		if seen[id] != 1 {
			t.Errorf("record %s stored %d times", id, seen[id])
		}
	}
	t.Logf("%d publishes for %d records: %d lost a race and were retried",
		conns[0].count()+conns[1].count(), want, conns[0].count()+conns[1].count()-want)
}

// The record lands but its ack is lost: the writer finds it at the tail and
// returns it, without storing it twice.
func TestAppendAckLostButStored(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	js := &countingJS{JetStream: b.JS, loseAck: map[int]bool{1: true}}
	w := NewWriter(js, WriterOptions{Logger: quiet})

	got, err := w.Append(ctx, sample(0))
	if err != nil {
		t.Fatalf("Append = %v, want success after finding the record at the tail", err)
	}
	if js.count() != 1 {
		t.Errorf("published %d times, want 1", js.count())
	}
	recs := all(t, ctx, b.JS)
	if len(recs) != 1 || recs[0].ID != got.ID || recs[0].Hash != got.Hash {
		t.Fatalf("stream holds %+v, want just the returned record", recs)
	}
}

// The ack is lost and another writer appends before the retry: the retry is a
// duplicate by message id, and Append returns the record stored first.
func TestAppendAckLostThenOvertaken(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	other := NewWriter(connect(t, b), WriterOptions{Logger: quiet})
	js := &countingJS{JetStream: b.JS, loseAck: map[int]bool{1: true}}
	js.afterLoss = func() {
		if _, err := other.Append(ctx, sample(9)); err != nil {
			t.Errorf("other writer: %v", err)
		}
	}
	w := NewWriter(js, WriterOptions{Logger: quiet})

	got, err := w.Append(ctx, sample(0))
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 1 {
		t.Errorf("returned seq %d, want 1 (the copy stored before the ack was lost)", got.Seq)
	}
	recs := all(t, ctx, b.JS)
	if len(recs) != 2 || recs[0].ID != got.ID || recs[1].Detail != "record 9" {
		t.Fatalf("stream holds %d records, want the lost-ack record then the other writer's", len(recs))
	}
	if res, err := Verify(ctx, b.JS); err != nil || !res.OK {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	// The writer's next append goes after both.
	next, err := w.Append(ctx, sample(1))
	if err != nil || next.Seq != 3 {
		t.Fatalf("next append: seq %d, %v", next.Seq, err)
	}
}

// Publishes that get no answer are retried, but only a few times in a row.
func TestAppendGivesUpWhenUnanswered(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	js := &countingJS{JetStream: b.JS, drop: map[int]bool{1: true, 2: true}}
	w := NewWriter(js, WriterOptions{Logger: quiet})
	if r, err := w.Append(ctx, sample(0)); err != nil || r.Seq != 1 || js.count() != 3 {
		t.Fatalf("two silent publishes, then: seq %d, %v after %d publishes", r.Seq, err, js.count())
	}
	js.mu.Lock()
	js.drop = map[int]bool{4: true, 5: true, 6: true, 7: true}
	js.mu.Unlock()
	_, err := w.Append(ctx, sample(1))
	if !errors.Is(err, context.DeadlineExceeded) || js.count() != 3+maxUnanswered {
		t.Fatalf("silent publishes: %v after %d publishes, want a timeout after %d", err, js.count()-3, maxUnanswered)
	}
	if n := len(all(t, ctx, b.JS)); n != 1 {
		t.Fatalf("stream holds %d records, want 1", n)
	}
}

// Appending the same record twice (same id) stores it once, whether it is still
// the tail or not.
func TestAppendIsIdempotentOnRecordID(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	w := NewWriter(b.JS, WriterOptions{Logger: quiet})
	r := sample(0)
	r.ID = uuid.NewString()
	first, err := w.Append(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	again, err := w.Append(ctx, r)
	if err != nil || again.Seq != first.Seq || again.Hash != first.Hash {
		t.Fatalf("repeat while tail: seq %d, %v; want seq %d", again.Seq, err, first.Seq)
	}
	if _, err := w.Append(ctx, sample(1)); err != nil {
		t.Fatal(err)
	}
	fresh := NewWriter(b.JS, WriterOptions{Logger: quiet})
	again, err = fresh.Append(ctx, r)
	if err != nil || again.Seq != first.Seq || again.Hash != first.Hash {
		t.Fatalf("repeat after another record: seq %d, %v; want seq %d", again.Seq, err, first.Seq)
	}
	if n := len(all(t, ctx, b.JS)); n != 2 {
		t.Fatalf("stream holds %d records, want 2", n)
	}
}

// Something that is not a record at the tail stops appends (fail closed) and
// Verify names it.
func TestAppendRefusesToChainOntoGarbage(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	w := NewWriter(b.JS, WriterOptions{Logger: quiet})
	appendN(t, ctx, w, 2)
	if _, err := b.JS.Publish(ctx, bus.AuditSubject("contoso", "succeeded", "x"), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	fresh := NewWriter(b.JS, WriterOptions{Logger: quiet})
	if _, err := fresh.Append(ctx, sample(5)); !errors.Is(err, ErrBrokenTail) {
		t.Fatalf("Append onto garbage = %v, want ErrBrokenTail", err)
	}
	// The writer that cached the tail learns of it from the conflict.
	if _, err := w.Append(ctx, sample(6)); !errors.Is(err, ErrBrokenTail) {
		t.Fatalf("Append (stale cache) onto garbage = %v, want ErrBrokenTail", err)
	}
	res, err := Verify(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.BadSeq != 3 || res.FirstBad != nil || !strings.Contains(res.Reason, "not an audit record") {
		t.Fatalf("Verify = %+v, want the message at seq 3 named as not a record", res)
	}
}

func TestAuditStreamRefusesDeleteAndPurge(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	w := NewWriter(b.JS, WriterOptions{Logger: quiet})
	recs := appendN(t, ctx, w, 3)
	s, err := b.JS.Stream(ctx, bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}

	err = s.DeleteMsg(ctx, 2)
	if !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) || !strings.Contains(err.Error(), "not permitted") {
		t.Errorf("DeleteMsg = %v, want ErrMsgDeleteUnsuccessful (message delete not permitted)", err)
	}
	err = s.SecureDeleteMsg(ctx, 2)
	if !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) || !strings.Contains(err.Error(), "not permitted") {
		t.Errorf("SecureDeleteMsg = %v, want ErrMsgDeleteUnsuccessful (message delete not permitted)", err)
	}
	const purgeFailed = 10110 // JSStreamPurgeFailedF
	for _, opts := range [][]jetstream.StreamPurgeOpt{
		nil,
		{jetstream.WithPurgeSubject(bus.AuditFilter("contoso"))},
		{jetstream.WithPurgeSequence(3)},
		{jetstream.WithPurgeKeep(1)},
	} {
		err := s.Purge(ctx, opts...)
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != purgeFailed || !strings.Contains(err.Error(), "not permitted") {
			t.Errorf("Purge(%d opts) = %v, want API error %d (stream purge not permitted)", len(opts), err, purgeFailed)
		}
	}
	// Nor can the protection be switched off.
	cfg := s.CachedInfo().Config
	cfg.DenyDelete, cfg.DenyPurge = false, false
	if _, err := b.JS.UpdateStream(ctx, cfg); err == nil {
		t.Errorf("UpdateStream lifting deny_delete/deny_purge succeeded")
	}

	res, err := Verify(ctx, b.JS)
	if err != nil || !res.OK || res.Records != 3 || res.LastHash != recs[2].Hash {
		t.Fatalf("after the attempts: Verify = %+v, %v", res, err)
	}
}

func TestBackoffIsBoundedAndGrows(t *testing.T) {
	for n := 2; n < 100; n++ {
		d := backoff(n)
		if d < 0 || d > backoffMax {
			t.Fatalf("backoff(%d) = %v, outside [0, %v]", n, d, backoffMax)
		}
	}
	if d := backoff(2); d > backoffBase {
		t.Errorf("first backoff %v, want at most %v", d, backoffBase)
	}
	if d := backoff(30); d < backoffMax/2 {
		t.Errorf("late backoff %v, want at least %v", d, backoffMax/2)
	}
}

func BenchmarkAppend(b *testing.B) {
	ctx := b.Context()
	bs, err := bus.Open(ctx, bus.Config{StoreDir: b.TempDir(), Port: -1, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close()
	w := NewWriter(bs.JS, WriterOptions{Logger: quiet})
	r := sample(0)
	for b.Loop() {
		if _, err := w.Append(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPipelinedWritersShareOneChain: two writers on their own connections,
// each with many concurrent callers, publish batches without waiting for each
// ack; the batches race each other. Every record is stored exactly once, each
// caller gets the record as stored, and the chain verifies: a publish chained
// to a record that lost its race is never stored out of place.
func TestPipelinedWritersShareOneChain(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	writers := []*Writer{
		NewWriter(connect(t, b), WriterOptions{Logger: quiet}),
		NewWriter(connect(t, b), WriterOptions{Logger: quiet}),
	}
	const callers, perCaller = 16, 20
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  = map[string]Record{}
		errs []error
	)
	for wi, w := range writers {
		for g := range callers {
			wg.Go(func() {
				for i := range perCaller {
					r := sample(i)
					r.Detail = fmt.Sprintf("writer %d caller %d record %d", wi, g, i)
					rec, err := w.Append(ctx, r)
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else {
						got[rec.ID] = rec
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d appends failed, first: %v", len(errs), errs[0])
	}
	const want = 2 * callers * perCaller
	res, err := Verify(ctx, b.JS)
	if err != nil || !res.OK || res.Records != want {
		t.Fatalf("Verify = %+v, %v; want OK over %d records", res, err, want)
	}
	stored := all(t, ctx, b.JS)
	if len(stored) != want || len(got) != want {
		t.Fatalf("%d stored, %d returned, want %d", len(stored), len(got), want)
	}
	for _, r := range stored {
		if g, ok := got[r.ID]; !ok || g.Hash != r.Hash || g.Seq != r.Seq {
			t.Errorf("record %s stored at seq %d (%s), returned as seq %d (%s)", r.ID, r.Seq, r.Hash, g.Seq, g.Hash)
		}
	}
}

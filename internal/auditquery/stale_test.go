package auditquery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// staleJS answers the first n stream lookups with the state a server that
// has just rejoined its cluster reports (its own replica's: the stream ends
// at last), as nats-server does while it finds the stream's group
// leaderless; then the real state.
type staleJS struct {
	jetstream.JetStream
	mu   sync.Mutex
	n    int
	last uint64
	seen int
}

func (j *staleJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	st, err := j.JetStream.Stream(ctx, name)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seen++
	if err != nil || j.n == 0 {
		return st, err
	}
	j.n--
	return staleStream{Stream: st, last: j.last}, nil
}

type staleStream struct {
	jetstream.Stream
	last uint64
}

func (s staleStream) CachedInfo() *jetstream.StreamInfo {
	info := *s.Stream.CachedInfo()
	info.State.LastSeq, info.State.Msgs = s.last, s.last
	// the answer of a server that finds the stream's group leaderless
	info.Cluster = &jetstream.ClusterInfo{Name: "responder"}
	return &info
}

// cutStream is the stream's own answer (its leader's) for a trail cut after
// seq last.
type cutStream struct{ staleStream }

func (s cutStream) CachedInfo() *jetstream.StreamInfo {
	info := s.staleStream.CachedInfo()
	info.Cluster = &jetstream.ClusterInfo{Name: "responder", Leader: "nats-2"}
	return info
}

type cutJS struct {
	jetstream.JetStream
	last uint64
	seen int
}

func (j *cutJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	st, err := j.JetStream.Stream(ctx, name)
	j.seen++
	if err != nil {
		return st, err
	}
	return cutStream{staleStream{Stream: st, last: j.last}}, nil
}

// A listing's first page is not cut short by a stream state that is behind
// the kept head: the state is read again until it reaches the head, and the
// page holds every record (audit verify would otherwise report a cut trail
// that is whole). A state that stays behind is answered as it is after the
// wait, so that a trail really cut is still reported.
func TestPageWaitsOutAStaleStreamState(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	b, err := bus.Open(context.Background(), bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	ctx := context.Background()
	w := audit.NewWriter(b.JS, audit.WriterOptions{Logger: log})
	var last audit.Record
	for i := range 6 {
		if last, err = w.Append(ctx, audit.Record{ID: fmt.Sprintf("r%d", i), TenantID: "t1", Action: "disable_user",
			Outcome: audit.Succeeded, Actor: audit.Actor{Kind: "engine", Name: "e"}}); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := b.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := json.Marshal(audit.Head{Type: audit.HeadType, Seq: last.Seq, Hash: last.Hash})
	if _, err := kv.Put(ctx, audit.HeadKey, h); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ParseHead(h); err != nil {
		t.Fatalf("the test's head does not parse: %v", err)
	}

	js := &staleJS{JetStream: b.JS, n: 3, last: 2}
	s := &Service{cfg: Config{Tenant: "t1", JS: js}, log: log}
	rep, err := s.page(ctx, Query{Op: OpList})
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastSeq != last.Seq || len(rep.Items) != int(last.Seq) {
		t.Fatalf("page: last seq %d, %d items; want %d of each (the stale state was answered)", rep.LastSeq, len(rep.Items), last.Seq)
	}
	if js.seen != 4 {
		t.Errorf("the stream was read %d times, want 4 (3 stale, then the real state)", js.seen)
	}

	// A cursor past the end (the console asks for the head with one) is the
	// caller's word, not a record known to exist: the state is read once.
	js = &staleJS{JetStream: b.JS}
	s = &Service{cfg: Config{Tenant: "t1", JS: js}, log: log}
	if rep, err = s.page(ctx, Query{Op: OpList, Limit: 1, AfterSeq: 1 << 62}); err != nil || len(rep.Items) != 0 || rep.LastSeq != last.Seq {
		t.Fatalf("page after the end: %+v, %v", rep, err)
	}
	if js.seen != 1 {
		t.Errorf("a cursor past the end made the page read the stream %d times, want once", js.seen)
	}

	// The stream's leader says the trail ends early (records cut off the
	// end): answered at once as it is, for verify to report.
	cj := &cutJS{JetStream: b.JS, last: 2}
	s = &Service{cfg: Config{Tenant: "t1", JS: cj}, log: log}
	rep, err = s.page(ctx, Query{Op: OpList})
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastSeq != 2 || len(rep.Head) == 0 || cj.seen != 1 {
		t.Fatalf("page: last seq %d, head %q, %d reads; want the leader's state (2) at once, with the kept head", rep.LastSeq, rep.Head, cj.seen)
	}

	// Leaderless answers behind the head for good: a transient error (the
	// client asks again), never a short listing.
	js = &staleJS{JetStream: b.JS, n: 1 << 30, last: 2}
	s = &Service{cfg: Config{Tenant: "t1", JS: js}, log: log, staleWait: 600 * time.Millisecond}
	if _, err = s.page(ctx, Query{Op: OpList}); !errors.Is(err, audit.ErrStaleState) || !bus.Unavailable(err) {
		t.Fatalf("page on a lasting leaderless state: %v, want ErrStaleState, transient", err)
	}
}

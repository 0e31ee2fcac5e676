package bus

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// plainJS starts a real JetStream server on loopback (a port of its own, a
// temporary store, no users) and returns a client of it.
func plainJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// leaderless is the real publisher, with a stream that has no leader until
// the attempt named by elected: before it a publish finds no responder, as
// during a cluster's election; at it the stream appears (is "elected").
type leaderless struct {
	jetstream.JetStream
	t        *testing.T
	attempts int
	elected  int
}

func (l *leaderless) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	l.attempts++
	if l.attempts == l.elected {
		if _, err := l.CreateStream(ctx, jetstream.StreamConfig{Name: "WORK", Subjects: []string{"work.>"}}); err != nil {
			l.t.Fatal(err)
		}
	}
	// The client's own quick retries off: each attempt is one publish.
	return l.JetStream.PublishMsg(ctx, m, append(opts, jetstream.WithRetryAttempts(0))...)
}

// A publish during a failover is sent again until the stream has a leader,
// and stored once; a repeat after a lost acknowledgement is a duplicate, not
// a second message; an error that is not transient is returned at once; and
// the window bounds the repeats.
func TestPublishOnceRidesAFailover(t *testing.T) {
	ctx := context.Background()
	pub := &leaderless{JetStream: plainJS(t), t: t, elected: 3}
	msg := &nats.Msg{Subject: "work.a", Data: []byte("request")}
	ack, err := PublishOnce(ctx, pub, msg, "req-1", time.Minute)
	if err != nil {
		t.Fatalf("publish through the election: %v", err)
	}
	if pub.attempts != 3 || ack.Duplicate {
		t.Fatalf("attempts %d, duplicate %v; want stored on the third attempt", pub.attempts, ack.Duplicate)
	}
	// The acknowledgement was lost: the caller publishes again.
	ack, err = PublishOnce(ctx, pub, msg, "req-1", time.Minute)
	if err != nil || !ack.Duplicate {
		t.Fatalf("repeat: ack %+v, err %v; want a duplicate", ack, err)
	}
	s, err := pub.Stream(ctx, "WORK")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("WORK holds %d messages, want 1", n)
	}

	// Not transient: the stream is not the one expected. One attempt.
	before := pub.attempts
	_, err = PublishOnce(ctx, pub, &nats.Msg{Subject: "work.b", Data: []byte("x")}, "req-2", time.Minute, jetstream.WithExpectStream("OTHER"))
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || pub.attempts != before+1 {
		t.Fatalf("wrong stream: err %v after %d attempts; want the API error after one", err, pub.attempts-before)
	}

	// No leader for longer than the window: the transient error, named.
	none := &leaderless{JetStream: plainJS(t), t: t}
	_, err = PublishOnce(ctx, none, &nats.Msg{Subject: "work.c", Data: []byte("x")}, "req-3", 300*time.Millisecond)
	if !errors.Is(err, jetstream.ErrNoStreamResponse) || none.attempts < 2 {
		t.Fatalf("no leader at all: err %v after %d attempts", err, none.attempts)
	}
	if !Transient(err) {
		t.Errorf("Transient(%v) = false", err)
	}
	// The caller's context ends the repeats too.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := PublishOnce(cctx, none, &nats.Msg{Subject: "work.d", Data: []byte("x")}, "req-4", time.Minute); err == nil {
		t.Fatal("published with an ended context")
	}
}

// WhenReady repeats a step while JetStream is unavailable (a timeout, no
// responder, the meta group without a leader: 10008) and stops at once on any
// other error or when the step succeeds.
func TestWhenReadyWaitsOnlyForUnavailable(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	calls := 0
	unavailable := []error{nats.ErrTimeout, nats.ErrNoResponders,
		&jetstream.APIError{Code: 503, ErrorCode: errCodeClusterNotAvailable, Description: "JetStream system temporarily unavailable"}}
	err := WhenReady(ctx, log, "test", func() error {
		calls++
		if calls <= len(unavailable) {
			return unavailable[calls-1]
		}
		return nil
	})
	if err != nil || calls != len(unavailable)+1 {
		t.Fatalf("err %v after %d calls; want success on call %d", err, calls, len(unavailable)+1)
	}
	calls = 0
	denied := &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamNameInUse, Description: "stream name already in use"}
	if err := WhenReady(ctx, log, "test", func() error { calls++; return denied }); !errors.Is(err, denied) || calls != 1 {
		t.Fatalf("a lasting error: %v after %d calls; want it returned after one", err, calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	calls = 0
	if err := WhenReady(cctx, log, "test", func() error { calls++; return nats.ErrTimeout }); !errors.Is(err, nats.ErrTimeout) || calls != 1 {
		t.Fatalf("ended context: %v after %d calls", err, calls)
	}
}

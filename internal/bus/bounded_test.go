package bus

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A request whose reply never comes (here: a subscriber that takes the publish
// and never answers, as a stopped server or stream leader never does) fails
// after the bus's CallTimeout, not after the caller's much longer deadline; a
// caller's shorter deadline still wins.
func TestCallTimeoutBoundsALostReply(t *testing.T) {
	ctx := context.Background()
	b, err := Open(ctx, Config{StoreDir: t.TempDir(), Port: -1, CallTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sub, err := b.NC.SubscribeSync("silent.>")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.NC.Flush(); err != nil {
		t.Fatal(err)
	}

	long, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	_, err = b.JS.Publish(long, "silent.a", []byte("x"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish without a reply: err %v, want a deadline", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("publish without a reply took %s; the bound is 300ms", d)
	}
	if long.Err() != nil {
		t.Error("the caller's context ended; only the call's bound should have")
	}

	// The caller's own shorter deadline is kept.
	b2, err := Open(ctx, Config{URL: b.ClientURL(), Auth: b.Auth(), CallTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if _, err := b2.JS.Publish(short, "silent.b", []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish with a short deadline: err %v", err)
	}

	// Streams and buckets handed out by the bus are bounded as well.
	s, err := b.JS.Stream(ctx, StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*boundedStream); !ok {
		t.Errorf("Stream returned %T, want a bounded stream", s)
	}
	kv, err := b.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := kv.(*boundedKV); !ok {
		t.Errorf("State returned %T, want a bounded bucket", kv)
	}
	if _, err := kv.Put(ctx, "probe", []byte("1")); err != nil {
		t.Errorf("bounded put: %v", err)
	}
}

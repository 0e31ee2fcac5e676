package feeds

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/m365sim"
)

// Microsoft's start wait ("Please retry again after 14m 56s") outlives the
// process that was told: a restarted poller (new process, state only in KV)
// does not call subscriptions/start again before it is over, and starts once
// it is.
func TestManagementStartWaitSurvivesARestart(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	ctx := context.Background()
	ct := "Audit.Exchange"
	// Started a minute ago by someone, then stopped: a start now is refused.
	e.subscribed(t, ct)
	e.clock.Advance(time.Minute)
	if err := e.tn.StopSubscription(ct); err != nil {
		t.Fatal(err)
	}
	cfg := e.manageConfig()
	cfg.ContentTypes = []string{ct}
	if err := NewManagementPoller(cfg).PollOnce(ctx); !errors.Is(err, ErrStartThrottled) {
		t.Fatalf("first process: %v", err)
	}
	if n := startsOf(e, ct); n != 1 {
		t.Fatalf("%d starts by the first process, want 1 (refused)", n)
	}

	// Restarts within the wait ask Microsoft nothing.
	for _, d := range []time.Duration{time.Second, 5 * time.Minute, 8 * time.Minute} {
		e.clock.Advance(d)
		err := NewManagementPoller(cfg).PollOnce(ctx)
		if !errors.Is(err, ErrStartThrottled) {
			t.Fatalf("restart within the wait: %v", err)
		}
		if n := startsOf(e, ct); n != 1 {
			t.Fatalf("a restarted process called subscriptions/start again before the wait was over (%d starts)", n)
		}
	}
	// Past the wait, a restarted process starts it, once.
	e.clock.Advance(2 * time.Minute)
	if err := NewManagementPoller(cfg).PollOnce(ctx); err != nil {
		t.Fatalf("restart after the wait: %v", err)
	}
	if n := startsOf(e, ct); n != 2 {
		t.Fatalf("%d starts, want 2", n)
	}
	if err := NewManagementPoller(cfg).PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := startsOf(e, ct); n != 2 {
		t.Fatalf("an enabled subscription was started again (%d starts)", n)
	}
}

// A stored start wait longer than Microsoft ever asks (a tampered bucket or a
// clock jump) does not stop the feed: it is ignored and the subscription is
// started.
func TestManagementStartWaitTooLongIsIgnored(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	ct := "Audit.Exchange"
	if _, err := e.kv.Put(context.Background(), bus.SubscriptionStartAfterKey(ct),
		[]byte(`{"start_after":"`+e.clock.Now().Add(24*365*time.Hour).UTC().Format(time.RFC3339)+`"}`)); err != nil {
		t.Fatal(err)
	}
	cfg := e.manageConfig()
	cfg.ContentTypes = []string{ct}
	if err := NewManagementPoller(cfg).PollOnce(context.Background()); err != nil {
		t.Fatalf("poll with a year-long stored wait: %v", err)
	}
	if n := startsOf(e, ct); n != 1 {
		t.Fatalf("%d starts, want 1", n)
	}
}

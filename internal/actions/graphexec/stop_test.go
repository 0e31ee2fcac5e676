package graphexec_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// A worker stopped before it began (its context ended while it created its
// consumer: a test's cleanup, or a shutdown right after start) returns no
// error, as one stopped while waiting for messages does. CI saw
// "actions: consumer: context canceled" fail a test that finished in 70 ms.
func TestWorkerStoppedBeforeItBeganIsNoError(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	b, err := bus.Open(context.Background(), bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	kv, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := actions.NewWorker(actions.WorkerConfig{Tenant: "t1", JS: b.JS, KV: kv, Logger: log,
		Audit: audit.NewWriter(b.JS, audit.WriterOptions{Logger: log})})
	if err := w.Run(ctx); err != nil {
		t.Fatalf("Run on an ended context: %v, want nil", err)
	}
}

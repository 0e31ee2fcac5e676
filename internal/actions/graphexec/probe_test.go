package graphexec_test

import (
	"context"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
)

// A redelivered revoke after a crash must find the effect of the interrupted
// attempt instead of revoking again.
func TestAlreadyAppliedSeesAnInterruptedRevoke(t *testing.T) {
	sim := newSim(t)
	ex := newExecutor(t, sim, graphexec.Config{})
	ctx := context.Background()
	req := &actions.Request{Action: actions.RevokeSessions, Target: actions.Target{User: "alice@contoso.com"}}
	before := time.Now()
	if done, err := ex.AlreadyApplied(ctx, req, before.Add(time.Minute)); err != nil || done {
		t.Fatalf("before any revoke: done=%t err=%v", done, err)
	}
	if _, err := ex.Execute(ctx, req); err != nil {
		t.Fatal(err)
	}
	done, err := ex.AlreadyApplied(ctx, req, before)
	if err != nil || !done {
		t.Fatalf("after the revoke: done=%t err=%v, want the effect found", done, err)
	}
	if done, _ := ex.AlreadyApplied(ctx, req, time.Now().Add(time.Minute)); done {
		t.Error("a revoke older than the attempt was taken for it")
	}
}

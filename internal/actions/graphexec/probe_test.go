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
	probe := ex.Handlers()[actions.RevokeSessions].Probe
	if probe == nil {
		t.Fatal("revoke_sessions is not repeat-safe and registers no probe")
	}
	if done, err := probe(ctx, req, actions.Params{}, before.Add(time.Minute)); err != nil || done {
		t.Fatalf("before any revoke: done=%t err=%v", done, err)
	}
	if _, err := ex.Execute(ctx, req); err != nil {
		t.Fatal(err)
	}
	done, err := probe(ctx, req, actions.Params{}, before)
	if err != nil || !done {
		t.Fatalf("after the revoke: done=%t err=%v, want the effect found", done, err)
	}
	if done, _ := probe(ctx, req, actions.Params{}, time.Now().Add(time.Minute)); done {
		t.Error("a revoke older than the attempt was taken for it")
	}
}

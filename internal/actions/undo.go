package actions

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
)

// undoDecision is why an undo may or may not issue an inverse, a pure function
// of the original request's stored state.
func undoDecision(origID string, st *state) (*Step, string) {
	switch {
	case st == nil:
		return nil, "request " + origID + " is unknown to this engine"
	case !st.Done || st.Final == nil:
		return nil, "request " + origID + " has not finished yet"
	}
	f := st.Final
	spec, _ := Lookup(Name(f.Action))
	switch {
	case f.Outcome != audit.Succeeded:
		return nil, fmt.Sprintf("request %s ended %s; nothing to undo", origID, f.Outcome)
	case spec.Inverse == "":
		why := spec.Irreversible
		if why == "" {
			why = "no inverse exists"
		}
		return nil, fmt.Sprintf("%s is irreversible: %s", f.Action, why)
	case st.Undo == nil:
		return nil, fmt.Sprintf("nothing to undo: request %s changed nothing (its effect was already in place)", origID)
	}
	return st.Undo, ""
}

// InverseRequestID is the id of the inverse request an undo request issues.
func InverseRequestID(undoRequestID string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("responder/"+undoRequestID+"/inverse")).String()
}

// undo issues the inverse of a finished request as a new request that
// references it, and records the undo as succeeded (or refused with why not).
func (w *Worker) undo(ctx context.Context, msg jetstream.Msg, req *Request, attempts int) {
	origID := req.Target.RequestID
	st, err := w.loadState(ctx, origID)
	if err != nil {
		w.log.Error("load the state of the request to undo; will retry", "request", req.ID, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	step, why := undoDecision(origID, st)
	if step == nil {
		w.finish(ctx, msg, req, w.final(req, audit.Refused, why, attempts), nil)
		return
	}
	params := maps.Clone(step.Params)
	if params == nil {
		params = map[string]any{}
	}
	params["undo_of"] = origID
	inv := &Request{
		Version:           Version,
		ID:                InverseRequestID(req.ID),
		Action:            step.Action,
		Target:            step.Target,
		Params:            params,
		RequestedBy:       req.RequestedBy,
		Reason:            "undo of request " + origID + ": " + req.Reason,
		Ticket:            req.Ticket,
		EventID:           req.EventID,
		DryRun:            req.DryRun || w.cfg.DryRun,
		OverrideProtected: req.OverrideProtected,
		RequestedAt:       w.cfg.Now().UTC(),
	}
	if inv.Reason == "undo of request "+origID+": " {
		inv.Reason = "undo of request " + origID
	}
	if err := inv.Validate(); err != nil {
		w.finish(ctx, msg, req, w.final(req, audit.Failed, "the inverse request is invalid: "+err.Error(), attempts), nil)
		return
	}
	after, _ := json.Marshal(map[string]any{"inverse_request_id": inv.ID, "action": inv.Action, "target": inv.Target.Map(), "undo_of": origID})
	if err := w.publish(ctx, inv); err != nil {
		w.log.Error("publish the inverse request; will retry", "request", req.ID, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	detail := fmt.Sprintf("requested %s on %s as request %s (undo of %s %s)", inv.Action, describeTarget(inv.Target), inv.ID, st.Final.Action, origID)
	o := audit.Succeeded
	if inv.DryRun {
		detail = "dry run: " + detail + "; the inverse request is itself a dry run"
	}
	rec := w.final(req, o, detail, attempts)
	rec.After = after
	w.finish(ctx, msg, req, rec, nil)
}

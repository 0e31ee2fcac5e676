package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
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
func InverseRequestID(undoRequestID string) string { return bus.InverseRequestID(undoRequestID) }

// undo issues the inverse of a finished request as a new request that
// references it, and records the undo as succeeded (or refused with why not).
// The inverse acts on the undoing requester's behalf, so it is authorised
// against what that requester may run now, not what the original requester
// could.
func (w *Worker) undo(ctx context.Context, j *job) verdict {
	req := j.req
	origID := req.Target.RequestID
	st, err := w.loadState(ctx, origID)
	if err != nil {
		return infraRetry("load the state of the request to undo", err)
	}
	step, why := undoDecision(origID, st)
	if step == nil {
		return w.final(j, audit.Refused, why)
	}
	if w.cfg.Gate != nil && req.RequestedBy.Kind != "engine" {
		why, err := w.cfg.Gate.Authorize(ctx, req.RequestedBy, step.Action)
		if err != nil {
			return infraRetry("authorise the inverse", err)
		}
		if why != "" {
			return w.final(j, audit.Refused, fmt.Sprintf("the inverse %s is not allowed for %s %s: %s", step.Action, req.RequestedBy.Kind, req.RequestedBy.Name, why))
		}
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
		Tenant:            w.cfg.Tenant,
	}
	if inv.Reason == "undo of request "+origID+": " {
		inv.Reason = "undo of request " + origID
	}
	if err := inv.Validate(); err != nil {
		return w.final(j, audit.Failed, "the inverse request is invalid: "+err.Error())
	}
	after, _ := json.Marshal(map[string]any{"inverse_request_id": inv.ID, "action": inv.Action, "target": inv.Target.Map(), "undo_of": origID})
	if err := w.publish(ctx, inv); err != nil {
		return infraRetry("publish the inverse request", err)
	}
	detail := fmt.Sprintf("requested %s on %s as request %s (undo of %s %s)", inv.Action, describeTarget(inv.Target), inv.ID, st.Final.Action, origID)
	if inv.DryRun {
		detail = "dry run: " + detail + "; the inverse request is itself a dry run"
	}
	v := w.final(j, audit.Succeeded, detail)
	v.rec.After = after
	return v
}

// checkInverse accepts an inverse-only request (restore_*) only when it is
// exactly the inverse stored for the request its undo_of names: no analyst
// can submit rule JSON or a forwarding address of their own through it. It
// returns the reason to reject ("" to accept).
func (w *Worker) checkInverse(ctx context.Context, req *Request, p Params) (string, error) {
	only := fmt.Sprintf("%s is accepted only as the inverse an undo issues from a stored snapshot", req.Action)
	if p.UndoOf == "" {
		return only + " (params.undo_of is missing)", nil
	}
	st, err := w.loadState(ctx, p.UndoOf)
	if err != nil {
		return "", err
	}
	if st == nil || !st.Done || st.Undo == nil {
		return only + ": request " + p.UndoOf + " has no stored snapshot", nil
	}
	if !sameStep(*st.Undo, req) {
		return only + ": it differs from the snapshot stored for request " + p.UndoOf, nil
	}
	return "", nil
}

// sameStep reports whether req is the stored inverse step (undo_of aside).
func sameStep(s Step, req *Request) bool {
	if s.Action != req.Action || s.Target != req.Target {
		return false
	}
	want := maps.Clone(s.Params)
	got := maps.Clone(req.Params)
	delete(want, "undo_of")
	delete(got, "undo_of")
	a, err1 := json.Marshal(want)
	b, err2 := json.Marshal(got)
	return err1 == nil && err2 == nil && bytes.Equal(normJSON(a), normJSON(b))
}

// normJSON re-encodes a JSON value so that numbers and key order compare
// equal however they were written (a snapshot round-trips through KV).
func normJSON(b []byte) []byte {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return b
	}
	if m, ok := v.(map[string]any); ok && len(m) == 0 {
		v = nil
	}
	out, _ := json.Marshal(v)
	return out
}

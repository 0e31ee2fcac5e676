package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/responder-sec/responder/internal/audit"
)

// settle acts on a stage's verdict: the one place that decides ack, nak or
// term. Whatever it cannot store (state, audit record, next step) turns
// into a nak, so the request is redelivered and settled again: a message is
// acknowledged only after its final audit record is stored.
func (w *Worker) settle(ctx context.Context, j *job, v verdict) {
	switch v.kind {
	case retry:
		j.log.Warn("will retry", "why", v.why, "err", v.err, "delay", v.delay)
		w.nak(j, v.delay)
	case rejectV:
		if err := w.deadLetter(ctx, j, v.err); err != nil {
			j.log.Error("audit rejected message; will retry", "err", err)
			w.nak(j, time.Second)
			return
		}
		_ = j.d.Term()
	case hold:
		if err := w.recordPending(ctx, j, v.why); err != nil {
			j.log.Error("audit pending approval; will retry", "err", err)
			w.nak(j, time.Second)
			return
		}
		w.ack(j)
	case finish:
		x := v.x
		if x == nil {
			x = &extra{}
		}
		rec := v.rec
		st := &state{Done: true, Final: &rec, Claimed: w.cfg.Now().UTC(), Undo: x.undo, SecretIssued: x.secret != nil, ExpiresAt: x.expiresAt}
		// The final state first, so a redelivery cannot act again.
		if err := w.putState(ctx, j.req.ID, st); err != nil {
			j.log.Error("store final state; will retry", "err", err)
			w.nak(j, time.Second)
			return
		}
		w.completeStored(ctx, j, st, x.secret)
	case complete:
		w.completeStored(ctx, j, j.st, nil)
	}
}

// completeStored finishes a request whose final state is stored: audit
// record, expiry schedule, next step, reply (with the secret only on the
// first delivery), ack.
func (w *Worker) completeStored(ctx context.Context, j *job, st *state, secret *sealed) {
	if err := w.tail(ctx, j.req, st, secret); err != nil {
		j.log.Error("finish request; will retry", "err", err)
		w.nak(j, time.Second)
		return
	}
	w.ack(j)
}

// tail is what follows the final state: each step is idempotent (the
// record's id is deterministic, the expiry key and the next request's id are
// derived from the request), so a redelivery repeats them safely.
func (w *Worker) tail(ctx context.Context, req *Request, st *state, secret *sealed) error {
	rec := *st.Final
	if !st.Audited {
		stored, err := w.cfg.Audit.Append(ctx, rec)
		if err != nil {
			return fmt.Errorf("audit final record: %w", err)
		}
		// The state is not rewritten as "audited": a redelivery re-sends the
		// record with the same deterministic id, which the AUDIT stream stores
		// once (its duplicate window is far longer than AckWait), and the
		// request's replay protection refuses a re-used id later. That saves a
		// KV round trip on every request.
		rec = stored
	}
	if !st.ExpiresAt.IsZero() && rec.Outcome == audit.Succeeded {
		if err := scheduleExpiry(ctx, w.cfg.KV, req, st.ExpiresAt, st.Undo); err != nil {
			return fmt.Errorf("schedule block expiry: %w", err)
		}
	}
	if err := w.publishNext(ctx, req, rec.Outcome); err != nil {
		return fmt.Errorf("request next step: %w", err)
	}
	if secret == nil && st.SecretIssued {
		rec.Detail += "; the password was delivered to the original requester only (run reset_password again if it was lost)"
	}
	w.notifyRecord(req, rec, secret)
	return nil
}

func (w *Worker) ack(j *job) {
	if err := j.d.Ack(); err != nil {
		j.log.Warn("ack", "err", err)
	}
}

func (w *Worker) nak(j *job, d time.Duration) { _ = j.d.NakWithDelay(d) }

// recordPending records that the request waits for approval; the state stays
// claimed (not done), so the request runs when the approval service
// re-publishes it.
func (w *Worker) recordPending(ctx context.Context, j *job, why string) error {
	rec := w.baseRecord(j.req)
	rec.ID = recordID(j.req.ID, "pending")
	rec.Outcome = audit.PendingApproval
	rec.Detail = "waiting for approval: " + why
	rec.Attempts = j.attempts
	stored, err := w.cfg.Audit.Append(ctx, rec)
	if err != nil {
		return err
	}
	w.notifyRecord(j.req, stored, nil)
	return nil
}

// MaxDeadLetter bounds the message bytes a dead-letter record keeps.
const MaxDeadLetter = 4096

// deadLetter records a message that is not a valid or authentic request: an
// audit record with the reason and the (bounded) message itself.
func (w *Worker) deadLetter(ctx context.Context, j *job, cause error) error {
	reason := cause.Error()
	var re *RejectError
	if errors.As(cause, &re) {
		reason = re.Reason
	}
	req := j.req
	rec := audit.Record{TenantID: w.cfg.Tenant, Outcome: audit.Rejected, Detail: reason, Attempts: j.attempts,
		Actor: audit.Actor{Kind: "unknown", Name: "unknown"}}
	if req != nil {
		if uuidRE.MatchString(req.ID) {
			rec.RequestID = req.ID
		}
		rec.Action = string(req.Action)
		rec.Target = req.Target.Map()
		if req.RequestedBy.Kind != "" || req.RequestedBy.Name != "" {
			rec.Actor = req.RequestedBy
			if !j.verified {
				rec.Detail += "; the claimed requester " + req.RequestedBy.Kind + " " + req.RequestedBy.Name + " could not be verified"
			}
		}
		rec.Reason, rec.Ticket, rec.EventID = req.Reason, req.Ticket, req.EventID
	}
	data := j.d.Data()
	if len(data) > MaxDeadLetter {
		data = data[:MaxDeadLetter]
	}
	dl, _ := json.Marshal(map[string]string{"subject": j.d.Subject(), "data": string(data)})
	rec.Before = dl
	if seq := j.d.Sequence(); seq != 0 {
		rec.ID = recordID(fmt.Sprintf("msg-%d", seq), "rejected")
	}
	if _, err := w.cfg.Audit.Append(ctx, rec); err != nil {
		return err
	}
	w.log.Warn("rejected action message", "subject", j.d.Subject(), "reason", reason)
	if rec.RequestID != "" && req != nil {
		w.notify(req.RequestedBy, Outcome{RequestID: rec.RequestID, Action: Name(rec.Action), Outcome: audit.Rejected, Detail: reason, AuditID: rec.ID, Time: rec.Time})
	}
	return nil
}

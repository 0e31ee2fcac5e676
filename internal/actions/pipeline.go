package actions

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/responder-sec/responder/internal/audit"
)

// The worker handles a request as a short list of stages. Each stage looks at
// the job and returns a verdict: go on to the next stage, or stop with one of
// the other verdicts. Only settle acts on a verdict (audit record, KV state,
// result notice, next step, then ack, nak or term): no stage settles a
// message itself.

// verdictKind is what a stage decided.
type verdictKind int

const (
	goOn     verdictKind = iota
	finish               // final record: store the state, then complete
	complete             // the final state is stored already: redo the tail
	retry                // nak with delay; nothing recorded
	hold                 // waits for approval: pending record, ack
	rejectV              // not a valid or authentic request: dead letter, term
)

// verdict is a stage's decision.
type verdict struct {
	kind  verdictKind
	rec   audit.Record // finish
	x     *extra       // finish
	delay time.Duration
	why   string // retry (log), hold (audit detail)
	err   error  // reject: the cause; retry: for the log
}

func next() verdict { return verdict{kind: goOn} }

func retryAfter(d time.Duration, why string, err error) verdict {
	return verdict{kind: retry, delay: d, why: why, err: err}
}

// infraRetry is the verdict for a failure of our own infrastructure (KV,
// audit stream, approval store): try again in a second, without counting
// against Microsoft's retries.
func infraRetry(why string, err error) verdict { return retryAfter(time.Second, why, err) }

// job is one delivery as it passes the stages.
type job struct {
	d        Delivery
	attempts int
	req      *Request
	spec     Spec
	params   Params
	log      *slog.Logger
	// st is the request's idempotency state as loaded by claim (nil: new).
	st *state
	// released: an approved request re-published by the approval service.
	released bool
	// verified: the gate authenticated the sender (or there is no gate).
	verified bool
	// overLimit is the blast-radius limit the request is past ("").
	overLimit string
	// override: an analyst overrode a protected identity; note prefixes the
	// detail of every later record.
	override bool
	note     string
	// approval: the handler's guard asks for a human decision, and why.
	approval string
}

// stage is one step of the pipeline.
type stage struct {
	name string
	run  func(ctx context.Context, j *job) verdict
}

// stages is the pipeline, in order.
func (w *Worker) stages() []stage {
	return []stage{
		{"decode", w.decode},
		{"admit", w.admit},
		{"claim", w.claimStage},
		{"resolve", w.resolve},
		{"guard", w.guard},
		{"dry-run", w.dryRunStage},
		{"limit", w.limit},
		{"hold", w.holdStage},
		{"probe", w.probe},
		{"execute", w.execute},
	}
}

// Handle runs one delivery through the stages and settles it. It always acks,
// naks with a delay, or terms the message.
func (w *Worker) Handle(ctx context.Context, d Delivery) {
	j := &job{d: d, attempts: max(1, d.Attempts()), log: w.log}
	for _, s := range w.pipeline {
		if v := s.run(ctx, j); v.kind != goOn {
			w.settle(ctx, j, v)
			return
		}
	}
	// execute always ends the pipeline; reaching here is a bug, settled as a
	// retry so that nothing is lost.
	w.settle(ctx, j, infraRetry("pipeline ended without a verdict", nil))
}

// decode parses and validates the request.
func (w *Worker) decode(_ context.Context, j *job) verdict {
	req, err := Decode(j.d.Data())
	j.req = req
	if err != nil {
		return verdict{kind: rejectV, err: err}
	}
	j.spec, _ = Lookup(req.Action)
	j.params, _ = ParseParams(req.Action, req.Target, req.Params) // validated by Decode
	j.log = w.log.With("request", req.ID, "action", req.Action, "attempt", j.attempts)
	return next()
}

// admit authenticates the sender (and recognises an approved release), and
// accepts an inverse-only action only as the inverse an undo issued.
func (w *Worker) admit(ctx context.Context, j *job) verdict {
	if w.cfg.Gate != nil {
		rel, why, err := w.cfg.Gate.Admit(ctx, j.req, j.d)
		switch {
		case err != nil:
			return infraRetry("authentication unavailable", err)
		case why != "":
			return verdict{kind: rejectV, err: &RejectError{Reason: why}}
		}
		j.released = rel
	}
	j.verified = true
	if j.req.Tenant != "" && j.req.Tenant != w.cfg.Tenant {
		return verdict{kind: rejectV, err: &RejectError{Reason: fmt.Sprintf("the request is signed for tenant %q, not this engine's", short(j.req.Tenant))}}
	}
	if j.spec.InverseOnly {
		why, err := w.checkInverse(ctx, j.req, j.params)
		if err != nil {
			return infraRetry("load the request an inverse undoes", err)
		}
		if why != "" {
			return verdict{kind: rejectV, err: &RejectError{Reason: why}}
		}
	}
	return next()
}

// claimStage loads the request's idempotency state: a finished request is
// completed from its stored result (never acted on twice); a new one is
// claimed and its accepted record written.
func (w *Worker) claimStage(ctx context.Context, j *job) verdict {
	st, err := w.loadState(ctx, j.req.ID)
	if err != nil {
		return infraRetry("idempotency state unavailable", err)
	}
	j.st = st
	if st != nil && st.Done {
		j.log.Info("request already finished; returning stored result", "outcome", st.Final.Outcome)
		return verdict{kind: complete}
	}
	if st != nil && j.released {
		// An approved release of a claimed request: accepted long ago.
		return next()
	}
	// First delivery, or a redelivery after a crash that may have come
	// between the claim and the accepted record: the record's id is
	// deterministic, so the stream stores it once.
	if st == nil {
		if err := w.claim(ctx, j.req.ID); err != nil {
			return infraRetry("claim request", err)
		}
	}
	rec := w.baseRecord(j.req)
	rec.ID = recordID(j.req.ID, "accepted")
	rec.Outcome = audit.Accepted
	rec.Detail = "request accepted"
	if h, ok := w.handlers[j.req.Action]; ok && h.Warn != nil {
		if warn := h.Warn(j.req, j.params); warn != "" {
			rec.Detail += "; WARNING: " + warn
		}
	}
	if _, err := w.cfg.Audit.Append(ctx, rec); err != nil {
		return infraRetry("audit accepted", err)
	}
	return next()
}

// resolve turns a mailbox named in one of Exchange's identity forms into its
// owner, so the guards and the handler see the real user. One that cannot be
// resolved is an audited failure naming the identity, never a silent no-op.
func (w *Worker) resolve(ctx context.Context, j *job) verdict {
	if !j.spec.MailboxTarget || ValidUser(j.req.Target.User) {
		return next()
	}
	identity := j.req.Target.User
	if w.cfg.Resolver == nil {
		return w.failure(ctx, j, &Error{Class: Permanent, Code: "UnresolvedIdentity", Message: "mailbox identity " + identity + " cannot be resolved: no resolver is configured"})
	}
	upn, _, err := w.cfg.Resolver.ResolveUser(ctx, identity)
	if err != nil {
		return w.failure(ctx, j, AsError(err))
	}
	if !ValidUser(upn) {
		return w.failure(ctx, j, &Error{Class: Permanent, Code: "UnresolvedIdentity", Message: "mailbox identity " + identity + " resolved to " + short(upn) + ", which is not a user"})
	}
	j.req.Target.User = upn
	j.note += "mailbox " + identity + " resolved to " + upn + "; "
	return next()
}

// guard runs the safety checks the catalogue names for the action.
func (w *Worker) guard(ctx context.Context, j *job) verdict {
	if j.spec.HasGuard(GuardIdentity) {
		ids, err := w.protectedIdentities(ctx)
		if err != nil {
			// Fail closed: without the list nobody is known to be unprotected.
			return w.failure(ctx, j, AsError(fmt.Errorf("look up protected identities: %w", err)))
		}
		d := CheckIdentities(j.req, ids)
		if !d.Allow {
			return w.final(j, audit.Refused, d.Reason)
		}
		if d.Override {
			j.override, j.note = true, d.Reason+"; "
		}
	}
	if j.spec.HasGuard(GuardIP) {
		if d := w.cfg.IP.CheckIP(j.params.Prefix); !d.Allow {
			return w.final(j, audit.Refused, d.Reason)
		}
		var trusted []netip.Prefix
		if w.cfg.Trusted != nil {
			t, err := w.cfg.Trusted.TrustedRanges(ctx)
			if err != nil {
				// Fail closed: without the list no range is known to be safe.
				return w.failure(ctx, j, AsError(fmt.Errorf("read the trusted named locations: %w", err)))
			}
			trusted = t
		}
		if d := w.cfg.IP.CheckNeverBlock(j.params.Prefix, trusted); !d.Allow {
			return w.final(j, audit.Refused, d.Reason)
		}
	}
	if j.spec.HasGuard(GuardDomain) {
		if v, stop := w.domainGuard(ctx, j); stop {
			return v
		}
	}
	if h, ok := w.handlers[j.req.Action]; ok && h.Guard != nil {
		d, err := h.Guard(ctx, j.req, j.params)
		if err != nil {
			// Fail closed: what the guard could not read is not known safe.
			return w.failure(ctx, j, AsError(fmt.Errorf("guard: %w", err)))
		}
		if !d.Allow {
			return w.final(j, audit.Refused, j.note+d.Reason)
		}
		if d.Override {
			j.override, j.note = true, j.note+d.Reason+"; "
		}
		j.approval = d.Approval
	}
	return next()
}

// dryRunStage records what the request would do: the handler's plan when it
// has one (reads only), else the catalogue's description.
func (w *Worker) dryRunStage(ctx context.Context, j *job) verdict {
	if j.spec.Meta || !(j.req.DryRun || w.cfg.DryRun) {
		return next()
	}
	why := "request"
	if w.cfg.DryRun {
		why = "engine"
	}
	detail := j.note + "dry run (" + why + "): would " + j.spec.Description + " for " + describeTarget(j.req.Target)
	var res Result
	if h, ok := w.handlers[j.req.Action]; ok && h.Plan != nil {
		r, err := h.Plan(ctx, j.req, j.params)
		if err != nil {
			e := AsError(err)
			if w.retryable(ctx, j, e) {
				return retryAfter(w.backoff(e, j.attempts), "plan failed", e)
			}
			detail += "; the plan could not be read: " + e.Error()
		} else {
			res = r
			if r.Detail != "" {
				detail = j.note + "dry run (" + why + "): would " + r.Detail
			}
		}
	}
	v := w.final(j, audit.DryRun, detail)
	v.rec.DryRun = true
	v.rec.Before, v.rec.After, v.rec.GraphRequestIDs = res.Before, res.After, res.GraphRequestIDs
	return v
}

// limit counts the request against its blast-radius limits. Without a gate
// to hold it, a request past a limit is refused.
func (w *Worker) limit(ctx context.Context, j *job) verdict {
	if j.released || j.spec.Meta {
		return next()
	}
	why, err := w.checkBlast(ctx, j.req)
	if err != nil {
		return infraRetry("blast-radius counter unavailable", err)
	}
	j.overLimit = why
	if w.cfg.Gate == nil && why != "" {
		return w.final(j, audit.Refused, why)
	}
	if w.cfg.Gate == nil && j.approval != "" {
		// Nobody can approve: refuse what needs a human decision.
		return w.final(j, audit.Refused, j.note+j.approval+" needs approval, and this engine has no approval gate")
	}
	return next()
}

// holdStage asks the gate whether the request waits for approval.
func (w *Worker) holdStage(ctx context.Context, j *job) verdict {
	if j.released || j.spec.Meta || w.cfg.Gate == nil {
		return next()
	}
	held, why, err := w.cfg.Gate.Hold(ctx, j.req, j.d, HoldFacts{OverLimit: j.overLimit, Protected: j.override, Approval: j.approval})
	if err != nil {
		return infraRetry("approval store unavailable", err)
	}
	if held {
		return verdict{kind: hold, why: why}
	}
	return next()
}

// probe guards actions whose repetition is itself an effect: a redelivery
// after an interrupted attempt asks Microsoft whether the effect is in place
// before acting again; every attempt is marked before the call.
func (w *Worker) probe(ctx context.Context, j *job) verdict {
	if j.spec.RepeatSafe {
		return next()
	}
	h := w.handlers[j.req.Action]
	if j.st != nil && !j.st.Executing.IsZero() && h.Probe != nil {
		done, err := h.Probe(ctx, j.req, j.params, j.st.Executing)
		if err != nil {
			return w.failure(ctx, j, AsError(err))
		}
		if done {
			return w.final(j, audit.Succeeded, j.note+"already done: the effect of an interrupted attempt is in place (not repeated)")
		}
	}
	now := w.cfg.Now().UTC()
	mark := state{Claimed: now, Executing: now}
	if j.st != nil {
		mark.Claimed = j.st.Claimed
	}
	if err := w.putState(ctx, j.req.ID, &mark); err != nil {
		return infraRetry("mark executing", err)
	}
	return next()
}

// execute carries the request out and turns the result into the final record.
func (w *Worker) execute(ctx context.Context, j *job) verdict {
	if j.spec.Meta {
		return w.undo(ctx, j)
	}
	h, ok := w.handlers[j.req.Action]
	if !ok || h.Execute == nil {
		return w.failure(ctx, j, &Error{Class: Permanent, Code: "NotImplemented", Message: "no handler for " + string(j.req.Action)})
	}
	res, err := h.Execute(ctx, j.req, j.params)
	if err != nil {
		return w.failure(ctx, j, AsError(err))
	}
	detail := res.Detail
	if detail == "" {
		detail = "done"
	}
	if res.AlreadyDone {
		detail = "already done: " + detail
	}
	var secret *sealed
	if res.Secret != "" {
		var why string
		secret, why = sealFor(j, res.Secret)
		res.Secret = ""
		detail += why
	}
	v := w.final(j, audit.Succeeded, j.note+detail)
	v.rec.Before, v.rec.After, v.rec.GraphRequestIDs = res.Before, res.After, res.GraphRequestIDs
	v.x = &extra{secret: secret, undo: res.Undo}
	if j.spec.Expires && j.params.Expires > 0 {
		v.x.expiresAt = w.cfg.Now().UTC().Add(j.params.Expires)
		if j.req.Action == BlockIP || res.Undo != nil {
			v.rec.Detail += "; unblocks automatically at " + v.x.expiresAt.Format(time.RFC3339)
		}
	}
	return v
}

// failure is the verdict on a failed call: a retry with its delay while the
// error is retryable and attempts remain, else the final failure with
// Microsoft's code and request ids.
func (w *Worker) failure(ctx context.Context, j *job, e *Error) verdict {
	if w.retryable(ctx, j, e) {
		return retryAfter(w.backoff(e, j.attempts), "action failed", e)
	}
	v := w.final(j, audit.Failed, j.note+e.Error())
	v.rec.ErrorCode = e.Code
	if v.rec.ErrorCode == "" && e.Status == 0 {
		v.rec.ErrorCode = "transport_error"
	}
	if e.RequestID != "" || e.ClientRequestID != "" {
		v.rec.GraphRequestIDs = nonEmpty(e.RequestID, e.ClientRequestID)
	}
	j.log.Error("action failed", "class", e.Class, "code", e.Code, "status", e.Status)
	return v
}

func (w *Worker) retryable(ctx context.Context, j *job, e *Error) bool {
	return e.Class != Permanent && j.attempts < w.cfg.MaxAttempts && ctx.Err() == nil
}

func (w *Worker) backoff(e *Error, attempts int) time.Duration {
	return Backoff(e, attempts, w.cfg.RetryBase, w.cfg.RetryMax, jitter)
}

// final is the finish verdict with the request's final record.
func (w *Worker) final(j *job, o audit.Outcome, detail string) verdict {
	rec := w.baseRecord(j.req)
	rec.ID = recordID(j.req.ID, "final")
	rec.Outcome = o
	rec.Detail = detail
	rec.Attempts = j.attempts
	return verdict{kind: finish, rec: rec}
}

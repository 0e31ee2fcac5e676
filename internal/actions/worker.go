package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// Executor carries out one validated, guarded request against Microsoft. It returns
// a *Error for Microsoft failures.
type Executor interface {
	Execute(ctx context.Context, req *Request) (Result, error)
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, req *Request) (Result, error)

// Execute calls f.
func (f ExecutorFunc) Execute(ctx context.Context, req *Request) (Result, error) { return f(ctx, req) }

// Planner reports what a request would do without changing anything, down to
// the objects it would touch (dry run). An Executor may implement it.
type Planner interface {
	Plan(ctx context.Context, req *Request) (Result, error)
}

// Directory resolves the protected identities: the listed users (both their UPN
// and object id) and the members of the protected directory roles.
type Directory interface {
	ProtectedIdentities(ctx context.Context, p Protected) ([]Identity, error)
}

// Recorder appends to the audit trail.
type Recorder interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

// Result is what an executed action reports.
type Result struct {
	Detail          string
	Before, After   json.RawMessage
	GraphRequestIDs []string
	AlreadyDone     bool // the effect was already in place
	// Undo is the request that reverses this one (nil when irreversible or when
	// nothing changed). Kept in KV for `undo`, never sent to Microsoft as is.
	Undo *Step
	// Secret is returned to the requester only (the Outcome on the result
	// subject), and only to an analyst: a playbook's or the engine's is
	// discarded. Never audited, logged, stored in KV or put in an error.
	Secret string
}

// Warner gives the warning to record when a request is accepted, before any
// call (for example that a hard delete cannot be undone). An Executor may
// implement it.
type Warner interface {
	Warning(req *Request) string
}

// Outcome is the final answer to a request, published on its result subject for
// whoever waits (responder act) and kept in KV for redeliveries.
type Outcome struct {
	RequestID string            `json:"request_id"`
	Action    Name              `json:"action"`
	Target    map[string]string `json:"target,omitempty"`
	Outcome   audit.Outcome     `json:"outcome"`
	Detail    string            `json:"detail,omitempty"`
	ErrorCode string            `json:"error_code,omitempty"`
	Attempts  int               `json:"attempts,omitempty"`
	AuditID   string            `json:"audit_id,omitempty"`
	Time      time.Time         `json:"time"`
	// Secret is set only on the reply to the requester, only by reset_password
	// (the generated password). It is never in the audit trail, the KV state,
	// logs or errors; a redelivered request's reply does not carry it.
	Secret string `json:"secret,omitempty"`
}

// WorkerConfig wires a worker.
type WorkerConfig struct {
	Tenant    string
	JS        jetstream.JetStream
	KV        jetstream.KeyValue
	Executor  Executor
	Audit     Recorder
	Protected Protected
	// Directory resolves protected UPNs, object ids and role members (nil: only
	// the listed users are compared, as given).
	Directory Directory
	// Blast bounds requests per action and per playbook (zero value:
	// DefaultBlastLimits; set Window alone to disable every limit).
	Blast BlastLimits
	// IP bounds what block_ip may block (defaults /16 and /48).
	IP IPPolicy
	// Gate authenticates senders and holds requests for approval (nil: admit all,
	// hold none, refuse past the blast radius).
	Gate Gate
	// Publish sends follow-up requests (next steps, undo, expiries); default
	// Publish, unsigned. The engine signs them with its key.
	Publish PublishFunc
	// DryRun makes the whole engine record what it would do and change nothing.
	DryRun      bool
	Concurrency int           // requests in flight (default 128: I/O bound; the budgets pace Microsoft)
	MaxAttempts int           // deliveries before a retryable failure becomes final (default 5)
	RetryBase   time.Duration // first retry delay without Retry-After (default 1s)
	RetryMax    time.Duration // cap of one retry delay (default 60s)
	// AckWait is how soon a message held by a dead process is redelivered
	// (default 30s); a live worker extends it with progress heartbeats while a
	// request runs, up to HandleTimeout (default 2m).
	AckWait       time.Duration
	HandleTimeout time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
}

// Worker consumes ACTIONS and carries requests out, one audit record per state.
type Worker struct {
	cfg WorkerConfig
	log *slog.Logger
}

// ConsumerName is the durable pull consumer shared by every worker of a tenant.
const ConsumerName = "action-workers"

// NewWorker applies defaults.
func NewWorker(cfg WorkerConfig) *Worker {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 128
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = time.Minute
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.HandleTimeout <= 0 {
		cfg.HandleTimeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Blast.PerAction == nil && cfg.Blast.PerPlaybook == 0 && cfg.Blast.Window == 0 {
		cfg.Blast = DefaultBlastLimits()
	}
	return &Worker{cfg: cfg, log: cfg.Logger.With("part", "actions")}
}

// Run consumes until ctx ends, then waits for requests in flight.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.cfg.JS.CreateOrUpdateConsumer(ctx, bus.StreamActions, jetstream.ConsumerConfig{
		Durable:       ConsumerName + "-" + bus.Token(w.cfg.Tenant),
		Description:   "action workers",
		FilterSubject: bus.ActionsFilter(w.cfg.Tenant),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.cfg.AckWait,
		// One more than the worker's own bound, so the worker always gets to
		// record a final failure before the server stops delivering.
		MaxDeliver: w.cfg.MaxAttempts + 1,
		// Room for the messages a crashed process still holds until AckWait.
		MaxAckPending: max(256, w.cfg.Concurrency*16),
	})
	if err != nil {
		return fmt.Errorf("actions: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(w.cfg.Concurrency))
	if err != nil {
		return fmt.Errorf("actions: consume: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	sem := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	// In-flight requests finish with a context that outlives shutdown briefly, so
	// an action already sent to Microsoft gets its audit record.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	pull := bus.NewPuller(it, w.log, "actions")
	for {
		msg, err := pull.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				wg.Wait()
				return nil
			}
			return fmt.Errorf("actions: next message: %w", err)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			_ = msg.Nak()
			wg.Wait()
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			hctx, cancel := context.WithTimeout(workCtx, w.cfg.HandleTimeout)
			defer cancel()
			stopBeat := w.heartbeat(hctx, msg)
			defer stopBeat()
			w.Handle(hctx, msg)
		}()
	}
}

// heartbeat tells the server the message is still being worked on, so a slow
// Graph call does not get it redelivered to another worker. It returns the stop
// function; the goroutine it starts ends with it.
func (w *Worker) heartbeat(ctx context.Context, msg jetstream.Msg) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(w.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// Handle runs one message through the stages. It always acks, naks with delay,
// or leaves the message for redelivery (when the audit trail cannot be written).
func (w *Worker) Handle(ctx context.Context, msg jetstream.Msg) {
	attempts := 1
	if md, err := msg.Metadata(); err == nil {
		attempts = int(md.NumDelivered)
	}
	req, err := Decode(msg.Data())
	if err != nil {
		w.rejectMessage(ctx, msg, req, err, attempts)
		return
	}
	log := w.log.With("request", req.ID, "action", req.Action, "attempt", attempts)

	released := false
	if w.cfg.Gate != nil {
		rel, reject, err := w.cfg.Gate.Admit(ctx, req, msg)
		if err != nil {
			log.Error("authentication unavailable; will retry", "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		if reject != "" {
			w.rejectMessage(ctx, msg, req, &RejectError{Reason: reject}, attempts)
			return
		}
		released = rel
	}

	st, err := w.loadState(ctx, req.ID)
	if err != nil {
		log.Error("idempotency state unavailable; will retry", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	switch {
	case st != nil && st.Done:
		// A redelivery of a finished request: never act twice; finish what the
		// previous delivery may not have (audit record, next step, reply).
		log.Info("request already finished; returning stored result", "outcome", st.Final.Outcome)
		w.complete(ctx, msg, req, st, "")
		return
	case st == nil || !released:
		// First delivery, or a redelivery after a crash that may have come
		// between the claim and the accepted record: the record's id is
		// deterministic, so the stream stores it once.
		if st == nil {
			if err := w.claim(ctx, req.ID); err != nil {
				log.Error("claim request", "err", err)
				_ = msg.NakWithDelay(time.Second)
				return
			}
		}
		rec := w.baseRecord(req)
		rec.ID = recordID(req.ID, "accepted")
		rec.Outcome = audit.Accepted
		rec.Detail = "request accepted"
		if wr, ok := w.cfg.Executor.(Warner); ok {
			if warn := wr.Warning(req); warn != "" {
				rec.Detail += "; WARNING: " + warn
			}
		}
		if _, err := w.cfg.Audit.Append(ctx, rec); err != nil {
			log.Error("audit accepted", "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}

	if req.Action == Undo {
		w.undo(ctx, msg, req, attempts)
		return
	}
	params, _ := ParseParams(req.Action, req.Target, req.Params) // validated by Decode

	// Guards.
	ids, err := w.protectedIdentities(ctx)
	if err != nil {
		// Fail closed: without the list nobody is known to be unprotected.
		w.retryOrFail(ctx, msg, req, AsError(fmt.Errorf("look up protected identities: %w", err)), attempts, "")
		return
	}
	d := CheckIdentities(req, ids)
	if !d.Allow {
		w.finish(ctx, msg, req, w.final(req, audit.Refused, d.Reason, attempts), nil)
		return
	}
	overrideNote := ""
	if d.Override {
		overrideNote = d.Reason + "; "
	}
	if req.Action == BlockIP {
		if ipd := w.cfg.IP.CheckIP(params.Prefix); !ipd.Allow {
			w.finish(ctx, msg, req, w.final(req, audit.Refused, ipd.Reason, attempts), nil)
			return
		}
	}
	if req.DryRun || w.cfg.DryRun {
		w.dryRun(ctx, msg, req, overrideNote, attempts)
		return
	}
	if !released {
		why, err := w.checkBlast(ctx, req)
		if err != nil {
			log.Error("blast-radius counter unavailable; will retry", "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		if w.cfg.Gate == nil && why != "" {
			w.finish(ctx, msg, req, w.final(req, audit.Refused, why, attempts), nil)
			return
		}
		if w.cfg.Gate != nil {
			held, hwhy, err := w.cfg.Gate.Hold(ctx, req, msg, HoldFacts{OverLimit: why, Protected: d.Override})
			if err != nil {
				log.Error("approval store unavailable; will retry", "err", err)
				_ = msg.NakWithDelay(time.Second)
				return
			}
			if held {
				w.pending(ctx, msg, req, hwhy, attempts)
				return
			}
		}
	}

	if nonIdempotent[req.Action] {
		if st != nil && !st.Executing.IsZero() {
			if p, ok := w.cfg.Executor.(Prober); ok {
				done, err := p.AlreadyApplied(ctx, req, st.Executing)
				if err != nil {
					w.retryOrFail(ctx, msg, req, AsError(err), attempts, overrideNote)
					return
				}
				if done {
					rec := w.final(req, audit.Succeeded, overrideNote+"already done: the effect of an interrupted attempt is in place (not repeated)", attempts)
					w.finish(ctx, msg, req, rec, nil)
					return
				}
			}
		}
		mark := state{Claimed: w.cfg.Now().UTC(), Executing: w.cfg.Now().UTC()}
		if st != nil {
			mark.Claimed = st.Claimed
		}
		if err := w.putState(ctx, req.ID, &mark); err != nil {
			log.Error("mark executing; will retry", "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	res, err := w.cfg.Executor.Execute(ctx, req)
	if err != nil {
		w.retryOrFail(ctx, msg, req, AsError(err), attempts, overrideNote)
		return
	}
	detail := res.Detail
	if detail == "" {
		detail = "done"
	}
	if res.AlreadyDone {
		detail = "already done: " + detail
	}
	if res.Secret != "" {
		if req.RequestedBy.Kind == "analyst" {
			detail += "; the password was returned to the requester only"
		} else {
			// Nobody waits for a playbook's or the engine's reply: never put
			// the secret on the bus where no one is there to take it.
			res.Secret = ""
			detail += "; requested by " + req.RequestedBy.Kind + " " + req.RequestedBy.Name +
				", so the password was discarded unseen: the user regains access through self-service password reset or an administrator"
		}
	}
	rec := w.final(req, audit.Succeeded, overrideNote+detail, attempts)
	rec.Before, rec.After, rec.GraphRequestIDs = res.Before, res.After, res.GraphRequestIDs
	x := &extra{secret: res.Secret, undo: res.Undo}
	if req.Action == BlockIP && params.Expires > 0 {
		x.expiresAt = w.cfg.Now().UTC().Add(params.Expires)
		rec.Detail += "; unblocks automatically at " + x.expiresAt.Format(time.RFC3339)
	}
	w.finish(ctx, msg, req, rec, x)
}

// retryOrFail naks a retryable failure with its delay while attempts remain,
// else records the final failure with Microsoft's code and request ids.
func (w *Worker) retryOrFail(ctx context.Context, msg jetstream.Msg, req *Request, e *Error, attempts int, note string) {
	log := w.log.With("request", req.ID, "action", req.Action, "attempt", attempts)
	if e.Class != Permanent && attempts < w.cfg.MaxAttempts && ctx.Err() == nil {
		delay := Backoff(e, attempts, w.cfg.RetryBase, w.cfg.RetryMax, jitter)
		log.Warn("action failed; retrying", "class", e.Class, "code", e.Code, "status", e.Status, "delay", delay)
		_ = msg.NakWithDelay(delay)
		return
	}
	rec := w.final(req, audit.Failed, note+e.Error(), attempts)
	rec.ErrorCode = e.Code
	if rec.ErrorCode == "" && e.Status == 0 {
		rec.ErrorCode = "transport_error"
	}
	if e.RequestID != "" || e.ClientRequestID != "" {
		rec.GraphRequestIDs = nonEmpty(e.RequestID, e.ClientRequestID)
	}
	log.Error("action failed", "class", e.Class, "code", e.Code, "status", e.Status)
	w.finish(ctx, msg, req, rec, nil)
}

// protectedIdentities is the listed users plus what the directory resolves.
func (w *Worker) protectedIdentities(ctx context.Context) ([]Identity, error) {
	ids := make([]Identity, 0, len(w.cfg.Protected.Users))
	for _, u := range w.cfg.Protected.Users {
		ids = append(ids, Identity{ID: u, Why: "listed"})
	}
	if w.cfg.Directory == nil {
		return ids, nil
	}
	more, err := w.cfg.Directory.ProtectedIdentities(ctx, w.cfg.Protected)
	if err != nil {
		return nil, err
	}
	return append(ids, more...), nil
}

// dryRun records what the request would do: the executor's plan when it can
// make one (reads only), else the catalogue's description.
func (w *Worker) dryRun(ctx context.Context, msg jetstream.Msg, req *Request, note string, attempts int) {
	why := "request"
	if w.cfg.DryRun {
		why = "engine"
	}
	spec, _ := Lookup(req.Action)
	detail := note + "dry run (" + why + "): would " + spec.Description + " for " + describeTarget(req.Target)
	var res Result
	if p, ok := w.cfg.Executor.(Planner); ok {
		r, err := p.Plan(ctx, req)
		if err != nil {
			e := AsError(err)
			if e.Class != Permanent && attempts < w.cfg.MaxAttempts && ctx.Err() == nil {
				_ = msg.NakWithDelay(Backoff(e, attempts, w.cfg.RetryBase, w.cfg.RetryMax, jitter))
				return
			}
			detail += "; the plan could not be read: " + e.Error()
		} else {
			res = r
			if r.Detail != "" {
				detail = note + "dry run (" + why + "): would " + r.Detail
			}
		}
	}
	rec := w.final(req, audit.DryRun, detail, attempts)
	rec.DryRun = true
	rec.Before, rec.After, rec.GraphRequestIDs = res.Before, res.After, res.GraphRequestIDs
	w.finish(ctx, msg, req, rec, nil)
}

func describeTarget(t Target) string {
	switch {
	case t.User != "":
		return "user " + t.User
	case t.IP != "":
		return "ip " + t.IP
	case t.MessageID != "":
		return "message " + t.MessageID
	case t.RequestID != "":
		return "request " + t.RequestID
	}
	return "no target"
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// state is the idempotency record of one request in KV (req.<id>).
type state struct {
	Done    bool          `json:"done"`
	Audited bool          `json:"audited,omitempty"`
	Final   *audit.Record `json:"final,omitempty"`
	Claimed time.Time     `json:"claimed"`
	// Undo reverses a succeeded request (see Result.Undo).
	Undo *Step `json:"undo,omitempty"`
	// SecretIssued records that the first reply carried a secret (never the
	// secret itself).
	SecretIssued bool `json:"secret_issued,omitempty"`
	// ExpiresAt is when a block_ip is to be undone by the engine.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Executing is when a non-idempotent call was about to be sent; a
	// redelivery that finds it probes Microsoft instead of calling again.
	Executing time.Time `json:"executing,omitzero"`
}

// Prober tells whether the effect of an interrupted request is already in place
// (the process died between Microsoft's answer and the record of it).
type Prober interface {
	AlreadyApplied(ctx context.Context, req *Request, since time.Time) (bool, error)
}

// nonIdempotent are the actions whose repetition is itself an effect: a second
// revoke signs the user out again.
var nonIdempotent = map[Name]bool{RevokeSessions: true}

// extra is what finish keeps besides the record: the secret for the reply only.
type extra struct {
	secret    string
	undo      *Step
	expiresAt time.Time
}

func stateKey(id string) string { return "req." + bus.Token(id) }

func (w *Worker) loadState(ctx context.Context, id string) (*state, error) {
	e, err := w.cfg.KV.Get(ctx, stateKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, fmt.Errorf("decode state of %s: %w", id, err)
	}
	return &st, nil
}

func (w *Worker) claim(ctx context.Context, id string) error {
	b, _ := json.Marshal(state{Claimed: w.cfg.Now().UTC()})
	_, err := w.cfg.KV.Create(ctx, stateKey(id), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil // another delivery claimed it first; it is ours to continue
	}
	return err
}

func (w *Worker) putState(ctx context.Context, id string, st *state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = w.cfg.KV.Put(ctx, stateKey(id), b)
	return err
}

// recordID makes audit record ids deterministic per request and state, so a
// record re-sent after a crash is deduplicated by the stream.
func recordID(requestID, what string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("responder/"+requestID+"/"+what)).String()
}

func (w *Worker) baseRecord(req *Request) audit.Record {
	return audit.Record{
		TenantID:  w.cfg.Tenant,
		RequestID: req.ID,
		Action:    string(req.Action),
		Target:    req.Target.Map(),
		Actor:     req.RequestedBy,
		Reason:    req.Reason,
		Ticket:    req.Ticket,
		EventID:   req.EventID,
		Playbook:  req.Playbook(),
		DryRun:    req.DryRun || w.cfg.DryRun,
	}
}

func (w *Worker) final(req *Request, o audit.Outcome, detail string, attempts int) audit.Record {
	rec := w.baseRecord(req)
	rec.ID = recordID(req.ID, "final")
	rec.Outcome = o
	rec.Detail = detail
	rec.Attempts = attempts
	return rec
}

// finish stores the final state first (so a redelivery cannot act again), then
// the audit record, then requests the next step, replies, and acks last.
func (w *Worker) finish(ctx context.Context, msg jetstream.Msg, req *Request, rec audit.Record, x *extra) {
	if x == nil {
		x = &extra{}
	}
	st := &state{Done: true, Final: &rec, Claimed: w.cfg.Now().UTC(), Undo: x.undo, SecretIssued: x.secret != "", ExpiresAt: x.expiresAt}
	if err := w.putState(ctx, req.ID, st); err != nil {
		w.log.Error("store final state; will retry", "request", req.ID, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	w.complete(ctx, msg, req, st, x.secret)
}

// complete finishes a request whose final state is stored: audit record,
// expiry schedule, next step, reply (with the secret only on the first
// delivery), ack.
func (w *Worker) complete(ctx context.Context, msg jetstream.Msg, req *Request, st *state, secret string) {
	rec := *st.Final
	if !st.Audited {
		stored, err := w.cfg.Audit.Append(ctx, rec)
		if err != nil {
			w.log.Error("audit final record; will retry", "request", req.ID, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		// The state is not rewritten as "audited": a redelivery re-sends the
		// record with the same deterministic id, which the AUDIT stream stores
		// once (its duplicate window is far longer than AckWait), and the
		// request's replay protection refuses a re-used id later. That saves a
		// KV round trip on every request.
		rec = stored
	}
	if !st.ExpiresAt.IsZero() && rec.Outcome == audit.Succeeded {
		if err := scheduleExpiry(ctx, w.cfg.KV, req, st.ExpiresAt); err != nil {
			w.log.Error("schedule block expiry; will retry", "request", req.ID, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	if err := w.publishNext(ctx, req, rec.Outcome); err != nil {
		w.log.Error("request next step; will retry", "request", req.ID, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if secret == "" && st.SecretIssued {
		rec.Detail += "; the password was delivered to the original requester only (run reset_password again if it was lost)"
	}
	w.notify(req, rec, secret)
	if err := msg.Ack(); err != nil {
		w.log.Warn("ack", "request", req.ID, "err", err)
	}
}

// publishNext requests the following playbook step. Steps continue after success,
// failure or dry run (a failed disable must not stop the session revoke), and stop
// after a refusal or rejection.
func (w *Worker) publishNext(ctx context.Context, req *Request, o audit.Outcome) error {
	if len(req.Next) == 0 || o == audit.Refused || o == audit.Rejected {
		return nil
	}
	step := req.Next[0]
	next := Request{
		Version:     Version,
		ID:          uuid.NewSHA1(uuid.NameSpaceOID, []byte("responder/"+req.ID+"/next")).String(),
		Action:      step.Action,
		Target:      step.Target,
		Params:      step.Params,
		RequestedBy: req.RequestedBy,
		Reason:      req.Reason,
		Ticket:      req.Ticket,
		EventID:     req.EventID,
		DryRun:      req.DryRun || step.DryRun,
		Approval:    step.Approval,
		RequestedAt: w.cfg.Now().UTC(),
		Next:        req.Next[1:],
	}
	return w.publish(ctx, &next)
}

// publish sends a follow-up request with the configured PublishFunc.
func (w *Worker) publish(ctx context.Context, r *Request) error {
	if w.cfg.Publish != nil {
		return w.cfg.Publish(ctx, r)
	}
	return Publish(ctx, w.cfg.JS, w.cfg.Tenant, r)
}

// pending records that req waits for approval and acks the message; the state
// stays claimed (not done), so the request runs when the approval service
// re-publishes it.
func (w *Worker) pending(ctx context.Context, msg jetstream.Msg, req *Request, why string, attempts int) {
	rec := w.baseRecord(req)
	rec.ID = recordID(req.ID, "pending")
	rec.Outcome = audit.PendingApproval
	rec.Detail = "waiting for approval: " + why
	rec.Attempts = attempts
	stored, err := w.cfg.Audit.Append(ctx, rec)
	if err != nil {
		w.log.Error("audit pending approval; will retry", "request", req.ID, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	w.notify(req, stored, "")
	_ = msg.Ack()
}

// Publish sends a request to the ACTIONS stream, deduplicated by its id.
func Publish(ctx context.Context, js jetstream.Publisher, tenant string, r *Request) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode request %s: %w", r.ID, err)
	}
	if _, err := js.Publish(ctx, bus.ActionSubject(tenant, string(r.Action)), b, jetstream.WithMsgID(r.ID)); err != nil {
		return fmt.Errorf("publish request %s: %w", r.ID, err)
	}
	return nil
}

func (w *Worker) notify(req *Request, rec audit.Record, secret string) {
	o := Outcome{
		RequestID: req.ID, Action: req.Action, Target: rec.Target, Outcome: rec.Outcome,
		Detail: rec.Detail, ErrorCode: rec.ErrorCode, Attempts: rec.Attempts, AuditID: rec.ID, Time: rec.Time,
		Secret: secret,
	}
	b, _ := json.Marshal(o)
	if nc := w.cfg.JS.Conn(); nc != nil {
		_ = nc.Publish(bus.ResultSubject(w.cfg.Tenant, req.ID), b)
	}
}

// rejectMessage dead-letters a message that is not a valid request: an audit record
// with the reason and the message itself, then the message is removed.
func (w *Worker) rejectMessage(ctx context.Context, msg jetstream.Msg, req *Request, cause error, attempts int) {
	reason := cause.Error()
	var re *RejectError
	if errors.As(cause, &re) {
		reason = re.Reason
	}
	rec := audit.Record{TenantID: w.cfg.Tenant, Outcome: audit.Rejected, Detail: reason, Attempts: attempts,
		Actor: audit.Actor{Kind: "unknown", Name: "unknown"}}
	if req != nil {
		if uuidRE.MatchString(req.ID) {
			rec.RequestID = req.ID
		}
		rec.Action = string(req.Action)
		rec.Target = req.Target.Map()
		if req.RequestedBy.Kind != "" || req.RequestedBy.Name != "" {
			rec.Actor = req.RequestedBy
		}
		rec.Reason, rec.Ticket, rec.EventID = req.Reason, req.Ticket, req.EventID
	}
	// The dead letter: subject and (bounded) message bytes, as a JSON string.
	data := msg.Data()
	if len(data) > 4096 {
		data = data[:4096]
	}
	dl, _ := json.Marshal(map[string]string{"subject": msg.Subject(), "data": string(data)})
	rec.Before = dl
	if md, err := msg.Metadata(); err == nil {
		rec.ID = recordID(fmt.Sprintf("msg-%d", md.Sequence.Stream), "rejected")
	}
	if _, err := w.cfg.Audit.Append(ctx, rec); err != nil {
		w.log.Error("audit rejected message; will retry", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	w.log.Warn("rejected action message", "subject", msg.Subject(), "reason", reason)
	if rec.RequestID != "" {
		b, _ := json.Marshal(Outcome{RequestID: rec.RequestID, Action: Name(rec.Action), Outcome: audit.Rejected, Detail: reason, AuditID: rec.ID})
		if nc := w.cfg.JS.Conn(); nc != nil {
			_ = nc.Publish(bus.ResultSubject(w.cfg.Tenant, rec.RequestID), b)
		}
	}
	_ = msg.Term()
}

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

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

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
	// Sealed is set only on the reply to the requester, only by reset_password:
	// the generated password sealed (X25519, nkeys curve keys) to the
	// request's seal_to key by SealedBy, a one-time key of the engine's. The
	// password is never in the clear on the bus, in the audit trail, the KV
	// state, logs or errors; a redelivered request's reply does not carry it.
	Sealed   []byte `json:"sealed,omitempty"`
	SealedBy string `json:"sealed_by,omitempty"`
}

// WorkerConfig wires a worker.
type WorkerConfig struct {
	Tenant string
	// JS is where Run consumes ACTIONS (and the default Publish and Notify
	// go); the stages use only the narrow roles below.
	JS jetstream.JetStream
	KV StateStore
	// Handlers carry out each catalogue action (graphexec.Executor.Handlers).
	Handlers  Handlers
	Audit     Recorder
	Protected Protected
	// Directory resolves protected UPNs, object ids and role members (nil: only
	// the listed users are compared, as given).
	Directory Directory
	// Blast bounds requests per action and per playbook (zero value:
	// DefaultBlastLimits; set Window alone to disable every limit).
	Blast BlastLimits
	// IP bounds what block_ip may block (defaults /16 and /48), with the
	// never-block list; Trusted reads the tenant's trusted named locations
	// (nil: none are checked).
	IP      IPPolicy
	Trusted TrustedRanges
	// Domains reads the tenant's verified domains for the domain guard
	// (block_sender never blocks them; nil: refuse every guarded request,
	// failing closed).
	Domains VerifiedDomainSource
	// Resolver turns a mailbox identity (any form Exchange accepts) into its
	// owner before the guards (nil: only UPNs and object ids are accepted).
	Resolver UserResolver
	// Gate authenticates senders and holds requests for approval (nil: admit all,
	// hold none, refuse past the blast radius).
	Gate Gate
	// Publish sends follow-up requests (next steps, undo, expiries); default
	// Publish, unsigned. The engine signs them with its key.
	Publish PublishFunc
	// Notify tells the requester a request's outcome (default: a core NATS
	// publish on the requester's result subject).
	Notify NotifyFunc
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
	cfg      WorkerConfig
	log      *slog.Logger
	handlers Handlers
	pipeline []stage
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
	w := &Worker{cfg: cfg, log: cfg.Logger.With("part", "actions"), handlers: cfg.Handlers}
	w.pipeline = w.stages()
	return w
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
		if ctx.Err() != nil {
			return nil // stopped before it began: a shutdown, as in the loop below
		}
		return fmt.Errorf("actions: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(w.cfg.Concurrency))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
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
			d := FromJetStream(msg)
			stopBeat := w.heartbeat(hctx, d)
			defer stopBeat()
			w.Handle(hctx, d)
		}()
	}
}

// heartbeat tells the server the message is still being worked on, so a slow
// Graph call does not get it redelivered to another worker. It returns the stop
// function; the goroutine it starts ends with it.
func (w *Worker) heartbeat(ctx context.Context, msg Delivery) func() {
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
	case t.Sender != "":
		return "sender " + t.Sender
	case t.Device != "":
		return "device " + t.Device
	case t.File != "":
		return "file " + t.File
	case t.URL != "":
		return "url " + t.URL
	case t.Domain != "":
		return "domain " + t.Domain
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

// extra is what finish keeps besides the record: the secret for the reply only.
type extra struct {
	secret    *sealed
	undo      *Step
	expiresAt time.Time
}

func (w *Worker) loadState(ctx context.Context, id string) (*state, error) {
	e, err := w.cfg.KV.Get(ctx, bus.RequestStateKey(id))
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
	_, err := w.cfg.KV.Create(ctx, bus.RequestStateKey(id), b)
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
	_, err = w.cfg.KV.Put(ctx, bus.RequestStateKey(id), b)
	return err
}

// recordID makes audit record ids deterministic per request and state, so a
// record re-sent after a crash is deduplicated by the stream.
func recordID(requestID, what string) string { return bus.RecordID(requestID, what) }

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
		ID:          bus.NextStepID(req.ID),
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
		Tenant:      req.Tenant,
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

// notifyRecord tells the requester the outcome a record states.
func (w *Worker) notifyRecord(req *Request, rec audit.Record, secret *sealed) {
	o := Outcome{
		RequestID: req.ID, Action: req.Action, Target: rec.Target, Outcome: rec.Outcome,
		Detail: rec.Detail, ErrorCode: rec.ErrorCode, Attempts: rec.Attempts, AuditID: rec.ID, Time: rec.Time,
	}
	if secret != nil {
		o.Sealed, o.SealedBy = secret.box, secret.by
	}
	w.notify(req.RequestedBy, o)
}

func (w *Worker) notify(requester audit.Actor, o Outcome) {
	if w.cfg.Notify != nil {
		w.cfg.Notify(requester, o)
		return
	}
	if w.cfg.JS == nil {
		return
	}
	b, _ := json.Marshal(o)
	if nc := w.cfg.JS.Conn(); nc != nil {
		_ = nc.Publish(bus.ResultSubjectFor(w.cfg.Tenant, requester.KeyID, o.RequestID), b)
	}
}

package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// HeaderApproval marks a request re-published after its approval; its value is
// the request id. The header is a hint: the worker must call Store.Release,
// whose answer (from KV, which analysts cannot write) is what counts.
const HeaderApproval = "Responder-Approval"

// Subject is where analysts send approval commands (core NATS request/reply;
// no stream stores them).
func Subject(tenant string) string { return bus.ApprovalSubject(tenant) }

// The command operations.
const (
	OpList    = "list"
	OpApprove = "approve"
	OpDeny    = "deny"
)

// CommandVersion is the version of the command message.
const CommandVersion = 1

// Command is a signed message from an analyst to the engine, signed like an
// action request (analyst.SignBody).
type Command struct {
	Version   int         `json:"version"`
	ID        string      `json:"id"` // UUID, never reused
	Op        string      `json:"op"` // list | approve | deny
	RequestID string      `json:"request_id,omitempty"`
	Reason    string      `json:"reason,omitempty"`
	By        audit.Actor `json:"by"`
	At        time.Time   `json:"at"`
	// Tenant names the tenant inside the signed body (Send fills it); an
	// engine refuses a command signed for another tenant.
	Tenant string `json:"tenant,omitempty"`
}

// Reply answers a Command.
type Reply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Rejected is the rejection class when the command itself was refused.
	Rejected analyst.Reason `json:"rejected,omitempty"`
	Pending  []Pending      `json:"pending,omitempty"` // list (summaries)
	Entry    *Pending       `json:"entry,omitempty"`   // approve, deny (summary)
	Complete bool           `json:"complete,omitempty"`
}

// Recorder appends to the audit trail (*audit.Writer).
type Recorder interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

// ServiceConfig wires a Service.
type ServiceConfig struct {
	Tenant   string
	Conn     *nats.Conn
	Store    *Store
	Verifier *analyst.Verifier
	Audit    Recorder
	// Release hands a fully approved request back to the action workers
	// (usually RepublishFunc(js, tenant)). It must be idempotent: it is called
	// again for approved entries not yet released after RedriveAfter.
	Release func(ctx context.Context, p Pending) error
	// Interval between expiry sweeps (default 30s); RedriveAfter (default 1m);
	// Retention keeps decided entries before deleting them (default 7 days).
	Interval, RedriveAfter, Retention time.Duration
	Logger                            *slog.Logger
	Now                               func() time.Time
}

// Service serves approval commands and sweeps expiries.
type Service struct {
	cfg ServiceConfig
	log *slog.Logger
}

// NewService applies defaults.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Conn == nil || cfg.Store == nil || cfg.Verifier == nil || cfg.Audit == nil || cfg.Release == nil || cfg.Tenant == "" {
		return nil, errors.New("approval: service needs Tenant, Conn, Store, Verifier, Audit and Release")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.RedriveAfter <= 0 {
		cfg.RedriveAfter = time.Minute
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("part", "approval")}, nil
}

// Run serves commands (one queue group across processes) and sweeps until ctx
// ends, then waits for its work to finish.
func (s *Service) Run(ctx context.Context) error {
	ch := make(chan *nats.Msg, 64)
	sub, err := s.cfg.Conn.ChanQueueSubscribe(Subject(s.cfg.Tenant), "responder-approval", ch)
	if err != nil {
		return fmt.Errorf("approval: subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(s.cfg.Interval)
		defer t.Stop()
		for {
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("approval sweep", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			rep := s.Handle(ctx, m.Data, m.Header)
			b, _ := json.Marshal(rep)
			if m.Reply != "" {
				_ = m.Respond(b)
			}
		}
	}
}

// Sweep expires overdue requests and audits each expiry, re-drives approved
// requests not yet released, and deletes decided entries past retention. Run
// calls it every Interval; tests call it directly.
func (s *Service) Sweep(ctx context.Context) error {
	now := s.cfg.Now()
	if _, err := s.cfg.Store.Expire(ctx, now); err != nil {
		return err
	}
	all, err := s.cfg.Store.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range all {
		switch {
		case p.State == StateExpired && !p.Announced:
			rec := s.record(p, audit.Expired, audit.Actor{Kind: "engine", Name: "approval"},
				fmt.Sprintf("no decision before %s (%d of %d approvals)", p.ExpiresAt.UTC().Format(time.RFC3339), len(p.Approvals), p.Required))
			if _, err := s.cfg.Audit.Append(ctx, rec); err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, s.cfg.Store.markAnnounced(ctx, p.RequestID))
		case p.State == StateApproved && now.Sub(p.DecidedAt) >= s.cfg.RedriveAfter:
			// The approved record first (its id is deterministic, so one
			// written before is not written twice): no release without it.
			last := audit.Actor{Kind: "engine", Name: "approval"}
			if n := len(p.Approvals); n > 0 {
				last = audit.Actor{Kind: "analyst", Name: p.Approvals[n-1].Name, KeyID: p.Approvals[n-1].KeyID, EntraOID: p.Approvals[n-1].EntraOID}
			}
			if _, err := s.cfg.Audit.Append(ctx, s.record(p, audit.Approved, last, "approved by "+voters(p))); err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, s.cfg.Release(ctx, p))
		case p.State != StatePending && p.State != StateApproved && !p.DecidedAt.IsZero() && now.Sub(p.DecidedAt) >= s.cfg.Retention:
			errs = append(errs, s.cfg.Store.Delete(ctx, p.RequestID))
		}
	}
	return errors.Join(errs...)
}

// Handle verifies and carries out one command message and returns the reply.
// Every refusal and every decision is audited.
func (s *Service) Handle(ctx context.Context, data []byte, hdr nats.Header) Reply {
	var c Command
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Version != CommandVersion {
		return Reply{Error: "malformed command: want a version 1 command object"}
	}
	who, err := s.cfg.Verifier.VerifyCommandBy(ctx, c.ID, c.By, c.At, analyst.Message{Data: data, Header: hdr})
	if err != nil {
		reason := analyst.ReasonOf(err)
		if reason == "" {
			s.log.Error("verify approval command", "err", err)
			return Reply{Error: "engine could not check the command; try again"}
		}
		if c.Op == OpApprove || c.Op == OpDeny {
			rec := audit.Record{TenantID: s.cfg.Tenant, Outcome: audit.Rejected, RequestID: validID(c.RequestID),
				Actor: c.By, Detail: c.Op + " command " + err.Error() + " (sender as claimed, not verified)"}
			if _, aerr := s.cfg.Audit.Append(ctx, rec); aerr != nil {
				s.log.Error("audit rejected command", "err", aerr)
			}
		}
		return Reply{Error: err.Error(), Rejected: reason}
	}
	if c.Tenant != "" && c.Tenant != s.cfg.Tenant {
		return Reply{Error: "the command is signed for another tenant", Rejected: analyst.Unauthorised}
	}
	switch c.Op {
	case OpList:
		all, err := s.cfg.Store.List(ctx, StatePending)
		if err != nil {
			return Reply{Error: err.Error()}
		}
		out := make([]Pending, len(all))
		for i, p := range all {
			out[i] = p.Summary()
		}
		return Reply{OK: true, Pending: out}
	case OpApprove:
		d, err := s.cfg.Store.ApproveSigned(ctx, c.RequestID, who, data, hdr)
		if err != nil {
			return s.refused(ctx, c, who, d.Pending, err)
		}
		p := d.Pending
		if d.Complete {
			rec := s.record(p, audit.Approved, who.Actor(), "approved by "+voters(p))
			if _, err := s.cfg.Audit.Append(ctx, rec); err != nil {
				// Never released without its record: the approval stands, and
				// the sweep writes the record before it releases the request.
				s.log.Error("audit approval", "request", p.RequestID, "err", err)
				sum := p.Summary()
				return Reply{Error: "the approval is stored but its audit record could not be written; the request is not released until it is (the engine retries)", Entry: &sum}
			}
			if err := s.cfg.Release(ctx, p); err != nil {
				s.log.Warn("release approved request; the sweep will retry", "request", p.RequestID, "err", err)
			}
		} else {
			rec := s.record(p, audit.PendingApproval, who.Actor(),
				fmt.Sprintf("approval %d of %d by %s", len(p.Approvals), p.Required, who.Name))
			rec.ID = RecordID(p.RequestID, "vote/"+who.Name)
			if _, err := s.cfg.Audit.Append(ctx, rec); err != nil {
				s.log.Error("audit vote", "request", p.RequestID, "err", err)
			}
		}
		sum := p.Summary()
		return Reply{OK: true, Entry: &sum, Complete: d.Complete}
	case OpDeny:
		p, err := s.cfg.Store.Deny(ctx, c.RequestID, who, c.Reason)
		if err != nil {
			return s.refused(ctx, c, who, p, err)
		}
		rec := s.record(p, audit.Denied, who.Actor(), "denied by "+who.Name+": "+c.Reason)
		if _, err := s.cfg.Audit.Append(ctx, rec); err != nil {
			s.log.Error("audit denial", "request", p.RequestID, "err", err)
		}
		sum := p.Summary()
		return Reply{OK: true, Entry: &sum}
	}
	return Reply{Error: fmt.Sprintf("unknown op %q (list, approve, deny)", c.Op)}
}

// refused audits a refused approval or denial by a verified analyst (the
// four-eyes rule at work) and answers it.
func (s *Service) refused(ctx context.Context, c Command, who analyst.Analyst, p Pending, err error) Reply {
	if errors.Is(err, ErrOwnRequest) || errors.Is(err, ErrNotApprover) || errors.Is(err, ErrAlreadyVote) {
		rec := s.record(p, audit.Rejected, who.Actor(), c.Op+" refused: "+err.Error())
		rec.ID = "" // one record per refusal
		if rec.RequestID == "" {
			rec.RequestID = validID(c.RequestID)
		}
		if _, aerr := s.cfg.Audit.Append(ctx, rec); aerr != nil {
			s.log.Error("audit refused decision", "err", aerr)
		}
	}
	return Reply{Error: err.Error()}
}

// record builds the audit record of a state change of p.
func (s *Service) record(p Pending, o audit.Outcome, actor audit.Actor, detail string) audit.Record {
	return audit.Record{
		ID:        RecordID(p.RequestID, string(o)),
		TenantID:  s.cfg.Tenant,
		RequestID: validID(p.RequestID),
		Action:    p.Action,
		Target:    p.Target,
		Actor:     actor,
		Outcome:   o,
		Detail:    detail,
		Reason:    p.Reason,
	}
}

func validID(id string) string {
	if idRE.MatchString(id) {
		return id
	}
	return ""
}

func voters(p Pending) string {
	names := make([]string, len(p.Approvals))
	for i, v := range p.Approvals {
		names[i] = v.Name
	}
	return strings.Join(names, ", ")
}

// RecordID makes audit record ids deterministic per request and state (the
// worker's scheme, bus.RecordID), so a record re-sent after a crash is stored once.
func RecordID(requestID, what string) string { return bus.RecordID(requestID, what) }

// RepublishFunc returns a Release that publishes the held request, unchanged
// (same body, same signature headers) plus HeaderApproval, to the action
// subject, with a message id of its own so repeated releases store one copy.
func RepublishFunc(js jetstream.Publisher, tenant string) func(ctx context.Context, p Pending) error {
	return func(ctx context.Context, p Pending) error {
		m := &nats.Msg{Subject: bus.ActionSubject(tenant, p.Action), Data: p.Message, Header: nats.Header{}}
		for k, v := range p.Header {
			m.Header[k] = append([]string(nil), v...)
		}
		m.Header.Set(HeaderApproval, p.RequestID)
		if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(p.RequestID+".approved")); err != nil {
			return fmt.Errorf("approval: release %s: %w", p.RequestID, err)
		}
		return nil
	}
}

// Send signs a command with kp (filling Version, ID, By.KeyID and At when
// empty) and asks the engine, waiting for the reply until ctx ends.
func Send(ctx context.Context, nc *nats.Conn, tenant string, c Command, kp nkeys.KeyPair) (Reply, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return Reply{}, fmt.Errorf("approval: key: %w", err)
	}
	if c.Version == 0 {
		c.Version = CommandVersion
	}
	if c.ID == "" {
		c.ID = uuid.NewString()
	}
	if c.At.IsZero() {
		c.At = time.Now().UTC()
	}
	if c.By.Kind == "" {
		c.By.Kind = "analyst"
	}
	c.By.KeyID = pub
	if c.Tenant == "" {
		c.Tenant = tenant
	}
	body, err := json.Marshal(c)
	if err != nil {
		return Reply{}, fmt.Errorf("approval: encode command: %w", err)
	}
	h, err := analyst.SignBody(body, kp)
	if err != nil {
		return Reply{}, err
	}
	m, err := nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: Subject(tenant), Data: body, Header: h})
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return Reply{}, errors.New("no engine is serving approvals for this tenant (is `responder serve` running?)")
		}
		return Reply{}, fmt.Errorf("approval: %s: %w", c.Op, err)
	}
	var rep Reply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return Reply{}, fmt.Errorf("approval: undecodable reply: %w", err)
	}
	return rep, nil
}

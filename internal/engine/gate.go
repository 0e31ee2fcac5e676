package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/approval"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// gate implements actions.Gate: signed requests (analyst package) and approvals
// (approval package).
type gate struct {
	verifier *analyst.Verifier
	store    *approval.Store
	rules    approval.Rules
	now      func() time.Time
}

func (g *gate) Admit(ctx context.Context, req *actions.Request, d actions.Delivery) (bool, string, error) {
	msg := analyst.Message{Data: d.Data(), Header: d.Header(), Seq: d.Sequence(), Received: d.Received()}
	if d.Header().Get(approval.HeaderApproval) != "" {
		// Whatever the bus and the bucket say, an approved request runs only
		// when its own signature and enough distinct approvers' signed votes
		// verify against the analysts directory as it stands now.
		p, err := g.store.Get(ctx, req.ID)
		if err != nil {
			if errors.Is(err, approval.ErrNotFound) {
				return false, "unauthorised: approval release refused: " + err.Error(), nil
			}
			return false, "", err
		}
		if why := g.reverify(req, d.Data(), p); why != "" {
			return false, "unauthorised: approval release refused: " + why, nil
		}
		if _, err := g.store.Release(ctx, req.ID, d.Data(), d.Sequence()); err != nil {
			if errors.Is(err, approval.ErrMismatch) || errors.Is(err, approval.ErrNotPending) || errors.Is(err, approval.ErrNotFound) {
				return false, "unauthorised: approval release refused: " + err.Error(), nil
			}
			return false, "", err
		}
		return true, "", nil
	}
	if _, err := g.verifier.Verify(ctx, req, msg); err != nil {
		if analyst.ReasonOf(err) != "" {
			return false, err.Error(), nil
		}
		return false, "", err
	}
	return false, "", nil
}

// reverify checks a held request at its release: the message is the one
// held, its original signature verifies and its requester may still ask for
// it, and at least as many distinct verified approvers as the rules require
// (and never fewer than one) signed an approve command for it, none of them
// the requester.
func (g *gate) reverify(req *actions.Request, body []byte, p approval.Pending) string {
	if !bytes.Equal(body, p.Message) {
		return "the released message is not the request that was held"
	}
	if _, err := g.verifier.Reverify(req, analyst.Message{Data: p.Message, Header: p.Header}); err != nil {
		return "the held request no longer verifies: " + err.Error()
	}
	step := 0
	if strings.EqualFold(req.Approval, "required") {
		step = 1
	}
	need := max(1, p.Required, g.rules.Need(req, approval.Facts{StepApprovals: step}).Required)
	seen := map[string]bool{}
	var problems []string
	for _, v := range p.Approvals {
		who, why := g.verifyVote(req, v)
		if why != "" {
			problems = append(problems, v.Name+": "+why)
			continue
		}
		// Distinct people: an Entra identity through the console, else a key.
		seen[who.Identity()] = true
	}
	if len(seen) < need {
		why := fmt.Sprintf("%d verified approval(s) of %d required", len(seen), need)
		if len(problems) > 0 {
			why += " (" + strings.Join(problems, "; ") + ")"
		}
		return why
	}
	return ""
}

// verifyVote re-verifies one stored vote: an approve command for this
// request, signed by a key that is in the analysts file now, may approve,
// and is not the requester's.
func (g *gate) verifyVote(req *actions.Request, v approval.Vote) (analyst.Analyst, string) {
	if len(v.Command) == 0 {
		return analyst.Analyst{}, "no signed command"
	}
	var c approval.Command
	if err := json.Unmarshal(v.Command, &c); err != nil {
		return analyst.Analyst{}, "unreadable command"
	}
	who, err := g.verifier.ReverifyCommandBy(c.By, analyst.Message{Data: v.Command, Header: v.Header})
	switch {
	case err != nil:
		return who, err.Error()
	case c.Op != approval.OpApprove || c.RequestID != req.ID:
		return who, "the signed command does not approve this request"
	case !who.MayApprove || who.Role == analyst.RoleEngine:
		return who, who.Name + " may not approve"
	case who.Identity() == analyst.ActorIdentity(req.RequestedBy) || strings.EqualFold(who.Name, req.RequestedBy.Name) && req.RequestedBy.Kind == "analyst":
		return who, "the requester cannot approve their own request"
	}
	return who, ""
}

// Authorize says whether who may request action under the analysts
// directory as it stands now.
func (g *gate) Authorize(_ context.Context, who audit.Actor, action actions.Name) (string, error) {
	return g.verifier.Allowed(who, action), nil
}

func (g *gate) Hold(ctx context.Context, req *actions.Request, d actions.Delivery, f actions.HoldFacts) (bool, string, error) {
	step := 0
	if strings.EqualFold(req.Approval, "required") {
		step = 1
	}
	need := g.rules.Need(req, approval.Facts{StepApprovals: step, OverLimit: f.OverLimit, Protected: f.Protected, Sensitive: f.Approval})
	if need.Required == 0 {
		return false, "", nil
	}
	now := g.now().UTC()
	ttl := g.rules.TTL
	if ttl <= 0 {
		ttl = approval.DefaultTTL
	}
	p := approval.Pending{
		RequestID: req.ID, Action: string(req.Action), Target: req.Target.Map(), Requester: req.RequestedBy,
		Reason: req.Reason, EventID: req.EventID, Why: need.Why, Required: need.Required, CreatedAt: now, ExpiresAt: now.Add(ttl),
		Message: d.Data(), Header: d.Header(),
	}
	if err := g.store.Submit(ctx, p); err != nil && !errors.Is(err, approval.ErrExists) {
		return false, "", err
	}
	return true, fmt.Sprintf("%s (%d approval(s) needed; expires %s)", strings.Join(need.Why, "; "), need.Required, p.ExpiresAt.Format(time.RFC3339)), nil
}

// signer signs what the engine publishes with its own key: playbook requests
// as the engine, follow-up steps as relays of the original requester. It
// notices when a publish is acknowledged as a duplicate of a message someone
// else published first with the id the engine derived (an attempt to
// pre-empt a playbook step, an inverse or an expiry): it audits that as an
// attack and re-issues the request under a fresh id instead of letting it be
// silently dropped.
type signer struct {
	js     jetstream.JetStream
	kv     actions.StateStore
	tenant string
	kp     nkeys.KeyPair
	// isEngine reports whether a public key is an engine's (this one or a
	// cluster peer's in the analysts file).
	isEngine func(key string) bool
	audit    actions.Recorder
	log      *slog.Logger
}

// publish signs req as the engine (playbook and engine requests).
func (s *signer) publish(ctx context.Context, req *actions.Request) error {
	signed, err := analyst.Sign(req, s.kp)
	if err != nil {
		return err
	}
	return s.send(ctx, req, signed, func(r *actions.Request) (analyst.Signed, error) { return analyst.Sign(r, s.kp) })
}

// relay signs a follow-up request whose requester stays the original one.
func (s *signer) relay(ctx context.Context, req *actions.Request) error {
	signed, err := analyst.Relay(req, s.kp)
	if err != nil {
		return err
	}
	return s.send(ctx, req, signed, func(r *actions.Request) (analyst.Signed, error) { return analyst.Relay(r, s.kp) })
}

// maxReissues bounds how often one request is re-issued after collisions.
const maxReissues = 3

func (s *signer) send(ctx context.Context, req *actions.Request, signed analyst.Signed, resign func(*actions.Request) (analyst.Signed, error)) error {
	for attempt := 0; ; attempt++ {
		ack, err := s.js.PublishMsg(ctx, signed.Msg(bus.ActionSubject(s.tenant, string(req.Action))), jetstream.WithMsgID(req.ID))
		if err != nil {
			return fmt.Errorf("publish request %s: %w", req.ID, err)
		}
		if !ack.Duplicate {
			return nil
		}
		who, forged, err := s.firstPublisher(ctx, req.ID, ack.Sequence)
		if err != nil {
			return err // retried by the caller (its message is redelivered)
		}
		if !forged {
			return nil // our own earlier publish (a re-handled event or a redelivery)
		}
		if attempt >= maxReissues {
			return fmt.Errorf("request %s: the id collided %d times; giving up", req.ID, attempt+1)
		}
		fresh := *req
		fresh.ID = bus.DerivedID(req.ID, "collision")
		rec := audit.Record{
			ID: bus.RecordID(req.ID, "collision"), TenantID: s.tenant, RequestID: req.ID, Action: string(req.Action),
			Target: req.Target.Map(), Actor: audit.Actor{Kind: "engine", Name: "publisher"}, Outcome: audit.Rejected,
			Reason: req.Reason, EventID: req.EventID,
			Detail: fmt.Sprintf("id collision: request id %s, which the engine derived, was published first by %s (stream sequence %d); treated as an attack: that message is not the engine's, and the engine's request is re-issued as %s",
				req.ID, who, ack.Sequence, fresh.ID),
		}
		if _, err := s.audit.Append(ctx, rec); err != nil {
			return fmt.Errorf("audit id collision of %s: %w", req.ID, err)
		}
		s.log.Warn("request id pre-empted by another publisher; re-issued", "request", req.ID, "first_publisher", who, "reissued_as", fresh.ID)
		if signed, err = resign(&fresh); err != nil {
			return err
		}
		req = &fresh
	}
}

// firstPublisher tells who published the message a duplicate ack points at:
// forged when it was not signed by an engine key. When the message has left
// the work queue already, the request's state says whether a worker admitted
// it (a verified request: not forged) or not (it was rejected: forged).
func (s *signer) firstPublisher(ctx context.Context, id string, seq uint64) (string, bool, error) {
	st, err := s.js.Stream(ctx, bus.StreamActions)
	if err != nil {
		return "", false, err
	}
	msg, err := st.GetMsg(ctx, seq)
	switch {
	case err == nil:
		key := msg.Header.Get(analyst.HeaderKey)
		if key != "" && s.isEngine(key) {
			return "engine " + key, false, nil
		}
		if key == "" {
			return "an unsigned publisher", true, nil
		}
		return "key " + key, true, nil
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return "", false, err
	}
	if _, err := s.kv.Get(ctx, bus.RequestStateKey(id)); err == nil {
		return "a verified publisher", false, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, err
	}
	return "a publisher whose message was rejected", true, nil
}

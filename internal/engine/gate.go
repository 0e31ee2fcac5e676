package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/approval"
)

// gate implements actions.Gate: signed requests (analyst package) and approvals
// (approval package).
type gate struct {
	verifier *analyst.Verifier
	store    *approval.Store
	rules    approval.Rules
	now      func() time.Time
}

func (g *gate) Admit(ctx context.Context, req *actions.Request, msg jetstream.Msg) (bool, string, error) {
	if msg.Headers().Get(approval.HeaderApproval) != "" {
		var seq uint64
		if md, err := msg.Metadata(); err == nil {
			seq = md.Sequence.Stream
		}
		if _, err := g.store.Release(ctx, req.ID, msg.Data(), seq); err != nil {
			if errors.Is(err, approval.ErrMismatch) || errors.Is(err, approval.ErrNotPending) || errors.Is(err, approval.ErrNotFound) {
				return false, "unauthorised: approval release refused: " + err.Error(), nil
			}
			return false, "", err
		}
		return true, "", nil
	}
	if _, err := g.verifier.Verify(ctx, req, analyst.FromJetStream(msg)); err != nil {
		if analyst.ReasonOf(err) != "" {
			return false, err.Error(), nil
		}
		return false, "", err
	}
	return false, "", nil
}

func (g *gate) Hold(ctx context.Context, req *actions.Request, msg jetstream.Msg, f actions.HoldFacts) (bool, string, error) {
	step := 0
	if strings.EqualFold(req.Approval, "required") {
		step = 1
	}
	need := g.rules.Need(req, approval.Facts{StepApprovals: step, OverLimit: f.OverLimit, Protected: f.Protected})
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
		Reason: req.Reason, Why: need.Why, Required: need.Required, CreatedAt: now, ExpiresAt: now.Add(ttl),
		Message: msg.Data(), Header: msg.Headers(),
	}
	if err := g.store.Submit(ctx, p); err != nil && !errors.Is(err, approval.ErrExists) {
		return false, "", err
	}
	return true, fmt.Sprintf("%s (%d approval(s) needed; expires %s)", strings.Join(need.Why, "; "), need.Required, p.ExpiresAt.Format(time.RFC3339)), nil
}

// signer signs what the engine publishes with its own key: playbook requests
// as the engine, follow-up steps as relays of the original requester.
type signer struct {
	js     jetstream.JetStream
	tenant string
	kp     nkeys.KeyPair
}

// publish signs req as the engine (playbook and engine requests).
func (s *signer) publish(ctx context.Context, req *actions.Request) error {
	return analyst.Publish(ctx, s.js, s.tenant, req, s.kp)
}

// relay signs a follow-up request whose requester stays the original one.
func (s *signer) relay(ctx context.Context, req *actions.Request) error {
	signed, err := analyst.Relay(req, s.kp)
	if err != nil {
		return err
	}
	return analyst.PublishSigned(ctx, s.js, s.tenant, req, signed)
}

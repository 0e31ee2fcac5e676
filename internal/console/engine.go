package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/approval"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/auditquery"
	"github.com/responder-sec/responder/internal/bus"
)

// What the console asks the engine, over the bus, signed with its key.

func (c *Console) command(ctx context.Context, by audit.Actor, op, requestID, reason string) (approval.Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return approval.Send(ctx, c.cfg.Conn, c.cfg.Tenant, approval.Command{Op: op, RequestID: requestID, Reason: reason, By: by}, c.cfg.Key)
}

func (c *Console) queries() auditquery.Client {
	name := analyst.LocalConsoleName
	if a, ok := c.cfg.Directory().Lookup(c.pub); ok {
		name = a.Name
	}
	return auditquery.Client{NC: c.cfg.Conn, Tenant: c.cfg.Tenant, Key: c.cfg.Key, Name: name, Timeout: 15 * time.Second}
}

// records decodes a page of stored records.
func records(items []auditquery.Item) []audit.Record {
	out := make([]audit.Record, 0, len(items))
	for _, it := range items {
		var r audit.Record
		if json.Unmarshal(it.Data, &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// requestRecords lists every record of one request.
func (c *Console) requestRecords(ctx context.Context, id string) ([]audit.Record, error) {
	var out []audit.Record
	_, _, err := c.queries().List(ctx, auditquery.Filter{RequestID: id}, func(it auditquery.Item) error {
		var r audit.Record
		if err := json.Unmarshal(it.Data, &r); err == nil {
			out = append(out, r)
		}
		if len(out) > 1000 {
			return errors.New("more than 1000 records")
		}
		return nil
	})
	return out, err
}

// outcome is what a request came to, and a generated password for the
// requester (never stored).
type outcome struct {
	actions.Outcome
	Password string
	TimedOut bool
}

// send signs req as the console on behalf of by and waits for its outcome.
func (c *Console) send(ctx context.Context, req *actions.Request) (outcome, error) {
	var seal nkeys.KeyPair
	if req.Action == actions.ResetPassword {
		var err error
		if seal, err = nkeys.CreateCurveKeys(); err != nil {
			return outcome{}, err
		}
		if req.SealTo, err = seal.PublicKey(); err != nil {
			return outcome{}, err
		}
	}
	req.Version, req.ID, req.RequestedAt, req.Tenant = actions.Version, uuid.NewString(), c.cfg.Now().UTC(), c.cfg.Tenant
	if err := req.Validate(); err != nil {
		return outcome{}, err
	}
	sub, err := c.cfg.Conn.SubscribeSync(bus.ResultSubjectFor(c.cfg.Tenant, c.pub, req.ID))
	if err != nil {
		return outcome{}, fmt.Errorf("subscribe for the outcome: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	js, err := jetstream.New(c.cfg.Conn)
	if err != nil {
		return outcome{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ActTimeout)
	defer cancel()
	if err := analyst.Publish(ctx, js, c.cfg.Tenant, req, c.cfg.Key); err != nil {
		return outcome{}, err
	}
	m, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return outcome{Outcome: actions.Outcome{RequestID: req.ID, Action: req.Action}, TimedOut: true}, nil
		}
		return outcome{}, err
	}
	var o outcome
	if err := json.Unmarshal(m.Data, &o.Outcome); err != nil {
		return outcome{}, fmt.Errorf("undecodable outcome: %w", err)
	}
	if len(o.Sealed) > 0 && seal != nil {
		if o.Password, err = actions.OpenSecret(o.Outcome, seal); err != nil {
			return outcome{}, fmt.Errorf("the sealed password could not be opened: %w", err)
		}
	}
	o.Sealed, o.SealedBy = nil, ""
	return o, nil
}

// chainState is the audit chain's verification, cached for ChainEvery.
func (c *Console) chainState(ctx context.Context) (audit.VerifyResult, time.Time, error, bool) {
	if c.cfg.VerifyChain == nil {
		return audit.VerifyResult{}, time.Time{}, nil, false
	}
	c.chain.Lock()
	defer c.chain.Unlock()
	now := c.cfg.Now()
	if c.chain.at.IsZero() || now.Sub(c.chain.at) > c.cfg.ChainEvery {
		c.chain.res, c.chain.err = c.cfg.VerifyChain(ctx)
		c.chain.at = now
	}
	return c.chain.res, c.chain.at, c.chain.err, true
}

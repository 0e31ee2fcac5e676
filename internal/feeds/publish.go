package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
)

// envHead is the envelope without Raw, which appendEnvelope splices in as it
// came out of the decoder (already valid JSON, so it is not re-validated).
type envHead struct {
	ID       string       `json:"id"`
	Source   event.Source `json:"source"`
	Kind     string       `json:"kind"`
	Time     time.Time    `json:"time"`
	TenantID string       `json:"tenant_id"`
	User     string       `json:"user,omitempty"`
	UserID   string       `json:"user_id,omitempty"`
	IP       string       `json:"ip,omitempty"`
}

// encodeEnvelope is json.Marshal(env) without compacting Raw again.
func encodeEnvelope(env event.Envelope) ([]byte, error) {
	head, err := json.Marshal(envHead{env.ID, env.Source, env.Kind, env.Time, env.TenantID, env.User, env.UserID, env.IP})
	if err != nil {
		return nil, fmt.Errorf("feeds: encode event %s: %w", env.ID, err)
	}
	raw := env.Raw
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	out := make([]byte, 0, len(head)+len(raw)+8)
	out = append(out, head[:len(head)-1]...)
	out = append(out, `,"raw":`...)
	out = append(out, raw...)
	return append(out, '}'), nil
}

// pipeline publishes envelopes asynchronously (Nats-Msg-Id = envelope id) with
// at most max unacknowledged, and reports acknowledgements strictly in the order
// the records were added, so that the caller can checkpoint the stored prefix.
type pipeline struct {
	js         jetstream.Publisher
	max        int
	ackTimeout time.Duration
	keepEnv    bool
	q          []pendingPub
	timer      *time.Timer
	// onAck is called in order for every record added (skipped ones included).
	onAck func(tag int, stored bool, env *event.Envelope)
}

type pendingPub struct {
	fut jetstream.PubAckFuture // nil: skipped record, counts as done
	tag int
	env *event.Envelope
}

func newPipeline(js jetstream.Publisher, max int, keepEnv bool, onAck func(int, bool, *event.Envelope)) *pipeline {
	if max <= 0 {
		max = 512
	}
	return &pipeline{js: js, max: max, ackTimeout: 30 * time.Second, keepEnv: keepEnv, onAck: onAck}
}

// add publishes env; tag is the caller's position of the record.
func (p *pipeline) add(ctx context.Context, env event.Envelope, tag int) error {
	data, err := encodeEnvelope(env)
	if err != nil {
		return err
	}
	subj := bus.EventSubject(env.TenantID, string(env.Source), env.Kind)
	for len(p.q) >= p.max {
		if err := p.popOne(ctx); err != nil {
			return err
		}
	}
	for {
		fut, err := p.js.PublishAsync(subj, data, jetstream.WithMsgID(env.ID))
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) && len(p.q) > 0 {
			// The connection is shared: wait for one of ours and try again.
			if err := p.popOne(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("feeds: publish event %s: %w", env.ID, err)
		}
		pp := pendingPub{fut: fut, tag: tag}
		if p.keepEnv {
			e := env
			pp.env = &e
		}
		p.q = append(p.q, pp)
		return nil
	}
}

// skip records a position that produced no event (a record that does not
// normalise), keeping acknowledgements in order.
func (p *pipeline) skip(tag int) {
	p.q = append(p.q, pendingPub{tag: tag})
}

func (p *pipeline) popOne(ctx context.Context) error {
	pp := p.q[0]
	stored := false
	if pp.fut != nil {
		var ack *jetstream.PubAck
		var err error
		select {
		case ack = <-pp.fut.Ok():
		case err = <-pp.fut.Err():
		default:
			if p.timer == nil {
				p.timer = time.NewTimer(p.ackTimeout)
			} else {
				p.timer.Reset(p.ackTimeout)
			}
			select {
			case ack = <-pp.fut.Ok():
			case err = <-pp.fut.Err():
			case <-ctx.Done():
				err = ctx.Err()
			case <-p.timer.C:
				err = fmt.Errorf("no acknowledgement after %s", p.ackTimeout)
			}
			p.timer.Stop()
		}
		if err != nil {
			return fmt.Errorf("feeds: publish event %s: %w", pp.fut.Msg().Header.Get(jetstream.MsgIDHeader), err)
		}
		stored = !ack.Duplicate
	}
	p.q[0] = pendingPub{}
	p.q = p.q[1:]
	if len(p.q) == 0 {
		p.q = p.q[:0:0]
	}
	if p.onAck != nil {
		p.onAck(pp.tag, stored, pp.env)
	}
	return nil
}

// drain waits for every outstanding acknowledgement.
func (p *pipeline) drain(ctx context.Context) error {
	for len(p.q) > 0 {
		if err := p.popOne(ctx); err != nil {
			return err
		}
	}
	return nil
}

// reset forgets outstanding publishes after a failure (the stream deduplicates
// whatever is re-sent).
func (p *pipeline) reset() { p.q = nil }

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/playbook"
)

// Matcher consumes EVENTS, matches playbooks and requests their actions. Request ids
// are derived from the event and the playbook, so an event handled twice (after a
// crash before its ack) asks for the same requests, which the stream and the
// workers' idempotency claim deduplicate.
type Matcher struct {
	tenant    string
	js        jetstream.JetStream
	playbooks func() *playbook.Set
	audit     actions.Recorder
	log       *slog.Logger
	now       func() time.Time
}

func (m *Matcher) consumerName() string { return "playbooks-" + bus.Token(m.tenant) }

// Run consumes until ctx ends.
func (m *Matcher) Run(ctx context.Context) error {
	cons, err := m.js.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable:       m.consumerName(),
		Description:   "playbook matcher",
		FilterSubject: bus.EventsFilter(m.tenant),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    10,
	})
	if err != nil {
		return fmt.Errorf("matcher: consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("matcher: consume: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("matcher: next: %w", err)
		}
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		m.handle(hctx, msg)
		cancel()
	}
}

func (m *Matcher) handle(ctx context.Context, msg jetstream.Msg) {
	var env event.Envelope
	if err := json.Unmarshal(msg.Data(), &env); err != nil || env.ID == "" {
		reason := "event without id"
		if err != nil {
			reason = "malformed event: " + err.Error()
		}
		data := msg.Data()
		if len(data) > 4096 {
			data = data[:4096]
		}
		dl, _ := json.Marshal(map[string]string{"subject": msg.Subject(), "data": string(data)})
		rec := audit.Record{TenantID: m.tenant, Actor: audit.Actor{Kind: "engine", Name: "matcher"}, Outcome: audit.Rejected, Detail: reason, Before: dl}
		if md, err := msg.Metadata(); err == nil {
			rec.ID = uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprintf("responder/event-msg/%d/rejected", md.Sequence.Stream))).String()
		}
		if _, err := m.audit.Append(ctx, rec); err != nil {
			_ = msg.NakWithDelay(time.Second)
			return
		}
		_ = msg.Term()
		return
	}
	set := m.playbooks()
	matches, err := set.Match(&env)
	if err != nil {
		m.log.Error("matching failed", "event", env.ID, "err", err)
	}
	for _, mt := range matches {
		if len(mt.Steps) == 0 {
			continue
		}
		reqID := uuid.NewSHA1(uuid.NameSpaceOID, []byte("responder/event/"+env.ID+"/playbook/"+mt.Playbook)).String()
		first := mt.Steps[0]
		req := &actions.Request{
			Version:     actions.Version,
			ID:          reqID,
			Action:      first.Action,
			Target:      first.Target,
			Params:      first.Params,
			RequestedBy: audit.Actor{Kind: "playbook", Name: mt.Playbook},
			Reason:      mt.Reason,
			EventID:     env.ID,
			DryRun:      first.DryRun,
			RequestedAt: m.now().UTC(),
			Next:        mt.Steps[1:],
		}
		steps := make([]string, 0, len(mt.Steps))
		for _, s := range mt.Steps {
			steps = append(steps, string(s.Action))
		}
		after, _ := json.Marshal(map[string]any{"steps": steps, "first_request_id": reqID})
		rec := audit.Record{
			ID:        uuid.NewSHA1(uuid.NameSpaceOID, []byte("responder/"+reqID+"/matched")).String(),
			TenantID:  m.tenant,
			RequestID: reqID,
			Action:    string(first.Action),
			Target:    first.Target.Map(),
			Actor:     req.RequestedBy,
			Outcome:   audit.Matched,
			Detail:    fmt.Sprintf("playbook %s fired on %s event %s: %s", mt.Playbook, env.Source, env.Kind, mt.Reason),
			EventID:   env.ID,
			Playbook:  mt.Playbook,
			After:     after,
		}
		if _, err := m.audit.Append(ctx, rec); err != nil {
			m.log.Error("audit match; will retry", "event", env.ID, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		if err := actions.Publish(ctx, m.js, m.tenant, req); err != nil {
			m.log.Error("request actions; will retry", "event", env.ID, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		m.log.Info("playbook fired", "playbook", mt.Playbook, "event", env.ID, "request", reqID)
	}
	_ = msg.Ack()
}

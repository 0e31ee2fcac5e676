package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/ops"
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
	kv        jetstream.KeyValue
	log       *slog.Logger
	now       func() time.Time
	// publish sends a request signed with the engine key.
	publish actions.PublishFunc
	metrics *ops.Metrics
	seen    *eventTimes
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
	pull := bus.NewPuller(it, m.log, "events")
	for {
		msg, err := pull.Next()
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
	m.seen.put(env.ID, time.Now())
	set := m.playbooks()
	matches, err := set.MatchStateful(ctx, &env, &playbook.KVCounter{KV: m.kv})
	if err != nil {
		m.log.Error("matching failed", "event", env.ID, "err", err)
	}
	for _, mt := range matches {
		if len(mt.Steps) == 0 {
			continue
		}
		reqID := uuid.NewSHA1(uuid.NameSpaceOID, []byte("responder/event/"+env.ID+"/playbook/"+mt.Playbook)).String()
		for i := range mt.Steps {
			if i < len(mt.Approval) && mt.Approval[i] != "" {
				mt.Steps[i].Approval = mt.Approval[i]
			}
		}
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
			Approval:    first.Approval,
			RequestedAt: m.now().UTC(),
			Next:        mt.Steps[1:],
		}
		if held, reason, err := m.guard(ctx, &env, mt); err != nil {
			m.log.Error("playbook guard state unavailable; will retry", "event", env.ID, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		} else if held && strings.HasPrefix(reason, "blast radius") {
			// Past the playbook's limit the run still goes ahead, but every step
			// waits for a human decision.
			req.Reason = reason + "; " + req.Reason
			req.Approval = "required"
			for i := range req.Next {
				req.Next[i].Approval = "required"
			}
		} else if held {
			outcome := audit.Skipped
			rec := audit.Record{
				ID:       uuid.NewSHA1(uuid.NameSpaceOID, []byte("responder/"+reqID+"/guard")).String(),
				TenantID: m.tenant, RequestID: reqID, Action: string(first.Action), Target: first.Target.Map(),
				Actor: req.RequestedBy, Outcome: outcome, Detail: reason, EventID: env.ID, Playbook: mt.Playbook,
			}
			if _, err := m.audit.Append(ctx, rec); err != nil {
				_ = msg.NakWithDelay(time.Second)
				return
			}
			m.log.Info("playbook held back", "playbook", mt.Playbook, "event", env.ID, "reason", reason)
			continue
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
		m.metrics.Match(mt.Playbook)
		publish := m.publish
		if publish == nil {
			publish = func(ctx context.Context, r *actions.Request) error { return actions.Publish(ctx, m.js, m.tenant, r) }
		}
		if err := publish(ctx, req); err != nil {
			m.log.Error("request actions; will retry", "event", env.ID, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		m.log.Info("playbook fired", "playbook", mt.Playbook, "event", env.ID, "request", reqID)
	}
	_ = msg.Ack()
}

// guard applies the playbook's suppression window and blast-radius limit. held
// reports that the playbook must not act on this event, with the reason.
func (m *Matcher) guard(ctx context.Context, env *event.Envelope, mt playbook.Match) (held bool, reason string, err error) {
	now := m.now()
	if mt.Suppression > 0 && mt.SuppressionKey != "" {
		h, holder, err := suppress(ctx, m.kv, mt.SuppressionKey, env.ID, mt.Suppression, now)
		if err != nil {
			return false, "", err
		}
		if h {
			return true, fmt.Sprintf("suppressed: playbook %s already fired for %s (event %s); window ends %s",
				mt.Playbook, mt.SuppressionKey, holder.EventID, holder.Until.UTC().Format(time.RFC3339)), nil
		}
	}
	if mt.BlastRadius.Max > 0 {
		ok, n, err := blastRadius(ctx, m.kv, mt.Playbook, env.ID, mt.BlastRadius.Max, mt.BlastRadius.Window, now)
		if err != nil {
			return false, "", err
		}
		if !ok {
			return true, fmt.Sprintf("blast radius: playbook %s already fired %d times in this %s window (limit %d); an analyst must act",
				mt.Playbook, n, mt.BlastRadius.Window, mt.BlastRadius.Max), nil
		}
	}
	return false, "", nil
}

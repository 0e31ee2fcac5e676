package matcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/playbook"
)

// Config is what a Matcher needs.
type Config struct {
	Tenant string
	// JS consumes EVENTS (and publishes requests when Publish is nil).
	JS jetstream.JetStream
	// KV is the shared state bucket: thresholds, suppression windows,
	// blast-radius counts.
	KV bus.KV
	// Playbooks returns the current set (it may change between events).
	Playbooks func() *playbook.Set
	Audit     actions.Recorder
	// Publish sends a request (the engine signs it with its key); nil
	// publishes it unsigned with actions.Publish.
	Publish actions.PublishFunc
	// OnEvent is told the id of every well-formed event when it is first
	// handled (the engine's event-to-action latency); OnMatch the name of
	// every playbook that fired. Both optional.
	OnEvent func(eventID string)
	OnMatch func(playbook string)
	Logger  *slog.Logger
	// Now is the clock of the limits (default time.Now).
	Now func() time.Time
}

// Matcher consumes EVENTS, matches playbooks and requests their actions.
// Request ids are derived from the event and the playbook, so an event handled
// twice (after a crash before its ack) asks for the same requests, which the
// stream and the workers' idempotency claim deduplicate.
type Matcher struct {
	cfg Config
	log *slog.Logger
}

// New returns a matcher; Run starts it.
func New(cfg Config) *Matcher {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Publish == nil {
		js, tenant := cfg.JS, cfg.Tenant
		cfg.Publish = func(ctx context.Context, r *actions.Request) error { return actions.Publish(ctx, js, tenant, r) }
	}
	return &Matcher{cfg: cfg, log: cfg.Logger}
}

func (m *Matcher) consumerName() string { return "playbooks-" + bus.Token(m.cfg.Tenant) }

// Run consumes until ctx ends.
func (m *Matcher) Run(ctx context.Context) error {
	cons, err := m.cfg.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable:       m.consumerName(),
		Description:   "playbook matcher",
		FilterSubject: bus.EventsFilter(m.cfg.Tenant),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    10,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it began: a shutdown
		}
		return fmt.Errorf("matcher: consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
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
	tenant := m.cfg.Tenant
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
		rec := audit.Record{TenantID: tenant, Actor: audit.Actor{Kind: "engine", Name: "matcher"}, Outcome: audit.Rejected, Detail: reason, Before: dl}
		if md, err := msg.Metadata(); err == nil {
			rec.ID = bus.RejectedEventID(md.Sequence.Stream)
		}
		if _, err := m.cfg.Audit.Append(ctx, rec); err != nil {
			_ = msg.NakWithDelay(time.Second)
			return
		}
		_ = msg.Term()
		return
	}
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(env.ID)
	}
	set := m.cfg.Playbooks()
	matches, err := set.MatchStateful(ctx, &env, &KVCounter{KV: m.cfg.KV})
	if err != nil {
		m.log.Error("matching failed", "event", env.ID, "err", err)
	}
	for _, mt := range matches {
		if len(mt.Steps) == 0 {
			continue
		}
		reqID := bus.PlaybookRequestID(env.ID, mt.Playbook)
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
			RequestedAt: m.cfg.Now().UTC(),
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
			rec := audit.Record{
				ID:       bus.RecordID(reqID, "guard"),
				TenantID: tenant, RequestID: reqID, Action: string(first.Action), Target: first.Target.Map(),
				Actor: req.RequestedBy, Outcome: audit.Skipped, Detail: reason, EventID: env.ID, Playbook: mt.Playbook,
			}
			if _, err := m.cfg.Audit.Append(ctx, rec); err != nil {
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
			ID:        bus.RecordID(reqID, "matched"),
			TenantID:  tenant,
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
		if _, err := m.cfg.Audit.Append(ctx, rec); err != nil {
			m.log.Error("audit match; will retry", "event", env.ID, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		if m.cfg.OnMatch != nil {
			m.cfg.OnMatch(mt.Playbook)
		}
		if err := m.cfg.Publish(ctx, req); err != nil {
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
	now := m.cfg.Now()
	if mt.Suppression > 0 && mt.SuppressionKey != "" {
		h, holder, err := suppress(ctx, m.cfg.KV, mt.SuppressionKey, env.ID, mt.Suppression, now)
		if err != nil {
			return false, "", err
		}
		if h {
			return true, fmt.Sprintf("suppressed: playbook %s already fired for %s (event %s); window ends %s",
				mt.Playbook, mt.SuppressionKey, holder.EventID, holder.Until.UTC().Format(time.RFC3339)), nil
		}
	}
	if mt.BlastRadius.Max > 0 {
		ok, n, err := blastRadius(ctx, m.cfg.KV, mt.Playbook, env.ID, mt.BlastRadius.Max, mt.BlastRadius.Window, now)
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

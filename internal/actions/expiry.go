package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// expiryEntry is one block to undo at At: a block_ip (IP), or another
// expiring action whose stored inverse (Inverse) is requested as is.
type expiryEntry struct {
	RequestID string    `json:"request_id"`
	IP        string    `json:"ip,omitempty"`
	At        time.Time `json:"at"`
	Ticket    string    `json:"ticket,omitempty"`
	Inverse   *Step     `json:"inverse,omitempty"`
}

// scheduleExpiry records when req's effect is to be undone. inverse is the
// stored inverse of the request (Result.Undo): for every expiring action but
// block_ip it is what the scheduler requests; without one (nothing changed)
// nothing is scheduled.
func scheduleExpiry(ctx context.Context, kv StateStore, req *Request, at time.Time, inverse *Step) error {
	e := expiryEntry{RequestID: req.ID, At: at.UTC(), Ticket: req.Ticket}
	if req.Action == BlockIP {
		e.IP = req.Target.IP
	} else {
		if inverse == nil {
			return nil
		}
		e.Inverse = inverse
	}
	b, _ := json.Marshal(e)
	if _, err := kv.Put(ctx, bus.ExpiryKey(req.ID), b); err != nil {
		return fmt.Errorf("schedule expiry of %s: %w", req.ID, err)
	}
	return nil
}

// ExpiryConfig wires the expiry scheduler.
type ExpiryConfig struct {
	// Publish sends the unblock request (default Publish, unsigned).
	Publish  PublishFunc
	Tenant   string
	JS       jetstream.Publisher
	KV       jetstream.KeyValue
	Interval time.Duration // how often due expiries are looked for (default 30s)
	Logger   *slog.Logger
	Now      func() time.Time
}

// ExpiryScheduler requests unblock_ip when a block_ip's expiry passes. Its state
// is the expiry.* keys of the state bucket, written by the worker when a block
// with params.expires succeeds, so it survives restarts. Several schedulers
// (one per process) may run: the unblock request id is derived from the block's
// request id, so JetStream deduplicates the publish and the worker's idempotency
// state makes the unblock act at most once. Each unblock is an ordinary request
// by {kind: engine, name: expiry}, audited like any other.
type ExpiryScheduler struct {
	cfg ExpiryConfig
	log *slog.Logger
}

// NewExpiryScheduler applies defaults.
func NewExpiryScheduler(cfg ExpiryConfig) *ExpiryScheduler {
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &ExpiryScheduler{cfg: cfg, log: cfg.Logger.With("part", "expiry")}
}

// Run checks for due expiries every Interval until ctx ends.
func (s *ExpiryScheduler) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("expiry check failed; will try again", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// UnblockRequestID is the id of the unblock the scheduler requests for a block.
func UnblockRequestID(blockRequestID string) string { return bus.ExpiryRequestID(blockRequestID) }

// Tick publishes an unblock for every due expiry and removes its entry. It
// returns how many it requested.
func (s *ExpiryScheduler) Tick(ctx context.Context) (int, error) {
	lister, err := s.cfg.KV.ListKeysFiltered(ctx, bus.ExpiryFilter())
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0, nil
		}
		return 0, fmt.Errorf("list expiries: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		if bus.ExpiryKeyID(k) != "" {
			keys = append(keys, k)
		}
	}
	now := s.cfg.Now().UTC()
	n := 0
	var errs []error
	for _, k := range keys {
		e, err := s.cfg.KV.Get(ctx, k)
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		var x expiryEntry
		if err := json.Unmarshal(e.Value(), &x); err != nil {
			errs = append(errs, fmt.Errorf("expiry %s: %w", k, err))
			continue
		}
		if now.Before(x.At) {
			continue
		}
		req := &Request{
			Version: Version, ID: UnblockRequestID(x.RequestID), Action: UnblockIP,
			Target:      Target{IP: x.IP},
			Params:      map[string]any{"undo_of": x.RequestID},
			RequestedBy: audit.Actor{Kind: "engine", Name: "expiry"},
			Reason:      "block from request " + x.RequestID + " expired at " + x.At.Format(time.RFC3339),
			Ticket:      x.Ticket, RequestedAt: now, Tenant: s.cfg.Tenant,
		}
		if x.Inverse != nil {
			// The stored inverse exactly (the worker accepts an inverse-only
			// action only when it matches the snapshot).
			params := map[string]any{}
			for k, v := range x.Inverse.Params {
				params[k] = v
			}
			params["undo_of"] = x.RequestID
			req.Action, req.Target, req.Params = x.Inverse.Action, x.Inverse.Target, params
		}
		publish := s.cfg.Publish
		if publish == nil {
			publish = func(ctx context.Context, r *Request) error { return Publish(ctx, s.cfg.JS, s.cfg.Tenant, r) }
		}
		if err := publish(ctx, req); err != nil {
			errs = append(errs, err)
			continue
		}
		// Delete only the revision read: a newer schedule of the same key stays.
		if err := s.cfg.KV.Delete(ctx, k, jetstream.LastRevision(e.Revision())); err != nil {
			errs = append(errs, fmt.Errorf("remove expiry %s: %w", k, err))
			continue
		}
		s.log.Info("block expired; unblock requested", "block_request", x.RequestID, "ip", x.IP, "unblock_request", req.ID)
		n++
	}
	return n, errors.Join(errs...)
}

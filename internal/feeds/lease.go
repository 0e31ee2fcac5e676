package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/clock"
)

// Lease is a named lease in the state bucket (lease.<name>): one holder at a
// time runs the work it guards. The holder renews it every TTL/3 by a
// compare-and-set update; a contender that sees the same revision for longer
// than TTL (by its own clock, so clocks need not agree) takes it over with a
// compare-and-set on that revision. A holder that cannot renew within TTL stops
// its work before a successor can start it.
type Lease struct {
	KV     jetstream.KeyValue
	Name   string        // e.g. "feeds.<tenant>"
	Holder string        // this process, e.g. hostname:pid:random
	TTL    time.Duration // default 15s
	Logger *slog.Logger
	// OnChange is told when this process gains (true) or loses (false) the lease.
	OnChange func(held bool)
	// Clock measures the TTL and paces renewals and attempts (nil: the real one).
	Clock clock.Clock
}

type leaseRecord struct {
	Holder  string    `json:"holder"`
	Renewed time.Time `json:"renewed"` // informational (holder's clock)
}

// RunWithLease runs fn while this process holds the lease name; see Lease.Run.
func RunWithLease(ctx context.Context, kv jetstream.KeyValue, name, holderID string, ttl time.Duration, fn func(context.Context) error) error {
	return (&Lease{KV: kv, Name: name, Holder: holderID, TTL: ttl}).Run(ctx, fn)
}

// Run waits for the lease, runs fn with a context that ends when the lease is
// lost or ctx ends, and goes back to waiting if the lease is lost. It returns
// nil when ctx ends (after releasing the lease so that another process takes
// over at once), or fn's error if fn fails while holding the lease.
func (l *Lease) Run(ctx context.Context, fn func(context.Context) error) error {
	ttl := l.TTL
	if ttl <= 0 {
		ttl = 15 * time.Second
	}
	log := l.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("lease", l.Name, "holder", l.Holder)
	clk := clock.Or(l.Clock)
	key := bus.LeaseKey(l.Name)
	var (
		seenRev  uint64
		seenAt   time.Time
		interval = ttl / 3
	)
	for {
		rev, err := l.acquire(ctx, clk, key, &seenRev, &seenAt, ttl)
		if err != nil && ctx.Err() == nil {
			log.Warn("lease: cannot reach the state bucket", "err", err)
		}
		if rev != 0 {
			log.Info("lease acquired")
			if l.OnChange != nil {
				l.OnChange(true)
			}
			lost, ferr := l.hold(ctx, clk, key, rev, ttl, fn, log)
			if l.OnChange != nil {
				l.OnChange(false)
			}
			if ferr != nil {
				return ferr
			}
			if !lost {
				return nil // ctx ended; released
			}
			log.Warn("lease lost; waiting to take it again")
			seenRev, seenAt = 0, time.Time{}
		}
		if err := clock.Sleep(ctx, clk, interval); err != nil {
			return nil
		}
	}
}

// acquire takes the lease if it is free, ours, or stale; it returns the
// revision held, 0 if another process holds it.
func (l *Lease) acquire(ctx context.Context, clk clock.Clock, key string, seenRev *uint64, seenAt *time.Time, ttl time.Duration) (uint64, error) {
	now := clk.Now()
	val, _ := json.Marshal(leaseRecord{Holder: l.Holder, Renewed: now.UTC()})
	rev, err := l.KV.Create(ctx, key, val)
	if err == nil {
		return rev, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("lease %s: %w", l.Name, err)
	}
	e, err := l.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil // deleted meanwhile: try again next round
	}
	if err != nil {
		return 0, fmt.Errorf("lease %s: %w", l.Name, err)
	}
	var cur leaseRecord
	_ = json.Unmarshal(e.Value(), &cur)
	stale := false
	if e.Revision() != *seenRev {
		*seenRev, *seenAt = e.Revision(), now
	} else if now.Sub(*seenAt) > ttl {
		stale = true
	}
	if cur.Holder != l.Holder && !stale {
		return 0, nil
	}
	rev, err = l.KV.Update(ctx, key, val, e.Revision())
	if err != nil {
		return 0, nil // someone else moved first
	}
	return rev, nil
}

// hold runs fn and renews the lease; lost reports that the lease went to
// another process (or could not be renewed in time).
func (l *Lease) hold(ctx context.Context, clk clock.Clock, key string, rev uint64, ttl time.Duration, fn func(context.Context) error, log *slog.Logger) (lost bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(wctx) }()
	lastRenew := clk.Now()
	for {
		tick, stop := clk.After(ttl / 3)
		select {
		case err := <-done:
			stop()
			if ctx.Err() != nil {
				l.release(key, rev, log)
				return false, nil
			}
			if err != nil {
				l.release(key, rev, log)
				return false, err
			}
			// fn returned by itself: keep the lease until ctx ends, doing nothing.
			<-ctx.Done()
			l.release(key, rev, log)
			return false, nil
		case <-ctx.Done():
			stop()
			cancel()
			<-done
			l.release(key, rev, log)
			return false, nil
		case <-tick:
			val, _ := json.Marshal(leaseRecord{Holder: l.Holder, Renewed: clk.Now().UTC()})
			rctx, rcancel := context.WithTimeout(ctx, ttl/3)
			nrev, err := l.KV.Update(rctx, key, val, rev)
			rcancel()
			if err == nil {
				rev, lastRenew = nrev, clk.Now()
				continue
			}
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) || clk.Now().Sub(lastRenew) > ttl*2/3 {
				// Taken over, or renewals failing for too long: a successor may
				// start soon, so stop first.
				log.Warn("lease: cannot renew; stopping the work", "err", err)
				cancel()
				<-done
				return true, nil
			}
			log.Warn("lease: renewal failed; retrying", "err", err)
		}
	}
}

// release deletes the lease if it is still ours, so a successor need not wait
// for the TTL.
func (l *Lease) release(key string, rev uint64, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.KV.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		log.Debug("lease: release", "err", err)
	}
}

package feeds

import (
	"context"
	"fmt"
	"time"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// A Graph feed whose API the tenant is not licensed for (Graph's 403
// Authentication_RequestFromNonPremiumTenantOrB2CTenant) is parked: its status
// line says so and why, one log line and one audit record tell it once per
// parking (the status in KV carries it across restarts), the poller asks
// again only every LicenceRecheck (no hot retry loop), and the other feeds
// keep running. The first answer unparks it, with one log line and one audit
// record.

// park records that the tenant lacks the feed's licence.
func (p *GraphPoller) park(ctx context.Context, err error) {
	now := p.cfg.Now().UTC()
	var already bool
	var since time.Time
	p.status.update(func(s *StatusLine) {
		already = s.Parked != ""
		if !already {
			s.ParkedSince = now
		}
		s.Parked, since = p.feed.licence, s.ParkedSince
	})
	if !p.noLicence {
		p.noLicence = true
		p.log.Error("feed parked: "+p.feed.licence+"; the other feeds keep running",
			"err", err, "since", since, "recheck_every", p.cfg.LicenceRecheck)
	}
	if already {
		return
	}
	p.record(ctx, since, audit.Failed, fmt.Sprintf("feed %s parked: %s; asked again every %s", p.feed.name, p.feed.licence, p.cfg.LicenceRecheck))
}

// unpark clears a parking after a successful poll.
func (p *GraphPoller) unpark(ctx context.Context) {
	var since time.Time
	p.status.update(func(s *StatusLine) {
		since = s.ParkedSince
		s.Parked, s.ParkedSince = "", time.Time{}
	})
	p.noLicence = false
	if since.IsZero() {
		return
	}
	p.log.Info("the tenant now answers this feed; polling resumed", "parked_since", since)
	p.record(ctx, since, audit.Succeeded, fmt.Sprintf("feed %s resumed: the tenant now answers %s (parked since %s)", p.feed.name, p.feed.path, since.Format(time.RFC3339)))
}

// record appends a parking record to the audit trail, when one is wired.
func (p *GraphPoller) record(ctx context.Context, since time.Time, outcome audit.Outcome, detail string) {
	if p.cfg.Audit == nil {
		return
	}
	at := since.UTC().Format(time.RFC3339)
	rec := audit.Record{
		ID:       bus.DerivedID("feed-parked", p.cfg.Tenant, p.feed.name, at, string(outcome)),
		TenantID: p.cfg.Tenant, Actor: audit.Actor{Kind: "engine", Name: "feeds"}, Outcome: outcome,
		Target: map[string]string{"feed": p.feed.name, "parked_since": at},
		Detail: detail,
	}
	if _, err := p.cfg.Audit.Append(ctx, rec); err != nil {
		p.log.Warn("parking not audited", "err", err)
	}
}

package ingest

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/responder-sec/responder/internal/m365sim"
)

// contentType is the content type the benchmark ingests.
const contentType = "Audit.Exchange"

// ManageLimits are the emulator's budgets during the benchmark: Microsoft's
// Management Activity API budget (2,000 requests a minute per tenant and
// publisher, Microsoft Learn "Office 365 Management Activity API reference",
// "API throttling") scaled 1/10 in capacity and period, as bench contain
// scales the Entra write budget: the same sustained 33 requests/s with a tenth
// of the burst, so that a run of seconds meets it as a day of polling would.
func ManageLimits() m365sim.Limits {
	l := m365sim.DefaultLimits()
	l.ManagementActivity = m365sim.Limit{Capacity: l.ManagementActivity.Capacity / 10, Per: l.ManagementActivity.Per / 10}
	return l
}

// newTenant is an emulated tenant with Microsoft's throttling on (the
// Management Activity budget scaled by ManageLimits) holding records
// Audit.Exchange records in blobs of perBlob, generated on every read.
//
// The blobs are created half an hour ago, as content a poller finds waiting
// after a pause: the tenant's clock runs that far behind while it is seeded.
func newTenant(records, perBlob int, log *slog.Logger) (*m365sim.Tenant, error) {
	const behind = 30 * time.Minute
	var seeding atomic.Bool
	seeding.Store(true)
	clock := func() time.Time {
		if seeding.Load() {
			return time.Now().Add(-behind)
		}
		return time.Now()
	}
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedNone, Throttling: true, Logger: log, Now: clock})
	if err != nil {
		return nil, err
	}
	defer seeding.Store(false)
	sim.SetLimits(ManageLimits())
	// Subscribed before the content, as by the poller's earlier run: Microsoft
	// lists nothing created before a subscription starts.
	if err := sim.StartSubscription(contentType); err != nil {
		_ = sim.Close()
		return nil, fmt.Errorf("ingest: subscribe: %w", err)
	}
	syn := newSynth(sim.Info().TenantID, time.Now().UTC().Add(-behind))
	for b := 0; b*perBlob < records; b++ {
		n := min(perBlob, records-b*perBlob)
		if _, err := sim.AddGeneratedAuditBlob(contentType, n, syn.blob(b)); err != nil {
			_ = sim.Close()
			return nil, fmt.Errorf("ingest: seed blob %d: %w", b, err)
		}
	}
	return sim, nil
}

package feeds

import (
	"log/slog"
	"time"

	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/event"
)

// RiskConfig wires the risk-detection poller (the engine's original wiring; it
// maps onto GraphFeedConfig).
type RiskConfig struct {
	Tenant   string
	Graph    *msgraphsdk.GraphServiceClient
	JS       jetstream.Publisher
	KV       jetstream.KeyValue
	Interval time.Duration // between polls (default 60s)
	// Overlap re-reads this much before the cursor, for records that arrive late
	// (default 20m: real-time detections show 5 to 10 minutes late); records
	// already stored are skipped or deduplicated.
	Overlap time.Duration
	// Rescan and RescanEvery: see GraphFeedConfig (default: the last 48 h,
	// hourly, for offline detections).
	Rescan, RescanEvery time.Duration
	// Lookback is where a poller with no checkpoint starts (default 24h).
	Lookback time.Duration
	// PageGap spaces requests when no Budget is given: Identity Protection allows
	// 1 request per second per tenant (default 1s).
	PageGap time.Duration
	// Budget is the tenant's shared Identity Protection / Conditional Access
	// budget; pass the one the action workers use so that polls yield to actions.
	Budget   *TenantBudget
	PageSize int32 // $top (default 500, Microsoft's maximum)
	Logger   *slog.Logger
	Now      func() time.Time
	Observer Observer
	// OnPublished is told about each newly published event (timeline, metrics).
	OnPublished func(event.Envelope)
	// Audit records parkings for want of a licence (see GraphFeedConfig).
	Audit GapRecorder
}

// RiskPoller polls GET /identityProtection/riskDetections by lastUpdatedDateTime.
type RiskPoller = GraphPoller

// NewRiskPoller applies defaults.
func NewRiskPoller(cfg RiskConfig) *RiskPoller {
	b := cfg.Budget
	if b == nil {
		gap := cfg.PageGap
		if gap <= 0 {
			gap = time.Second
		}
		b = NewTenantBudget(1, gap)
	}
	return NewRiskDetectionPoller(GraphFeedConfig{
		Tenant: cfg.Tenant, Graph: cfg.Graph, JS: cfg.JS, KV: cfg.KV, Interval: cfg.Interval, Overlap: cfg.Overlap,
		Rescan: cfg.Rescan, RescanEvery: cfg.RescanEvery, Lookback: cfg.Lookback, Budget: b, PageSize: cfg.PageSize, Logger: cfg.Logger, Now: cfg.Now,
		Observer: cfg.Observer, OnPublished: cfg.OnPublished, Audit: cfg.Audit,
	})
}

package feeds

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	"github.com/microsoftgraph/msgraph-sdk-go/identityprotection"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/event"
)

// RiskConfig wires the risk-detection poller.
type RiskConfig struct {
	Tenant   string
	Graph    *msgraphsdk.GraphServiceClient
	JS       jetstream.Publisher
	KV       jetstream.KeyValue
	Interval time.Duration // between polls (default 60s)
	// Overlap re-reads this much before the cursor, for records that arrive late
	// (default 5m); the stream deduplicates what was already published.
	Overlap time.Duration
	// Lookback is where a poller with no checkpoint starts (default 24h).
	Lookback time.Duration
	// PageGap spaces page requests: Identity Protection allows 1 request per second
	// per tenant (default 1s).
	PageGap  time.Duration
	PageSize int32 // $top (default 500, Microsoft's maximum)
	Logger   *slog.Logger
	Now      func() time.Time
	// OnPublished is told about each newly published event (timeline, metrics).
	OnPublished func(event.Envelope)
}

// RiskPoller polls GET /identityProtection/riskDetections by lastUpdatedDateTime.
type RiskPoller struct {
	cfg RiskConfig
	cp  *Checkpoint
	log *slog.Logger
}

type riskCursor struct {
	Since time.Time `json:"since"` // highest lastUpdatedDateTime published
}

// NewRiskPoller applies defaults.
func NewRiskPoller(cfg RiskConfig) *RiskPoller {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Overlap <= 0 {
		cfg.Overlap = 5 * time.Minute
	}
	if cfg.Lookback <= 0 {
		cfg.Lookback = 24 * time.Hour
	}
	if cfg.PageGap <= 0 {
		cfg.PageGap = time.Second
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &RiskPoller{cfg: cfg, cp: NewCheckpoint(cfg.KV, "risk_detections"), log: cfg.Logger.With("feed", "risk_detections")}
}

// Run polls until ctx ends. A failed poll is logged and retried at the next tick;
// the checkpoint only moves after a poll's events are stored.
func (p *RiskPoller) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := p.Poll(ctx)
		if err != nil && ctx.Err() == nil {
			p.log.Error("poll failed", "err", err)
		} else if n > 0 {
			p.log.Info("published risk detections", "events", n)
		}
		t.Reset(p.cfg.Interval)
	}
}

// Poll reads every detection updated since the cursor (minus the overlap),
// publishes each once, and advances the cursor. It returns the number of new events.
func (p *RiskPoller) Poll(ctx context.Context) (int, error) {
	var cur riskCursor
	found, err := p.cp.Load(ctx, &cur)
	if err != nil {
		return 0, err
	}
	if !found {
		cur.Since = p.cfg.Now().Add(-p.cfg.Lookback)
	}
	from := cur.Since.Add(-p.cfg.Overlap).UTC().Truncate(time.Second)
	filter := "lastUpdatedDateTime ge " + from.Format(time.RFC3339)
	top := p.cfg.PageSize
	ri, err := p.cfg.Graph.IdentityProtection().RiskDetections().ToGetRequestInformation(ctx,
		&identityprotection.RiskDetectionsRequestBuilderGetRequestConfiguration{
			QueryParameters: &identityprotection.RiskDetectionsRequestBuilderGetQueryParameters{Filter: &filter, Top: &top},
		})
	if err != nil {
		return 0, fmt.Errorf("risk detections request: %w", err)
	}
	published, maxSeen := 0, cur.Since
	for pageNo := 0; ; pageNo++ {
		if pageNo > 0 {
			select {
			case <-ctx.Done():
				return published, ctx.Err()
			case <-time.After(p.cfg.PageGap):
			}
		}
		pg, err := getRaw(ctx, p.cfg.Graph, ri)
		if err != nil {
			return published, fmt.Errorf("risk detections page %d: %w", pageNo, describe(err))
		}
		for _, raw := range pg.Value {
			env, err := event.NormalizeAs(event.SourceRiskDetection, p.cfg.Tenant, raw)
			if err != nil {
				p.log.Warn("skipping a risk detection that does not normalise", "err", err)
				continue
			}
			dup, err := PublishEvent(ctx, p.cfg.JS, env)
			if err != nil {
				return published, err
			}
			if env.Time.After(maxSeen) {
				maxSeen = env.Time
			}
			if !dup {
				published++
				if p.cfg.OnPublished != nil {
					p.cfg.OnPublished(env)
				}
			}
		}
		if pg.NextLink == "" {
			break
		}
		if ri, err = nextRequest(pg.NextLink); err != nil {
			return published, err
		}
	}
	if maxSeen.After(cur.Since) || !found {
		cur.Since = maxSeen
		if err := p.cp.Save(ctx, cur); err != nil {
			return published, err
		}
	}
	return published, nil
}

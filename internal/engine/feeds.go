package engine

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/feeds"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/ops"
	"github.com/responder-sec/responder/internal/run"
)

// The feeds an engine can run.
const (
	FeedManagement     = "management_activity"
	FeedSignIns        = "signins"
	FeedRiskDetections = "risk_detections"
	FeedRiskyUsers     = "risky_users"
	FeedAlerts         = feeds.FeedAlerts // Defender XDR alerts (Graph security/alerts_v2)
)

// AllFeeds is the default set.
var AllFeeds = []string{FeedManagement, FeedSignIns, FeedRiskDetections, FeedRiskyUsers, FeedAlerts}

// feedObserver turns feed observations into metrics.
type feedObserver struct{ m *ops.Metrics }

func (o feedObserver) Published(string, string, int)      {}
func (o feedObserver) Fetched(string, string, string)     {}
func (o feedObserver) Failed(string, string, error)       {}
func (o feedObserver) Throttled(feed, contentType string) { o.m.GraphThrottle(feed) }
func (o feedObserver) Lag(feed, contentType string, lag time.Duration) {
	o.m.FeedLag(feed, contentType, lag)
}

// runFeeds runs the enabled pollers while this process holds the tenant's feed
// lease: one poller per tenant across every engine sharing the cluster.
func (e *Engine) runFeeds(ctx context.Context, kv jetstream.KeyValue, cred azcore.TokenCredential, idp *feeds.TenantBudget) error {
	tenant := e.Tenant()
	enabled := map[string]bool{}
	list := e.cfg.Feeds
	if list == nil {
		list = AllFeeds
	}
	for _, f := range list {
		enabled[f] = true
	}
	obs := feedObserver{m: e.metrics}
	interval := e.cfg.FeedInterval
	var parts run.Group
	if enabled[FeedManagement] {
		creds := e.cfg.Credentials
		creds.HTTPClient = e.httpClient
		parts.Add(FeedManagement, feeds.NewManagementPoller(feeds.ManagementConfig{
			Tenant: tenant, HTTP: m365.BearerClient(creds, cred, creds.ManageScope()), BaseURL: creds.ManageURL,
			JS: e.bus.JS, KV: kv, Interval: interval, Logger: e.log, Observer: obs, OnPublished: e.onEvent, Audit: e.recorder,
		}).Run)
	}
	graphFeed := func(ctor func(feeds.GraphFeedConfig) *feeds.GraphPoller, budget *feeds.TenantBudget) func(context.Context) error {
		return ctor(feeds.GraphFeedConfig{
			Tenant: tenant, Graph: e.graph, JS: e.bus.JS, KV: kv, Interval: interval, Budget: budget,
			Logger: e.log, Observer: obs, OnPublished: e.onEvent, Audit: e.recorder,
		}).Run
	}
	if enabled[FeedSignIns] {
		parts.Add(FeedSignIns, graphFeed(feeds.NewSignInPoller, feeds.NewReportsBudget()))
	}
	if enabled[FeedRiskDetections] {
		parts.Add(FeedRiskDetections, feeds.NewRiskPoller(feeds.RiskConfig{
			Tenant: tenant, Graph: e.graph, JS: e.bus.JS, KV: kv, Budget: idp, Observer: obs,
			Interval: e.cfg.RiskInterval, PageGap: e.cfg.PageGap, Logger: e.log, OnPublished: e.onEvent, Audit: e.recorder,
		}).Run)
	}
	if enabled[FeedRiskyUsers] {
		parts.Add(FeedRiskyUsers, graphFeed(feeds.NewRiskyUserPoller, idp))
	}
	if enabled[FeedAlerts] {
		parts.Add(FeedAlerts, graphFeed(feeds.NewAlertPoller, feeds.NewSecurityBudget()))
	}
	if parts.Len() == 0 {
		<-ctx.Done()
		return nil
	}
	host, _ := os.Hostname()
	lease := &feeds.Lease{
		KV: kv, Name: bus.FeedLeaseName(tenant), Holder: fmt.Sprintf("%s:%d:%s", host, os.Getpid(), uuid.NewString()[:8]),
		TTL: e.cfg.LeaseTTL, Logger: e.log.With("part", "feeds"),
	}
	return lease.Run(ctx, parts.Run)
}

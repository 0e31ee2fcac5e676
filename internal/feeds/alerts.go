package feeds

import (
	"time"

	"github.com/responder-sec/responder/internal/event"
)

// FeedAlerts is the Defender XDR alerts feed: Microsoft Graph
// GET /security/alerts_v2 by lastUpdateDateTime
// (https://learn.microsoft.com/graph/api/security-list-alerts_v2, application
// permission SecurityAlert.Read.All). An alert whose status or evidence
// changes gets a new lastUpdateDateTime and is published again as a new event
// (the envelope id is the alert id and that time); a re-poll of the same state
// deduplicates.
const FeedAlerts = "alerts"

// feedAlertsDef: lastUpdateDateTime supports ge and le in $filter (the List
// alerts_v2 page lists it among the filterable properties). Alerts are
// updated as automated investigation adds evidence, minutes after creation:
// a 30-minute overlap re-reads them. Microsoft publishes no per-API limit for
// alerts_v2 beyond Graph's global one; the feed keeps to 1 request a second.
// The licence message covers a tenant without Microsoft Defender XDR.
var feedAlertsDef = graphFeed{name: FeedAlerts, source: event.SourceAlert, path: "security/alerts_v2", field: "lastUpdateDateTime",
	top: 500, overlap: 30 * time.Minute, budget: NewSecurityBudget,
	licence: "Microsoft Defender XDR (a Defender for Endpoint, Office 365, Identity or Cloud Apps licence): security/alerts_v2 needs it"}

// NewAlertPoller polls security/alerts_v2 by lastUpdateDateTime.
func NewAlertPoller(cfg GraphFeedConfig) *GraphPoller { return newGraphPoller(cfg, feedAlertsDef) }

// NewSecurityBudget is the alerts feed's budget: 1 request per second.
func NewSecurityBudget() *TenantBudget { return NewTenantBudget(1, time.Second) }

// Package feeds owns the pollers of Microsoft's three feeds, their checkpoints
// and status records in KV, the lease that lets one process poll a tenant, and
// the publication of each record as an event envelope (event.NormalizeAs) to the
// EVENTS stream.
//
// # Pollers
//
//   - ManagementPoller (NewManagementPoller, ManagementConfig): the Office 365
//     Management Activity API. It starts the subscriptions of its content types
//     (AF20024 "already enabled" is success; AF20022/AF20023 start them again),
//     lists content in windows of at most 24 h from its checkpoint, never
//     further back than 7 days less EdgeMargin, re-listing Overlap before the
//     checkpoint for content listed late, follows NextPageUri, fetches blobs with
//     at most Concurrency at once, decodes each blob as a stream (memory does
//     not grow with blob size) and publishes every record with its Id as
//     Nats-Msg-Id. Every call carries PublisherIdentifier and waits for the
//     tenant's request budget (2,000 a minute by default); AF429, 429, 5xx and
//     dropped connections are retried with bounded back-off and hold the whole
//     budget back; expired content (AF20051) is reported and skipped.
//   - GraphPoller: NewSignInPoller (auditLogs/signIns by createdDateTime,
//     reports budget 5 per 10 s), NewRiskDetectionPoller / NewRiskPoller
//     (identityProtection/riskDetections by lastUpdatedDateTime) and
//     NewRiskyUserPoller (identityProtection/riskyUsers by
//     riskLastUpdatedDateTime). They read bounded time windows oldest first,
//     re-read Overlap for late, out-of-order records and skip ids already
//     stored. A risk detection or risky user whose state changes has a new
//     envelope id (id:timestamp), so it is a new event. The two risk feeds share
//     the tenant's 1 request per second TenantBudget with Conditional Access
//     actions; polls take PriorityPoll and yield to PriorityAction. A tenant
//     without the licence a feed needs (403
//     Authentication_RequestFromNonPremiumTenantOrB2CTenant) parks that feed
//     (parked.go): the status says parked, why and since when, one log line
//     and one audit record tell it, it asks again every LicenceRecheck (1 h)
//     and the other feeds go on. The sign-in feed re-scans the last 2h15m
//     every 15 min and publishes a record whose MFA, Conditional Access or
//     risk fields changed once more, as <id>:rev-<fingerprint>
//     (signinrev.go); the risk feeds re-scan 48 h hourly for offline
//     detections.
//   - A Management Activity start refused as too frequent (403, code "429",
//     "retry again after 14m 56s") is waited out, and the wait is kept in KV
//     (bus.SubscriptionStartAfterKey) so that a restart does not ask again.
//
// # Delivery: exactly once in EVENTS across crashes
//
// Records are published asynchronously with Nats-Msg-Id = envelope id, and
// acknowledgements are consumed in order, so the poller always knows the prefix
// of a blob that is stored. The Management checkpoint (feed.management_activity.
// <content type>) holds Start (all content created before it is stored), Done
// (content finished within the overlap) and Partial (content id → records
// stored); it is written only after the records it covers are acknowledged, at
// the end of each blob and every CheckpointEvery records within one, by one
// writer per window that writes the latest state without holding up the
// publishing (a write may lag; it never claims more than is stored). A process
// killed at any instant resumes from the checkpoint: finished blobs are skipped,
// a partial blob is re-read and its first records skipped, and the few records
// published after the last checkpoint are re-sent and dropped by the stream's
// 2-hour duplicate window. A Graph feed's checkpoint (feed.<feed>) moves after
// each window; re-reads stay within 90 minutes, inside the duplicate window.
// OnPublished and Observer.Published hear of an event when its acknowledgement
// is read; one stored just before a crash is not reported again.
//
// # Status, lease, backfill, metrics
//
// Each poller keeps feed.status.<feed>.<content type> (StatusLine) up to date,
// cheaply (at most every 2 s, and at the end of each poll or error); Status and
// WriteStatus serve `responder feeds status [--json]` from any process.
// RunWithLease / Lease run the pollers on one process per tenant among several
// sharing a NATS cluster: the holder renews by compare-and-set every TTL/3; a
// contender takes over a lease whose revision has not changed for TTL (clock
// skew does not matter) and a stopping holder releases it at once. Backfill
// re-reads up to 7 days of Management Activity content that the live poller
// never read (below its coverage), resumably, printing progress. Observer (with
// the in-memory Counters) receives events published, pages and blobs fetched,
// throttles, errors and lag, for the engine to expose as metrics.
//
// The poller's benchmark (`responder bench ingest`) lives in
// internal/bench/ingest, outside the product.
//
// # Concurrency
//
// Every poller is a long-running part with Run(ctx) error, which returns nil
// when ctx ends; every goroutine it starts is stopped and waited for before Run
// or PollOnce returns. A GraphPoller's Poll must not be called concurrently with
// itself. TenantBudget, Counters and ManagementPoller.PollOnce are safe for
// concurrent use. The package keeps no global mutable state.
//
// # What it never does
//
// It never publishes a record without its source id as the message id, never
// moves a checkpoint past a record that is not acknowledged by the stream, never
// asks Microsoft for a window it forbids, and never logs a token or secret.
package feeds

// Package feeds owns the pollers of Microsoft's three feeds (Management Activity API,
// Graph sign-in logs, Identity Protection risk detections and risky users), their
// checkpoints in KV, and the publication of each record as an event envelope to the
// EVENTS stream.
//
// Delivery: every event is published with its envelope id as Nats-Msg-Id, and a
// checkpoint is written only after the events before it are stored, so a poller can
// crash at any instant and resume without losing an event; re-polls of an overlap
// window are deduplicated by the stream. Each poller is a long-running part with
// Run(ctx) error and stops when its context ends.
package feeds

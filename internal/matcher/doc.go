// Package matcher runs the playbooks against the event stream: it consumes
// EVENTS as a member of a shared pull consumer, matches every event against the
// current playbook set (stateful thresholds counted in the shared KV bucket by
// KVCounter), applies each playbook's suppression window and blast-radius limit
// (compare-and-set in the same bucket, so several engine processes agree),
// audits what fired or was held back, and requests the first step of each
// firing playbook on ACTIONS.
//
// Delivery: an event is acked only after every request it caused is published
// and every audit record stored; on any failure it is nak'ed with a delay and
// handled again. Request and record ids derive from the event and the playbook
// (bus.PlaybookRequestID, bus.RecordID), so a redelivered event asks for the
// same requests, which the stream's duplicate window and the workers'
// idempotency claim deduplicate, and is counted once by every limit.
//
// It never calls Microsoft Graph and never acts on the tenant itself: it only
// requests actions, which the action workers check again.
package matcher

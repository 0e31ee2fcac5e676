// Package notify tells people that a request waits for them (held for
// approval) or failed, in a Microsoft Teams channel (an Adaptive Card through
// an incoming webhook or a Workflows webhook), a Slack channel (an incoming
// webhook) or any HTTP endpoint (a JSON object): what, on whom, why, and a
// link to the request's page in the console.
//
// # Delivery
//
// Enqueue never blocks the engine: events wait in a bounded queue (dropped,
// with a warning, when it is full: the audit trail stays the record) and
// Run posts them one at a time. Each (request, state, webhook) is claimed
// once in the state bucket (bus.NotificationKey, create-if-absent) before it
// is posted, so several engines, a retried record or a restart post it at
// most once. A post is retried on a network error, a 429 (after its
// Retry-After) or a 5xx, with exponential backoff on an injectable clock, at
// most MaxAttempts times; any other answer is final.
//
// # Secrets and hostile text
//
// A webhook URL is a credential (whoever has it can post to the channel):
// it never appears in a log line, an error or the audit trail; errors name the
// webhook by kind and host only. Every text in a message comes from the
// record and may be attacker-controlled (a UPN, a reason): it is escaped for
// the receiver's markup (Markdown in Adaptive Card TextBlocks, mrkdwn
// control characters in Slack) and sent as JSON, so it renders as text.
//
// The package never imports the Graph SDK.
package notify

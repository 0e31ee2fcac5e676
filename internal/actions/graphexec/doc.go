// Package graphexec carries out action requests through Microsoft Graph with the
// msgraph-sdk-go request adapter (authentication, middleware and error mapping of
// the real SDK; JSON bodies are built here so that inbox rules are kept and
// recreated field for field), and, for what Graph does not expose (a mailbox's
// own forwarding), through the Exchange Online admin API with plain HTTP
// (Config.Exchange; see exchange.go). It is the one place where Graph and
// Exchange failures are classified (permanent, transient, throttled) into
// *actions.Error, keeping Microsoft's error code, request ids, Retry-After
// and, on 403, the permission the call needs. The Exchange admin API has no
// budget here: its throttling answers (429) go back to the worker.
//
// Throughput within Microsoft's budgets: Budgets holds one throttling budget per
// service (Entra writes and resource units, Outlook's 4 concurrent requests per
// mailbox, Identity Protection / Conditional Access at 1 request per second) and
// is shared by every executor of a process. Same-kind Entra user calls (read,
// PATCH, revokeSignInSessions) are packed into $batch requests of up to 20; a
// throttled batch item is retried on its own after its own Retry-After (bounded).
// Concurrent block_ip / unblock_ip requests are coalesced into rounds of one read
// of the named locations and one update per changed location.
//
// No goroutine outlives a call: batches and coalescing rounds are led by one of
// the waiting callers. The executor never retries beyond these bounded item
// retries and the SDK's middleware; the worker decides about redelivery.
package graphexec

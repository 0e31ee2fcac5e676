// Package actions owns the action catalogue, the action request contract, and the
// worker that carries requests out: a chain of small stages (decode and validate
// target and params, idempotency claim, accepted record with any warning, undo,
// protected-identity guard, IP-range guard, dry run with the executor's plan,
// blast-radius limit, execute with bounded retry, final state, audit, expiry
// schedule, next step, reply, ack), each a pure decision where it can be.
//
// Delivery: a request message is acknowledged only after its final audit record is
// stored. A redelivered request never acts twice: the request id is claimed in KV
// before acting and the stored result is returned on redelivery. Retries are bounded
// (MaxAttempts); a request that exhausts them is audited as failed with the last
// Microsoft error code, its request ids and the number of attempts.
//
// Secrets: reset_password's generated password travels only in Result.Secret and
// then, for an analyst's request, in the Outcome published on the request's
// result subject (Outcome.Secret); a playbook's or the engine's request has no
// one waiting, so the worker discards it unseen and says so in the detail. It
// is never put in an audit record, the KV state, a log line or an error; a
// redelivery's reply says it was delivered to the original requester.
//
// Undo: a succeeded request's inverse (Result.Undo) is kept in its KV state; an
// undo request publishes it as a new request that references the original
// (params.undo_of). Irreversible actions are refused with the reason.
//
// Expiring blocks: the worker writes expiry.<request> keys for block_ip with
// params.expires; ExpiryScheduler.Run publishes the unblock when one passes.
//
// Blast radius: compare-and-set counters in the state bucket per action and per
// playbook and window (BlastLimits); engine requests are not counted.
//
// The Graph calls live in the graphexec sub-package behind the Executor interface
// declared here (and the optional Planner, Warner and Directory), so the contract
// and the worker compile without the Graph SDK.
package actions

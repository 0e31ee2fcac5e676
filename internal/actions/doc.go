// Package actions owns the action catalogue (catalogue.go: the one source of
// truth for every action's target, parameters, permissions, role, repeat
// safety, blast-radius limit, guards, inverse, expiry and CLI verb), the action
// request contract, and the worker that carries requests out.
//
// The worker is a pipeline (pipeline.go): decode, admit, claim, guard,
// dry-run, limit, hold, probe, execute. Each stage is a small function that
// returns a verdict: go on, finish with a record, complete a stored result,
// retry after a delay, hold for approval, or reject. One settle step
// (settle.go) acts on the verdict: final state, audit record, expiry
// schedule, next step, result notice, then ack, nak or term; no stage settles
// a message itself. The stages depend on narrow roles declared in roles.go
// (Delivery, StateStore, PublishFunc, NotifyFunc) and on the Gate, Directory,
// TrustedRanges and Recorder interfaces declared here; executors register an
// explicit Handlers map (graphexec.Executor.Handlers).
//
// Delivery: a request message is acknowledged only after its final audit record is
// stored. A redelivered request never acts twice: the request id is claimed in KV
// before acting and the stored result is returned on redelivery; an action that is
// not repeat-safe is probed before a repeat. Retries are bounded (MaxAttempts); a
// request that exhausts them is audited as failed with the last Microsoft error
// code, its request ids and the number of attempts.
//
// Secrets: reset_password's generated password travels only in Result.Secret,
// then sealed (X25519) to the requester's seal_to key on the requester's own
// result subject, and only to an analyst who asked directly: a playbook's, the
// engine's or an approved request's password is discarded unseen, and the
// detail says so. It is never in an audit record, the KV state, a log line or
// an error; a redelivery's reply says it was delivered to the original
// requester.
//
// Undo: a succeeded request's inverse (Result.Undo) is kept in its KV state; an
// undo request, authorised against the undoing analyst's allowed actions,
// publishes it as a new request that references the original
// (params.undo_of). Inverse-only actions (restore_*) run only as exactly that
// stored inverse. Irreversible actions are refused with the reason.
//
// Expiring blocks: the worker writes expiry.<request> keys for actions whose
// Spec has Expires; ExpiryScheduler.Run publishes the inverse when one passes.
//
// Blast radius: compare-and-set counters in the state bucket per action and per
// playbook and window (BlastLimits, defaults from the catalogue); engine
// requests are not counted.
//
// The Graph calls live in the graphexec sub-package, so the contract and the
// worker compile without the Graph SDK.
package actions

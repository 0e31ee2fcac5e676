// Package actions owns the action catalogue, the action request contract, and the
// worker that carries requests out: a chain of small stages (decode, validate,
// protected-identity guard, idempotency claim, dry-run, execute with bounded retry,
// record), each a pure decision where it can be.
//
// Delivery: a request message is acknowledged only after its final audit record is
// stored. A redelivered request never acts twice: the request id is claimed in KV
// before acting and the stored result is returned on redelivery. Retries are bounded
// (MaxDeliver); a request that exhausts them is audited as failed with the last
// Microsoft error code.
//
// The Graph calls live in the graphexec sub-package behind the Executor interface
// declared here, so the contract and the worker compile without the Graph SDK.
package actions

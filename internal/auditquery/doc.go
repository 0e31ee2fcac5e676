// Package auditquery is the engine's read API for the audit trail: reviewers
// and analysts read records through it, never from the AUDIT stream, which
// only engine identities may touch on the bus (design.md, "Trust model").
//
// # Protocol
//
// A client sends a signed Query (the envelope of internal/analyst: JCS body,
// Responder-Signature and Responder-Key headers) as a core NATS request to
// bus.AuditQuerySubject(tenant); the reply, on the client's own inbox prefix,
// is one Reply. A list query returns one page: at most Limit records (bounded
// by MaxLimit and by MaxReplyBytes) stored after AfterSeq, in stream order,
// each with its stream sequence and subject, as stored, byte for byte, so a
// client can verify the hash chain itself. Reply.NextSeq is the AfterSeq of
// the next page; Reply.More says whether there is one. A page never reads
// past the stream's last sequence at the time the query arrived.
//
// # Guarantees
//
// Every query is verified before anything is read: the signature, a key in the
// analysts directory that may review (a reviewer or an analyst), the time
// within the Verifier's skew and an id never used before (replay protection
// shared with requests and approval commands). A refused query is answered
// with the rejection class and written to the audit trail as rejected (the
// claimed sender, marked as not verified). Queries larger than MaxQueryBytes
// are refused unread. The service holds no state: several engines serve the
// subject as one queue group.
//
// The package never imports the Graph SDK.
package auditquery

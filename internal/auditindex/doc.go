// Package auditindex keeps a secondary index of the audit trail so that a
// filtered page of it (by target, actor, action, outcome, playbook, request,
// time) is answered without reading the whole AUDIT stream, newest first or
// oldest first, at any length of trail.
//
// # Layout
//
// The index is the stream bus.StreamAuditIndex. For every record the Indexer
// notes the record's stream sequence and time (in seconds) under each of the
// record's terms: every target value, the actor's name and kind, the action,
// the outcome, the playbook, the request id, and "all". A term's entries are
// written as small chunk messages (a varint list of sequence and time deltas)
// on one subject per term and bucket of BucketSize sequences:
//
//	responder.<tenant>.auditidx.k.<dim>.<key>.<bucket>
//
// where key is a 64-bit hash of the value (lower-cased for targets and
// actors, which match without regard to case): subjects never carry a UPN,
// and any value, however hostile, is one fixed-length token. After each flush
// the Indexer publishes the last AUDIT sequence it has indexed on
// bus.AuditIndexMarkSubject: the index is complete up to that mark.
//
// # Reading
//
// Reader.Page lists the buckets of the most selective term (one stream-info
// call with a subject filter: the server's per-subject index answers it),
// reads, bucket by bucket in the page's order, the chunks of each term of the
// filter, intersects them, drops entries outside the time range, and reads the
// records they name by sequence (direct gets). Every record is then checked
// against the filter itself (audit.Filter.Match): the index only narrows, it
// never decides, so a hash collision or a forged chunk cannot put a record
// that does not match into a page. Records after the mark (not indexed yet:
// the Indexer flushes at least every MaxWait) are read from the AUDIT stream
// directly. A page reads at most MaxScan records or stream messages it does
// not return; past that it ends early with More and a cursor to go on from.
//
// # Guarantees and limits
//
// The index is derived data: the AUDIT stream and its hash chain stay the
// only record (verify and export never read the index). Whoever can publish
// to the index stream (engine identities only, like AUDIT) can hide records
// from filtered pages, not change or add them. Records are returned byte for
// byte as stored, so a client can check each one's hash and signature. A
// crash between a flush's chunks and its mark re-indexes those records once
// more on restart; readers drop duplicate sequences. Several engines each
// running an Indexer is safe (duplicates again) but wasteful: one is enough.
//
// The package never imports the Graph SDK.
package auditindex

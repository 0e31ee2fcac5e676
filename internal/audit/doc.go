// Package audit owns the tamper-evident audit trail: the record, the chained writer
// that appends to the AUDIT stream, and the readers (list, show, verify, export).
//
// Each record carries the hash of the record before it and a hash over its own
// canonical JSON (which includes that previous hash), so changing, dropping or
// reordering any record breaks the chain at a point verify names. Appends use an
// expected-last-sequence publish, so several writers (processes) can share one chain:
// a writer that loses the race reloads the tail and retries.
//
// The package never imports the Graph SDK, and never records a secret: callers pass
// only what may be kept for 400 days.
package audit

// Package event defines the event envelope that every feed produces and every
// playbook reads, and the pure normalisers that turn a Microsoft record into one.
//
// It owns no I/O: it never talks to NATS or to Microsoft, and it must never import
// the Graph SDK (a dependency test in this package enforces that). The envelope keeps
// the source record whole in Raw; the extracted fields (user, IP, time) are
// conveniences for matching and must never be trusted over Raw.
//
// Normalize is on the ingest hot path: it reads a record in one pass without
// decoding it (scan.go), and allocates the copy in Raw plus one string that the
// envelope's other fields share. normalize_ref_test.go keeps the first,
// decode-everything implementation as the reference it is fuzzed against.
package event

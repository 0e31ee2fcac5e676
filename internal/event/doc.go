// Package event defines the event envelope that every feed produces and every
// playbook reads, and the pure normalisers that turn a Microsoft record into one.
//
// It owns no I/O: it never talks to NATS or to Microsoft, and it must never import
// the Graph SDK (a dependency test in this package enforces that). The envelope keeps
// the source record whole in Raw; the extracted fields (user, IP, time) are
// conveniences for matching and must never be trusted over Raw.
package event

// Package playbooktest is the library behind `responder playbook test`: it
// reads records as Microsoft publishes them (a JSON object, an array, NDJSON
// or a Graph list response, in any mix), recognises each with
// event.Normalize, runs it through a playbook.Set and writes what would fire
// and the actions it would request, touching nothing else.
//
// # Guarantees
//
// Memory stays flat whatever the input's size: records are split as they are
// read (Records), never held whole, and one record is bounded (16 MB).
// Threshold triggers are evaluated in time order through a bounded reorder
// buffer with an in-memory counter. Run never panics on any input (FuzzRun,
// FuzzRecordStream); a record that is not JSON stops the file naming it. The
// package does no I/O beyond its reader and writer and never imports the
// Graph SDK.
package playbooktest

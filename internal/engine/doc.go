// Package engine wires Responder's parts into one process: the bus, the feeds, the
// playbook matcher, the action workers and the audit writer. demo, serve and the
// end-to-end tests all run this same wiring.
//
// Each long-running part exposes Run(ctx) error; Engine.Run starts them, and when
// ctx ends (or one part fails) stops the others and waits for all of them.
package engine

// Package bench is the `responder bench` scenario harness: each scenario runs a
// part of Responder (or all of it) on loopback against the emulated tenant
// (internal/m365sim), measures one figure and holds it to a bound derived from
// Microsoft's published limits or from the goals.
//
// Usage:
//
//	scenarios := bench.Scenarios()
//	res, err := bench.Run(ctx, scenarios, "bus", bench.Options{N: 20000})
//	res.WriteText(os.Stdout) // or json.Marshal(res)
//
// The registry is built explicitly by Scenarios (no init-time registration).
// A result is met only when its goal is met and every correctness check of the
// run passed (Result.Checks; a run without checks is never met), so that a
// fast run that did the wrong thing cannot pass. Harnesses too large for this
// package live in its sub-packages (ingest, matchbench).
//
// Every scenario owns what it starts (emulator, embedded NATS, engine parts) and
// stops it before returning; it writes only under Options.Dir (a fresh temporary
// directory when empty) and listens only on loopback.
package bench

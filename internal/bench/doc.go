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
// Scenarios owned by other packages (purge, block-ip, ingest, match) are entries
// whose Run reports ErrNotBuilt until their owners replace it with a one-line
// call of their library function.
//
// Every scenario owns what it starts (emulator, embedded NATS, engine parts) and
// stops it before returning; it writes only under Options.Dir (a fresh temporary
// directory when empty) and listens only on loopback.
package bench

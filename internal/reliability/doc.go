// Package reliability holds Responder's proof-under-load tests: crash safety
// (the engine killed with SIGKILL and restarted while it works), Graph faults,
// a three-server NATS cluster, and secrets that must never leak. The package
// has no production code; its tests run the real binary or the real engine
// wiring against the emulated tenant (internal/m365sim) and an in-process NATS
// server, on loopback only, with every file under t.TempDir().
//
// The long tests are skipped by `go test -short`; each is bounded (see the
// deadline in each test) and says so when it gives up.
package reliability

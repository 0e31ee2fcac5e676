// Package ops owns the engine's operations surface: an HTTP server (loopback by
// default) with /healthz, /readyz, /metrics in Prometheus format and /api/audit,
// and Metrics, the counters and histograms the other parts record into.
//
// Metrics are registered on a registry the caller creates (never the global
// default one). Every Metrics method is safe on a nil *Metrics, so a part can be
// run without metrics. The server has no authentication of its own: keep it on
// loopback, or put it behind a proxy that authenticates, because /api/audit
// serves the audit trail.
package ops

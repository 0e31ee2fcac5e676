// Package ops owns the engine's operations surface: an HTTP server (loopback by
// default) with /healthz, /readyz, /metrics in Prometheus format and /api/audit,
// and Metrics, the counters and histograms the other parts record into.
//
// Metrics are registered on a registry the caller creates (never the global
// default one). Every Metrics method is safe on a nil *Metrics, so a part can be
// run without metrics. /healthz, /readyz and /metrics are open (keep the server
// on loopback, the default); /api/audit serves the audit trail and needs a
// bearer token (EnsureToken keeps one in the data directory) or a client
// certificate verified by the configured CA (mutual TLS), and answers only to
// Host headers that are IP literals, localhost or configured names, so a web
// page that rebinds its own name to loopback reads nothing (421). Refusals
// are told to Config.Refused (AuditRefusals records them as rejected), at
// most RefusalsPerMinute a minute.
package ops

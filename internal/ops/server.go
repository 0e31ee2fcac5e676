package ops

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/responder-sec/responder/internal/audit"
)

// DefaultAddr is loopback only.
const DefaultAddr = "127.0.0.1:9464"

// Config wires the server.
type Config struct {
	// Addr to listen on (default DefaultAddr).
	Addr string
	// Registry is what /metrics serves (required).
	Registry prometheus.Gatherer
	// Ready runs the readiness checks (NATS, feeds, Graph token…): a nil error
	// per name means ready. Nil: always ready.
	Ready func(ctx context.Context) map[string]error
	// Audit is where /api/audit reads (nil: /api/audit answers 503).
	Audit jetstream.JetStream
	// Tenant scopes /api/audit when set.
	Tenant string
	// Token is the bearer token /api/audit requires (Authorization: Bearer
	// TOKEN; EnsureToken keeps one in the data directory). A client
	// certificate verified against TLS.ClientCAs (mutual TLS) is accepted in
	// its place. With Audit set, NewServer refuses a configuration with
	// neither.
	Token string
	// TLS, when set, makes the server speak HTTPS with it; set ClientCAs and
	// ClientAuth (tls.VerifyClientCertIfGiven keeps /metrics open to
	// scrapers without a certificate) for mutual TLS.
	TLS *tls.Config
	// Hosts are the host names /api/audit answers to besides IP literals and
	// localhost (any port): any other Host header is refused with 421, so a
	// page that rebinds its own name to this address reads nothing.
	Hosts []string
	// Refused is told about refused /api/audit requests (the engine audits
	// them as rejected), at most RefusalsPerMinute a minute; the rest are
	// counted into the next one told.
	Refused func(ctx context.Context, r Refusal)
	Logger  *slog.Logger
	// Now is the clock for relative times in /api/audit (default time.Now).
	Now func() time.Time
	// Console, when set, serves every other path (the analysts' web
	// console, internal/console, which does its own sign-in and Host check).
	Console http.Handler
}

// Server is the operations HTTP server.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux

	refMu      sync.Mutex
	refWindow  time.Time // start of the current minute of told refusals
	refTold    int       // told in the window
	refDropped int       // not told since the last one told
}

// RefusalsPerMinute bounds how many refused /api/audit requests a minute are
// told to Config.Refused, so a flood cannot fill the audit trail.
const RefusalsPerMinute = 60

// NewServer builds the server; Run starts it.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Registry == nil {
		return nil, errors.New("ops: a metrics registry is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Audit != nil && cfg.Token == "" && (cfg.TLS == nil || cfg.TLS.ClientCAs == nil) {
		return nil, errors.New("ops: /api/audit needs a bearer token or mutual TLS (a TLS configuration with ClientCAs)")
	}
	if cfg.Token != "" {
		if err := CheckToken(cfg.Token); err != nil {
			return nil, fmt.Errorf("ops: %w", err)
		}
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("part", "ops"), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}))
	s.mux.HandleFunc("GET /api/audit", s.guardAudit(s.auditList))
	if cfg.Console != nil {
		s.mux.Handle("/", cfg.Console)
	}
	return s, nil
}

// Handler is the server's routes (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.mux }

// Run listens on Addr and serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ops: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS.Clone())
	}
	s.log.Info("operations server listening", "addr", ln.Addr().String(), "tls", s.cfg.TLS != nil)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ops: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("ops: shutdown: %w", err)
	}
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	out := map[string]string{}
	ok := true
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		for name, err := range s.cfg.Ready(ctx) {
			if err != nil {
				ok = false
				out[name] = err.Error()
			} else {
				out[name] = "ok"
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	_ = json.NewEncoder(w).Encode(struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}{ok, out})
}

// ParseFilter reads the /api/audit query: since, until (RFC 3339 or a duration
// back from now, as the CLI takes them), actor, action, target, outcome,
// playbook, request.
func ParseFilter(q map[string][]string, now time.Time) (audit.Filter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	for k := range q {
		switch k {
		case "since", "until", "actor", "action", "target", "outcome", "playbook", "request":
		default:
			return audit.Filter{}, fmt.Errorf("unknown parameter %q", k)
		}
	}
	when := func(k string) (time.Time, error) {
		v := get(k)
		if v == "" {
			return time.Time{}, nil
		}
		if d, err := time.ParseDuration(v); err == nil {
			return now.Add(-d), nil
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: %q is neither an RFC 3339 time nor a duration", k, v)
		}
		return t, nil
	}
	since, err := when("since")
	if err != nil {
		return audit.Filter{}, err
	}
	until, err := when("until")
	if err != nil {
		return audit.Filter{}, err
	}
	return audit.Filter{Since: since, Until: until, Actor: get("actor"), Action: get("action"), Target: get("target"),
		Outcome: get("outcome"), Playbook: get("playbook"), RequestID: get("request")}, nil
}

// auditList streams matching records as JSON lines.
func (s *Server) auditList(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Audit == nil {
		http.Error(w, "audit trail not available", http.StatusServiceUnavailable)
		return
	}
	f, err := ParseFilter(r.URL.Query(), s.cfg.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.TenantID = s.cfg.Tenant
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	fl, _ := w.(http.Flusher)
	n := 0
	err = audit.List(r.Context(), s.cfg.Audit, f, func(rec audit.Record) error {
		n++
		if err := enc.Encode(rec); err != nil {
			return err
		}
		if fl != nil && n%256 == 0 {
			fl.Flush()
		}
		return nil
	})
	if err != nil {
		// The status is sent; a truncated stream is all the client can see.
		s.log.Warn("api/audit", "err", err, "records", n)
		if n == 0 {
			http.Error(w, "reading the audit trail failed", http.StatusInternalServerError)
		}
	}
}

package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/defenderexec"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/approval"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/auditindex"
	"github.com/responder-sec/responder/internal/auditquery"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/feeds"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/matcher"
	"github.com/responder-sec/responder/internal/ops"
	"github.com/responder-sec/responder/internal/playbook"
	"github.com/responder-sec/responder/internal/run"
)

// Config is everything one engine process needs.
type Config struct {
	Bus         bus.Config
	Credentials m365.Credentials
	// PlaybookDir holds the playbooks; the engine refuses to start on an invalid one.
	PlaybookDir string
	// PlaybookWatch is how often Run looks for changed files under PlaybookDir
	// and reloads them (0 = DefaultPlaybookWatch, negative = never; SIGHUP in
	// `responder serve` and ReloadPlaybooks reload on demand).
	PlaybookWatch time.Duration
	Protected     actions.Protected
	DryRun        bool
	// RiskInterval is the risk-detection poll interval (default 60s).
	RiskInterval time.Duration
	// PageGap spaces Identity Protection page requests (default 1s).
	PageGap time.Duration
	Workers int
	// Worker retry pacing (defaults in actions.WorkerConfig).
	RetryBase, RetryMax time.Duration
	MaxAttempts         int
	Logger              *slog.Logger
	// OnEvent is told about each event a feed publishes (for the demo timeline).
	OnEvent func(event.Envelope)

	// DataDir holds the local keys (default Bus.StoreDir).
	DataDir string
	// AnalystsFile maps analysts' public keys to names and rights ("" = only the
	// local administrator key of DataDir).
	AnalystsFile string
	// ConsoleKey is the public key of this process's web console
	// (internal/console), trusted as a console: it signs for the people of
	// the analysts file who sign in ("" = no console).
	ConsoleKey string
	// Console is served at / on the operations address (nil = none).
	Console http.Handler
	// Approvals say which requests wait for a human decision.
	Approvals approval.Rules
	// Feeds to run (nil: AllFeeds); FeedInterval is their poll interval
	// (default 60s; the risk-detection feed uses RiskInterval); LeaseTTL is how
	// soon another process takes the feeds over from a dead holder (default 15s).
	Feeds        []string
	FeedInterval time.Duration
	LeaseTTL     time.Duration
	// IdentityProtectionBudget paces Identity Protection and Conditional Access
	// calls of feeds and actions together (default: Microsoft's 1 per second per
	// tenant, 10% under). Tests against the emulator may loosen it.
	IdentityProtectionBudget *feeds.TenantBudget
	// OpsAddr serves /healthz, /readyz, /metrics and /api/audit ("" = off).
	OpsAddr string
	// OpsToken is the bearer token /api/audit requires ("" = the one kept in
	// DataDir, created on first start: see ops.EnsureToken); OpsHosts are
	// host names it answers to besides IP literals and localhost.
	OpsToken string
	OpsHosts []string
	// Safety and action settings, passed to the workers and the executor.
	VerifiedDomains []string
	CAPolicyState   string
	// Defender are the Defender for Endpoint actions' settings.
	Defender DefenderSettings
	// ActionSettings are the actions' own settings (declared in their
	// catalogue entries), passed to both executors as they are.
	ActionSettings actions.Settings
	Blast          actions.BlastLimits
	IP             actions.IPPolicy

	// Notify posts requests held for approval and failed ones to webhooks
	// (notify.go); no webhook: off.
	Notify NotifySettings
}

// Engine is one running Responder process.
type Engine struct {
	cfg        Config
	log        *slog.Logger
	bus        *bus.Bus
	graph      *msgraphsdk.GraphServiceClient
	cred       azcore.TokenCredential
	httpClient *http.Client
	audit      *audit.Writer
	auditHead  *audit.HeadKeeper
	recorder   *recorder
	playbooks  atomic.Pointer[playbook.Set]
	registry   *prometheus.Registry
	metrics    *ops.Metrics
	engineKP   nkeys.KeyPair
	// The analysts directory in force (ReloadAnalysts replaces it), the
	// fingerprint of the analysts file as last read, and the local keys.
	directory           atomic.Pointer[analyst.Directory]
	anMu                sync.Mutex
	anPrint             [sha256.Size]byte
	adminPub, enginePub string
	// pbPrint is the fingerprint of the playbook files as last read (loaded
	// or refused), for the watcher.
	pbMu    sync.Mutex
	pbPrint [sha256.Size]byte
	domains []string // the verified domains the playbooks use (under pbMu)
	// pbReload is the last reload's time and refusal (under pbMu), for
	// the console's status page.
	pbReload reloadState
}

// New connects to the bus (starting the embedded server if configured), builds the
// Graph client and loads the playbooks. The caller must Close the engine.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	tenant := cfg.Credentials.TenantID
	if tenant == "" {
		return nil, errors.New("engine: missing tenant id")
	}
	// The files' fingerprint is taken before they are read: a change while
	// loading is seen by the watcher as a change.
	files, _ := dirFingerprint(cfg.PlaybookDir)
	set, err := playbook.LoadDir(cfg.PlaybookDir, playbook.LoadOptions{VerifiedDomains: cfg.VerifiedDomains, BaseDir: cfg.PlaybookDir, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("engine: playbooks in %s: %w", cfg.PlaybookDir, err)
	}
	reg := prometheus.NewRegistry()
	metrics, err := ops.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("engine: metrics: %w", err)
	}
	creds := cfg.Credentials
	creds.HTTPClient = instrument(creds.HTTPClient, metrics)
	graph, cred, err := m365.NewGraphClient(creds)
	if err != nil {
		return nil, fmt.Errorf("engine: graph client: %w", err)
	}
	// Playbooks judge forwarding recipients against the verified domains:
	// the configured ones, else the tenant's, read once at start.
	domains := cfg.VerifiedDomains
	if domains == nil {
		if domains, err = readVerifiedDomains(ctx, graph); err != nil {
			log.Warn("could not read the tenant's verified domains (Domain.Read.All); playbooks count a forwarding recipient as internal only in the user's own domain until --verified-domains is set or a reload reads them; actions check again against Graph", "err", err)
		} else {
			log.Info("verified domains read from the tenant", "domains", domains)
			if set, err = playbook.LoadDir(cfg.PlaybookDir, playbook.LoadOptions{VerifiedDomains: domains, BaseDir: cfg.PlaybookDir, Logger: log}); err != nil {
				return nil, fmt.Errorf("engine: playbooks in %s: %w", cfg.PlaybookDir, err)
			}
		}
	}
	if cfg.DataDir == "" {
		cfg.DataDir = cfg.Bus.StoreDir
	}
	if cfg.DataDir == "" {
		return nil, errors.New("engine: missing data directory for the engine and administrator keys (--data-dir)")
	}
	adminKP, created, err := analyst.EnsureLocalAdmin(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("engine: local administrator key: %w", err)
	}
	adminPub, _ := adminKP.PublicKey()
	if created {
		log.Info("created the local administrator key", "public_key", adminPub, "path", analyst.AdminKeyPath(cfg.DataDir))
	}
	engineKP, _, err := analyst.EnsureEngineKey(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("engine: engine key: %w", err)
	}
	enginePub, _ := engineKP.PublicKey()
	dir, anPrint, err := loadDirectory(cfg.AnalystsFile, adminPub, enginePub, cfg.ConsoleKey)
	if err != nil {
		return nil, err
	}
	// Nobody reaches the bus anonymously: the embedded server trusts the
	// engine key with everything and each key of the directory with its role.
	if cfg.Bus.URL == "" {
		cfg.Bus.Auth.Key = engineKP
	}
	cfg.Bus.Tenant, cfg.Bus.Identities = tenant, dir.BusIdentities()
	cfg.Bus.Logger = log
	b, err := bus.Open(ctx, cfg.Bus)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: log, bus: b, graph: graph, cred: cred, httpClient: creds.HTTPClient, registry: reg, metrics: metrics, engineKP: engineKP, pbPrint: files, domains: domains,
		anPrint: anPrint, adminPub: adminPub, enginePub: enginePub}
	e.directory.Store(dir)
	// Every audit record is signed with the engine key, and the chain's head is
	// kept outside the stream (data directory and KV): see internal/audit.
	if e.auditHead, err = newAuditHead(ctx, b, cfg.DataDir, engineKP, dir, log); err != nil {
		b.Close()
		return nil, err
	}
	e.audit = audit.NewWriter(b.JS, audit.WriterOptions{Logger: log, Signer: engineKP, Head: e.auditHead})
	e.recorder = &recorder{inner: e.audit, metrics: metrics, seen: newEventTimes(4096)}
	e.playbooks.Store(set)
	return e, nil
}

// Registry is the engine's Prometheus registry.
func (e *Engine) Registry() *prometheus.Registry { return e.registry }

// Bus is the engine's backbone connection.
func (e *Engine) Bus() *bus.Bus { return e.bus }

// Tenant is the tenant id the engine serves.
func (e *Engine) Tenant() string { return e.cfg.Credentials.TenantID }

// Playbooks is the current playbook set.
func (e *Engine) Playbooks() *playbook.Set { return e.playbooks.Load() }

// Close stops the bus (and the embedded server).
func (e *Engine) Close() { e.bus.Close() }

// Run starts every part and blocks until ctx ends or a part fails; then it stops
// the others and waits for them.
func (e *Engine) Run(ctx context.Context) error {
	err := e.run(ctx)
	if err != nil && ctx.Err() != nil {
		return nil // stopped while starting: not a failure
	}
	return err
}

func (e *Engine) run(ctx context.Context) error {
	tenant := e.Tenant()
	// A cluster still electing leaders answers these late or not at all:
	// wait for it (bus.WhenReady) rather than exit and be restarted.
	var kv jetstream.KeyValue
	if err := bus.WhenReady(ctx, e.log, "tenant state", func() (err error) {
		kv, err = e.tenantState(ctx, tenant)
		return err
	}); err != nil {
		return err
	}
	replicas := e.cfg.Bus.Replicas
	var seen jetstream.KeyValue
	if err := bus.WhenReady(ctx, e.log, "replay bucket", func() (err error) {
		seen, err = analyst.EnsureReplayBucket(ctx, e.bus.JS, replicas, 0)
		return err
	}); err != nil {
		return fmt.Errorf("engine: replay bucket: %w", err)
	}
	verifier, err := analyst.NewVerifier(analyst.VerifierConfig{Directory: e.directory.Load, Seen: seen})
	if err != nil {
		return err
	}
	query, err := auditquery.New(auditquery.Config{Tenant: tenant, Conn: e.bus.NC, JS: e.bus.JS, Verifier: verifier,
		Audit: e.recorder, Logger: e.log.With("part", "auditquery")})
	if err != nil {
		return err
	}
	store := approval.NewStore(kv, approval.StoreOptions{})
	approvals, err := approval.NewService(approval.ServiceConfig{
		Tenant: tenant, Conn: e.bus.NC, Store: store, Verifier: verifier, Audit: e.recorder,
		Release: approval.RepublishFunc(e.bus.JS, tenant), Logger: e.log.With("part", "approval"),
	})
	if err != nil {
		return err
	}
	enginePub, _ := e.engineKP.PublicKey()
	sign := &signer{js: e.bus.JS, kv: kv, tenant: tenant, kp: e.engineKP, audit: e.recorder, log: e.log.With("part", "publisher"),
		isEngine: func(key string) bool {
			if key == enginePub {
				return true
			}
			a, ok := e.directory.Load().Lookup(key)
			return ok && a.Role == analyst.RoleEngine
		}}
	idp := e.cfg.IdentityProtectionBudget
	if idp == nil {
		idp = feeds.NewIdentityProtectionBudget()
	}
	exoCreds := e.cfg.Credentials
	exoCreds.HTTPClient = e.httpClient
	exec := graphexec.NewWithConfig(e.graph, graphexec.Config{
		Logger: e.log, Budgets: graphexec.NewBudgets(graphexec.BudgetConfig{
			SharedIdentityProtectionCA: func(ctx context.Context) error { return idp.Wait(ctx, feeds.PriorityAction) },
		}),
		Protected: e.cfg.Protected, VerifiedDomains: e.cfg.VerifiedDomains, CAPolicyState: e.cfg.CAPolicyState,
		// Mailbox forwarding is only reachable through the Exchange admin API.
		Exchange:    m365.BearerClient(exoCreds, e.cred, exoCreds.ExchangeScope()),
		ExchangeURL: exoCreds.ExchangeAdminURL(), TenantID: tenant,
		Settings: e.cfg.ActionSettings,
	})
	parts := map[string]func(context.Context) error{
		"feeds": func(ctx context.Context) error { return e.runFeeds(ctx, kv, e.cred, idp) },
		"matcher": matcher.New(matcher.Config{
			Tenant: tenant, JS: e.bus.JS, KV: kv, Playbooks: e.Playbooks, Audit: e.recorder, Publish: sign.publish,
			OnEvent: func(id string) { e.recorder.seen.put(id, time.Now()) }, OnMatch: e.metrics.Match,
			Logger: e.log.With("part", "matcher"),
		}).Run,
		"actions": actions.NewWorker(actions.WorkerConfig{
			Tenant: tenant, JS: e.bus.JS, KV: kv,
			Handlers:    defenderexec.Merge(exec.Handlers(), e.defender(exec).Handlers()),
			Resolver:    exec,
			Directory:   exec,
			Audit:       e.recorder,
			Protected:   e.cfg.Protected,
			Blast:       e.cfg.Blast,
			IP:          e.cfg.IP,
			Trusted:     exec,
			Domains:     exec,
			Gate:        &gate{verifier: verifier, store: store, rules: e.cfg.Approvals, now: time.Now},
			Publish:     sign.relay,
			DryRun:      e.cfg.DryRun,
			Concurrency: e.cfg.Workers, MaxAttempts: e.cfg.MaxAttempts,
			RetryBase: e.cfg.RetryBase, RetryMax: e.cfg.RetryMax,
			Logger: e.log,
		}).Run,
		"expiry":     actions.NewExpiryScheduler(actions.ExpiryConfig{Tenant: tenant, JS: e.bus.JS, KV: kv, Publish: sign.publish, Logger: e.log}).Run,
		"approvals":  approvals.Run,
		"playbooks":  e.watchPlaybooks,
		"analysts":   e.watchAnalysts,
		"auditquery": query.Run,
	}
	parts["audit-head"] = e.auditHead.Run
	if run, err := e.notifier(kv); err != nil {
		return err
	} else if run != nil {
		parts["notify"] = run
	}
	// The audit index behind filtered and newest-first audit pages.
	indexer, err := auditindex.NewIndexer(auditindex.IndexerConfig{Tenant: tenant, JS: e.bus.JS, Logger: e.log.With("part", "auditindex")})
	if err != nil {
		return err
	}
	parts["auditindex"] = indexer.Run
	if e.cfg.OpsAddr != "" {
		token := e.cfg.OpsToken
		if token == "" {
			t, created, err := ops.EnsureToken(e.cfg.DataDir)
			if err != nil {
				return fmt.Errorf("engine: operations token: %w", err)
			}
			if created {
				e.log.Info("created the operations token for /api/audit", "path", ops.TokenPath(e.cfg.DataDir))
			}
			token = t
		}
		srv, err := ops.NewServer(ops.Config{Addr: e.cfg.OpsAddr, Registry: e.registry, Audit: e.bus.JS, Tenant: tenant,
			Token: token, Hosts: e.cfg.OpsHosts, Refused: ops.AuditRefusals(e.recorder, tenant, e.log.With("part", "ops")),
			Logger: e.log.With("part", "ops"), Ready: e.ready, Console: e.console()})
		if err != nil {
			return err
		}
		parts["ops"] = srv.Run
	}
	var g run.Group
	for name, fn := range parts {
		g.Add(name, fn)
	}
	err = g.Run(ctx)
	// Records the parts appended while stopping: keep the head at the last one.
	hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if err := e.auditHead.Flush(hctx); err != nil {
		e.log.Warn("could not write the audit head at shutdown", "err", err)
	}
	hcancel()
	return err
}

func (e *Engine) onEvent(env event.Envelope) {
	e.metrics.Event(string(env.Source), env.Kind)
	if e.cfg.OnEvent != nil {
		e.cfg.OnEvent(env)
	}
}

// ready reports the readiness of NATS and of a Graph token.
func (e *Engine) ready(ctx context.Context) map[string]error {
	out := map[string]error{}
	if !e.bus.NC.IsConnected() {
		out["nats"] = errors.New("not connected")
	} else {
		out["nats"] = nil
	}
	return out
}

// ReloadPlaybooks loads the playbook directory again (and, when none are
// configured, the tenant's verified domains). An invalid set is refused with
// every problem named, and the engine keeps the last good set.
func (e *Engine) ReloadPlaybooks() error {
	e.pbMu.Lock()
	defer e.pbMu.Unlock()
	if fp, err := dirFingerprint(e.cfg.PlaybookDir); err == nil {
		e.pbPrint = fp
	}
	if e.cfg.VerifiedDomains == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if d, err := readVerifiedDomains(ctx, e.graph); err == nil {
			e.domains = d
		} else {
			e.log.Warn("could not read the tenant's verified domains; keeping the ones known", "err", err, "domains", e.domains)
		}
		cancel()
	}
	set, err := playbook.LoadDir(e.cfg.PlaybookDir, playbook.LoadOptions{VerifiedDomains: e.domains, BaseDir: e.cfg.PlaybookDir, Logger: e.log})
	e.metrics.PlaybookReload(err == nil)
	e.pbReload.note(time.Now(), err)
	if err != nil {
		return fmt.Errorf("engine: playbooks in %s not reloaded (keeping the last good set): %w", e.cfg.PlaybookDir, err)
	}
	e.playbooks.Store(set)
	return nil
}

// newAuditHead loads the audit chain's kept head (file in dataDir, KV key),
// trusting the heads signed by any engine of dir.
func newAuditHead(ctx context.Context, b *bus.Bus, dataDir string, kp nkeys.KeyPair, dir *analyst.Directory, log *slog.Logger) (*audit.HeadKeeper, error) {
	var keys []string
	for _, a := range dir.All() {
		if a.Role == analyst.RoleEngine {
			keys = append(keys, a.PublicKey)
		}
	}
	trusted, err := audit.NewTrusted(keys...)
	if err != nil {
		return nil, fmt.Errorf("engine: audit signers: %w", err)
	}
	kv, err := b.State(ctx)
	if err != nil {
		return nil, err
	}
	k := audit.NewHeadKeeper(audit.HeadKeeperConfig{Path: audit.HeadPath(dataDir), KV: kv, Signer: kp, Trusted: trusted, Logger: log.With("part", "audit-head")})
	h, err := k.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if h.Seq > 0 {
		log.Info("audit chain head kept", "seq", h.Seq, "hash", h.Hash)
	}
	return k, nil
}

// tenantState is the tenant's view of the state bucket (bus.TenantState),
// after moving the keys an earlier version wrote without a tenant prefix into
// it. The audit head stays bucket-wide: the AUDIT stream's chain is one for
// the whole cluster.
func (e *Engine) tenantState(ctx context.Context, tenant string) (jetstream.KeyValue, error) {
	raw, err := e.bus.State(ctx)
	if err != nil {
		return nil, err
	}
	n, err := bus.MigrateTenantKeys(ctx, raw, tenant, audit.HeadKey)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if n > 0 {
		e.log.Info("state keys moved into the tenant's namespace", "tenant", tenant, "keys", n)
	}
	return bus.TenantState(raw, tenant), nil
}

package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/feeds"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/playbook"
)

// Config is everything one engine process needs.
type Config struct {
	Bus         bus.Config
	Credentials m365.Credentials
	// PlaybookDir holds the playbooks; the engine refuses to start on an invalid one.
	PlaybookDir string
	Protected   actions.Protected
	DryRun      bool
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
}

// Engine is one running Responder process.
type Engine struct {
	cfg       Config
	log       *slog.Logger
	bus       *bus.Bus
	graph     *msgraphsdk.GraphServiceClient
	audit     *audit.Writer
	playbooks atomic.Pointer[playbook.Set]
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
	set, err := playbook.LoadDir(cfg.PlaybookDir, playbook.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("engine: playbooks in %s: %w", cfg.PlaybookDir, err)
	}
	graph, _, err := m365.NewGraphClient(cfg.Credentials)
	if err != nil {
		return nil, fmt.Errorf("engine: graph client: %w", err)
	}
	cfg.Bus.Logger = log
	b, err := bus.Open(ctx, cfg.Bus)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: log, bus: b, graph: graph}
	e.audit = audit.NewWriter(b.JS, audit.WriterOptions{Logger: log})
	e.playbooks.Store(set)
	return e, nil
}

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
	kv, err := e.bus.State(ctx)
	if err != nil {
		return err
	}
	tenant := e.Tenant()
	parts := map[string]func(context.Context) error{
		"risk_detections": feeds.NewRiskPoller(feeds.RiskConfig{
			Tenant: tenant, Graph: e.graph, JS: e.bus.JS, KV: kv,
			Interval: e.cfg.RiskInterval, PageGap: e.cfg.PageGap, Logger: e.log, OnPublished: e.cfg.OnEvent,
		}).Run,
		"matcher": (&Matcher{
			tenant: tenant, js: e.bus.JS, playbooks: e.Playbooks, audit: e.audit, kv: kv,
			log: e.log.With("part", "matcher"), now: time.Now,
		}).Run,
		"actions": actions.NewWorker(actions.WorkerConfig{
			Tenant: tenant, JS: e.bus.JS, KV: kv,
			Executor:    graphexec.New(e.graph, e.log),
			Audit:       e.audit,
			Protected:   e.cfg.Protected,
			DryRun:      e.cfg.DryRun,
			Concurrency: e.cfg.Workers, MaxAttempts: e.cfg.MaxAttempts,
			RetryBase: e.cfg.RetryBase, RetryMax: e.cfg.RetryMax,
			Logger: e.log,
		}).Run,
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(parts))
	for name, run := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/engine"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// runningEngine starts an engine on an emulated tenant (every API URL pointed
// at it, no feeds unless configure adds some) and writes the local context the
// CLI reads, as `responder serve` does. It returns the tenant, the data
// directory the CLI is run with, the engine, and a context that lives until
// the test ends; the engine stops with the test.
func runningEngine(t *testing.T, configure func(*engine.Config)) (*m365sim.Tenant, string, *engine.Engine, context.Context) {
	t.Helper()
	clearEnv(t)
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	info := sim.Info()
	dataDir := t.TempDir()
	cfg := engine.Config{
		Bus: bus.Config{StoreDir: filepath.Join(dataDir, "nats"), Port: -1},
		Credentials: m365.Credentials{TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
			LoginURL: info.LoginURL, GraphURL: info.GraphURL, ExchangeURL: info.ExchangeURL, DefenderURL: info.DefenderURL,
			HTTPClient: sim.HTTPClient()},
		DataDir: dataDir, PlaybookDir: "../../playbooks", Feeds: []string{}, Logger: slog.New(slog.DiscardHandler),
	}
	if configure != nil {
		configure(&cfg)
	}
	eng, err := engine.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; eng.Close() })
	if err := writeContext(dataDir, localContext{NatsURL: eng.Bus().ClientURL(), TenantID: info.TenantID}); err != nil {
		t.Fatal(err)
	}
	return sim, dataDir, eng, ctx
}

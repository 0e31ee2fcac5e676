package demo

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/approval"
	"github.com/responder-sec/responder/internal/console"
	"github.com/responder-sec/responder/internal/engine"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// ConsolePeople are who may sign in to the demo's console: two approvers who
// may also act (Carol, Bob). Alice (the attack's victim) and the break-glass
// account are not in the analysts file: they get the 403 page.
func ConsolePeople() []console.DemoPerson {
	return []console.DemoPerson{
		{Name: "carol", OID: m365sim.CarolID, UPN: "carol@contoso.com", Actions: []string{analyst.AllActions}, MayApprove: true},
		{Name: "bob", OID: m365sim.BobID, UPN: "bob@contoso.com", Actions: []string{analyst.AllActions}, MayApprove: true},
	}
}

// ConsoleRun is the running console handed to Hold.
type ConsoleRun struct {
	URL     string
	Console *console.Console
	Engine  *engine.Engine
	Tenant  *m365sim.Tenant
	Result  Result
}

// WithConsole makes a scenario leave the engine running with the web console
// on addr, behind the emulated tenant's sign-in, and call hold while it runs.
// dataDir must be set (it holds the keys and the analysts file). Confirming a
// user compromised needs two approvers here, and dismissing a user's risk
// one, to show four-eyes in the browser.
func WithConsole(o Options, addr string, hold func(ctx context.Context, r ConsoleRun) error) (Options, error) {
	if o.DataDir == "" {
		return o, fmt.Errorf("demo: the console needs a data directory")
	}
	admin, _, err := analyst.EnsureLocalAdmin(o.DataDir)
	if err != nil {
		return o, err
	}
	ckp, _, err := analyst.EnsureConsoleKey(o.DataDir)
	if err != nil {
		return o, err
	}
	adminPub, _ := admin.PublicKey()
	consolePub, _ := ckp.PublicKey()
	file := filepath.Join(o.DataDir, "analysts.yaml")
	if err := console.WriteDemoAnalysts(file, adminPub, consolePub, ConsolePeople()); err != nil {
		return o, err
	}
	prev := o.Engine
	o.Engine = func(cfg engine.Config) engine.Config {
		if prev != nil {
			cfg = prev(cfg)
		}
		cfg.AnalystsFile, cfg.ConsoleKey, cfg.OpsAddr = file, consolePub, addr
		if cfg.Approvals.Actions == nil {
			cfg.Approvals.Actions = map[string]int{}
		}
		cfg.Approvals.Actions["confirm_compromised"] = 2
		// An analyst's own dismiss_risk waits for someone else (four-eyes in
		// the browser: its requester cannot approve it).
		cfg.Approvals.Actions["dismiss_risk"] = 1
		if cfg.Approvals.TTL == 0 {
			cfg.Approvals.TTL = approval.DefaultTTL
		}
		return cfg
	}
	var c *console.Console
	o.Console = func(eng *engine.Engine, tenant *m365sim.Tenant) (func(), error) {
		info := tenant.Info()
		var done func()
		var err error
		c, done, err = console.Attach(eng, console.AttachOptions{
			Key: ckp, OpsAddr: addr, Logger: o.Logger,
			Credentials: m365.Credentials{TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
				LoginURL: info.LoginURL, HTTPClient: tenant.HTTPClient()},
		})
		return done, err
	}
	o.Hold = func(ctx context.Context, eng *engine.Engine, tenant *m365sim.Tenant, res Result) error {
		return hold(ctx, ConsoleRun{URL: c.URL(), Console: c, Engine: eng, Tenant: tenant, Result: res})
	}
	return o, nil
}

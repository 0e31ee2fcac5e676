package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/console"
	"github.com/responder-sec/responder/internal/demo"
	"github.com/responder-sec/responder/internal/engine"
	"github.com/responder-sec/responder/internal/m365"
)

// consoleFlags configure the analysts' web console that serve mounts at /
// on --ops-addr.
type consoleFlags struct {
	Console               bool          `help:"Serve the analysts' web console at / on --ops-addr (Entra ID sign-in; people and roles from the analysts file)." default:"true" negatable:"" env:"RESPONDER_CONSOLE"`
	ConsoleClientID       string        `help:"Application (client) id people sign in to the console with (default: --client-id, the engine's app with a Web redirect URI added)." env:"RESPONDER_CONSOLE_CLIENT_ID"`
	ConsoleClientSecret   string        `help:"Client secret of --console-client-id (default: --client-secret)." env:"RESPONDER_CONSOLE_CLIENT_SECRET"`
	ConsoleRedirectURL    string        `help:"The console's redirect URI as registered in the app (default: http://<ops-addr>/auth/callback)." env:"RESPONDER_CONSOLE_REDIRECT_URL"`
	ConsoleIdleTimeout    time.Duration `help:"Sign a console session out after this long without a request." default:"30m" env:"RESPONDER_CONSOLE_IDLE_TIMEOUT"`
	ConsoleSessionTimeout time.Duration `help:"Sign a console session out this long after sign-in, whatever it does." default:"12h" env:"RESPONDER_CONSOLE_SESSION_TIMEOUT"`
}

// consoleKey is the console's key in dataDir (created on first use), or nil
// when the console is off.
func (f consoleFlags) consoleKey(dataDir, opsAddr string, log *slog.Logger) (nkeys.KeyPair, string, error) {
	if !f.Console || opsAddr == "" {
		return nil, "", nil
	}
	kp, created, err := analyst.EnsureConsoleKey(dataDir)
	if err != nil {
		return nil, "", fmt.Errorf("console key: %w", err)
	}
	pub, _ := kp.PublicKey()
	if created {
		log.Info("created the console key", "public_key", pub, "path", analyst.ConsoleKeyPath(dataDir))
	}
	return kp, pub, nil
}

// attach mounts the console on eng (before eng.Run); the func closes it.
func (f consoleFlags) attach(eng *engine.Engine, kp nkeys.KeyPair, creds m365.Credentials, opsAddr string, hosts []string, nats natsAuthFlags, log *slog.Logger) (func(), error) {
	if kp == nil {
		return func() {}, nil
	}
	c, done, err := console.Attach(eng, console.AttachOptions{
		Key: kp, Credentials: creds, ClientID: f.ConsoleClientID, ClientSecret: f.ConsoleClientSecret,
		OpsAddr: opsAddr, RedirectURL: f.ConsoleRedirectURL, Hosts: hosts,
		NATS:        bus.ClientAuth{TLSCert: nats.NatsTLSCert, TLSKey: nats.NatsTLSKey, TLSCA: nats.NatsTLSCA},
		IdleTimeout: f.ConsoleIdleTimeout, AbsoluteTimeout: f.ConsoleSessionTimeout, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	log.Info("console serving", "url", c.URL())
	return done, nil
}

// runDemoConsole plays one scenario, then keeps the engine and the console
// running until interrupted.
func runDemoConsole(e *env, o demo.Options, addr string) error {
	if strings.EqualFold(o.Scenario, demo.All) {
		return errors.New("--console plays one scenario, not all")
	}
	if o.DataDir == "" {
		d, err := os.MkdirTemp("", "responder-demo-console-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.DataDir = d
	}
	o, err := demo.WithConsole(o, addr, func(ctx context.Context, r demo.ConsoleRun) error {
		fmt.Fprintf(e.stdout, "\nConsole: %s (engine and console keep running; Ctrl-C stops them)\n", r.URL)
		fmt.Fprintln(e.stdout, "Sign in on the emulated tenant's page as one of:")
		for _, p := range demo.ConsolePeople() {
			role := "analyst"
			if p.MayApprove {
				role += ", approver"
			}
			fmt.Fprintf(e.stdout, "  %-22s %s\n", p.UPN, role)
		}
		fmt.Fprintln(e.stdout, "  breakglass@contoso.com not in the analysts file: the 403 page")
		fmt.Fprintln(e.stdout, "confirm_compromised needs two approvers here: approve as carol, sign out, approve as bob.")
		fmt.Fprintln(e.stdout, "The emulated tenant's sign-in page uses a self-signed certificate: your browser asks you to accept it once.")
		<-ctx.Done()
		return nil
	})
	if err != nil {
		return err
	}
	_, err = demo.Run(e.ctx, o)
	return err
}
